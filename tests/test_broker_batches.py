"""Several records per producer batch on Tansu: where its end offsets are short, nothing is.

Tansu's ``ListOffsets`` answers the last batch's base offset plus one. The
worker produces records in batches (with one record per batch, a night's
broker fetches read through many times as many batches), so every reader of
an end offset takes it from a fetch instead (`claritycast.runtime.end_offsets`):
`up`'s lag before a broker restart, Faust's table recovery, the tests' readers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from agents.quota import EventTable
from claritycast.runtime.app import ClarityCastApp, create_app
from claritycast.runtime.broker_bound import consumer_lag
from claritycast.runtime.embedded import Endpoints
from claritycast.runtime.end_offsets import end_offsets
from claritycast.settings import Settings
from tests.helpers import bootstrap, running_app, wait_for

ROUNDS = 3
PER_ROUND = 7
KEYS = [f"p{i}" for i in range(40)]


async def _topic(kafka_url: str, name: str, partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(kafka_url))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _batched(kafka_url: str, topic: str, records: list[tuple[str, str]]) -> None:
    """Send ``records`` to partition 0 in batches of several records (a linger gathers them)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(kafka_url), linger_ms=50)
    await producer.start()
    try:
        for start in range(0, len(records), PER_ROUND):
            sent = [
                await producer.send(topic, value.encode(), key=key.encode(), partition=0)
                for key, value in records[start : start + PER_ROUND]
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _listed_ends(
    kafka_url: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(kafka_url), group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def test_end_offsets_count_every_record_where_tansu_lists_the_last_batch(
    endpoints: Endpoints, test_id: str
) -> None:
    topic = f"t{test_id}.batches"
    await _topic(endpoints.kafka_url, topic)
    records = [(f"k{i}", f"v{i}") for i in range(ROUNDS * PER_ROUND)]
    await _batched(endpoints.kafka_url, topic, records)
    full, empty = TopicPartition(topic, 0), TopicPartition(topic, 1)

    listed = await _listed_ends(endpoints.kafka_url, [full, empty])
    assert listed[full] < len(records), "the broker listed every record: nothing to show here"
    ends = await end_offsets(bootstrap(endpoints.kafka_url), [full, empty])
    assert ends == {full: len(records), empty: 0}


async def test_the_lag_before_a_restart_counts_every_record_of_a_batch(
    endpoints: Endpoints, test_id: str
) -> None:
    """`up` restarts the broker only at a lag of zero: a short end would lose the rest."""
    topic, group = f"t{test_id}.lagging", f"t{test_id}-group"
    await _topic(endpoints.kafka_url, topic)
    await _batched(endpoints.kafka_url, topic, [(f"k{i}", "v") for i in range(ROUNDS * PER_ROUND)])
    committer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap(endpoints.kafka_url), group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([TopicPartition(topic, 0)])
        await committer.commit({TopicPartition(topic, 0): PER_ROUND + 2})
        lag = await consumer_lag(endpoints.kafka_url, group, [topic])
        assert lag == ROUNDS * PER_ROUND - PER_ROUND - 2
        await committer.commit({TopicPartition(topic, 0): ROUNDS * PER_ROUND})
        assert await consumer_lag(endpoints.kafka_url, group, [topic]) == 0
    finally:
        await committer.stop()


def _values(table: faust.Table, keys: dict[str, int]) -> dict[str, int | None]:
    return {key: (table.get(key) or {}).get("n") for key in keys}


@asynccontextmanager
async def _counting_app(
    settings: Settings, endpoints: Endpoints, topic: str
) -> AsyncIterator[tuple[ClarityCastApp, faust.Table]]:
    """The quota stage's app (its table, on the worker's settings) with a test agent writing it."""
    app = create_app(settings, ["quota"], endpoints)
    table = app.tables["quota"]
    numbers = app.topic(topic, key_type=str, value_serializer="raw", partitions=settings.partitions)

    @app.agent(numbers)
    async def write(stream: faust.StreamT) -> AsyncIterator[None]:
        # A batch at a time, as the quota stage writes: its changes leave in a burst.
        async for events in stream.take_events(len(KEYS), within=0.5):
            batch_table = EventTable(table, {event.key: event for event in events})
            for event in events:
                batch_table[event.key] = {"n": int(event.value)}
            yield None

    async with running_app(app):
        yield app, table


@pytest.mark.timeout(180)
async def test_a_table_written_in_batches_recovers_every_change_on_another_worker(
    settings: Settings, endpoints: Endpoints, test_id: str
) -> None:
    """Faust's recovery reads a changelog up to its end: the true one, not Tansu's listing."""
    topic = f"t{test_id}.numbers"
    await _topic(endpoints.kafka_url, topic, partitions=settings.partitions)
    final = dict.fromkeys(KEYS, 0)
    records = []
    for n in range(1, 4):
        for key in final:
            final[key] = n * 100 + int(key[1:])
            records.append((key, str(final[key])))

    async with _counting_app(settings, endpoints, topic) as (_, table):
        await _batched(endpoints.kafka_url, topic, records)

        async def all_written() -> bool:
            return _values(table, final) == final

        await wait_for(all_written, timeout_s=60)
        name = table.changelog_topic.get_topic_name()
    changelog = [TopicPartition(name, p) for p in range(settings.partitions)]
    listed = await _listed_ends(endpoints.kafka_url, changelog)
    written = await end_offsets(bootstrap(endpoints.kafka_url), changelog)
    assert sum(written.values()) == len(records)
    assert sum(listed.values()) < len(records), "no batch of several changes: nothing to show"

    async with _counting_app(settings, endpoints, f"{topic}.unused") as (app, table):

        async def recovered_all() -> bool:
            return app.tables.recovery.completed.is_set()

        await wait_for(recovered_all, timeout_s=60)
        recovered = _values(table, final)
    assert recovered == final, json.dumps(
        {k: v for k, v in recovered.items() if v != final[k]}, sort_keys=True
    )


async def test_an_end_no_fetch_reports_is_a_broker_error_the_lag_check_already_handles(
    endpoints: Endpoints, test_id: str
) -> None:
    """`up` logs ``broker.lag_unknown`` for a `KafkaError` and tries later: never a traceback."""
    topic = f"t{test_id}.silent"
    await _topic(endpoints.kafka_url, topic)
    with pytest.raises(KafkaError, match="no fetch reported the end of"):
        await end_offsets(bootstrap(endpoints.kafka_url), [TopicPartition(topic, 0)], timeout_s=-1)
