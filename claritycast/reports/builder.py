"""A connection's report for one period, drawn from stored history (never from Clarity).

Used by the render stage and by ``claritycast preview``, so a preview is
exactly what would be sent. The chart covers the connection's window, which
ends the day before the period (a report sent on the 29th shows days up to
the 28th, the last complete local day); the summary compares the latest
period with the one before, so it reads a little further back.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from claritycast.clarity.big_answers import values_total
from claritycast.reports import charts, summary
from claritycast.reports.series import blocks_needed, breakdown, daily_series
from claritycast.reports.summariser import Summariser
from claritycast.store.core import Store
from models import catalogue
from models.catalogue import Metric
from models.clarity import ClarityResponse
from models.delivery import Connection
from models.report import Report

# Extra days read before the window, for the summary's 7-day average.
_AVERAGE_DAYS = 7
# Shares in a breakdown's summary are of the whole, not of its top 10.
_ALL = 10_000


def window(connection: Connection, period: date) -> tuple[date, date]:
    """The first and last local day a report for ``period`` shows."""
    last = period - timedelta(days=1)
    return last - timedelta(days=connection.window_days - 1), last


async def missing_data(store: Store, project_id: str, metric: Metric, period: date) -> list[str]:
    """What the report for ``period`` needs and the store lacks: ``["2026-11-28 overall"]``."""
    last = (period - timedelta(days=1)).isoformat()
    if metric.group in await store.groups_stored(project_id, last):
        return []
    return [f"{last} {metric.group}"]


def incomplete_note(missing: list[str]) -> str | None:
    if not missing:
        return None
    days = sorted({item.split(" ")[0] for item in missing})
    return (
        f"Data incomplete: {', '.join(days)} not yet received from Clarity; "
        "the chart shows what is stored."
    )


async def build_report(
    store: Store,
    connection: Connection,
    period: date,
    *,
    missing: list[str],
    summariser: Summariser | None = None,
) -> tuple[Report, str]:
    """The report and where its summary came from (``ai`` or ``plain``)."""
    metric = catalogue.get(connection.metric_id)
    project = await store.get_project(connection.project_id)
    label = project.label if project else connection.project_id
    first, last = window(connection, period)
    period_days = connection.schedule.period_days
    history_first = min(first, last - timedelta(days=2 * period_days + _AVERAGE_DAYS))
    snapshots = await store.snapshots_for(
        connection.project_id, history_first.isoformat(), last.isoformat(), group=metric.group,
        metrics=blocks_needed(metric),
    )  # fmt: skip
    by_day = {
        date.fromisoformat(s.local_date): ClarityResponse.from_json(s.blocks) for s in snapshots
    }
    in_window = {day: response for day, response in by_day.items() if day >= first}
    note = incomplete_note(missing)
    total = values_total(metric.block, (s for s in snapshots if s.local_date >= first.isoformat()))
    chart = await asyncio.to_thread(  # cairo is CPU-bound: keep the event loop free
        charts.render_chart, metric, in_window, first, last, project_label=label, note=note,
        values_total=total,
    )  # fmt: skip
    facts = _facts(metric, by_day, history_first, first, last, period_days, label)
    text = summary.describe(facts)
    source = "plain"
    if connection.ai_summary and summariser is not None:
        result = await summariser.summarise(facts, text)
        text, source = result.text, result.source
    report = Report(
        title=chart.title,
        period_label=charts.period_label(first, last),
        summary=text,
        alt_text=chart.alt_text,
        png=chart.png,
        local_date=period.isoformat(),
        note=note,
    )
    return report, source


def _facts(
    metric: Metric,
    by_day: dict[date, ClarityResponse],
    history_first: date,
    first: date,
    last: date,
    period_days: int,
    label: str,
) -> summary.Facts:
    days_in_window = (last - first).days + 1
    days_collected = sum(1 for day in by_day if day >= first)
    if not metric.is_breakdown:
        points = daily_series(metric, by_day, history_first, last)
        return summary.daily_facts(
            metric, points, project_label=label, period_days=period_days, first=first
        )
    current_first = last - timedelta(days=period_days - 1)
    previous_first = current_first - timedelta(days=period_days)
    current = [r for day, r in by_day.items() if day >= current_first]
    previous = [r for day, r in by_day.items() if previous_first <= day < current_first]
    return summary.breakdown_facts(
        metric,
        breakdown(metric, current, top_n=_ALL),
        breakdown(metric, previous, top_n=_ALL),
        project_label=label,
        first=first,
        last=last,
        days_collected=days_collected,
        days_in_window=days_in_window,
        period_days=period_days,
    )
