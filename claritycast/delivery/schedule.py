"""Schedules: parsing what an operator types, and when a delivery falls due.

Times are local to the connection's timezone. A local time that does not exist
(the hour skipped when clocks go forward) is sent at the same wall-clock
offset after the change, as zoneinfo resolves it; a time that happens twice
(clocks go back) is sent at its first occurrence. Pure functions.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from claritycast.errors import InputError
from models.delivery import LAST_DAY, WEEKDAYS, Frequency, Schedule

# How far back `latest_due` looks: longer than any period.
_LOOKBACK_DAYS = 32


def parse_time(text: str) -> time:
    """``"09:00"`` → 09:00; refuses anything else with one line."""
    hour, sep, minute = text.strip().partition(":")
    if sep and hour.isdigit() and minute.isdigit() and len(minute) == 2:
        h, m = int(hour), int(minute)
        if 0 <= h <= 23 and 0 <= m <= 59:
            return time(h, m)
    raise InputError(f"invalid time {text!r}: use HH:MM, 24-hour (e.g. 09:00)")


def parse_schedule(text: str, at: str = "09:00") -> Schedule:
    """``daily``, ``weekly:monday`` (or ``mon``), ``monthly:15``, ``monthly:last``."""
    kind, _, arg = text.strip().lower().partition(":")
    local_time = parse_time(at)
    if kind == "daily" and not arg:
        return Schedule(Frequency.DAILY, local_time)
    if kind == "weekly":
        matches = [i for i, name in enumerate(WEEKDAYS) if arg and name.startswith(arg)]
        if len(arg) >= 2 and len(matches) == 1:
            return Schedule(Frequency.WEEKLY, local_time, weekday=matches[0])
        raise InputError(f"invalid schedule {text!r}: weekly needs a weekday, e.g. weekly:monday")
    if kind == "monthly":
        if arg == "last":
            return Schedule(Frequency.MONTHLY, local_time, day=LAST_DAY)
        if arg.isdigit() and 1 <= int(arg) <= 28:
            return Schedule(Frequency.MONTHLY, local_time, day=int(arg))
        raise InputError(
            f"invalid schedule {text!r}: monthly needs a day 1-28 or 'last', e.g. monthly:1"
        )
    raise InputError(
        f"invalid schedule {text!r}: use daily, weekly:<weekday>, monthly:<1-28> or monthly:last"
    )


def falls_on(schedule: Schedule, day: date) -> bool:
    """Is ``day`` (a local date) one the schedule sends on?"""
    if schedule.frequency is Frequency.DAILY:
        return True
    if schedule.frequency is Frequency.WEEKLY:
        return day.weekday() == schedule.weekday
    if schedule.day == LAST_DAY:
        return day.day == calendar.monthrange(day.year, day.month)[1]
    return day.day == schedule.day


def send_time(schedule: Schedule, day: date, timezone: str) -> datetime:
    """The instant, in UTC, of the send on local ``day``."""
    return datetime.combine(day, schedule.at, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def latest_due(schedule: Schedule, timezone: str, now: datetime) -> tuple[date, datetime] | None:
    """The most recent send at or before ``now``: (local date, instant in UTC)."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    for back in range(_LOOKBACK_DAYS):
        day = today - timedelta(days=back)
        if falls_on(schedule, day):
            at = send_time(schedule, day, timezone)
            if at <= now:
                return day, at
    return None


def next_due(schedule: Schedule, timezone: str, now: datetime) -> tuple[date, datetime]:
    """The first send after ``now``: (local date, instant in UTC)."""
    day = now.astimezone(ZoneInfo(timezone)).date()
    while True:
        if falls_on(schedule, day):
            at = send_time(schedule, day, timezone)
            if at > now:
                return day, at
        day += timedelta(days=1)
