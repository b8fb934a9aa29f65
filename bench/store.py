"""Snapshots per second through the store stage on the embedded default.

A plain Kafka producer sends N fetched snapshots (realistic size: 16 metric
blocks, each snapshot's own, put in the claim check beforehand as the fetch
stage does) to a running `claritycast up`; the clock stops when MongoDB holds
all N. Prints throughput, the worker's peak memory and the broker's growth.

    .venv/bin/python -m bench.store [snapshots]
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from bench.embedded import Up, memory_kib
from claritycast.store.claim_check import fetched_record
from claritycast.store.core import Store
from models.records import SnapshotFetched

NAMES = (
    *("DeadClickCount", "ExcessiveScroll", "RageClickCount", "QuickbackClick"),
    *("ScriptErrorCount", "ErrorClickCount", "ScrollDepth", "Traffic", "EngagementTime"),
    *("Browser", "Device", "OS", "Country", "PageTitle", "ReferrerUrl", "PopularPages"),
)
END = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)


def blocks(i: int) -> list[dict[str, object]]:
    row = {"values": {"sessionsCount": 1204.0 + i, "subTotal": 87.0}}
    return [{"metric": name, "rows": [row]} for name in NAMES]


async def snapshot(i: int, store: Store) -> SnapshotFetched:
    ref = await store.put_blocks(blocks(i), END)
    group = ("overall", "url", "browser", "device", "country", "os", "source")[i % 7]
    return fetched_record(f"project-{i // 7}", "2026-11-28", group, END, ref)


async def run(count: int, up: Up) -> None:
    state = up.state()
    children = state["children"]
    assert isinstance(children, dict)
    broker_before = memory_kib(children["tansu"])
    store = Store.connect(str(state["mongodb_url"]), "claritycast")
    records = [await snapshot(i, store) for i in range(count)]
    await store.close()
    producer = AIOKafkaProducer(bootstrap_servers=str(state["kafka_url"]).removeprefix("kafka://"))
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(str(state["mongodb_url"]))
    await producer.start()
    began = time.monotonic()
    try:
        for record in records:
            await producer.send(
                "claritycast.snapshots.fetched",
                record.dumps(serializer="json"),
                key=record.project_id.encode(),
            )
        await producer.flush()
        sent_s = time.monotonic() - began
        while await client.claritycast.snapshots.count_documents({}) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling the database from outside, as a user would
        elapsed_s = time.monotonic() - began
    finally:
        await producer.stop()
        await client.close()
    broker_after = memory_kib(children["tansu"])
    rate = count / elapsed_s
    print(f"store stage: {count} snapshots in {elapsed_s:.2f} s = {rate:.0f} snapshots/s")
    print(f"  producing took {sent_s:.2f} s")
    print(f"  worker peak memory {memory_kib(children['worker'], 'VmHWM') / 1024:.0f} MiB")
    print(
        f"  broker memory {broker_before / 1024:.0f} -> {broker_after / 1024:.0f} MiB "
        f"(+{(broker_after - broker_before) / count:.1f} KiB per snapshot, two topics)"
    )


def main(count: int) -> None:
    for sync in ("true", "false"):
        print(f"-- embedded database fsync on every commit: {sync}")
        up = Up(partitions="8", mongodb_sync_on_commit=sync)
        try:
            up.wait_ready()
            asyncio.run(run(count, up))
            up.stop()
        finally:
            up.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
