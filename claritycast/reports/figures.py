"""How days and durations are written everywhere a person reads them: charts, summaries, alt text.

One place, so a chart's axis and the summary beside it never disagree, and
independent of the process locale (``%b`` is not).
"""

from __future__ import annotations

from datetime import date

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MINUS = "\u2212"  # a real minus sign, as a typesetter would write it


def format_day(day: date) -> str:
    """``28 Nov``."""
    return f"{day.day} {MONTHS[day.month - 1]}"


def format_duration(seconds: float) -> str:
    """``45s``, ``1m 05s``, ``1h 02m``; negative durations (changes) get a minus sign."""
    sign = MINUS if seconds < 0 else ""
    total = round(abs(seconds))
    if total < 60:
        return f"{sign}{total}s"
    if total < 3600:
        return f"{sign}{total // 60}m {total % 60:02d}s"
    return f"{sign}{total // 3600}h {total % 3600 // 60:02d}m"
