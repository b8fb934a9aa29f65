"""Delivery throughput with 1, 2 and 3 delivery workers against a slow Slack.

Tansu and SecantusDB run as `claritycast up` runs them, and a Slack stand-in
in this process answers every Web API call after a fixed delay, as a distant
Slack would. Per run, on a fresh database, topic prefix and consumer group:
one project with 30 days of history and N connections to N Slack channels,
all due at the same moment. K real `claritycast worker --stages render-deliver`
processes join one consumer group; once the group is stable the deliveries
are opened and their DeliveryDue messages produced, exactly as the tick does
(`due_deliveries`, then one message each on ``deliveries.due``). The clock
stops when the delivery log holds N sent deliveries; the stand-in must hold
exactly N messages (each report sent once).

Who sent what comes from the delivery log (``attempts[].worker`` is
``host:pid``), and which partition each report travelled on from the
producer's own partitioner, so the table shows how the group spread the
partitions and the load.

    .venv/bin/python -m bench.scale [connections] [latency_ms] [workers ...]
                                    (default: 200 200 1 2 3)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from agents.deliver import CONCURRENCY
from claritycast.delivery.connections import create_connection
from claritycast.delivery.log import due_deliveries
from claritycast.keyring import new_key
from claritycast.runtime.app import app_id_for
from claritycast.runtime.embedded import (
    ServerProcess,
    die_with_parent,
    embedded_mongodb_url,
    secantusdb,
    tansu,
)
from claritycast.runtime.ports import LOOPBACK, free_port
from claritycast.runtime.publisher import Publisher
from claritycast.settings import load_settings
from claritycast.standins.history import seed_history
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from models import catalogue
from models.documents import Organisation, Project
from topics import DELIVERIES_DUE

PARTITIONS = 8
STAGES = ("render", "deliver")
METRIC = "sessions"
TIMEOUT_S = 1800


@dataclass(frozen=True)
class Servers:
    kafka_url: str
    mongodb_url: str
    database_pid: int


@dataclass(frozen=True)
class Outcome:
    workers: int
    reports: int
    seconds: float
    split: list[tuple[int, list[int]]]  # per worker: (reports sent, partitions they came on)
    slack_calls_per_report: float
    worker_cpu_s: float
    database_cpu_s: float


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def partition_of(key: str) -> int:
    """The partition aiokafka's default partitioner puts ``key`` on, as `Publisher` sends."""
    every = list(range(PARTITIONS))
    return DefaultPartitioner()(key.encode(), every, every)


async def seed(store: Store, count: int, now: datetime) -> None:
    """One project with 30 days of history and ``count`` daily connections due at 00:00 UTC."""
    await store.ensure_indexes()
    await store.add_organisation(Organisation("bench", "Bench", "UTC", now))
    project = Project("shop-1", "Shop", "bench", connected_at=now - timedelta(days=40))
    await store.add_project(project, [metric.id for metric in catalogue.METRICS])
    yesterday = now.date() - timedelta(days=1)
    group = catalogue.get(METRIC).group
    await seed_history(store, "shop-1", "UTC", yesterday - timedelta(days=29), yesterday, [group])
    for i in range(count):
        await create_connection(
            store, project="shop-1", metric=METRIC, now=now - timedelta(days=2),
            slack_channel=f"#bench-{i:04d}", at="00:00", timezone="UTC", name=f"bench-{i:04d}",
        )  # fmt: skip


async def group_stable(kafka_url: str, group: str, members: int, timeout_s: float = 60) -> None:
    """Wait until the consumer group has settled with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.removeprefix("kafka://"))
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            (described,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, joined = described.groups[0]
            if state == "Stable" and len(joined) == members:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"group {group} not stable with {members} members: {state}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def start_workers(
    count: int, env: dict[str, str], store: Store, log_dir: Path
) -> tuple[list[asyncio.subprocess.Process], list[IO[bytes]]]:
    processes, logs = [], []
    for i in range(count):
        log = (log_dir / f"worker-{i + 1}.log").open("wb")
        logs.append(log)
        argv = [sys.executable, "-m", "claritycast", "worker", "--stages", ",".join(STAGES)]
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip
        processes.append(process)
    pids = {process.pid for process in processes}
    deadline = time.monotonic() + 60
    while not pids <= {beat.pid for beat in await store.live_workers(within_s=60)}:
        if any(process.returncode is not None for process in processes):
            raise SystemExit(f"a worker exited early; see {log_dir}")
        if time.monotonic() > deadline:
            raise SystemExit(f"workers not ready after 60 s; see {log_dir}")
        await asyncio.sleep(0.2)
    return processes, logs


async def stop_workers(processes: list[asyncio.subprocess.Process], logs: list[IO[bytes]]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    for log in logs:
        log.close()


def worker_env(servers: Servers, name: str, scratch: Path, slack: SlackStandin) -> dict[str, str]:
    """A delivery worker's settings: this run's servers, names and Slack stand-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    return env | {
        "CLARITYCAST_KAFKA_URL": servers.kafka_url,
        "CLARITYCAST_MONGODB_URL": servers.mongodb_url,
        "CLARITYCAST_KAFKA_FLAVOUR": "tansu",
        "CLARITYCAST_APP_ID": name,
        "CLARITYCAST_TOPIC_PREFIX": f"{name}.",
        "CLARITYCAST_MONGODB_DATABASE": name,
        "CLARITYCAST_PARTITIONS": str(PARTITIONS),
        "CLARITYCAST_DATA_DIR": str(scratch / "var"),
        "CLARITYCAST_SECRET_KEYS": new_key(),  # an external database needs its key given
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "CLARITYCAST_DELIVERY_GRACE_S": "0",  # safety net only: the history is complete
    }


async def run(servers: Servers, count: int, latency_s: float, workers: int) -> Outcome:
    name = f"scale{workers}w{os.getpid()}"
    scratch = Path(tempfile.mkdtemp(prefix=f"claritycast-bench-{name}-"))
    store = Store.connect(servers.mongodb_url, name)
    now = datetime.now(UTC)
    await seed(store, count, now)
    slack = SlackStandin()
    for i in range(count):
        slack.add_channel(f"bench-{i:04d}")
    await slack.start()
    env = worker_env(servers, name, scratch, slack)
    publisher = Publisher(servers.kafka_url, f"{name}.", PARTITIONS)
    await publisher.start()  # declares the topics with 8 partitions before any worker
    processes, logs = await start_workers(workers, env, store, scratch)
    try:
        await group_stable(
            servers.kafka_url, app_id_for(load_settings(app_id=name), STAGES), workers
        )
        due = await due_deliveries(store, now)
        assert len(due) == count, f"{len(due)} deliveries due, expected {count}"
        slack.latency_s = latency_s
        cpu_before = [cpu_s(p.pid) for p in processes], cpu_s(servers.database_pid)
        began = time.monotonic()
        for message in due:
            await publisher.send(DELIVERIES_DUE, message.connection, message)
        sent = 0
        while sent < count:
            await asyncio.sleep(0.1)
            sent = await store.db.deliveries.count_documents({"state": "sent"})
            if time.monotonic() - began > TIMEOUT_S:
                raise SystemExit(f"only {sent} of {count} sent after {TIMEOUT_S} s")
        seconds = time.monotonic() - began
        worker_cpu = sum(cpu_s(p.pid) for p in processes) - sum(cpu_before[0])
        database_cpu = cpu_s(servers.database_pid) - cpu_before[1]
        split = await spread(store, [p.pid for p in processes])
        incomplete = await store.db.deliveries.count_documents({"incomplete.0": {"$exists": True}})
    finally:
        await stop_workers(processes, logs)
        await publisher.stop()
    api_calls = [call for call in slack.calls if call.method != "upload"]
    await slack.stop()
    await store.client.drop_database(name)
    await store.close()
    assert len(slack.messages) == count, f"Slack got {len(slack.messages)} messages for {count}"
    assert len({m.channel for m in slack.messages}) == count, "a channel got two reports"
    assert incomplete == 0, f"{incomplete} reports were incomplete"
    return Outcome(workers, count, seconds, split, len(api_calls) / count, worker_cpu, database_cpu)


async def spread(store: Store, pids: list[int]) -> list[tuple[int, list[int]]]:
    """Per worker (in start order): reports it sent and the partitions they came on."""
    sent_by: Counter[int] = Counter()
    partitions: defaultdict[int, set[int]] = defaultdict(set)
    async for doc in store.db.deliveries.find({"state": "sent"}, {"attempts": 1, "connection": 1}):
        (attempt,) = doc["attempts"]  # exactly one attempt: sent first time
        pid = int(attempt["worker"].rsplit(":", 1)[1])
        sent_by[pid] += 1
        partitions[pid].add(partition_of(doc["connection"]))
    return [(sent_by[pid], sorted(partitions[pid])) for pid in pids]


async def start_servers() -> tuple[list[ServerProcess], Servers]:
    root = Path(tempfile.mkdtemp(prefix="claritycast-bench-scale-"))
    broker = tansu(free_port(), root / "log")
    database = secantusdb(free_port(), root / "mongodb", root / "log", sync_on_commit=True)
    await broker.start()
    await database.start()
    assert database.pid is not None
    return [broker, database], Servers(
        f"kafka://{LOOPBACK}:{broker.port}", embedded_mongodb_url(database.port), database.pid
    )


def table(outcomes: list[Outcome], latency_s: float) -> None:
    base = outcomes[0].reports / outcomes[0].seconds  # speed-up is against the first row
    print()
    print("| workers | reports | seconds | reports/s | speed-up | per worker: reports (partitions) "
          "| worker CPU per report | database CPU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        rate = o.reports / o.seconds
        split = "; ".join(
            f"{n} ({','.join(map(str, parts))})" for n, parts in o.split
        )  # fmt: skip
        print(
            f"| {o.workers} | {o.reports} | {o.seconds:.1f} | {rate:.2f} | {rate / base:.2f}x "
            f"| {split} | {o.worker_cpu_s / o.reports * 1000:.0f} ms "
            f"| {o.database_cpu_s / o.seconds * 100:.0f} % |"
        )
    calls = outcomes[0].slack_calls_per_report
    wait_s = calls * latency_s
    print(f"\nSlack API calls per report: {calls:.1f} at {latency_s * 1000:.0f} ms each "
          f"= {wait_s:.2f} s of waiting per report", end="")  # fmt: skip
    if wait_s:
        cap = CONCURRENCY / wait_s
        print(f"; {CONCURRENCY} reports at a time cap a worker at {cap:.2f} reports/s", end="")
    print(".")


async def main(count: int, latency_s: float, worker_counts: list[int]) -> None:
    children, servers = await start_servers()
    outcomes = []
    try:
        for workers in worker_counts:
            print(f"-- {workers} worker(s), {count} reports, Slack latency "
                  f"{latency_s * 1000:.0f} ms per call", flush=True)  # fmt: skip
            outcome = await run(servers, count, latency_s, workers)
            print(f"   {outcome.seconds:.1f} s, {outcome.reports / outcome.seconds:.2f} reports/s",
                  flush=True)  # fmt: skip
            outcomes.append(outcome)
    finally:
        for child in reversed(children):
            await child.stop()
    table(outcomes, latency_s)


if __name__ == "__main__":
    args = [int(arg) for arg in sys.argv[1:]]
    connections = args[0] if args else 200
    latency_ms = args[1] if len(args) > 1 else 200
    asyncio.run(main(connections, latency_ms / 1000, args[2:] or [1, 2, 3]))
