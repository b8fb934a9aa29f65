"""Schedules: what operators may type, and when sends fall due in local time, DST included."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from claritycast.delivery.schedule import latest_due, next_due, parse_schedule, parse_time
from claritycast.errors import InputError
from models.delivery import LAST_DAY, Frequency, Schedule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daily", Schedule(Frequency.DAILY)),
        ("weekly:monday", Schedule(Frequency.WEEKLY, weekday=0)),
        ("weekly:sun", Schedule(Frequency.WEEKLY, weekday=6)),
        ("Weekly:Fr", Schedule(Frequency.WEEKLY, weekday=4)),
        ("monthly:1", Schedule(Frequency.MONTHLY, day=1)),
        ("monthly:28", Schedule(Frequency.MONTHLY, day=28)),
        ("monthly:last", Schedule(Frequency.MONTHLY, day=LAST_DAY)),
    ],
)
def test_schedules_parse(text: str, expected: Schedule) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text",
    ["hourly", "daily:3", "weekly", "weekly:t", "weekly:funday", "monthly:29", "monthly:0", ""],
)
def test_bad_schedules_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(InputError, match="invalid schedule") as caught:
        parse_schedule(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["24:00", "9", "9:5", "09:60", "nine", "-1:00", "09:00:00"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="invalid time"):
        parse_time(text)


def test_times_parse() -> None:
    assert parse_time("9:05") == time(9, 5)
    assert parse_time(" 23:59 ") == time(23, 59)


def test_a_schedule_round_trips_through_its_document() -> None:
    schedule = Schedule(Frequency.MONTHLY, time(7, 30), day=LAST_DAY)
    assert Schedule.from_document(schedule.to_document()) == schedule
    assert schedule.describe() == "monthly on the last day at 07:30"


def test_daily_at_nine_in_paris() -> None:
    schedule = parse_schedule("daily", "09:00")
    now = datetime(2026, 11, 29, 7, 59, tzinfo=UTC)  # 08:59 in Paris
    assert latest_due(schedule, "Europe/Paris", now) == (
        date(2026, 11, 28),
        datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
    )
    assert next_due(schedule, "Europe/Paris", now) == (
        date(2026, 11, 29),
        datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
    )
    at_nine = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert latest_due(schedule, "Europe/Paris", at_nine) == (date(2026, 11, 29), at_nine)


def test_weekly_and_monthly_fall_on_their_days() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday
    monday = parse_schedule("weekly:monday", "08:00")
    assert latest_due(monday, "UTC", now) == (
        date(2026, 11, 23),
        datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    )
    assert next_due(monday, "UTC", now)[0] == date(2026, 11, 30)
    last = parse_schedule("monthly:last", "18:00")
    assert latest_due(last, "UTC", now)[0] == date(2026, 10, 31)  # type: ignore[index]
    assert next_due(last, "UTC", now)[0] == date(2026, 11, 30)
    assert next_due(last, "UTC", datetime(2027, 2, 1, tzinfo=UTC))[0] == date(2027, 2, 28)
    assert next_due(last, "UTC", datetime(2028, 2, 1, tzinfo=UTC))[0] == date(2028, 2, 29)


def test_a_time_skipped_by_dst_is_sent_just_after_the_change() -> None:
    """Berlin skips 02:00-03:00 on 29 March 2026: a 02:30 send goes at 03:30 local."""
    schedule = parse_schedule("daily", "02:30")
    day, at = next_due(schedule, "Europe/Berlin", datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert day == date(2026, 3, 29)
    assert at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST


def test_a_time_repeated_by_dst_is_sent_once_at_its_first_occurrence() -> None:
    """Berlin repeats 02:00-03:00 on 25 October 2026: 02:30 is sent at the first one."""
    schedule = parse_schedule("daily", "02:30")
    day, at = next_due(schedule, "Europe/Berlin", datetime(2026, 10, 24, 12, 0, tzinfo=UTC))
    assert (day, at) == (date(2026, 10, 25), datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    after = datetime(2026, 10, 25, 1, 45, tzinfo=UTC)  # the second 02:45
    assert latest_due(schedule, "Europe/Berlin", after) == (day, at)
    assert next_due(schedule, "Europe/Berlin", after)[0] == date(2026, 10, 26)


def test_utc_plus_13_sends_on_its_own_date() -> None:
    schedule = parse_schedule("daily", "09:00")
    now = datetime(2026, 11, 28, 20, 30, tzinfo=UTC)  # 09:30 on 29 Nov in Tonga
    assert latest_due(schedule, "Pacific/Tongatapu", now) == (
        date(2026, 11, 29),
        datetime(2026, 11, 28, 20, 0, tzinfo=UTC),
    )
