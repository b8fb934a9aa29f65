"""The embedded broker's memory bound: `up` restarts Tansu at a quiet moment.

Tansu, as bundled, keeps every record in memory until it stops (no retention,
no compaction, and ``DeleteRecords`` would crash it). Nothing durable lives in
it: the quota table is rebuilt from the call log, the tick asks again for
what is missing, and the delivery log holds every report's state. So `up`
reads the broker's resident memory every ``CLARITYCAST_BROKER_MEMORY_CHECK_S``
and, once it passes ``CLARITYCAST_BROKER_MEMORY_LIMIT_MB``, restarts it empty
on the same port at the first quiet moment.

**A quiet moment** is told by the broker itself: the worker's consumer group
has committed, on every partition of every topic its stages consume, the
partition's end offset (its lag is zero). Faust commits an offset only once
its handler has acknowledged the message, so a message still being handled
(a Clarity request under way, a report being drawn or sent) or still waiting
keeps the lag above zero. Work that waits in MongoDB rather than in the
broker (a retry in 10 minutes, a report waiting for its data, tomorrow's
pull) is not in flight and survives any restart. A restart on a busy broker
would lose no data either (the tick asks again once the fetch lease is over),
but a request whose answer was lost would be made twice and a report sent
late: hence the wait.

**The restart**, in order:

1. the web process and the worker are stopped (the worker commits its last
   offsets on its way out);
2. the lag is read again: a message produced between the check and the stop
   (a tick, a command) keeps the broker as it is; the processes are started
   again and a later check tries again;
3. a delivery the tick opened but was stopped before sending (a lag cannot
   show a message never sent; the tick opens a morning's deliveries, then sends
   them) is made due for its recheck at once, so the next tick sends it rather
   than 10 minutes later (`Store.recheck_due_deliveries_at_once`);
4. the broker is stopped and started again on the same port, empty;
5. the worker and the web process are started again and `up` waits until the
   worker reports in and the web process answers.

Why they are restarted rather than left running: both declare every topic
with its partition count only when they start, and Tansu auto-creates a
topic that a client touches with its own partition count (a running Faust
app would then refuse its table); the worker's consumer group, committed
offsets and table changelog go with the broker, and a fresh worker rebuilds
its quota table from the call log. The web process is down for those seconds
(sessions live in MongoDB, nobody is signed out).

A planned restart waits at least `CHECKS_BETWEEN_RESTARTS` checks (at most
`MAX_RESTART_GAP_S`) after the last one, and only once the broker holds more
than it did just after it, so a limit set below an empty broker's own memory
(about 20 MiB) cannot turn into back-to-back restarts.

**A busy night has no quiet moment**: the tick asks for the next wave as soon
as the last is stored, and what a fetch costs Tansu grows with what it holds
(a fetch from a partition reads through every batch before its offset: 0.6 ms
at 500 one-record batches, 19 ms at 32,000), so a night of 10,000 projects
would run on an ever slower broker. So when the limit is passed and messages
are in flight, `up` **drains** the chain (`claritycast.store.drain`): the tick
starts nothing new, what is in flight is handled (at most
``CLARITYCAST_PULL_IN_FLIGHT`` groups and the reports on their way), the lag
falls to zero, and the restart above follows; the drain ends once the worker
is back, and its tick goes on with the night within a second. A drain that
does not reach a quiet moment within `DRAIN_MAX_S` (Clarity answering very
slowly) is given up, the tick goes on, and the next try waits as after a
restart. A drain `up` never ends (it was killed) ends by itself after
`DRAIN_MAX_S` and a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from claritycast.errors import StoreError
from claritycast.logs import get_logger
from claritycast.runtime.embedded import ServerProcess
from claritycast.runtime.end_offsets import ends_read_by
from claritycast.runtime.publisher import bootstrap_servers
from claritycast.settings import Settings
from topics import (
    CHARTS_RENDERED,
    DELIVERIES_DUE,
    FETCH_GRANTED,
    FETCH_REQUESTED,
    SNAPSHOTS_FETCHED,
    TopicSpec,
)

log = get_logger(__name__)

MIB = 1024 * 1024
CHECKS_BETWEEN_RESTARTS = 10
MAX_RESTART_GAP_S = 60.0  # with the default 60 s checks: a big night may need one a minute
DRAIN_MAX_S = 300.0
DRAIN_CHECK_S = 1.0  # the lag is read this often while a drain lasts
BROKER_STOP_S = 0.5
# The topic each consuming stage reads (the tick only produces). tests/test_broker_bound.py
# checks this against the agents a real app registers.
CONSUMED_BY_STAGE: dict[str, TopicSpec] = {
    "quota": FETCH_REQUESTED,
    "fetch": FETCH_GRANTED,
    "store": SNAPSHOTS_FETCHED,
    "render": DELIVERIES_DUE,
    "deliver": CHARTS_RENDERED,
}


def rss_bytes(pid: int) -> int:
    """Resident memory of a live process, from /proc (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def consumed_topics(settings: Settings, stage_names: Iterable[str]) -> list[str]:
    """The full names of the topics a worker of these stages consumes."""
    return [
        CONSUMED_BY_STAGE[name].full_name(settings.topic_prefix)
        for name in stage_names
        if name in CONSUMED_BY_STAGE
    ]


async def consumer_lag(kafka_url: str, group: str, topic_names: Iterable[str]) -> int:
    """Messages on ``topic_names`` that ``group`` has not committed: end offset minus committed.

    The end offsets are the ones a fetch reports (`ends_read_by`: Tansu's own listing
    is short once a batch holds several records). A partition the group never
    committed counts from 0. Partitions are named explicitly: Tansu drops the
    connection when asked for all of a group's offsets.
    """
    bootstrap = bootstrap_servers(kafka_url)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        await admin.start()
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(probe.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return 0
        ends = await ends_read_by(probe, partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return sum(
            max(ends[tp] - max(committed[tp].offset if tp in committed else 0, 0), 0)
            for tp in partitions
        )
    finally:
        await admin.close()
        await probe.stop()


class Processes(Protocol):
    """What `up` runs on the broker: stopped before a planned restart, started after."""

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def broker_emptied(self) -> int:
        """Make the store say what the empty broker no longer carries; returns how many."""
        ...

    async def drain(self, until: datetime | None) -> None:
        """Ask the tick to start nothing new until ``until``; None: let it go on."""
        ...


@dataclass(frozen=True)
class Restart:
    """One planned restart, as logged."""

    rss_before: int
    rss_after: int
    took_s: float
    broker_down_s: float
    drained_s: float | None = None  # how long the chain drained before it, if it did


class BrokerBound:
    """Watches the embedded broker's memory and restarts it at a quiet moment."""

    def __init__(
        self,
        settings: Settings,
        broker: ServerProcess,
        group: str,
        topic_names: list[str],
        processes: Processes,
        on_restarted: Callable[[ServerProcess], None],
    ) -> None:
        self.limit = settings.broker_memory_limit_mb * MIB
        self.check_s = settings.broker_memory_check_s
        self.kafka_url = f"kafka://127.0.0.1:{broker.port}"
        self.broker = broker
        self.group = group
        self.topic_names = topic_names
        self.processes = processes
        self.on_restarted = on_restarted
        self._last_restart = time.monotonic()
        self._restart_gap_s = min(CHECKS_BETWEEN_RESTARTS * self.check_s, MAX_RESTART_GAP_S)
        self._rss_after_restart = 0
        self._deferred = False
        self._drain_began: float | None = None  # monotonic time, while a drain lasts

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: check every ``check_s``; restart when over the limit and quiet.

        Over the limit and busy, it drains the chain and checks every
        `DRAIN_CHECK_S` until it is quiet (or `DRAIN_MAX_S` has passed).
        """
        if self.limit == 0:
            return
        self._last_restart = time.monotonic()
        try:
            while not stop.is_set():
                wait_s = DRAIN_CHECK_S if self._drain_began is not None else self.check_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)
                if stop.is_set():
                    return
                await self._check(stop)
        finally:
            if self._drain_began is not None:
                await self._end_drain("up stopping")

    async def _check(self, stop: asyncio.Event) -> None:
        assert self.broker.pid is not None
        rss = rss_bytes(self.broker.pid)
        if rss <= self.limit:
            self._deferred = False
            if self._drain_began is not None:  # Tansu never gives memory back, but if it did
                await self._end_drain("under the limit")
            return
        if time.monotonic() - self._last_restart < self._restart_gap_s:
            return
        if rss <= self._rss_after_restart:  # an empty broker above the limit: nothing to gain
            return
        try:
            lag = await consumer_lag(self.kafka_url, self.group, self.topic_names)
        except KafkaError as exc:
            log.warning("broker.lag_unknown", error=str(exc))
            return
        if lag:
            if not self._deferred:  # once per busy spell, not every check
                log.info("broker.restart_deferred", rss_mib=_mib(rss),
                         limit_mib=_mib(self.limit), lag=lag)  # fmt: skip
                self._deferred = True
            if self._drain_began is None:
                await self._begin_drain(rss, lag)
            elif time.monotonic() - self._drain_began > DRAIN_MAX_S:
                await self._end_drain("no quiet moment", lag=lag)
                self._last_restart = time.monotonic()  # the next try waits as after a restart
            return
        self._deferred = False
        drained_s = None
        if self._drain_began is not None:
            drained_s = time.monotonic() - self._drain_began
        done = await self.restart(stop, drained_s)
        if done is None:  # abandoned: a drain goes on, and the next check tries again
            return
        self._last_restart = time.monotonic()
        self._rss_after_restart = done.rss_after
        if self._drain_began is not None:
            await self._end_drain("restarted")

    async def _begin_drain(self, rss: int, lag: int) -> None:
        until = datetime.now(UTC) + timedelta(seconds=DRAIN_MAX_S + 60)
        try:
            await self.processes.drain(until)
        except StoreError as exc:
            log.warning("broker.drain_failed", error=str(exc))
            return
        self._drain_began = time.monotonic()
        log.info("broker.drain_begins", rss_mib=_mib(rss), limit_mib=_mib(self.limit), lag=lag)

    async def _end_drain(self, why: str, **fields: object) -> None:
        assert self._drain_began is not None
        took_s = round(time.monotonic() - self._drain_began, 2)
        self._drain_began = None
        try:
            await self.processes.drain(None)
        except StoreError as exc:  # it ends by itself at its `until`
            log.warning("broker.drain_end_failed", error=str(exc))
        log.info("broker.drain_ends", why=why, drained_s=took_s, **fields)

    async def restart(self, stop: asyncio.Event, drained_s: float | None = None) -> Restart | None:
        """Stop the processes, check the lag again, restart the broker, start them again."""
        began = time.monotonic()
        assert self.broker.pid is not None
        rss_before = rss_bytes(self.broker.pid)
        old_pid = self.broker.pid
        log.info("broker.restart_begins", rss_mib=_mib(rss_before), limit_mib=_mib(self.limit))
        await self.processes.pause()
        try:
            try:
                lag = await consumer_lag(self.kafka_url, self.group, self.topic_names)
            except KafkaError as exc:
                log.warning("broker.restart_abandoned", error=str(exc))
                return None
            if lag or stop.is_set():
                log.info("broker.restart_abandoned", lag=lag, stopping=stop.is_set())
                return None
            resent = await self.processes.broker_emptied()
            down = time.monotonic()
            # Nothing in it is kept, so no need to wait for its orderly stop: with a
            # consumer of another service still connected, Tansu takes its whole stop
            # timeout (5 s) to go.
            await self.broker.stop(timeout_s=BROKER_STOP_S)
            await self.broker.start()
            broker_down_s = time.monotonic() - down
            self.on_restarted(self.broker)
        finally:
            await self.processes.resume()
        assert self.broker.pid is not None
        done = Restart(rss_before, rss_bytes(self.broker.pid), time.monotonic() - began,
                       broker_down_s, drained_s)  # fmt: skip
        log.info(
            "broker.restarted", reason="memory limit", rss_before_mib=_mib(done.rss_before),
            rss_after_mib=_mib(done.rss_after), limit_mib=_mib(self.limit),
            took_s=round(done.took_s, 2), broker_down_s=round(done.broker_down_s, 2),
            old_pid=old_pid, pid=self.broker.pid, deliveries_resent=resent,
            drained_s=None if drained_s is None else round(drained_s, 2),
        )  # fmt: skip
        return done


def _mib(size: int) -> float:
    return round(size / MIB, 1)
