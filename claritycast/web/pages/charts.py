"""The charts a source's page shows, and the sparklines of the sources list, from the store.

A source's page draws every metric of the catalogue with the reports' own
chart (`claritycast.reports.charts.render_chart`, interactive: hover titles
instead of a PNG), reading each fetch group's snapshots once for all of its
metrics. The drawing is CPU-bound, so it runs in a thread, all charts in one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta

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
    metrics: list[Metric],
    stored: dict[str, list[Snapshot]],
    first: date,
    last: date,
    label: str,
) -> list[ChartView]:
    views = []
    for metric in metrics:
        snapshots = stored[metric.group]
        by_day = _by_day(snapshots)
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
    groups: dict[str, set[str]] = {}
    for metric in catalogue.METRICS:
        groups.setdefault(metric.group, set()).update(series.blocks_needed(metric))
    stored = {}
    for group, blocks in groups.items():
        stored[group] = await store.snapshots_for(
            project.project_id, first.isoformat(), last.isoformat(), group=group, metrics=blocks
        )
    metrics = list(catalogue.METRICS)
    drawn = await asyncio.to_thread(_draw, metrics, stored, first, last, project.label)
    return [
        CategoryView(category.value, [view for view in drawn if view.metric.category is category])
        for category in Category
    ]


async def sparklines(store: Store, sources: list[Source]) -> dict[str, Sparkline]:
    """Each source's sessions over its last 30 local days, from one read."""
    if not sources:
        return {}
    first = min(s.local_date for s in sources) - timedelta(days=SPARK_DAYS - 1)
    last = max(s.local_date for s in sources)
    stored = await store.snapshots_for_many(
        [s.id for s in sources], first.isoformat(), last.isoformat(), SESSIONS.group,
        metrics={SESSIONS.block},
    )  # fmt: skip
    lines = {}
    for source in sources:
        own_first = source.local_date - timedelta(days=SPARK_DAYS - 1)
        by_day = _by_day(stored[source.id])
        lines[source.id] = sparkline(daily_values(SESSIONS, by_day, own_first, source.local_date))
    return lines
