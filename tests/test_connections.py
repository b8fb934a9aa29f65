"""Connections and the delivery log against the real database: checks at `add`, claims, the tick."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from claritycast.delivery import connections as conns
from claritycast.delivery.log import SEND_LEASE, delivery_key, due_deliveries
from claritycast.errors import InputError
from claritycast.store.core import Store
from models import catalogue
from models.delivery import Attempt, ConnectionStatus, DeliveryState, DestinationKind
from models.documents import Organisation, Project

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@pytest.fixture
async def project(store: Store) -> Project:
    await store.add_organisation(Organisation("acme", "Acme", "Europe/Paris", NOW))
    shop = Project("shop-1", "Shop", "acme", connected_at=NOW)
    await store.add_project(shop, [m.id for m in catalogue.METRICS])
    return shop


async def test_a_connection_takes_its_organisations_timezone(
    store: Store, project: Project
) -> None:
    made = await conns.create_connection(
        store, project="Shop", metric="sessions", now=NOW, slack_channel="#web-metrics"
    )
    assert made.name == "shop-sessions-slack"
    assert made.timezone == "Europe/Paris"
    assert made.destination.kind is DestinationKind.SLACK
    assert made.schedule.describe() == "daily at 09:00"
    assert made.window_days == 30
    assert await store.get_connection(made.name) == made


async def test_an_email_connection_keeps_every_address(store: Store, project: Project) -> None:
    made = await conns.create_connection(
        store, project="shop-1", metric="top_pages_by_sessions", now=NOW,
        emails="ops@example.com; ana@example.org", schedule="weekly:mon", at="07:30",
        window_days=90, ai_summary=True, name="Weekly-Pages",
    )  # fmt: skip
    assert made.name == "weekly-pages"
    assert made.destination.addresses == ("ops@example.com", "ana@example.org")
    assert made.schedule.describe() == "weekly on Monday at 07:30"
    assert (made.window_days, made.ai_summary) == (90, True)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"project": "nope"}, "no project 'nope'"),
        ({"metric": "bounce_rate"}, "unknown metric 'bounce_rate'"),
        ({"slack_channel": None, "emails": "not-an-address"}, "malformed address"),
        ({"slack_channel": "#Has Spaces"}, "invalid Slack channel"),
        ({"emails": "a@example.com"}, "exactly one destination"),
        ({"slack_channel": None}, "exactly one destination"),
        ({"at": "25:00"}, "invalid time"),
        ({"schedule": "monthly:31"}, "invalid schedule"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"window_days": 14}, "invalid window"),
        ({"name": "no spaces please"}, "invalid connection name"),
    ],
)
async def test_bad_input_is_refused_at_add_with_one_line(
    store: Store, project: Project, changes: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "project": "Shop", "metric": "sessions", "now": NOW, "slack_channel": "#web",
    }  # fmt: skip
    arguments.update(changes)
    with pytest.raises(InputError, match=message) as caught:
        await conns.create_connection(store, **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert await store.connections() == []


async def test_a_taken_name_is_refused(store: Store, project: Project) -> None:
    await conns.create_connection(store, project="Shop", metric="sessions", now=NOW,
                                  slack_channel="#web")  # fmt: skip
    with pytest.raises(InputError, match="exists already"):
        await conns.create_connection(store, project="Shop", metric="sessions", now=NOW,
                                      slack_channel="#other")  # fmt: skip


async def test_pause_resume_remove(store: Store, project: Project) -> None:
    made = await conns.create_connection(store, project="Shop", metric="sessions", now=NOW,
                                         slack_channel="#web")  # fmt: skip
    await conns.pause(store, made.name)
    paused = await store.get_connection(made.name)
    assert paused is not None and paused.status is ConnectionStatus.PAUSED
    assert await due_deliveries(store, NOW + timedelta(days=1)) == []
    with pytest.raises(InputError, match="is paused"):
        await conns.send_now(store, made.name, NOW)
    await conns.resume(store, made.name)
    assert len(await due_deliveries(store, NOW + timedelta(days=1))) == 1
    await conns.remove(store, made.name)
    with pytest.raises(InputError, match="no connection"):
        await conns.remove(store, made.name)


async def test_the_tick_opens_each_period_once_and_rechecks_after_a_lease(
    store: Store, project: Project
) -> None:
    made = await conns.create_connection(store, project="Shop", metric="sessions", now=NOW,
                                         slack_channel="#web")  # fmt: skip
    # Created at 11:00 Paris: today's 09:00 was before it existed, so nothing is due yet.
    assert await due_deliveries(store, NOW) == []
    tomorrow = datetime(2026, 11, 30, 8, 0, 5, tzinfo=UTC)  # 09:00:05 in Paris
    doubled = await asyncio.gather(*(due_deliveries(store, tomorrow) for _ in range(3)))
    messages = [m for batch in doubled for m in batch]
    assert [m.delivery_key for m in messages] == [delivery_key(made.name, "2026-11-30")]
    assert messages[0].scheduled_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert await due_deliveries(store, tomorrow + timedelta(minutes=5)) == []
    again = await due_deliveries(store, tomorrow + timedelta(minutes=11))
    assert [m.delivery_key for m in again] == [messages[0].delivery_key]


async def test_only_one_worker_claims_a_delivery_and_a_sent_one_stays_sent(
    store: Store, project: Project
) -> None:
    key = "c/2026-11-30"
    await store.open_delivery(
        key, connection="c", period="2026-11-30", reason="schedule", scheduled_at=NOW, now=NOW,
        next_check_at=NOW,
    )  # fmt: skip
    assert await store.claim_delivery(key, "w1", NOW, SEND_LEASE) is None  # not rendered yet
    await store.move_delivery(key, DeliveryState.RENDERED)
    claims = await asyncio.gather(
        *(store.claim_delivery(key, f"w{i}", NOW, SEND_LEASE) for i in range(5))
    )
    assert sum(claim is not None for claim in claims) == 1
    # A claim held by a live worker is not taken; a stale one (its worker died) is.
    assert await store.claim_delivery(key, "w9", NOW + timedelta(minutes=1), SEND_LEASE) is None
    later = NOW + SEND_LEASE + timedelta(seconds=1)
    assert await store.claim_delivery(key, "w9", later, SEND_LEASE) is not None
    await store.finish_attempt(
        key, Attempt(later, "w9", "sent"), DeliveryState.SENT, receipt={"ts": "1.2"}
    )
    assert await store.claim_delivery(key, "w1", later + SEND_LEASE * 2, SEND_LEASE) is None
    assert not await store.move_delivery(key, DeliveryState.DUE)
    sent = await store.get_delivery(key)
    assert sent is not None
    assert sent.state is DeliveryState.SENT
    assert sent.receipt == {"ts": "1.2"}
    assert [a.outcome for a in sent.attempts] == ["sent"]
