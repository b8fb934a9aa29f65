"""Stored snapshots → a metric's daily series or its ranked breakdown. Pure functions.

A day without a snapshot, or whose snapshot lacks the figure, is ``None`` in the
series: a gap, never zero. Breakdowns add counts across rows and days, and
combine averages weighted by the sessions of the same row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from models.catalogue import Metric
from models.clarity import Block, ClarityResponse, Row

# How many values of a breakdown charts and `claritycast series` show.
TOP_N = 10


@dataclass(frozen=True)
class Point:
    day: date
    value: float | None


def _total_row(block: Block) -> Row | None:
    """The one row that stands for the whole site: the only row, or the aggregate."""
    for row in block.rows:
        if not row.dims or row.is_aggregate:
            return row
    return None


def day_value(metric: Metric, response: ClarityResponse) -> float | None:
    """The metric's figure in one day's response of its group, or None when absent."""
    block = response.block(metric.block)
    row = _total_row(block) if block else None
    return row.values.get(metric.field) if row else None


def daily_series(
    metric: Metric, by_day: Mapping[date, ClarityResponse], first: date, last: date
) -> list[Point]:
    """One point per day from ``first`` to ``last``, gaps where nothing is stored."""
    points = []
    day = first
    while day <= last:
        response = by_day.get(day)
        points.append(Point(day, day_value(metric, response) if response else None))
        day += timedelta(days=1)
    return points


def blocks_needed(metric: Metric) -> set[str]:
    """The blocks a metric's series or breakdown reads: its own, and Traffic to weigh by."""
    return {metric.block, "Traffic"} if metric.weighted else {metric.block}


def _sessions_by_dims(response: ClarityResponse) -> dict[tuple[tuple[str, str | None], ...], float]:
    traffic = response.block("Traffic")
    if traffic is None:
        return {}
    return {
        tuple(sorted(row.dims.items())): row.values.get("totalSessionCount", 0.0)
        for row in traffic.rows
    }


def breakdown(
    metric: Metric, responses: Iterable[ClarityResponse], top_n: int | None = TOP_N
) -> list[tuple[str, float]]:
    """The top ``top_n`` values (None: all) of a breakdown metric over some days, largest first."""
    assert metric.dimension is not None, f"{metric.id} is not a breakdown"
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    for response in responses:
        block = response.block(metric.block)
        if block is None:
            continue
        sessions = _sessions_by_dims(response) if metric.weighted else {}
        for row in block.rows:
            label = row.dims.get(metric.dimension)
            value = row.values.get(metric.field)
            if label is None or value is None or row.is_aggregate:
                continue
            if metric.weighted:
                weight = sessions.get(tuple(sorted(row.dims.items())), 0.0)
                totals[label] = totals.get(label, 0.0) + value * weight
                weights[label] = weights.get(label, 0.0) + weight
            else:
                totals[label] = totals.get(label, 0.0) + value
    if metric.weighted:
        ranked = [(label, totals[label] / weights[label]) for label in totals if weights[label] > 0]
    else:
        ranked = list(totals.items())
    ranked.sort(key=lambda item: (-item[1], item[0]))
    return ranked[:top_n]
