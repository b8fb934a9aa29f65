"""A message crosses the real broker to a real agent that writes to the real database."""

from __future__ import annotations

from datetime import UTC, datetime

from claritycast.runtime.app import create_app
from claritycast.runtime.embedded import Endpoints
from claritycast.settings import Settings
from claritycast.store.claim_check import fetched_record
from claritycast.store.core import Store
from models.records import SnapshotFetched
from tests.helpers import produce, read_topic, running_app, topic_partitions, wait_for
from topics import SNAPSHOTS_FETCHED, SNAPSHOTS_STORED

BLOCKS = [{"metric": "Traffic", "rows": [{"values": {"totalSessionCount": 120.0}}]}]


async def fetched(store: Store, project: str = "p1", group: str = "overall") -> SnapshotFetched:
    """A fetched snapshot as the fetch stage sends it: its blocks in the claim check."""
    end = datetime(2026, 11, 28, 23, 0, 5, tzinfo=UTC)
    ref = await store.put_blocks(BLOCKS, end)
    return fetched_record(project, "2026-11-28", group, end, ref)


async def test_snapshot_crosses_broker_into_mongodb(
    settings: Settings, endpoints: Endpoints, store: Store
) -> None:
    """A fetched snapshot sent to its topic is stored once and announced as stored."""
    app = create_app(settings, ["store"], endpoints)
    async with running_app(app):
        await app.declared[SNAPSHOTS_FETCHED].send(key="p1", value=await fetched(store))
        snapshot = await wait_for(lambda: store.get_snapshot("p1", "2026-11-28", "overall"))

    assert snapshot.blocks == BLOCKS
    assert snapshot.window_end == datetime(2026, 11, 28, 23, 0, 5, tzinfo=UTC)
    stored_topic = SNAPSHOTS_STORED.full_name(settings.topic_prefix)
    [event] = await read_topic(endpoints.kafka_url, stored_topic, count=1)
    assert event["snapshot_id"] == "p1/2026-11-28/overall"
    assert event["created"] is True


async def test_redelivered_snapshot_is_stored_once(
    settings: Settings, endpoints: Endpoints, store: Store
) -> None:
    """The same snapshot sent twice (by another producer) leaves one document."""
    app = create_app(settings, ["store"], endpoints)
    topic = SNAPSHOTS_FETCHED.full_name(settings.topic_prefix)
    async with running_app(app):
        await produce(endpoints.kafka_url, topic, "p2", await fetched(store, "p2"))
        await produce(endpoints.kafka_url, topic, "p2", await fetched(store, "p2"))
        stored_topic = SNAPSHOTS_STORED.full_name(settings.topic_prefix)
        events = await read_topic(endpoints.kafka_url, stored_topic, count=2)

    assert [e["created"] for e in events] == [True, False]
    assert await store.count_snapshots("p2") == 1


async def test_topics_are_declared_with_their_partition_count(
    settings: Settings, endpoints: Endpoints, store: Store
) -> None:
    """Every declared topic exists with the configured partitions once the app starts."""
    app = create_app(settings, ["store"], endpoints)
    async with running_app(app):
        for spec in (SNAPSHOTS_FETCHED, SNAPSHOTS_STORED):
            count = await topic_partitions(
                endpoints.kafka_url, spec.full_name(settings.topic_prefix)
            )
            assert count == settings.partitions
