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

from claritycast.app import ClarityCastApp
from claritycast.embedded import die_with_parent
from claritycast.ports import is_listening
from claritycast.simulated_history import history_snapshot as history_snapshot
from claritycast.simulated_history import seed_history as seed_history
from claritycast.store import Store
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
    """`claritycast worker` as a real subprocess, ready once its heartbeat is stored."""

    def __init__(self, env: dict[str, str], stages: str = "all") -> None:
        self.env = env
        self.stages = stages
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, store: Store, timeout_s: float = 45) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "claritycast",
            "worker",
            "--stages",
            self.stages,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        pid = self.process.pid

        async def alive() -> bool:
            if self.process is not None and self.process.returncode is not None:
                output = await self.output()
                raise AssertionError(f"worker exited early:\n{output}")
            return any(beat.pid == pid for beat in await store.live_workers(within_s=60))

        await wait_for(alive, timeout_s=timeout_s, interval_s=0.2)

    async def stop(self, timeout_s: float = 30) -> int:
        assert self.process is not None
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

    async def output(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        if self.process.returncode is None:
            return ""
        return (await self.process.stdout.read()).decode(errors="replace")


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
