"""The charts a source's page shows, and the sparklines of the sources list, from the store.

A source's page draws every metric of the catalogue with the reports' own
chart (`claritycast.reports.charts.render_chart`, interactive: hover titles
instead of a PNG), reading each fetch group's snapshots once for all of its
metrics. The drawing is CPU-bound, so it runs in a thread.

A snapshot is never changed once stored (one per project, day and group,
written once), so what is drawn from a group's days is the same until a day
is added: each drawing is kept, in this process, under the exact days it was
drawn from (read from the small per-day pull records), and drawn again only
when they change. The page is read many times a day; its data changes once.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup

from claritycast.clarity.big_answers import values_total
from claritycast.reports import charts, series
from claritycast.reports.sparkline import Sparkline, daily_values, sparkline
from claritycast.store.core import Store
from claritycast.web.pages.render import trusted_svg
from claritycast.web.schemas import Source
from models import catalogue
from models.catalogue import Category, Metric
from models.clarity import ClarityResponse
from models.documents import Project, Snapshot

SPARK_DAYS = 30
SESSIONS = catalogue.get("sessions")


class Drawn:
    """What was drawn, by the exact days it was drawn from; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


CHARTS = Drawn(size=400)  # a group's charts: 7 entries a source and period
SPARKS = Drawn(size=5000)  # one a source


async def stored_days(
    store: Store, project_ids: list[str], first: date
) -> dict[str, dict[str, set[str]]]:
    """Each project's groups stored, by local date, from ``first``: one read of small records."""
    return await store.pulls_since_many(project_ids, first.isoformat())


def _days_with(days: dict[str, set[str]], group: str, first: date, last: date) -> frozenset[str]:
    low, high = first.isoformat(), last.isoformat()
    return frozenset(day for day, groups in days.items() if group in groups and low <= day <= high)


@dataclass(frozen=True)
class ChartView:
    """One metric's chart on a page, and a breakdown's values as a table."""

    metric: Metric
    svg: Markup
    alt_text: str
    rows: list[tuple[str, float]]
    unit: str


@dataclass(frozen=True)
class CategoryView:
    title: str
    charts: list[ChartView]


def _by_day(snapshots: list[Snapshot]) -> dict[date, ClarityResponse]:
    return {
        date.fromisoformat(s.local_date): ClarityResponse.from_json(s.blocks) for s in snapshots
    }


def _draw(
    metrics: list[Metric], snapshots: list[Snapshot], first: date, last: date, label: str
) -> list[ChartView]:
    """The charts of one group's metrics, from that group's snapshots."""
    by_day = _by_day(snapshots)
    views = []
    for metric in metrics:
        chart = charts.render_chart(
            metric, by_day, first, last, project_label=label, interactive=True,
            values_total=values_total(metric.block, snapshots) if metric.is_breakdown else 0,
        )  # fmt: skip
        rows = series.breakdown(metric, by_day.values()) if metric.is_breakdown else []
        views.append(
            ChartView(metric, trusted_svg(chart.svg), chart.alt_text, rows, metric.unit.value)
        )
    return views


async def source_charts(
    store: Store, project: Project, first: date, last: date
) -> list[CategoryView]:
    """Every metric of the catalogue from ``first`` to ``last``, by category."""
    groups: dict[str, list[Metric]] = {}
    for metric in catalogue.METRICS:
        groups.setdefault(metric.group, []).append(metric)
    days = (await stored_days(store, [project.project_id], first))[project.project_id]
    drawn: dict[str, ChartView] = {}
    for group, metrics in groups.items():
        key = (project.project_id, project.label, group, first, last,
               _days_with(days, group, first, last))  # fmt: skip
        views = CHARTS.get(key)
        if views is None:
            blocks = set().union(*(series.blocks_needed(metric) for metric in metrics))
            snapshots = await store.snapshots_for(
                project.project_id, first.isoformat(), last.isoformat(), group=group,
                metrics=blocks,
            )  # fmt: skip
            views = await asyncio.to_thread(_draw, metrics, snapshots, first, last, project.label)
            CHARTS.put(key, views)
        drawn.update((view.metric.id, view) for view in views)
    return [
        CategoryView(
            category.value, [drawn[m.id] for m in catalogue.METRICS if m.category is category]
        )
        for category in Category
    ]


async def sparklines(store: Store, sources: list[Source]) -> dict[str, Sparkline]:
    """Each source's sessions over its last 30 local days; snapshots read only when new."""
    if not sources:
        return {}
    windows = {s.id: (s.local_date - timedelta(days=SPARK_DAYS - 1), s.local_date) for s in sources}
    first = min(window[0] for window in windows.values())
    days = await stored_days(store, list(windows), first)
    keys = {
        source_id: (source_id, own_first, last, _days_with(days[source_id], SESSIONS.group,
                                                            own_first, last))
        for source_id, (own_first, last) in windows.items()
    }  # fmt: skip
    lines = {source_id: SPARKS.get(key) for source_id, key in keys.items()}
    missing = [source_id for source_id, line in lines.items() if line is None]
    if missing:
        last = max(windows[source_id][1] for source_id in missing)
        stored = await store.snapshots_for_many(
            missing, first.isoformat(), last.isoformat(), SESSIONS.group,
            metrics={SESSIONS.block},
        )  # fmt: skip
        for source_id in missing:
            own_first, own_last = windows[source_id]
            by_day = _by_day(stored[source_id])
            line = sparkline(daily_values(SESSIONS, by_day, own_first, own_last))
            SPARKS.put(keys[source_id], line)
            lines[source_id] = line
    return {source_id: line for source_id, line in lines.items() if line is not None}
