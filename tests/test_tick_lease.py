"""The tick's memory of what it asked for: forgotten oldest first, and only the expired."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from agents.tick import Ticker
from claritycast.store.due import DueProject
from models.documents import PullProgress

NOW = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)
LEASE = timedelta(seconds=600)
YESTERDAY = date(2026, 12, 1)


def ticker() -> Ticker:
    deps = SimpleNamespace(settings=SimpleNamespace(fetch_lease_s=LEASE.total_seconds()))
    return Ticker(cast(Any, deps), cast(Any, None))


def project(name: str) -> DueProject:
    return DueProject(name, "org", NOW - timedelta(days=30), None, None)


def test_only_what_the_lease_has_passed_is_forgotten_oldest_first() -> None:
    tick = ticker()
    for minute, name in enumerate(["a", "b", "c"]):
        tick._asked[(name, YESTERDAY.isoformat(), "overall")] = NOW + timedelta(minutes=minute)
    tick._forget_asked(NOW + timedelta(minutes=1))
    assert [key[0] for key in tick._asked] == ["c"]
    tick._forget_asked(NOW + timedelta(minutes=5))
    assert tick._asked == {}


def test_a_group_is_wanted_again_once_its_lease_has_passed_even_if_still_remembered() -> None:
    """A clock set back can leave an old entry behind a newer one: its time still counts."""
    tick = ticker()
    late, early = ("a", YESTERDAY.isoformat(), "overall"), ("b", YESTERDAY.isoformat(), "overall")
    tick._asked[late] = NOW + timedelta(hours=1)  # asked for before the clock went back
    tick._asked[early] = NOW - LEASE - timedelta(seconds=1)
    tick._forget_asked(NOW - LEASE)
    assert early in tick._asked, "behind a newer entry: not read"
    pull = PullProgress()
    assert tick._wanted(project("b"), YESTERDAY, "overall", pull, NOW, LEASE), (
        "its lease has passed"
    )
    assert not tick._wanted(project("a"), YESTERDAY, "overall", pull, NOW, LEASE), (
        "within its lease"
    )
    assert tick._wanted(project("c"), YESTERDAY, "overall", pull, NOW, LEASE), "never asked for"
    stored = PullProgress(stored=frozenset({"overall"}))
    assert not tick._wanted(project("b"), YESTERDAY, "overall", stored, NOW, LEASE), (
        "stored already"
    )
