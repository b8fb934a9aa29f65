"""Every topic claritycast uses: name, key, value model, partitions, retention.

Topics are a public contract (other services consume them), so they are
declared here and nowhere else. `bind` turns the specs into Faust topics on
one app, and `declare_all` creates them on the broker with their partition
count before any agent or producer touches them: a broker that auto-creates a
topic on first use (Tansu does) would otherwise pick its own partition count,
and co-partitioned stages would no longer agree on which partition holds a
project.

Keys are plain UTF-8 strings. Ingestion topics are keyed by project id, so
that all of a project's messages land on the same partition number in each of
them; delivery topics by connection name, so a project's many connections
spread across the delivery workers. The audit topic is keyed by the object
acted on, so one object's history stays in order.

Every record on every topic stays under `MAX_MESSAGE_BYTES` (256 KiB, a
quarter of Kafka's default 1 MB limit): large things (a Clarity answer's
blocks, a chart's PNG) stay in MongoDB and topics carry their reference.
`send_bounded` enforces it on every send; a record over it is a bug, raised
as `MessageTooLarge` and dead-lettered like any other handler error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import faust
from faust.types import TopicT

from claritycast.errors import MessageTooLarge
from models.audit import AuditEvent
from models.records import (
    ChartRendered,
    DeadLetter,
    DeliveryDue,
    DeliverySent,
    FetchGranted,
    FetchRequested,
    SnapshotFetched,
    SnapshotStored,
)

MAX_MESSAGE_BYTES = 256 * 1024


def encoded_size(key: str, value: faust.Record) -> int:
    """The bytes a record takes on a topic: its key and its JSON value."""
    return len(key.encode()) + len(value.dumps(serializer="json"))


def check_size(topic_name: str, key: str, value: faust.Record) -> None:
    """Refuse a record over `MAX_MESSAGE_BYTES`, naming what and how big (never its content)."""
    size = encoded_size(key, value)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"a {type(value).__name__} for {topic_name} is {size:,} bytes, over the "
            f"{MAX_MESSAGE_BYTES:,}-byte bound of every topic: large content must travel "
            "by reference"
        )


async def send_bounded(topic: TopicT, key: str, value: faust.Record) -> None:
    """Send one record on a Faust topic, within the size bound."""
    check_size(topic.get_topic_name(), key, value)
    await topic.send(key=key, value=value)


@dataclass(frozen=True)
class TopicSpec:
    """One topic's contract."""

    name: str
    key: str
    value: type[faust.Record]
    description: str
    retention: timedelta | None = timedelta(days=7)
    compacted: bool = False
    partitions: int | None = None  # None: the `partitions` setting

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


FETCH_REQUESTED = TopicSpec(
    name="fetch.requested",
    key="project_id",
    value=FetchRequested,
    description="A fetch wanted by the tick, connect or refresh, awaiting the quota check",
)
FETCH_GRANTED = TopicSpec(
    name="fetch.granted",
    key="project_id",
    value=FetchGranted,
    description="A fetch the quota check allowed and logged, for the fetch stage to make",
)
SNAPSHOTS_FETCHED = TopicSpec(
    name="snapshots.fetched",
    key="project_id",
    value=SnapshotFetched,
    description="A parsed Clarity response, waiting to be stored",
)
SNAPSHOTS_STORED = TopicSpec(
    name="snapshots.stored",
    key="project_id",
    value=SnapshotStored,
    description="A snapshot is durably stored in MongoDB (the event other services follow)",
    retention=timedelta(days=30),
)

DELIVERIES_DUE = TopicSpec(
    name="deliveries.due",
    key="connection",
    value=DeliveryDue,
    description="A connection's report for one period is due (from the tick or send-now)",
)
CHARTS_RENDERED = TopicSpec(
    name="charts.rendered",
    key="connection",
    value=ChartRendered,
    description="A report's chart and summary are stored in MongoDB, ready to send",
)
DELIVERIES_SENT = TopicSpec(
    name="deliveries.sent",
    key="connection",
    value=DeliverySent,
    description="A report reached Slack or an inbox, with the destination's receipt",
    retention=timedelta(days=30),
)

DEAD_QUOTA = TopicSpec(
    name="deadletters.quota",
    key="project_id",
    value=DeadLetter,
    description="A fetch request the quota check could not handle, with the error",
    retention=timedelta(days=30),
)
DEAD_FETCHES = TopicSpec(
    name="deadletters.fetch",
    key="project_id",
    value=DeadLetter,
    description="A fetch that failed for good (retries spent, or malformed), with its request",
    retention=timedelta(days=30),
)
DEAD_STORE = TopicSpec(
    name="deadletters.store",
    key="project_id",
    value=DeadLetter,
    description="A fetched snapshot the store stage could not store, with the error",
    retention=timedelta(days=30),
)
DEAD_RENDER = TopicSpec(
    name="deadletters.render",
    key="connection",
    value=DeadLetter,
    description="A due report the render stage could not draw, with the error",
    retention=timedelta(days=30),
)
DEAD_DELIVERIES = TopicSpec(
    name="deadletters.deliver",
    key="connection",
    value=DeadLetter,
    description="A delivery that failed for good (refused, or retries spent), with its message",
    retention=timedelta(days=30),
)

AUDIT = TopicSpec(
    name="audit",
    key="object",
    value=AuditEvent,
    description="An operator's action (who, what, on which object, the outcome), never a secret",
    retention=timedelta(days=365),
)

ALL: tuple[TopicSpec, ...] = (
    FETCH_REQUESTED,
    FETCH_GRANTED,
    SNAPSHOTS_FETCHED,
    SNAPSHOTS_STORED,
    DELIVERIES_DUE,
    CHARTS_RENDERED,
    DELIVERIES_SENT,
    DEAD_QUOTA,
    DEAD_FETCHES,
    DEAD_STORE,
    DEAD_RENDER,
    DEAD_DELIVERIES,
    AUDIT,
)

# Each stage's dead-letter topic, for messages its handler could not handle.
DEAD_LETTERS_BY_STAGE: dict[str, TopicSpec] = {
    "quota": DEAD_QUOTA,
    "fetch": DEAD_FETCHES,
    "store": DEAD_STORE,
    "render": DEAD_RENDER,
    "deliver": DEAD_DELIVERIES,
}


class Topics:
    """The declared topics bound to one Faust app."""

    def __init__(self, app: faust.App, prefix: str, partitions: int) -> None:
        self.prefix = prefix
        self.partitions = partitions
        self._by_name: dict[str, TopicT] = {
            spec.name: app.topic(
                spec.full_name(prefix),
                key_type=str,
                value_type=spec.value,
                key_serializer="raw",
                partitions=spec.partitions or partitions,
                retention=spec.retention,
                compacting=spec.compacted,
                deleting=not spec.compacted,
            )
            for spec in ALL
        }

    def __getitem__(self, spec: TopicSpec) -> TopicT:
        return self._by_name[spec.name]

    def __iter__(self) -> Iterator[TopicT]:
        return iter(self._by_name.values())

    async def declare_all(self) -> None:
        """Create every topic on the broker with its partition count (idempotent)."""
        for topic in self._by_name.values():
            await topic.declare()
