"""Scale-out: two `claritycast worker --stages render-deliver` processes share the work."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from claritycast.clock import SystemClock
from claritycast.delivery.connections import create_connection
from claritycast.delivery.log import due_deliveries
from claritycast.runtime.app import app_id_for
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from models import catalogue
from models.delivery import DeliveryState
from models.documents import Organisation, Project
from tests.helpers import WorkerProcess, bootstrap, seed_history, wait_for
from topics import DELIVERIES_DUE

pytestmark = pytest.mark.slow

CONNECTIONS = 16
STAGES = ("render", "deliver")


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    standin = SlackStandin()
    for i in range(CONNECTIONS):
        standin.add_channel(f"reports-{i:02d}")
    standin.latency_s = 0.02  # a little like a real Slack: each call waits
    async with standin:
        yield standin


async def seed(store: Store) -> None:
    """A project with 30 days of history and 16 daily connections, all due at 00:00 UTC."""
    now = SystemClock().now()
    await store.add_organisation(Organisation("acme", "Acme", "UTC", now))
    project = Project("shop-1", "Shop", "acme", connected_at=now - timedelta(days=40))
    await store.add_project(project, [m.id for m in catalogue.METRICS])
    last = now.date() - timedelta(days=1)
    await seed_history(store, "shop-1", "UTC", last - timedelta(days=29), last, ["overall"])
    for i in range(CONNECTIONS):
        await create_connection(
            store, project="shop-1", metric="sessions", now=now - timedelta(days=2),
            slack_channel=f"#reports-{i:02d}", at="00:00", timezone="UTC", name=f"report-{i:02d}",
        )  # fmt: skip


async def group_stable(kafka_url: str, group: str, members: int, timeout_s: float = 30) -> None:
    """Wait until the broker says the consumer group settled with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(kafka_url))
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            (described,) = await admin.describe_consumer_groups([group])
            _, _, state, _, _, joined = described.groups[0]
            if state == "Stable" and len(joined) == members:
                return
            assert time.monotonic() < deadline, f"group {group}: {state}, {len(joined)} members"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@pytest.mark.timeout(90)
async def test_two_workers_of_one_group_split_the_partitions_and_send_each_report_once(
    settings: Settings, settings_env: dict[str, str], store: Store, slack: SlackStandin
) -> None:
    """Two render-deliver workers share the partitions; every report goes out once, from one."""
    await seed(store)
    partitions = list(range(settings.partitions))
    partition_of = {
        f"report-{i:02d}": DefaultPartitioner()(f"report-{i:02d}".encode(), partitions, partitions)
        for i in range(CONNECTIONS)
    }
    assert set(partition_of.values()) == set(partitions)  # every partition carries some reports
    env = settings_env | {
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "CLARITYCAST_DELIVERY_GRACE_S": "0",
    }
    assert settings.kafka_url is not None
    workers = [WorkerProcess(env, stages="render-deliver") for _ in range(2)]
    async with Publisher(settings.kafka_url, settings.topic_prefix, settings.partitions) as out:
        try:
            await asyncio.gather(*(worker.start(store) for worker in workers))
            await group_stable(settings.kafka_url, app_id_for(settings, STAGES), members=2)
            due = await due_deliveries(store, SystemClock().now())
            assert len(due) == CONNECTIONS
            for message in due:
                await out.send(DELIVERIES_DUE, message.connection, message)

            async def all_sent() -> bool:
                return await store.db.deliveries.count_documents({"state": "sent"}) == CONNECTIONS

            await wait_for(all_sent, timeout_s=45, interval_s=0.2)
        finally:
            codes = [await worker.stop() for worker in workers]
    assert codes == [0, 0]

    assert len(slack.messages) == CONNECTIONS
    assert {m.channel_name for m in slack.messages} == {f"reports-{i:02d}" for i in range(16)}
    served_by: defaultdict[str, set[int]] = defaultdict(set)
    for delivery in await store.deliveries(limit=100):
        assert delivery.state is DeliveryState.SENT
        (attempt,) = delivery.attempts
        served_by[attempt.worker].add(partition_of[delivery.connection])
    pids = {int(worker.rsplit(":", 1)[1]) for worker in served_by}
    assert pids == {worker.process.pid for worker in workers if worker.process}
    first, second = served_by.values()
    assert not first & second  # a partition belongs to one worker of the group
    assert first | second == set(partitions)
