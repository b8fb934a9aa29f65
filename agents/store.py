"""snapshot stored: upsert each fetched snapshot into MongoDB, once.

One document per (project, local date, group): a redelivered or replayed
message finds the document already there and changes nothing, and the
`SnapshotStored` event it emits says ``created=False``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import faust
from faust.types import StreamT, TopicT

from claritycast.deps import Deps
from claritycast.errors import StoreError, StoreUnavailable
from claritycast.logs import get_logger
from claritycast.store import Store
from models.documents import Snapshot
from models.records import SnapshotFetched, SnapshotStored
from topics import SNAPSHOTS_FETCHED, SNAPSHOTS_STORED, Topics

log = get_logger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


async def store_snapshot(record: SnapshotFetched, store: Store) -> SnapshotStored:
    """Save one fetched snapshot; idempotent."""
    snapshot = Snapshot(
        project_id=record.project_id,
        local_date=record.local_date,
        group=record.group,
        window_start=record.window_start,
        window_end=record.window_end,
        fetched_at=record.fetched_at,
        blocks=record.blocks,
        late=record.late,
    )
    created = await store.save_snapshot(snapshot)
    return SnapshotStored(
        project_id=snapshot.project_id,
        local_date=snapshot.local_date,
        group=snapshot.group,
        snapshot_id=snapshot.id,
        stored_at=snapshot.stored_at,
        created=created,
    )


async def store_until_done(record: SnapshotFetched, store: Store) -> SnapshotStored:
    """Retry while MongoDB is unreachable: a snapshot is never dropped for an outage.

    The partition waits meanwhile, which is what we want: nothing downstream
    can proceed without the store either.
    """
    delay_s = RETRY_FIRST_S
    while True:
        try:
            return await store_snapshot(record, store)
        except StoreUnavailable as exc:
            log.warning(
                "snapshot.store_retry",
                project=record.project_id,
                group=record.group,
                local_date=record.local_date,
                retry_in_s=delay_s,
                error=str(exc),
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)


async def handle(record: SnapshotFetched, deps: Deps, stored_topic: TopicT) -> None:
    """Store, then announce; a refused write is logged with everything needed to redo it."""
    context = {"project": record.project_id, "group": record.group, "local_date": record.local_date}
    try:
        stored = await store_until_done(record, deps.store)
    except StoreError as exc:
        log.error("snapshot.store_failed", error=str(exc), **context)
        return
    await stored_topic.send(key=record.project_id, value=stored)
    log.info(
        "snapshot.stored",
        created=stored.created,
        latency_s=round((datetime.now(UTC) - record.fetched_at).total_seconds(), 3),
        **context,
    )


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the store agent to ``app``."""
    stored_topic = topics[SNAPSHOTS_STORED]

    @app.agent(topics[SNAPSHOTS_FETCHED], name="claritycast.store")
    async def store_agent(stream: StreamT[SnapshotFetched]) -> None:
        async for record in stream:
            await handle(record, deps, stored_topic)
