"""Send records to claritycast's topics from outside a worker (CLI commands).

Topics are declared first, with their partition count and retention, exactly
as the workers declare them: a broker that auto-creates topics on first use
would otherwise choose its own partition count. Each record is sent and
acknowledged on its own: a command sends a few, and waits for each.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from claritycast.errors import BrokerUnavailable
from topics import ALL, TopicSpec, check_size


def bootstrap_servers(kafka_url: str) -> str:
    return ",".join(server.removeprefix("kafka://") for server in kafka_url.split(";"))


def topic_config(spec: TopicSpec) -> dict[str, str]:
    config = {"cleanup.policy": "compact" if spec.compacted else "delete"}
    if spec.retention is not None:
        config["retention.ms"] = str(int(spec.retention.total_seconds() * 1000))
    return config


class Publisher:
    """A small producer for the declared topics."""

    def __init__(self, kafka_url: str, prefix: str, partitions: int, replication: int = 1) -> None:
        self.bootstrap = bootstrap_servers(kafka_url)
        self.prefix = prefix
        self.partitions = partitions
        self.replication = replication
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        try:
            await self._declare()
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, acks="all", linger_ms=0
            )
            await self._producer.start()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None

    async def _declare(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(
                    spec.full_name(self.prefix),
                    spec.partitions or self.partitions,
                    self.replication,
                    topic_configs=topic_config(spec),
                )
                for spec in ALL
                if spec.full_name(self.prefix) not in existing
            ]
            if wanted:
                with contextlib.suppress(TopicAlreadyExistsError):  # a worker was quicker
                    await admin.create_topics(wanted)
        finally:
            await admin.close()

    async def send(self, spec: TopicSpec, key: str, record: faust.Record) -> None:
        assert self._producer is not None, "Publisher.start() first"
        check_size(spec.name, key, record)
        try:
            await self._producer.send_and_wait(
                spec.full_name(self.prefix), record.dumps(serializer="json"), key=key.encode()
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka refused a message for {spec.name}: {exc}") from None

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
