"""Another service following claritycast's events with a plain Kafka consumer (no Faust).

It reads two topics: ``snapshots.stored`` (a day of a project's Clarity data
is in claritycast's store) and ``deliveries.sent`` (a report reached Slack or
an inbox). Keys are UTF-8 strings, values JSON; see docs/events.md.

    python docs/examples/consume_events.py --bootstrap 127.0.0.1:9092 \\
        --prefix claritycast. --group my-service

``claritycast status`` prints the broker's address. The consumer group
remembers where the service stopped: an event's offset is committed once the
service asks for the next one, so a stop or a crash re-reads at most the
event it was handling (handle events idempotently). A new group starts from
the oldest retained event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

SNAPSHOTS_STORED = "snapshots.stored"
DELIVERIES_SENT = "deliveries.sent"


@dataclass(frozen=True)
class SnapshotStored:
    """Written for schema_version 1; a newer version only adds fields, which are ignored."""

    project_id: str
    local_date: str
    group: str
    snapshot_id: str
    stored_at: datetime
    created: bool
    schema_version: int

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SnapshotStored:
        return cls(
            project_id=value["project_id"],
            local_date=value["local_date"],
            group=value["group"],
            snapshot_id=value["snapshot_id"],
            stored_at=datetime.fromisoformat(value["stored_at"]),
            created=value["created"],
            schema_version=value["schema_version"],
        )


@dataclass(frozen=True)
class DeliverySent:
    """Written for schema_version 1; a newer version only adds fields, which are ignored."""

    delivery_key: str
    connection: str
    project_id: str
    metric_id: str
    period: str
    destination: str
    receipt: dict[str, Any]
    incomplete: bool
    sent_at: datetime
    schema_version: int

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DeliverySent:
        return cls(
            delivery_key=value["delivery_key"],
            connection=value["connection"],
            project_id=value["project_id"],
            metric_id=value["metric_id"],
            period=value["period"],
            destination=value["destination"],
            receipt=value["receipt"],
            incomplete=value["incomplete"],
            sent_at=datetime.fromisoformat(value["sent_at"]),
            schema_version=value["schema_version"],
        )


Event = SnapshotStored | DeliverySent


@dataclass(frozen=True)
class Received:
    """One event and where it came from; the key is the project id or the connection name."""

    topic: str
    key: str
    event: Event


def _utf8(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode()


def _json(raw: bytes | None) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw or b"{}")
    return value


async def events(
    bootstrap: str,
    prefix: str,
    group_id: str,
    *,
    session_timeout_ms: int = 10_000,
) -> AsyncIterator[Received]:
    """Yield each event; its offset is committed when the caller asks for the next one.

    A short ``session_timeout_ms`` (a few seconds) makes joining the group
    quick on claritycast's embedded broker, which waits half of it.
    """
    parsers = {
        f"{prefix}{SNAPSHOTS_STORED}": SnapshotStored.from_json,
        f"{prefix}{DELIVERIES_SENT}": DeliverySent.from_json,
    }
    consumer = AIOKafkaConsumer(
        *parsers,
        bootstrap_servers=bootstrap.removeprefix("kafka://").replace(";", ","),
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 3),
        key_deserializer=_utf8,
        value_deserializer=_json,
    )
    await consumer.start()
    try:
        async for message in consumer:
            yield Received(message.topic, message.key, parsers[message.topic](message.value))
            partition = TopicPartition(message.topic, message.partition)
            await consumer.commit({partition: message.offset + 1})
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description="Print claritycast's stored and sent events.")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="host:port[,host:port]")
    parser.add_argument("--prefix", default="claritycast.", help="CLARITYCAST_TOPIC_PREFIX")
    parser.add_argument("--group", default="claritycast-example", help="consumer group id")
    args = parser.parse_args()
    async for received in events(args.bootstrap, args.prefix, args.group):
        event = received.event
        if isinstance(event, SnapshotStored):
            print(f"{event.project_id}: {event.group} of {event.local_date} stored")
        else:
            print(f"{event.connection}: {event.metric_id} for {event.period} sent")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
