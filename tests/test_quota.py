"""The quota policy, as a pure function."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from claritycast.ingest.quota import (
    COUNTED_FOR,
    DAILY_LIMIT,
    LEASE,
    QuotaState,
    decide,
    refreshes_left,
)
from claritycast.localtime import next_local_midnight
from models.clarity import GROUP_NAMES
from models.documents import Call

T0 = datetime(2026, 11, 24, 0, 1, tzinfo=UTC)


def request(
    state: QuotaState, reason: str, now: datetime, group: str = "overall", day: str = "2026-11-23"
):
    return decide(state, reason=reason, local_date=day, group=group, now=now)


def test_daily_pull_then_three_refreshes_then_refusal() -> None:
    """7 daily + 3 refreshes fit; the 4th refresh is refused with when the next is possible."""
    state = QuotaState()
    for group in GROUP_NAMES:
        assert request(state, "daily", T0, group).granted
    for i in range(3):
        assert request(state, "refresh", T0 + timedelta(hours=1 + i)).granted
    refused = request(state, "refresh", T0 + timedelta(hours=5))
    assert not refused.granted
    assert refused.next_possible_at == T0 + COUNTED_FOR


def test_refreshes_never_starve_the_next_pull() -> None:
    """Before tonight's pull, only 3 refreshes are allowed, so the 7 still fit at midnight."""
    state = QuotaState()
    evening = T0 + timedelta(hours=20)
    granted = [request(state, "refresh", evening + timedelta(minutes=i)).granted for i in range(5)]
    assert granted == [True, True, True, False, False]
    assert refreshes_left(state, evening) == 0
    midnight = next_local_midnight(evening, "UTC")
    for group in GROUP_NAMES:
        assert request(state, "daily", midnight + timedelta(minutes=1), group, "2026-11-24").granted


def test_doubled_tick_does_not_spend_twice() -> None:
    """The same (date, group) within its lease is a duplicate; after the lease it may retry."""
    state = QuotaState()
    assert request(state, "daily", T0).granted
    second = request(state, "daily", T0 + timedelta(seconds=30))
    assert not second.granted and second.duplicate
    assert request(state, "daily", T0 + LEASE + timedelta(seconds=1)).granted
    assert state.used(T0 + LEASE + timedelta(seconds=1)) == 2


def test_next_local_midnight_across_dst() -> None:
    """In Europe/Berlin the night clocks go back, the next midnight is still local midnight."""
    now = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # 01:30 CEST on the 25th
    midnight = next_local_midnight(now, "Europe/Berlin")
    assert midnight.isoformat() == "2026-10-25T23:00:00+00:00"  # 00:00 CET
    assert (midnight - next_local_midnight(now - timedelta(days=1), "Europe/Berlin")) == timedelta(
        hours=25
    )


def test_state_round_trips_and_rebuilds_from_the_call_log() -> None:
    """JSON round trip is exact; the call log yields the same counts and leases."""
    state = QuotaState()
    for group in GROUP_NAMES[:3]:
        request(state, "daily", T0, group)
    assert QuotaState.from_json(state.to_json()) == state
    calls = [
        Call(f"r{i}", "p", "2026-11-23", group, "daily", T0)
        for i, group in enumerate(GROUP_NAMES[:3])
    ]
    rebuilt = QuotaState.from_calls(calls, T0 + timedelta(minutes=1))
    assert rebuilt.used(T0 + timedelta(minutes=1)) == 3
    assert set(rebuilt.leases) == set(state.leases)


def test_a_table_behind_its_log_counts_each_logged_call_once() -> None:
    """A batch logs a project's calls at one moment: a table that missed them counts all 7.

    Calls the table holds already are not counted again, and calls never made
    or older than the window are not counted at all.
    """
    calls = [
        Call(f"r{i}", "p", "2026-11-23", group, "daily", T0) for i, group in enumerate(GROUP_NAMES)
    ]
    now = T0 + timedelta(minutes=1)
    behind = QuotaState()
    assert behind.count_logged(calls, now) == len(GROUP_NAMES)
    assert behind.used(now) == len(GROUP_NAMES)
    assert behind.count_logged(calls, now) == 0  # a second look adds nothing
    half = QuotaState(calls=[(T0, "daily")] * 3)
    assert half.count_logged(calls, now) == len(GROUP_NAMES) - 3
    assert half.used(now) == len(GROUP_NAMES)
    unmade = Call("x", "p", "2026-11-23", "overall", "refresh", T0, outcome="expired")
    old = Call("y", "p", "2026-11-22", "overall", "daily", T0 - COUNTED_FOR - timedelta(hours=1))
    assert QuotaState().count_logged([unmade, old], now) == 0


def test_random_traffic_never_exceeds_ten_in_any_24_hours() -> None:
    """A month of random daily, connect and refresh requests, doubled at times: ≤ 10 per 24 h."""
    rng = random.Random(7)
    state = QuotaState()
    now = T0
    granted_at: list[datetime] = []
    for _ in range(5000):
        now += timedelta(minutes=rng.randint(1, 90))
        reason = rng.choice(["daily", "daily", "connect", "refresh"])
        decision = request(state, reason, now, rng.choice(GROUP_NAMES), now.date().isoformat())
        if decision.granted:
            granted_at.append(now)
    assert len(granted_at) > 300
    for i, start in enumerate(granted_at):
        in_window = [at for at in granted_at[i:] if at < start + timedelta(hours=24)]
        assert len(in_window) <= DAILY_LIMIT
