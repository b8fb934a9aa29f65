"""The numbers behind a chart, and the plain-text summary that is always available.

`daily_facts` and `breakdown_facts` reduce a series to a few `Facts`; `describe`
turns them into 2 to 5 short lines. The same `Facts` are the only data an AI
summariser is given, so both summaries speak of the same numbers, and the
plain one is the fallback whenever the AI one is late, refused or odd.

Gaps (``None``) are never read as zero: a total over a period with a missing
day is unknown, an average is taken over the days that exist.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from statistics import fmean
from typing import Literal

from claritycast.reports.figures import MINUS, format_day, format_duration
from claritycast.reports.series import Point
from models.catalogue import Aggregation, Category, Metric, Unit

Better = Literal["higher", "lower"]

TOP_KEPT = 5
TOP_SHOWN = 3
MOVERS_KEPT = 3
MIN_MOVE_PTS = 1.0
LABEL_MAX_CHARS = 40
# Metrics where neither more nor less is plainly good.
_AMBIGUOUS = frozenset({"bot_sessions"})
_URL = re.compile(r"^https?://[^/?#\s]+(?P<rest>[/?#]\S*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Facts:
    """What a summary may say about one chart; also the AI summariser's data.

    ``current_period`` aggregates the last ``period_days`` of the window (a sum
    for counts, a mean for averages) and ``previous_period`` the days before
    them. For a breakdown of counts they are the totals of all values given,
    ``top`` holds the raw values and ``movers`` holds (label, share now %,
    change in points); for a breakdown of averages ``movers`` holds (label,
    value now, change in value). ``better`` says which direction is good
    (None: neither plainly is).
    """

    metric_id: str
    metric_title: str
    unit: Unit
    project_label: str
    first: date
    last: date
    days_collected: int
    days_in_window: int
    latest: float | None
    latest_day: date | None
    previous_period: float | None
    current_period: float | None
    period_days: int
    change_pct: float | None
    avg_7d: float | None
    best: tuple[date, float] | None
    worst: tuple[date, float] | None
    top: list[tuple[str, float]] = field(default_factory=list)
    movers: list[tuple[str, float, float]] = field(default_factory=list)
    better: Better | None = None
    aggregation: Aggregation = Aggregation.SUM
    is_breakdown: bool = False


def better_direction(metric: Metric) -> Better | None:
    """Which way is good: fewer frustrations, more traffic and engagement."""
    if metric.is_breakdown or metric.id in _AMBIGUOUS:
        return None
    return "lower" if metric.category is Category.FRUSTRATION else "higher"


def daily_facts(
    metric: Metric,
    points: Sequence[Point],
    *,
    project_label: str,
    period_days: int,
    first: date | None = None,
) -> Facts:
    """Facts of a daily series (one point per day, gaps as None).

    Points before ``first`` (default: the first point) are history: they feed
    the previous period and the 7-day average, not the window's coverage or
    its best and worst days.
    """
    if metric.is_breakdown:
        raise ValueError(f"{metric.id} is a breakdown: use breakdown_facts")
    if period_days < 1:
        raise ValueError(f"period_days must be at least 1, not {period_days}")
    window = [p for p in points if first is None or p.day >= first]
    if not window:
        raise ValueError("a window has at least one day")
    present = [p for p in window if p.value is not None]
    current = _period_value(points[-period_days:], period_days, metric.aggregation)
    previous = _period_value(
        points[-2 * period_days : -period_days], period_days, metric.aggregation
    )
    week = [p.value for p in points[-7:] if p.value is not None] if len(points) >= 7 else []
    better = better_direction(metric)
    best, worst = _extremes(present, better)
    latest = next((p for p in reversed(points) if p.value is not None), None)
    return Facts(
        metric_id=metric.id,
        metric_title=metric.title,
        unit=metric.unit,
        project_label=project_label,
        first=window[0].day,
        last=window[-1].day,
        days_collected=len(present),
        days_in_window=len(window),
        latest=latest.value if latest else None,
        latest_day=latest.day if latest else None,
        previous_period=previous,
        current_period=current,
        period_days=period_days,
        change_pct=_change_pct(current, previous),
        avg_7d=fmean(week) if week else None,
        best=best,
        worst=worst,
        better=better,
        aggregation=metric.aggregation,
    )


def breakdown_facts(
    metric: Metric,
    current: Sequence[tuple[str, float]],
    previous: Sequence[tuple[str, float]],
    *,
    project_label: str,
    first: date,
    last: date,
    days_collected: int,
    days_in_window: int,
    period_days: int,
) -> Facts:
    """Facts of a ranked breakdown, compared with the period before.

    Shares are of the values given: pass every row (not only the top few) for
    shares of the whole. An empty ``previous`` means nothing to compare with.
    """
    if not metric.is_breakdown:
        raise ValueError(f"{metric.id} is not a breakdown: use daily_facts")
    now = dict(current)
    before = dict(previous)
    if metric.weighted:
        total_now = total_before = None
        movers = _moves(now, before, shared_only=True)
    else:
        total_now = sum(now.values()) if now else None
        total_before = sum(before.values()) if before else None
        movers = _moves(_shares(now), _shares(before), shared_only=False) if before else []
    top = sorted(now.items(), key=lambda item: (-item[1], item[0]))[:TOP_KEPT]
    return Facts(
        metric_id=metric.id,
        metric_title=metric.title,
        unit=metric.unit,
        project_label=project_label,
        first=first,
        last=last,
        days_collected=days_collected,
        days_in_window=days_in_window,
        latest=None,
        latest_day=None,
        previous_period=total_before,
        current_period=total_now,
        period_days=period_days,
        change_pct=_change_pct(total_now, total_before),
        avg_7d=None,
        best=None,
        worst=None,
        top=top,
        movers=movers,
        better=None,
        aggregation=Aggregation.SESSION_WEIGHTED if metric.weighted else Aggregation.SUM,
        is_breakdown=True,
    )


def describe(facts: Facts) -> str:
    """The plain summary: 2 to 5 short lines of plain text."""
    if facts.days_collected == 0:
        return _no_data(facts)
    lines = _breakdown_lines(facts) if facts.is_breakdown else _daily_lines(facts)
    if facts.days_collected < facts.days_in_window:
        lines.append(f"{facts.days_collected} of {facts.days_in_window} days collected.")
    return "\n".join(lines)


def format_value(value: float, unit: Unit) -> str:
    """A figure as people read it: 1,234 · 1m 05s · 42 s · 45.2% · 3.4."""
    if unit is Unit.SECONDS:
        return format_duration(value)
    if unit is Unit.PERCENT:
        return f"{value:.1f}%"
    if unit is Unit.PAGES:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def clean_text(text: str, max_chars: int) -> str:
    """Untrusted text made inert: no control or format characters, one line, capped."""
    kept = []
    for char in text:
        kind = unicodedata.category(char)
        if kind == "Cc" or char.isspace():
            kept.append(" ")
        elif not kind.startswith("C"):
            kept.append(char)
    flat = " ".join("".join(kept).split())
    return flat if len(flat) <= max_chars else flat[: max_chars - 1].rstrip() + "…"


def display_label(label: str, max_chars: int = LABEL_MAX_CHARS) -> str:
    """A breakdown label as shown: cleaned, capped, a site's URL by its path."""
    text = clean_text(label, 2000)
    match = _URL.match(text)
    if match:
        text = match.group("rest") or "/"
    return clean_text(text, max_chars)


# Facts


def _period_value(
    points: Sequence[Point], period_days: int, aggregation: Aggregation
) -> float | None:
    """A period's sum (only when every day is there) or mean (of the days there)."""
    if len(points) < period_days:
        return None
    values = [p.value for p in points if p.value is not None]
    if not values:
        return None
    if aggregation is Aggregation.SUM:
        return sum(values) if len(values) == len(points) else None
    return fmean(values)


def _change_pct(current: float | None, previous: float | None) -> float | None:
    if current is None or previous is None:
        return None
    if previous == 0:
        return 0.0 if current == 0 else None
    return (current - previous) / abs(previous) * 100


def _extremes(
    present: Sequence[Point], better: Better | None
) -> tuple[tuple[date, float] | None, tuple[date, float] | None]:
    """Best and worst days (highest and lowest when no direction is better); latest on ties."""
    if not present:
        return None, None
    sign = -1.0 if better == "lower" else 1.0
    best = max(present, key=lambda p: (sign * (p.value or 0.0), p.day))
    worst = max(present, key=lambda p: (-sign * (p.value or 0.0), p.day))
    return (best.day, best.value or 0.0), (worst.day, worst.value or 0.0)


def _shares(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values())
    return {label: value / total * 100 for label, value in values.items()} if total else {}


def _moves(
    now: dict[str, float], before: dict[str, float], *, shared_only: bool
) -> list[tuple[str, float, float]]:
    """The biggest changes, at least a point each; a label absent from a period had 0."""
    labels = now.keys() & before.keys() if shared_only else now.keys() | before.keys()
    moves = [
        (label, now.get(label, 0.0), now.get(label, 0.0) - before.get(label, 0.0))
        for label in labels
    ]
    moves = [move for move in moves if abs(move[2]) >= MIN_MOVE_PTS]
    moves.sort(key=lambda move: (-abs(move[2]), move[0]))
    return moves[:MOVERS_KEPT]


# Words


def _no_data(facts: Facts) -> str:
    span = f"{format_day(facts.first)} to {format_day(facts.last)}"
    return f"No data stored yet for {facts.metric_title} ({facts.project_label}), {span}."


def _span(period_days: int) -> str:
    return {1: "the day before", 7: "the week before"}.get(
        period_days, f"the {period_days} days before"
    )


def _signed(value: float, decimals: int) -> str:
    sign = "+" if value >= 0 else MINUS
    return f"{sign}{abs(value):.{decimals}f}"


def _change(facts: Facts) -> str | None:
    """``+8% on the day before``; points for percentages; ``new`` after a zero."""
    current, previous = facts.current_period, facts.previous_period
    if current is None or previous is None:
        return None
    span = _span(facts.period_days)
    if facts.unit is Unit.PERCENT and not facts.is_breakdown:
        diff = current - previous
        return (
            f"unchanged on {span}" if round(diff, 1) == 0 else f"{_signed(diff, 1)} pts on {span}"
        )
    if facts.change_pct is None:
        return f"new; none on {span}"
    pct = facts.change_pct
    if round(pct, 1) == 0:
        return f"unchanged on {span}"
    return f"{_signed(pct, 0 if abs(pct) >= 1 else 1)}% on {span}"


def _daily_lines(facts: Facts) -> list[str]:
    unit, title, last = facts.unit, facts.metric_title, format_day(facts.last)
    change = _change(facts)
    lines = []
    if facts.period_days == 1 and facts.current_period is not None:
        extras = [x for x in (change, _avg_7d(facts)) if x]
        tail = f" ({'; '.join(extras)})" if extras else ""
        lines.append(f"{title} on {last}: {format_value(facts.current_period, unit)}{tail}.")
    elif facts.current_period is not None:
        value = format_value(facts.current_period, unit)
        tail = f" ({change})" if change else ""
        days = f"the {facts.period_days} days to {last}"
        if facts.aggregation is Aggregation.SUM:
            lines.append(f"{title} in {days}: {value}{tail}.")
        else:
            lines.append(f"Average {title.lower()} over {days}: {value}{tail}.")
    elif facts.period_days == 1:
        lines.append(f"{title} on {last}: not stored yet.")
    else:
        lines.append(
            f"{title}, {facts.period_days} days to {last}: no total, as some days are missing."
        )
    if facts.current_period is None and facts.latest is not None and facts.latest_day:
        latest = format_value(facts.latest, unit)
        lines.append(f"Latest stored: {latest} on {format_day(facts.latest_day)}.")
    lines.extend(_extremes_line(facts))
    return lines


def _avg_7d(facts: Facts) -> str | None:
    if facts.avg_7d is None:
        return None
    return f"7-day average {format_value(facts.avg_7d, facts.unit)}"


def _extremes_line(facts: Facts) -> list[str]:
    if facts.best is None or facts.worst is None or facts.best[0] == facts.worst[0]:
        return []
    (best_day, best), (worst_day, worst) = facts.best, facts.worst
    high, low = ("Best day", "worst") if facts.better else ("Highest day", "lowest")
    return [
        f"{high} {format_day(best_day)} ({format_value(best, facts.unit)}); "
        f"{low} {format_day(worst_day)} ({format_value(worst, facts.unit)})."
    ]


def _breakdown_lines(facts: Facts) -> list[str]:
    last = format_day(facts.last)
    when = f"on {last}" if facts.period_days == 1 else f"the {facts.period_days} days to {last}"
    head = f"{facts.metric_title} for {facts.project_label}, {when}"
    total = facts.current_period
    by_share = facts.aggregation is Aggregation.SUM
    if not facts.top or (by_share and not total):
        return [f"{head}: none recorded."]
    if by_share and total:
        change = _change(facts)
        tail = f" ({change})" if change else ""
        head += f": {format_value(total, facts.unit)} in all{tail}"
    shown = []
    for label, value in facts.top[:TOP_SHOWN]:
        figure = f"{value / total * 100:.0f}%" if by_share and total else None
        shown.append(f"{display_label(label)} {figure or format_value(value, facts.unit)}")
    lines = [f"{head}.", f"{'Top' if by_share else 'Highest'}: {', '.join(shown)}."]
    if facts.movers:
        moves = [
            f"{display_label(label)} {_move(change, facts)}" for label, _, change in facts.movers
        ]
        lines.append(f"Biggest movers: {', '.join(moves)}.")
    return lines


def _move(change: float, facts: Facts) -> str:
    """``+6 pts`` for shares and percentages, else the change in the metric's unit."""
    sign = "+" if change >= 0 else MINUS
    if facts.aggregation is Aggregation.SUM or facts.unit is Unit.PERCENT:
        size = round(abs(change), 1)
        return f"{sign}{size:.0f} pts" if size >= 10 or size.is_integer() else f"{sign}{size} pts"
    return f"{sign}{format_value(abs(change), facts.unit)}"
