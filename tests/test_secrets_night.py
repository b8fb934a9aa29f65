"""A simulated night leaves no secret anywhere: not in the database, a topic, or a log line.

Two projects are connected (one whose token Clarity refuses, then replaced), a
key rotation runs, the night's pull and the morning's Slack report go through
every stage on a manual clock. Then everything is read back: every field of
every document of every collection, every record of every topic, and the
whole log at DEBUG. None may hold a token, the Slack token or the key, nor any
12 characters of one.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog
from bson import Binary

from claritycast.clock import ManualClock
from claritycast.delivery.connections import create_connection
from claritycast.ingest.audit import audited
from claritycast.ingest.connect import connect_project
from claritycast.ingest.keys import rotate_keys
from claritycast.ingest.tokens import set_token
from claritycast.keyring import KEY_PREFIX
from claritycast.logs import configure_logging
from claritycast.runtime.app import ClarityCastApp
from claritycast.settings import Settings, load_settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from models.audit import Action, Actor, ActorKind
from models.delivery import DeliveryState
from models.documents import ProjectStatus
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import make_token, sender, wait_for
from tests.leaks import dump_database, dump_topics, json_lines, leaks

pytestmark = pytest.mark.slow

START = datetime.fromisoformat("2026-11-24T14:30:00+00:00")
# The night after next: connect's 7 requests are over 24 h old, the pull is whole.
NIGHT = datetime.fromisoformat("2026-11-26T00:05:00+00:00")
NIGHT_DAY = "2026-11-25"
REPORT_TIME = datetime.fromisoformat("2026-11-26T09:01:00+00:00")


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Every log line of the test, as JSON at DEBUG, from before the chain starts."""
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    configure_logging("WARNING", "human", stream=io.StringIO())
    structlog.reset_defaults()


@pytest.fixture
def chain_settings(
    log_output: io.StringIO,
    settings_values: dict[str, Any],
    simulator: ClaritySimulator,
    slack: SlackStandin,
) -> Settings:
    return load_settings(
        **settings_values, clarity_api_url=simulator.export_url, tick_interval_s=0.2,
        slack_token=slack.token, slack_api_url=slack.base_url, delivery_deadline_s=2,
        log_level="DEBUG",
    )  # fmt: skip


async def test_a_simulated_night_leaves_no_secret_in_the_database_topics_or_logs(
    chain: ClarityCastApp,
    store: Store,
    simulator: ClaritySimulator,
    slack: SlackStandin,
    clock: ManualClock,
    settings: Settings,
    log_output: io.StringIO,
) -> None:
    """The database dump, every topic's records and the whole log hold no secret."""
    shop = simulator.add_project("shop").token
    gone = simulator.add_project("gone").token
    simulator.set_fault("gone", "unauthorized")
    send = sender(chain)
    operator = Actor(ActorKind.CLI, "night-test@localhost")

    shop_project = (await connect_project(store, send, clock, token=shop, label="Shop")).project
    gone_project = (await connect_project(store, send, clock, token=gone, label="Gone")).project

    async def refused() -> bool:
        project = await store.get_project(gone_project.project_id)
        return project is not None and project.status == ProjectStatus.TOKEN_INVALID

    await wait_for(refused, timeout_s=60)
    simulator.set_fault("gone", None)
    target = f"project:{gone_project.project_id}"
    async with audited(store, send, operator, Action.PROJECT_SET_TOKEN, target):
        await set_token(store, "Gone", gone, clock)
    async with audited(store, send, operator, Action.KEYS_ROTATE, "keys") as note:
        note.detail = (await rotate_keys(store, clock.now())).describe()
    connection = await create_connection(
        store, project="Shop", metric="sessions", now=clock.now(), slack_channel="#web"
    )

    clock.set(NIGHT)

    async def night_pulled() -> bool:
        for project in (shop_project, gone_project):
            if len(await store.groups_stored(project.project_id, NIGHT_DAY)) < 7:
                return False
        return True

    await wait_for(night_pulled, timeout_s=90)
    clock.set(REPORT_TIME)

    async def reported() -> bool:
        found = await store.deliveries(connection.name, 5)
        return any(delivery.state is DeliveryState.SENT for delivery in found)

    await wait_for(reported, timeout_s=90)
    assert len(slack.messages) == 1

    secrets = {
        "Shop's Clarity token": shop,
        "Gone's Clarity token": gone,
        "the Slack token": slack.token,
        "the secret key": TEST_SECRET_KEY.removeprefix(KEY_PREFIX),
    }
    database = await dump_database(store.db)
    assert "projects:" in database and "audit:" in database and "snapshots:" in database
    assert leaks(database, secrets) == []

    assert settings.kafka_url is not None
    topics = await dump_topics(settings.kafka_url, settings.app_id)
    for name in ("fetch.granted", "snapshots.stored", "deliveries.sent", "audit"):
        assert topics.get(f"{settings.topic_prefix}{name}"), f"{name} carried nothing"
    assert f"{settings.app_id}-quota-changelog" in topics
    for topic, records in topics.items():
        assert leaks("\n".join(records), secrets) == [], topic

    logged = log_output.getvalue()
    events = {line.get("event") for line in json_lines(logged)}
    assert {"fetch.ok", "fetch.failed", "project.token_set", "keys.rotated", "slack.posted"} <= (
        events
    ), "the whole night is in the log"
    assert leaks(logged, secrets) == []


async def test_the_leak_finder_sees_through_compression_and_nesting(store: Store) -> None:
    """A token's piece nested, or inside a zlib-compressed binary, is found: the dump is whole."""
    token = make_token("hidden")
    piece = token[40:52]
    await store.db.scratch.insert_many([
        {"_id": "nested", "a": [{"b": {"c": f"…{piece}…"}}]},
        {"_id": "packed", "rows_z": Binary(zlib.compress(f'{{"t": "{token}"}}'.encode()))},
    ])  # fmt: skip
    assert leaks(await dump_database(store.db), {"the token": token}) == ["the token"]
    await store.db.scratch.delete_one({"_id": "nested"})
    assert leaks(await dump_database(store.db), {"the token": token}) == ["the token"]
    await store.db.scratch.delete_one({"_id": "packed"})
    assert leaks(await dump_database(store.db), {"the token": token}) == []
