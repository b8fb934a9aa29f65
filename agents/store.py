"""snapshot stored: upsert each fetched snapshot into MongoDB, once.

One document per (project, local date, group): a redelivered or replayed
message finds the document already there and changes nothing, and the
`SnapshotStored` event it emits says ``created=False``.
"""

from __future__ import annotations

import faust
from faust.types import StreamT, TopicT

from agents.guard import guarded
from claritycast.deps import Deps
from claritycast.logs import get_logger
from claritycast.store import Store
from models.documents import Snapshot
from models.records import SnapshotFetched, SnapshotStored
from topics import SNAPSHOTS_FETCHED, SNAPSHOTS_STORED, Topics

log = get_logger(__name__)


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


async def handle(record: SnapshotFetched, deps: Deps, stored_topic: TopicT) -> None:
    """Store, then announce on ``snapshots.stored``."""
    stored = await store_snapshot(record, deps.store)
    await stored_topic.send(key=record.project_id, value=stored)
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

    @app.agent(topics[SNAPSHOTS_FETCHED], name="claritycast.store")
    async def store_agent(stream: StreamT[SnapshotFetched]) -> None:
        async for record in stream:
            await guarded(
                "snapshot",
                lambda record=record: handle(record, deps, stored_topic),
                project=record.project_id,
                group=record.group,
                local_date=record.local_date,
            )
