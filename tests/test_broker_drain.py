"""`up`'s decisions around a drain, with the broker's memory and lag scripted.

The whole path runs against a real `up`, Tansu and worker in
`tests/test_broker_bound.py`; here the watcher's choices alone, where a
real broker could not be made to stay busy for five minutes or a store to fail
on cue: a drain that finds no quiet moment is given up, a drain the store
cannot record is not counted as begun, and a quiet moment ends the drain with
a restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from claritycast.errors import StoreUnavailable
from claritycast.runtime import broker_bound
from claritycast.runtime.broker_bound import DRAIN_MAX_S, MIB, BrokerBound
from claritycast.settings import load_settings


@dataclass
class FakeBroker:
    """Stands in for the embedded broker's process: only what the watcher reads and does."""

    pid: int | None = 1000
    port: int = 9
    restarts: int = 0

    async def stop(self, timeout_s: float = 5.0) -> int | None:
        self.pid = None
        return 0

    async def start(self) -> None:
        self.restarts += 1
        self.pid = 1000 + self.restarts


@dataclass
class FakeProcesses:
    """Records what `up` asked of its worker, web process and store."""

    drains: list[datetime | None] = field(default_factory=list)
    paused: int = 0
    resumed: int = 0
    store_down: bool = False

    async def pause(self) -> None:
        self.paused += 1

    async def resume(self) -> None:
        self.resumed += 1

    async def broker_emptied(self) -> int:
        return 0

    async def drain(self, until: datetime | None) -> None:
        if self.store_down:
            raise StoreUnavailable("MongoDB unavailable during beginning a drain: refused")
        self.drains.append(until)


def watcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lags: list[int]
) -> tuple[BrokerBound, FakeBroker, FakeProcesses]:
    """A watcher checking every 10 ms over a broker always above its 1 MiB limit."""
    settings = load_settings(
        data_dir=tmp_path, broker_memory_limit_mb=1, broker_memory_check_s=0.01
    )
    broker, processes = FakeBroker(), FakeProcesses()

    async def lag(*_: object) -> int:
        return lags.pop(0) if len(lags) > 1 else lags[0]

    monkeypatch.setattr(broker_bound, "consumer_lag", lag)
    monkeypatch.setattr(broker_bound, "rss_bytes", lambda pid: 0 if pid is None else 300 * MIB)
    monkeypatch.setattr(broker_bound, "DRAIN_CHECK_S", 0.01)
    bound = BrokerBound(settings, broker, "group", ["t"], processes, lambda _: None)  # type: ignore[arg-type]
    return bound, broker, processes


async def watch_for(bound: BrokerBound, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(bound.watch(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_a_drain_with_no_quiet_moment_is_given_up_and_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Always busy: the drain begins, ends after DRAIN_MAX_S without a restart, and waits."""
    monkeypatch.setattr(broker_bound, "DRAIN_MAX_S", 0.3)
    bound, broker, processes = watcher(tmp_path, monkeypatch, lags=[40])
    with structlog.testing.capture_logs() as logs:
        await watch_for(bound, 1.0)
    events = [entry["event"] for entry in logs]
    assert events[:3] == ["broker.restart_deferred", "broker.drain_begins", "broker.drain_ends"]
    ended = next(entry for entry in logs if entry["event"] == "broker.drain_ends")
    assert ended["why"] == "no quiet moment" and ended["lag"] == 40
    assert processes.paused == 0 and broker.restarts == 0, "never restarted while busy"
    began, until = processes.drains[0], processes.drains[1]
    assert began is not None and until is None
    assert began - datetime.now(UTC) < timedelta(seconds=DRAIN_MAX_S + 60), "ends by itself"
    # The next try waits as after a restart (ten checks): not back to back.
    assert events.count("broker.drain_begins") <= 3
    assert processes.drains[-1] is None, "a drain still on when up stops is ended"


async def test_a_quiet_moment_ends_the_drain_with_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Busy, then quiet: drain, restart (paused, emptied, resumed), then the drain ends."""
    bound, broker, processes = watcher(tmp_path, monkeypatch, lags=[30, 12, 3, 0])
    with structlog.testing.capture_logs() as logs:
        await watch_for(bound, 0.6)
    events = [entry["event"] for entry in logs if entry["event"].startswith("broker.")]
    first_drain = events.index("broker.drain_begins")
    assert events[first_drain : first_drain + 4] == [
        "broker.drain_begins", "broker.restart_begins", "broker.restarted", "broker.drain_ends",
    ]  # fmt: skip
    restarted = next(entry for entry in logs if entry["event"] == "broker.restarted")
    assert restarted["drained_s"] is not None
    assert broker.restarts >= 1 and processes.paused == processes.resumed >= 1
    assert processes.drains[0] is not None and processes.drains[1] is None


async def test_a_drain_the_store_cannot_record_is_not_begun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MongoDB down: the watcher says so, restarts nothing, and tries at the next check."""
    bound, broker, processes = watcher(tmp_path, monkeypatch, lags=[25])
    processes.store_down = True
    with structlog.testing.capture_logs() as logs:
        await watch_for(bound, 0.3)
    failed = [entry for entry in logs if entry["event"] == "broker.drain_failed"]
    assert len(failed) >= 2, "tried again at the next checks"
    assert "refused" in failed[0]["error"]
    assert not [entry for entry in logs if entry["event"] == "broker.drain_begins"]
    assert processes.paused == 0 and broker.restarts == 0
