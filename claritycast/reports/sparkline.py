"""A metric's last days as a sparkline: the polylines of a tiny SVG, with gaps kept.

A list of sources shows one per row, so it is drawn by hand in a few
numbers rather than by pygal (a few milliseconds a chart, fifty a page): a
day not collected breaks the line, exactly as in the full chart, and a lone
day between two gaps is a dot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from claritycast.reports.series import day_value
from models.catalogue import Metric
from models.clarity import ClarityResponse


@dataclass(frozen=True)
class Sparkline:
    """Polylines (``points`` attributes) and lone dots (x, y) in a ``width`` x ``height`` box."""

    width: int
    height: int
    lines: tuple[str, ...]
    dots: tuple[tuple[float, float], ...]
    days: int
    collected: int
    latest: float | None


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> Sparkline:
    """The shape of ``values`` (oldest first); ``None`` is a day not collected."""
    known = [value for value in values if value is not None]
    top = max(known, default=0.0) or 1.0
    step = width / max(1, len(values) - 1)
    pad = 2.0

    def point(index: int, value: float) -> tuple[float, float]:
        return round(index * step, 1), round(height - pad - (height - 2 * pad) * value / top, 1)

    runs: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point(index, value))
    lines = tuple(" ".join(f"{x},{y}" for x, y in run) for run in runs if len(run) > 1)
    dots = tuple(run[0] for run in runs if len(run) == 1)
    latest = known[-1] if known and values[-1] is not None else None
    return Sparkline(width, height, lines, dots, len(values), len(known), latest)


def daily_values(
    metric: Metric, by_day: Mapping[date, ClarityResponse], first: date, last: date
) -> list[float | None]:
    """The metric's value of each day from ``first`` to ``last``; ``None`` where not stored."""
    days = (last - first).days + 1
    values: list[float | None] = []
    for offset in range(days):
        response = by_day.get(first + timedelta(days=offset))
        values.append(day_value(metric, response) if response is not None else None)
    return values
