"""What the benchmarks watch while the chain works, at a cost that does not grow with the data.

Counting stored snapshots in the database while it is being written is itself a
load: ``count_documents`` is an aggregation that decodes every matching
document on SecantusDB, and polled four times a second at 300 projects it was
two thirds of the server's work. So the benchmarks count events instead:
`EventCounter` reads ``snapshots.stored`` (or any topic) from the broker,
as any other service would, and counts the records that say ``created``.
A snapshot is created once (the store's upsert decides), so that count is the
number of documents, and it costs the database nothing. Each benchmark checks
the database once, exactly, at the end.

CPU time comes from ``/proc`` of each process, so the worker, the database
and the broker can be told apart; `Profiler` samples them with py-spy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READ_EVERY_S = 0.5  # how often `EventCounter` reads while events come


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuByRole:
    """CPU seconds per role (worker, broker, …) across restarts, while the block runs.

    `up` may restart its worker and its broker during a run (the broker's
    memory bound), so a pid read at the start is not the process at the end.
    ``roles`` says which pid plays each role now; the meter reads them every
    ``interval_s`` and adds up each process's CPU from the start (or its birth)
    to its last reading. A process that ends loses at most its last interval.
    """

    def __init__(self, roles: Callable[[], dict[str, int]], interval_s: float = 1.0) -> None:
        self.roles = roles
        self.interval_s = interval_s
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._task: asyncio.Task[None] | None = None

    def _sample(self, starting: bool = False) -> None:
        for name, pid in self.roles().items():
            try:
                seconds = cpu_s(pid)
            except FileNotFoundError:
                continue
            self._first.setdefault((name, pid), seconds if starting else 0.0)
            self._last[(name, pid)] = seconds

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._sample()

    async def __aenter__(self) -> Self:
        self._sample(starting=True)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    def seconds(self) -> dict[str, float]:
        """Each role's CPU seconds so far; roles in the order first seen."""
        totals: dict[str, float] = {}
        for (name, pid), last in self._last.items():
            totals[name] = totals.get(name, 0.0) + last - self._first[(name, pid)]
        return totals

    def processes(self, role: str) -> int:
        """How many processes played ``role`` (more than one: it was restarted)."""
        return sum(1 for name, _ in self._last if name == role)


def disk_kib(path: Path) -> int:
    """Bytes on disk under ``path`` (allocated blocks, like ``du``), in KiB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total // 1024


class EventCounter:
    """Counts the records of one topic that ``accept`` takes, from the topic's start.

    ``count`` grows as the chain works; `wait_for` blocks until it reaches a
    number. The consumer has no group: it commits nothing and never joins the
    workers' groups. It survives `up`'s planned broker restart: the new broker
    starts its topics empty and the consumer's position is then past their end.
    Tansu answers a fetch there with nothing rather than an out-of-range error,
    so whenever a read comes back empty the counter compares its positions with
    the ends and starts a partition over from its beginning when it is past it:
    every event is counted once.

    It reads at most every ``READ_EVERY_S`` (0.5 s) while events come: each fetch
    of a partition costs Tansu a read through the batches before its offset
    (`bench.broker_fetch`), so an observer fetching as fast as events arrive is
    a load of its own that grows with the night. The clock it stops may
    therefore be up to 0.5 s late.
    """

    def __init__(
        self, kafka_url: str, topic: str, accept: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.bootstrap = kafka_url.removeprefix("kafka://").replace(";", ",")
        self.topic = topic
        self.accept = accept
        self.count = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
        )
        await self._consumer.start()
        partitions: set[int] | None = None
        for _ in range(100):
            await self._consumer._client.force_metadata_update()  # no public refresh call
            partitions = self._consumer.partitions_for_topic(self.topic)
            if partitions:
                break
            await asyncio.sleep(0.1)
        if not partitions:
            raise SystemExit(f"topic {self.topic} never appeared")
        assignment = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(assignment)
        await self._consumer.seek_to_beginning(*assignment)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                self.count += sum(1 for m in messages if self.accept(json.loads(m.value)))
            if not batches:
                await self._start_over_after_a_restart()
            else:  # a partition's events wait in the consumer meanwhile: no fetch for it
                await asyncio.sleep(READ_EVERY_S)

    async def _start_over_after_a_restart(self) -> None:
        """Each partition whose position is past its end (a new, empty broker) starts over."""
        assert self._consumer is not None
        for tp in sorted(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)  # from the last fetch: right on Tansu too
            if highwater is not None and await self._consumer.position(tp) > highwater:
                self._consumer.seek(tp, 0)

    async def wait_for(self, wanted: int, timeout_s: float, poll_s: float = 0.1) -> float:
        """Seconds until ``count`` reached ``wanted``; SystemExit after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while self.count < wanted:
            if self._task is not None and self._task.done():
                self._task.result()
            if loop.time() - began > timeout_s:
                raise SystemExit(f"only {self.count} of {wanted} after {timeout_s:.0f} s")
            await asyncio.sleep(poll_s)
        return loop.time() - began

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


def created(value: dict[str, Any]) -> bool:
    """A ``snapshots.stored`` event of a snapshot stored for the first time."""
    return bool(value.get("created"))


class Profiler:
    """py-spy sampling some processes for as long as the block runs (``--profile DIR``).

    Each process gets its collapsed stacks (``<name>.txt``, the input of any
    flame-graph tool), which ``python -m bench.profile_top`` sums by function.
    With ``gil``, only samples that hold the GIL count: Python's own CPU,
    without the time spent in system calls (a socket write that hands the
    core to the process it wakes) or waiting. py-spy needs ptrace rights over
    the process (root, or ``kernel.yama.ptrace_scope=0``).
    """

    def __init__(
        self, out_dir: Path | None, pids: dict[str, int], rate: int = 50, gil: bool = False
    ) -> None:
        self.out_dir = out_dir
        self.pids = pids
        self.rate = rate
        self.gil = gil
        self._spies: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        if self.out_dir is None:
            return self
        self.out_dir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        for name, pid in self.pids.items():
            self._spies.append(
                subprocess.Popen(
                    [str(spy), "record", "--pid", str(pid), "--rate", str(self.rate),
                     "--format", "raw", "--output", str(self.out_dir / f"{name}.txt"),
                     "--nonblocking", *(["--gil"] if self.gil else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        return self

    def __exit__(self, *exc_info: object) -> None:
        for spy in self._spies:
            spy.send_signal(signal.SIGINT)
        for spy in self._spies:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
