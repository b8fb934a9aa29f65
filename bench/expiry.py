"""What expiring documents costs the embedded database: SecantusDB's sweeper against `up`'s.

The chain keeps two collections that expire by a TTL index and grow with the
projects: a Clarity answer's blocks (``expires_at``, 7 days after it was
fetched: 7 answers per project and night, so 49 per project once a week has
passed) and the delivery log (``created_at``, 90 days: with one daily report
per project, 90 per project). Per number of projects, that steady state and
nothing expired:

- SecantusDB's own sweeper (every 60 s): one pass of its ``prune_ttl`` over
  both collections, timed in this process on a WiredTiger store of its own
  (the code its sweeper thread runs, all of it under the server's global
  lock, so every operation of the chain waits that long);
- `up`'s expiry (`claritycast.runtime.database_expiry`), the same documents
  in a SecantusDB server started as `up` starts it, over the wire: one sweep
  with nothing expired; then, filled again, one with a night's worth expired
  (7 blocks and 1 delivery per project), and the longest of its deletes (the
  longest the chain waits behind it).

    .venv/bin/python -m bench.expiry [projects ...]   (default: 100 1000)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from secantus.storage import Storage

from bench.embedded import stop_on_sigterm
from claritycast.runtime import database_expiry
from claritycast.runtime.embedded import embedded_mongodb_url, secantusdb
from claritycast.runtime.ports import free_port

DB = "claritycast"
INSERT_BATCH = 1000
BLOCKS_PER_PROJECT = 7 * 7  # a week of nights, 7 answers a night
DELIVERIES_PER_PROJECT = 90  # one daily report, kept 90 days
WEEK = timedelta(days=7)
KEPT = timedelta(days=90)
BLOCK_BYTES = 1600  # `bench.ingest`'s mean stored answer (zlib-compressed JSON)


def documents(
    projects: int, now: datetime, *, expired: bool
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(collection, document) pairs as the chain writes them; a night's worth expired or none."""
    payload = os.urandom(BLOCK_BYTES)
    for i in range(projects * BLOCKS_PER_PROJECT):
        old = expired and i % BLOCKS_PER_PROJECT < 7
        yield "blocks", {
            "_id": f"sha256:{i:064x}", "codec": "zlib+json", "data": payload,
            "size_bytes": 9000, "rows": {"Traffic": 4},
            "expires_at": now - timedelta(minutes=1) if old else now + WEEK,
        }  # fmt: skip
    for i in range(projects * DELIVERIES_PER_PROJECT):
        old = expired and i % DELIVERIES_PER_PROJECT == 0
        yield "deliveries", {
            "_id": f"c{i // DELIVERIES_PER_PROJECT}/day-{i % DELIVERIES_PER_PROJECT}",
            "connection": f"c{i // DELIVERIES_PER_PROJECT}", "period": "2026-11-30",
            "reason": "schedule", "scheduled_at": now, "state": "sent",
            "attempts": [{"at": now, "outcome": "sent", "error": None}],
            "receipt": {"channel": "C0123456789", "ts": "1764576000.000100"},
            "incomplete": [], "summary_source": "plain", "sent_at": now, "retry_from": 0,
            "created_at": now - KEPT - timedelta(minutes=1) if old else now,
        }  # fmt: skip


def batches(projects: int, now: datetime, *, expired: bool) -> Iterator[tuple[str, list[Any]]]:
    batch: list[Any] = []
    current = ""
    for collection, doc in documents(projects, now, expired=expired):
        if batch and (collection != current or len(batch) == INSERT_BATCH):
            yield current, batch
            batch = []
        current = collection
        batch.append(doc)
    if batch:
        yield current, batch


TTL_INDEXES = (("blocks", "expires_at", 0), ("deliveries", "created_at", int(KEPT.total_seconds())))


def secantus_sweep_s(projects: int, root: Path) -> float:
    """One pass of SecantusDB's own TTL sweeper over ``projects``' steady state."""
    storage = Storage(str(root / "in-process"), enable_oplog=False, ttl_sweep_seconds=0)
    try:
        for collection, field, seconds in TTL_INDEXES:
            storage.create_index(
                DB, collection, "expire", {field: 1}, {"expireAfterSeconds": seconds}
            )
        for collection, docs in batches(projects, datetime.now(UTC), expired=False):
            storage.insert(DB, collection, docs)
        began = time.perf_counter()
        pruned = storage.prune_ttl_all_collections()
        took = time.perf_counter() - began
        assert pruned == 0, pruned
        return took
    finally:
        storage.close()


async def fill(db: AsyncDatabase[dict[str, Any]], projects: int, *, expired: bool) -> None:
    for collection, field, seconds in TTL_INDEXES:
        await db[collection].create_index([(field, ASCENDING)], expireAfterSeconds=seconds)
    for collection, docs in batches(projects, datetime.now(UTC), expired=expired):
        await db[collection].insert_many(docs, ordered=False)


async def up_expiry(root: Path, projects: int) -> tuple[float, float, float, int]:
    """`up`'s sweep: seconds with nothing expired; with a night expired, and its longest delete."""
    server = secantusdb(
        free_port(), root / "mongodb", root / "log", sync_on_commit=True, ttl_sweeper=False
    )
    await server.start()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        embedded_mongodb_url(server.port), tz_aware=True
    )
    try:
        db = client[DB]
        await fill(db, projects, expired=False)
        began = time.perf_counter()
        assert await database_expiry.expire_all(db, datetime.now(UTC)) == {}
        nothing_s = time.perf_counter() - began
        await client.drop_database(DB)

        await fill(db, projects, expired=True)
        # `expire_all`, one index at a time: each `expire` is one delete, timed on its own.
        began = time.perf_counter()
        now = datetime.now(UTC)
        deleted: dict[str, int] = {}
        longest_s = 0.0
        for ttl in await database_expiry.ttl_indexes(db):
            one = time.perf_counter()
            deleted[ttl.collection] = await database_expiry.expire(db, ttl, now)
            longest_s = max(longest_s, time.perf_counter() - one)
        night_s = time.perf_counter() - began
        assert deleted == {"blocks": 7 * projects, "deliveries": projects}, deleted
        return nothing_s, night_s, longest_s, sum(deleted.values())
    finally:
        await client.close()
        await server.stop()


def measure(projects: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="claritycast-expiry-"))
    try:
        sweep_s = secantus_sweep_s(projects, root)
        nothing_s, night_s, longest_s, deleted = asyncio.run(up_expiry(root, projects))
        documents = projects * (BLOCKS_PER_PROJECT + DELIVERIES_PER_PROJECT)
        print(
            f"| {projects:,} | {documents:,} | {sweep_s:.2f} s | {nothing_s * 1000:.1f} ms "
            f"| {night_s:.2f} s ({deleted:,} deleted) | {longest_s * 1000:.0f} ms |",
            flush=True,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(counts: list[int]) -> None:
    stop_on_sigterm()
    print(
        "| projects | documents (blocks, deliveries) | SecantusDB's sweep, nothing expired, "
        "under its lock | `up`'s sweep, nothing expired | `up`'s sweep, a night's expired "
        "| its longest delete |"
    )
    print("|---|---|---|---|---|---|")
    try:
        for projects in counts:
            measure(projects)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100, 1000])
