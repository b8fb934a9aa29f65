"""Clarity's error table, end to end, and dead letters with their replay.

Every stage runs in the test's process on a manual clock shared with the
Clarity simulator, the Slack stand-in takes the owner's notices, and the tick
finds what to do from the store, as in production.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from claritycast.clock import ManualClock
from claritycast.delivery.connections import create_connection, resume
from claritycast.ingest.fetch_failures import MAX_FETCH_ATTEMPTS, RETRY_BACKOFF
from claritycast.ingest.replay import replay
from claritycast.runtime.app import ClarityCastApp
from claritycast.runtime.embedded import Endpoints
from claritycast.settings import Settings, load_settings
from claritycast.standins.clarity import FAULT_ANSWERS, ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES
from models.delivery import ConnectionStatus, DeliveryState
from models.documents import Organisation, Project, ProjectStatus
from tests.helpers import read_topic, seed_history, sender, wait_for

pytestmark = pytest.mark.slow

TIMEZONE = "Europe/Paris"
START = datetime(2026, 11, 20, 23, 5, tzinfo=UTC)  # 00:05 on 21 Nov in Paris
YESTERDAY = date(2026, 11, 20)
# Long enough for several ticks (every 0.2 s): time for what must not happen.
TICKS_S = 1.0


@pytest.fixture
def chain_settings(
    settings_values: dict[str, object], simulator: ClaritySimulator, slack: SlackStandin
) -> Settings:
    return load_settings(
        **settings_values, clarity_api_url=simulator.export_url, tick_interval_s=0.2,
        slack_token=slack.token, slack_api_url=slack.base_url, delivery_deadline_s=1,
    )  # fmt: skip


@pytest.fixture
async def shop(store: Store, simulator: ClaritySimulator) -> Project:
    long_ago = START - timedelta(days=40)
    await store.add_organisation(Organisation("acme", "Acme", TIMEZONE, long_ago))
    token = simulator.add_project("shop").token
    sealed = store.seal_token(token, "shop")
    project = Project("shop", "Shop", "acme", sealed, connected_at=long_ago)
    await store.add_project(project, [m.id for m in catalogue.METRICS])
    return project


async def stored(store: Store, groups: int = 7) -> bool:
    return len(await store.groups_stored("shop", YESTERDAY.isoformat())) >= groups


def requests_for(simulator: ClaritySimulator, dimension: str | None = None) -> list[object]:
    return [
        r
        for r in simulator.requests_for("shop")
        if dimension is None or r.params.get("dimension1", "overall") == dimension
    ]


async def test_server_errors_are_retried_within_the_quota_then_dead_lettered_and_replayed(
    chain: ClarityCastApp,
    shop: Project,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
    chain_settings: Settings,
    endpoints: Endpoints,
) -> None:
    simulator.set_fault("shop", "server-error", only="URL")
    await wait_for(lambda: stored(store, 6))
    assert len(requests_for(simulator, "URL")) == 1
    # The tick asks again after each backoff, never sooner, until the attempts are spent.
    for backoff in RETRY_BACKOFF:
        clock.advance(backoff - timedelta(seconds=30))
        await wait_for(lambda: _quiet(store, clock))
        attempts = len(requests_for(simulator, "URL"))
        clock.advance(timedelta(seconds=31))
        await wait_for(lambda n=attempts: _requests(simulator, "URL", n + 1))
    assert len(requests_for(simulator, "URL")) == MAX_FETCH_ATTEMPTS
    letters = await wait_for(lambda: _dead_letters(store, "fetch"))
    ((letter, state),) = letters
    assert (letter.reason, letter.attempts, state) == ("server error", MAX_FETCH_ATTEMPTS, "dead")
    assert letter.original["group"] == "url" and letter.original["local_date"] == str(YESTERDAY)
    topic = f"{chain_settings.topic_prefix}deadletters.fetch"
    (on_topic,) = await read_topic(endpoints.kafka_url, topic, 1)
    assert on_topic["dead_letter_id"] == letter.dead_letter_id

    # Held: hours later, the tick still does not ask for it.
    clock.advance(timedelta(hours=2))
    await asyncio.sleep(TICKS_S)
    assert len(requests_for(simulator, "URL")) == MAX_FETCH_ATTEMPTS
    assert len(simulator.requests_for("shop")) <= 10

    # Clarity recovers; replay sends it back through the quota check, once.
    simulator.set_fault("shop", None)
    results = await replay(store, sender(chain), clock.now(), stage="fetch", project="Shop")
    assert [r.outcome for r in results] == ["sent"]
    await wait_for(lambda: stored(store, 7))
    assert len(requests_for(simulator, "URL")) == MAX_FETCH_ATTEMPTS + 1
    assert await replay(store, sender(chain), clock.now(), stage="fetch") == []
    dead = await store.dead_letters(stage="fetch", state=None)
    assert [state for _, state in dead] == ["replayed"]


async def _quiet(store: Store, clock: ManualClock) -> bool:
    calls = await store.calls_since("shop", clock.now() - timedelta(days=2))
    return all(call.outcome not in ("granted", "calling") for call in calls)


async def _requests(simulator: ClaritySimulator, dimension: str, count: int) -> bool:
    return len(requests_for(simulator, dimension)) >= count


async def _dead_letters(store: Store, stage: str) -> list[object] | None:
    return await store.dead_letters(stage=stage) or None


@pytest.mark.parametrize("fault", ["wrong-shape-200", "garbage-200"])
async def test_a_malformed_answer_is_dead_lettered_at_once_with_its_body(
    chain: ClarityCastApp, shop: Project, simulator: ClaritySimulator, store: Store, fault: str
) -> None:
    """JSON of the wrong shape, or a body that is not JSON at all, would come back the same."""
    simulator.set_fault("shop", fault, only="Browser")
    ((letter, _),) = await wait_for(lambda: _dead_letters(store, "fetch"))
    assert letter.reason == "malformed response" and letter.attempts == 1
    assert letter.body == FAULT_ANSWERS[fault][1].decode()
    await wait_for(lambda: stored(store, 6))
    assert len(requests_for(simulator, "Browser")) == 1


async def test_a_refused_token_stops_requests_and_tells_the_owner_once(
    chain: ClarityCastApp,
    shop: Project,
    simulator: ClaritySimulator,
    store: Store,
    slack: SlackStandin,
    clock: ManualClock,
) -> None:
    await create_connection(
        store, project="Shop", metric="sessions", now=START, slack_channel="#web"
    )
    simulator.set_fault("shop", "unauthorized")
    project = await wait_for(lambda: _in_status(store, ProjectStatus.TOKEN_INVALID))
    assert project.status_reason == "token invalid (401)"
    notice = await wait_for(lambda: _messages(slack, 1))
    assert "Clarity token refused · Shop" in str(notice[0].blocks)
    assert notice[0].files == {}  # words only, no chart
    made = len(simulator.requests_for("shop"))
    assert made <= 7
    clock.advance(timedelta(days=1))  # the next night: nothing is asked for
    await asyncio.sleep(TICKS_S)
    await wait_for(lambda: _settled_deliveries(store))
    assert len(simulator.requests_for("shop")) == made
    notices = [m for m in slack.messages if "token refused" in str(m.blocks)]
    assert len(notices) == 1


async def _in_status(store: Store, status: str) -> Project | None:
    project = await store.get_project("shop")
    return project if project is not None and project.status == status else None


async def _messages(slack: SlackStandin, count: int) -> list[object] | None:
    return slack.messages if len(slack.messages) >= count else None


async def _settled_deliveries(store: Store) -> bool:
    return all(d.state.final for d in await store.deliveries())


async def test_429_exhausts_until_local_midnight_then_the_pull_resumes(
    chain: ClarityCastApp,
    shop: Project,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
) -> None:
    simulator.set_fault("shop", "quota")
    project = await wait_for(lambda: _exhausted(store))
    midnight = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)  # the next midnight in Paris
    assert project.exhausted_until == midnight
    made = len(simulator.requests_for("shop"))
    simulator.set_fault("shop", None)
    clock.set(midnight - timedelta(minutes=1))
    await asyncio.sleep(TICKS_S)
    assert len(simulator.requests_for("shop")) == made, "nothing asked while exhausted"
    clock.set(midnight + timedelta(minutes=1))
    await wait_for(lambda: _total(simulator, made + 1))  # resumed at midnight
    await wait_for(lambda: _quiet(store, clock))
    clock.set(midnight + timedelta(minutes=12))  # past the 24 h of the refused calls
    today = YESTERDAY + timedelta(days=1)
    await wait_for(lambda: _all_stored(store, today.isoformat()))  # the new yesterday, whole
    times = sorted(r.at for r in simulator.requests_for("shop"))
    assert all(
        sum(1 for t in times if start <= t < start + timedelta(hours=24)) <= 10 for start in times
    )


async def _total(simulator: ClaritySimulator, count: int) -> bool:
    return len(simulator.requests_for("shop")) >= count


async def _exhausted(store: Store) -> Project | None:
    project = await store.get_project("shop")
    return project if project is not None and project.exhausted_until else None


async def _all_stored(store: Store, local_date: str) -> bool:
    return await store.groups_stored("shop", local_date) == set(GROUP_NAMES)


async def test_a_refused_delivery_is_dead_lettered_and_replayed_once_fixed(
    chain: ClarityCastApp, shop: Project, store: Store, slack: SlackStandin, clock: ManualClock
) -> None:
    await seed_history(store, "shop", TIMEZONE, YESTERDAY - timedelta(days=6), YESTERDAY,
                       GROUP_NAMES)  # fmt: skip
    await create_connection(
        store, project="Shop", metric="sessions", now=START, slack_channel="#secret"
    )
    clock.set(datetime(2026, 11, 21, 8, 0, 30, tzinfo=UTC))  # 09:00 in Paris
    ((letter, _),) = await wait_for(lambda: _dead_letters(store, "deliver"))
    assert letter.reason == "not_in_channel"
    connection = await store.get_connection("shop-sessions-slack")
    assert connection is not None and connection.status is ConnectionStatus.PAUSED

    # Replay refuses while the cause is not fixed; then works once, and only once.
    skipped = await replay(store, sender(chain), clock.now(), stage="deliver")
    assert [r.outcome for r in skipped] == ["skipped"] and "resume" in skipped[0].detail
    slack.channel("secret").member = True  # the app was invited
    await resume(store, "shop-sessions-slack")
    results = await replay(store, sender(chain), clock.now(), stage="deliver")
    assert [r.outcome for r in results] == ["sent"]
    key = letter.original["delivery_key"]
    sent = await wait_for(lambda: _delivery_state(store, key, DeliveryState.SENT))
    assert [a.outcome for a in sent.attempts] == ["not_in_channel", "sent"]
    assert await replay(store, sender(chain), clock.now(), stage="deliver") == []
    await wait_for(lambda: _settled_deliveries(store))
    assert len(slack.messages) == 1


async def _delivery_state(store: Store, key: str, state: DeliveryState) -> object | None:
    delivery = await store.get_delivery(key)
    return delivery if delivery is not None and delivery.state is state else None
