"""Helpers shared by the tests: processes, a running app, topic I/O, polling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from claritycast.runtime.app import ClarityCastApp
from claritycast.runtime.embedded import die_with_parent
from claritycast.runtime.end_offsets import end_offsets
from claritycast.runtime.ports import is_listening
from claritycast.standins.history import history_snapshot as history_snapshot
from claritycast.standins.history import seed_history as seed_history
from claritycast.store.core import Store
from topics import TopicSpec

T = TypeVar("T")


def start_server_process(argv: list[str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server and wait until it listens (30 s at most)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + 30
    while not is_listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server_process(process)
            raise RuntimeError(f"{argv[0]} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def stop_server_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_for(
    probe: Callable[[], Awaitable[T]], *, timeout_s: float = 30, interval_s: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)


def bootstrap(kafka_url: str) -> str:
    return kafka_url.removeprefix("kafka://").replace(";", ",")


@asynccontextmanager
async def running_app(app: ClarityCastApp) -> AsyncIterator[ClarityCastApp]:
    """Run a Faust app inside the test's event loop."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def sender(app: ClarityCastApp) -> Callable[[TopicSpec, str, faust.Record], Awaitable[None]]:
    """A send function (as connect, refresh and replay take) through the app's own topics."""

    async def send(spec: TopicSpec, key: str, record: faust.Record) -> None:
        await app.declared[spec].send(key=key, value=record)

    return send


async def produce(kafka_url: str, topic: str, key: str, record: faust.Record) -> None:
    """Send one record the way any other service would: a plain Kafka producer."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(kafka_url))
    await producer.start()
    try:
        await producer.send_and_wait(topic, record.dumps(serializer="json"), key=key.encode())
    finally:
        await producer.stop()


async def read_topic(
    kafka_url: str, topic: str, count: int, *, timeout_s: float = 30
) -> list[dict[str, Any]]:
    """Read ``count`` JSON values from every partition of ``topic``, from the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(kafka_url), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    values: list[dict[str, Any]] = []
    try:
        partitions = await wait_for(lambda: _partitions(consumer, topic), timeout_s=timeout_s)
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        deadline = time.monotonic() + timeout_s
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                values.extend(json.loads(message.value) for message in messages)
    finally:
        await consumer.stop()
    return values


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int] | None:
    await consumer._client.force_metadata_update()  # no public refresh call
    return consumer.partitions_for_topic(topic)


async def topic_partitions(kafka_url: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(kafka_url), group_id=None)
    await consumer.start()
    try:
        partitions = await wait_for(lambda: _partitions(consumer, topic), timeout_s=10)
        return len(partitions)
    finally:
        await consumer.stop()


class WorkerProcess:
    """`claritycast worker` as a real subprocess, ready once its heartbeat is stored.

    Its output is read as it comes (`lines`), so a chatty worker never blocks
    on a full pipe. ``module`` is what ``python -m`` runs: ``claritycast``, or
    a test's wrapper that changes something first (a fault to inject).
    """

    def __init__(self, env: dict[str, str], stages: str = "all", module: str = "claritycast"):
        self.env = env
        self.stages = stages
        self.module = module
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, store: Store, timeout_s: float = 60) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            "worker",
            "--stages",
            self.stages,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self._reader = asyncio.create_task(self._drain())
        pid = self.process.pid

        async def alive() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"worker exited early:\n{await self.output()}")
            return any(beat.pid == pid for beat in await store.live_workers(within_s=60))

        await wait_for(alive, timeout_s=timeout_s, interval_s=0.2)

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode(errors="replace"))

    def logged(self, event: str) -> list[str]:
        """The lines that log ``event`` (as the human log format writes it)."""
        return [line for line in self.lines if f" {event} " in line]

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no offset commit, no goodbye to the group."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def wait(self, timeout_s: float) -> int:
        """Wait for the worker to exit on its own; its exit code."""
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def stop(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        try:
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.process.wait(), timeout_s)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()
                    raise AssertionError("worker did not stop within its timeout") from None
            return self.process.returncode or 0
        finally:
            if self._reader is not None:
                await self._reader

    async def output(self) -> str:
        """Everything the worker wrote, once it has exited (so far, while it runs)."""
        exited = self.process is not None and self.process.returncode is not None
        if exited and self._reader is not None:
            await self._reader
        return "".join(self.lines)


def make_token(
    sub: str = "project-1",
    *,
    exp: float | None = 4102444800,  # 2100-01-01
    aud: str | None = "clarity.data-exporter",
    iss: str | None = "clarity",
    signature: str = "c2lnbmF0dXJl",
) -> str:
    """A JWT shaped like Clarity's Data Export tokens (unsigned: tests only)."""
    import base64

    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims: dict[str, object] = {"sub": sub}
    if exp is not None:
        claims["exp"] = exp
    if aud is not None:
        claims["aud"] = aud
    if iss is not None:
        claims["iss"] = iss
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{signature}"


async def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run ``claritycast *args`` in its own process: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claritycast", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    talk = asyncio.ensure_future(process.communicate(stdin.encode()))
    done, _ = await asyncio.wait({talk}, timeout=120)
    if not done:
        # Killed and reaped here, so the timeout fails this test only (not the next one
        # with the leaked process's ResourceWarnings), with what the command printed.
        process.kill()
        out, err = await talk
        printed = (out + err).decode()
        raise AssertionError(f"claritycast {' '.join(args)} ran 120 s: {printed}")
    out, err = talk.result()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def topic_records(
    kafka_url: str, topic_prefix: str, *, timeout_s: float = 60
) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record (key, value) of every topic whose name starts with ``topic_prefix``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(kafka_url), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: dict[str, list[tuple[bytes, bytes]]] = {}
    try:
        await consumer._client.force_metadata_update()  # no public refresh call
        names = [name for name in await consumer.topics() if name.startswith(topic_prefix)]
        partitions = [
            TopicPartition(name, p) for name in names for p in consumer.partitions_for_topic(name)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await end_offsets(bootstrap(kafka_url), partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                records.setdefault(tp.topic, []).extend(
                    (m.key or b"", m.value or b"") for m in messages
                )
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        assert not remaining, f"could not read to the end of {sorted(map(str, remaining))}"
    finally:
        await consumer.stop()
    return records


async def record_sizes(kafka_url: str, topic_prefix: str) -> dict[str, list[int]]:
    """The size (key + value bytes) of every record on every topic whose name starts so."""
    records = await topic_records(kafka_url, topic_prefix)
    return {topic: [len(k) + len(v) for k, v in kept] for topic, kept in records.items()}
