"""Time rules: 'yesterday' and 'midnight' are local to an organisation's timezone.

All results are UTC instants or plain dates: Python subtracts two aware
datetimes that share a zone by wall clock, which is wrong across DST (a 25-hour
night would look 24 hours long).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A call this far from the local midnight that ends its date is flagged late.
LATE_AFTER = timedelta(hours=1)


def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant ``day`` begins in ``timezone``, in UTC."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def next_local_midnight(now: datetime, timezone: str) -> datetime:
    """The next midnight in ``timezone`` after ``now``, in UTC."""
    return local_midnight(now.astimezone(ZoneInfo(timezone)).date() + timedelta(days=1), timezone)


def local_yesterday(timezone: str, now: datetime) -> date:
    """Yesterday in ``timezone``: the last local day whose midnight has passed."""
    return now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


def is_late(called_at: datetime, local_date: str, timezone: str) -> bool:
    """Did a call for ``local_date`` drift from the local midnight that ends it?"""
    ends_at = local_midnight(date.fromisoformat(local_date) + timedelta(days=1), timezone)
    return abs(called_at - ends_at) > LATE_AFTER
