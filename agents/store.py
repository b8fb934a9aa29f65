"""snapshot stored: upsert each fetched snapshot into MongoDB, once.

One document per (project, local date, group): a redelivered or replayed
message finds the document already there and changes nothing, and the
`SnapshotStored` event it emits says ``created=False``.

The record carries a claim check: the answer's blocks are read from MongoDB
by reference and checked against their SHA-256. A very large answer is cut
down to its top rows for reading (`claritycast.clarity.big_answers`) and its
complete blocks are kept for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faust
from faust.types import StreamT, TopicT

from agents.batch import BATCH_MAX, BATCH_WAIT_S, guarded_batch
from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded
from claritycast import telemetry
from claritycast.clarity.big_answers import cut_down
from claritycast.errors import StoreError
from claritycast.logs import get_logger
from claritycast.store.claim_check import BlocksMissing
from claritycast.store.core import Store
from models.documents import Snapshot
from models.records import SnapshotFetched, SnapshotStored
from topics import DEAD_STORE, SNAPSHOTS_FETCHED, SNAPSHOTS_STORED, Topics, send_bounded

log = get_logger(__name__)


async def store_snapshot(record: SnapshotFetched, store: Store) -> SnapshotStored:
    """Save one fetched snapshot; idempotent."""
    try:
        blocks = await store.get_blocks(record.blocks_ref)
    except BlocksMissing:
        if not await store.snapshot_exists(record.project_id, record.local_date, record.group):
            raise
        blocks = []  # stored long ago, its pending blocks since expired: a redelivery
    snapshot = snapshot_of(record, blocks)
    if snapshot.cut_down:
        await store.pin_blocks(record.blocks_ref)
    created = await store.save_snapshot(snapshot)
    return stored_event(snapshot, created)


def snapshot_of(record: SnapshotFetched, blocks: list[dict[str, Any]]) -> Snapshot:
    """The snapshot of a fetched record and its blocks, cut down for reading if very large."""
    if blocks and record.blocks_ref != f"sha256:{record.blocks_sha256}":
        raise StoreError(f"the blocks of {record.blocks_ref[:19]}… are not the ones announced")
    readable, was_cut = cut_down(blocks)
    return Snapshot(
        project_id=record.project_id,
        local_date=record.local_date,
        group=record.group,
        window_start=record.window_start,
        window_end=record.window_end,
        fetched_at=record.fetched_at,
        blocks=readable,
        late=record.late,
        blocks_ref=record.blocks_ref,
        rows_total=dict(record.rows),
        cut_down=was_cut,
    )


def stored_event(snapshot: Snapshot, created: bool) -> SnapshotStored:
    return SnapshotStored(
        project_id=snapshot.project_id,
        local_date=snapshot.local_date,
        group=snapshot.group,
        snapshot_id=snapshot.id,
        stored_at=snapshot.stored_at,
        created=created,
    )


async def handle(record: SnapshotFetched, deps: Deps, stored_topic: TopicT) -> None:
    """Store, then announce on ``snapshots.stored``."""
    await _announce(record, await store_snapshot(record, deps.store), stored_topic)


async def handle_batch(
    records: Sequence[SnapshotFetched], deps: Deps, stored_topic: TopicT
) -> None:
    """`handle` for a batch: its blocks in one read, its snapshots in one bulk write.

    A record whose blocks are missing or wrong makes the batch fail, and then
    each record is handled alone (`agents.batch`).
    """
    store = deps.store
    blocks = await store.get_blocks_many({record.blocks_ref for record in records})
    snapshots = [snapshot_of(record, blocks[record.blocks_ref]) for record in records]
    for snapshot in snapshots:
        if snapshot.cut_down and snapshot.blocks_ref is not None:
            await store.pin_blocks(snapshot.blocks_ref)
    created = await store.save_snapshots(snapshots)
    for record, snapshot in zip(records, snapshots, strict=True):
        first = snapshot.id in created  # a record twice in one batch is created once
        created.discard(snapshot.id)
        await _announce(record, stored_event(snapshot, first), stored_topic)


async def _announce(record: SnapshotFetched, stored: SnapshotStored, stored_topic: TopicT) -> None:
    if stored.created:
        telemetry.SNAPSHOTS_STORED.inc()
        telemetry.LAST_STORED.labels(record.project_id).set(stored.stored_at.timestamp())
    await send_bounded(stored_topic, record.project_id, stored)
    log.info(
        "snapshot.stored",
        project=record.project_id,
        group=record.group,
        local_date=record.local_date,
        created=stored.created,
        late=record.late,
    )


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the store agent to ``app``."""
    stored_topic = topics[SNAPSHOTS_STORED]
    sink = DeadLetterSink("store", topics[DEAD_STORE], deps.store, deps.clock)

    async def one(record: SnapshotFetched) -> None:
        await guarded(
            "store",
            lambda: handle(record, deps, stored_topic),
            message=record,
            key=record.project_id,
            sink=sink,
            project=record.project_id,
            group=record.group,
            local_date=record.local_date,
        )

    @app.agent(topics[SNAPSHOTS_FETCHED], name="claritycast.store")
    async def store_agent(stream: StreamT[SnapshotFetched]) -> None:
        async for records in stream.take(BATCH_MAX, within=BATCH_WAIT_S):
            await guarded_batch(
                "store",
                lambda records=records: handle_batch(records, deps, stored_topic),
                messages=records,
                one_by_one=one,
            )
