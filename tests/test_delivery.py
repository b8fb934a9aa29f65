"""The delivery half end to end: real broker, database, SMTP server, Slack and AI stand-ins.

A worker runs every stage in the test's event loop on a manual clock; the
tick finds what is due from the store, as in production.
"""

from __future__ import annotations

import email
import email.policy
import io
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import trustme
from PIL import Image

from claritycast.clock import ManualClock
from claritycast.delivery.connections import create_connection, pause
from claritycast.delivery.log import delivery_key
from claritycast.reports.series import breakdown, day_value
from claritycast.runtime.app import ClarityCastApp, create_app
from claritycast.runtime.embedded import Endpoints
from claritycast.runtime.ports import free_port
from claritycast.settings import Settings, load_settings
from claritycast.standins.ai import AIStandin
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models import catalogue
from models.clarity import ClarityResponse
from models.delivery import ConnectionStatus, Delivery, DeliveryState
from models.documents import Organisation, Project
from models.records import ChartRendered, DeliveryDue
from tests.helpers import history_snapshot, produce, read_topic, running_app, seed_history, wait_for

pytestmark = pytest.mark.slow

TIMEZONE = "Europe/Paris"
TODAY = date(2026, 11, 20)
LAST = TODAY - timedelta(days=1)  # the last day a report sent today shows
NINE = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # 09:00 in Paris
PROJECT = "shop-1"
# The tick still asks for yesterday's missing groups: let those fetches fail
# at once on loopback, never reach out to the real Clarity.
NO_CLARITY = f"http://127.0.0.1:{free_port()}/export"
START = NINE - timedelta(minutes=5)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def smtp(ca: trustme.CA) -> AsyncIterator[SmtpCatcher]:
    """A real SMTP server that insists on STARTTLS with a certificate our CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    async with SmtpCatcher(tls_context=context, require_starttls=True) as catcher:
        yield catcher


@pytest.fixture
async def ai() -> AsyncIterator[AIStandin]:
    async with AIStandin() as standin:
        yield standin


@pytest.fixture
def chain_settings(
    settings_values: dict[str, object],
    smtp: SmtpCatcher,
    slack: SlackStandin,
    ai: AIStandin,
    ca: trustme.CA,
    tmp_path,
) -> Settings:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return load_settings(
        **settings_values, tick_interval_s=0.2, slack_token=slack.token,
        slack_api_url=slack.base_url, smtp_host="127.0.0.1", smtp_port=smtp.port,
        smtp_security="starttls", smtp_ca_file=ca_file, smtp_from="reports@claritycast.test",
        summariser_url=ai.api_url, summariser_model="test", delivery_grace_s=3600,
        delivery_deadline_s=2, clarity_api_url=NO_CLARITY,
    )  # fmt: skip


@pytest.fixture
async def shop(store: Store) -> Project:
    """A project with 30 days of history, connected long ago."""
    long_ago = NINE - timedelta(days=60)
    await store.add_organisation(Organisation("acme", "Acme", TIMEZONE, long_ago))
    project = Project(PROJECT, "Shop", "acme", connected_at=long_ago)
    await store.add_project(project, [m.id for m in catalogue.METRICS])
    return project


async def connect(store: Store, name: str, metric: str, **destination: str | bool) -> None:
    """A connection made yesterday just after its 09:00: today's report is its first.

    Made at 09:00 itself, yesterday's send would be due too, and a tick landing
    between a test's connections and its move of the clock would send it.
    """
    await create_connection(
        store, project=PROJECT, metric=metric, now=NINE - timedelta(days=1, minutes=-1),
        name=name, **destination,  # type: ignore[arg-type]
    )  # fmt: skip


async def final(store: Store, key: str, timeout_s: float = 60) -> Delivery:
    async def probe() -> Delivery | None:
        delivery = await store.get_delivery(key)
        return delivery if delivery is not None and delivery.state.final else None

    return await wait_for(probe, timeout_s=timeout_s)


def response(day: date, group: str) -> ClarityResponse:
    return ClarityResponse.from_json(history_snapshot(PROJECT, day, group, TIMEZONE).blocks)


async def test_a_scheduled_report_reaches_slack_and_email_once(
    store: Store,
    shop: Project,
    slack: SlackStandin,
    smtp: SmtpCatcher,
    chain_settings: Settings,
    endpoints: Endpoints,
    clock: ManualClock,
) -> None:
    """On its schedule, the right chart and summary go out once, whatever is redelivered."""
    await seed_history(
        store, PROJECT, TIMEZONE, LAST - timedelta(days=40), LAST, ["overall", "url"]
    )
    await connect(store, "shop-slack", "sessions", slack_channel="#web", ai_summary=True)
    await connect(store, "shop-email", "top_pages_by_sessions", emails="ops@example.com")
    slack_key = delivery_key("shop-slack", TODAY.isoformat())
    email_key = delivery_key("shop-email", TODAY.isoformat())

    app = create_app(chain_settings, ["all"], endpoints, clock)
    async with running_app(app):
        assert await store.get_delivery(slack_key) is None  # 08:55: not yet
        clock.set(NINE + timedelta(seconds=30))
        to_slack = await final(store, slack_key)
        to_email = await final(store, email_key)

        # Slack: one message, the chart uploaded and shown with its alt text.
        assert to_slack.state is DeliveryState.SENT
        assert len(slack.messages) == 1
        posted = slack.messages[0]
        assert posted.channel_name == "web"
        blocks = {block["type"]: block for block in posted.blocks}
        assert blocks["header"]["text"]["text"] == "Sessions · Shop"
        assert blocks["image"]["slack_file"]["id"] == to_slack.receipt["file_id"]
        assert "Sessions" in blocks["image"]["alt_text"]
        assert to_slack.receipt["ts"] == posted.ts
        image = Image.open(io.BytesIO(posted.files[to_slack.receipt["file_id"]]))
        assert image.format == "PNG" and image.size == (1600, 900)
        # The right numbers: the AI summary was asked about the last stored day.
        sessions = day_value(catalogue.get("sessions"), response(LAST, "overall"))
        assert sessions is not None
        assert to_slack.summary_source == "ai"
        assert f"{sessions:,.0f}" in blocks["section"]["text"]["text"]

        # Email: over STARTTLS, the chart as a related PNG that the HTML references.
        assert to_email.state is DeliveryState.SENT
        assert len(smtp.messages) == 1
        caught = smtp.messages[0]
        assert caught.tls and caught.rcpt_tos == ("ops@example.com",)
        message = email.message_from_bytes(caught.data, policy=email.policy.default)
        assert "20 Nov 2026" in message["Subject"]
        assert message["Message-ID"] == to_email.receipt["message_id"]
        html = message.get_body(("html",)).get_content()
        image_part = next(p for p in message.walk() if p.get_content_type() == "image/png")
        assert f"cid:{image_part['Content-ID'].strip().strip('<>')}" in html
        top_page = breakdown(
            catalogue.get("top_pages_by_sessions"), [response(LAST, "url")], top_n=1
        )[0][0]
        text = message.get_body(("plain",)).get_content()
        assert top_page.split("/")[-1] in text

        # Redelivered messages and doubled ticks send nothing more.
        due_topic = f"{chain_settings.topic_prefix}deliveries.due"
        rendered_topic = f"{chain_settings.topic_prefix}charts.rendered"
        dues = await read_topic(endpoints.kafka_url, due_topic, 2)
        rendered = await read_topic(endpoints.kafka_url, rendered_topic, 2)
        assert len(dues) == 2 and len(rendered) == 2
        for value in dues:
            await produce(endpoints.kafka_url, due_topic, value["connection"],
                          DeliveryDue.from_data(value))  # fmt: skip
        for value in rendered:
            await produce(endpoints.kafka_url, rendered_topic, value["connection"],
                          ChartRendered.from_data(value))  # fmt: skip
        clock.advance(timedelta(minutes=11))  # past every recheck lease
        await wait_for(lambda: _received(app, due_topic, 4), timeout_s=30)
        await wait_for(lambda: _received(app, rendered_topic, 4), timeout_s=30)
        assert len(slack.messages) == 1 and len(smtp.messages) == 1

    # A new worker in a new consumer group replays every message from the start.
    replay = create_app(
        load_settings(**(chain_settings.model_dump() | {"app_id": f"{app.conf.id}-b"})),
        ["render", "deliver"], endpoints, clock,
    )  # fmt: skip
    async with running_app(replay):
        await wait_for(lambda: _received(replay, due_topic, 4), timeout_s=60)
        await wait_for(lambda: _received(replay, rendered_topic, 4), timeout_s=60)
    assert len(slack.messages) == 1 and len(smtp.messages) == 1
    sent = await read_topic(
        endpoints.kafka_url, f"{chain_settings.topic_prefix}deliveries.sent", 3, timeout_s=3
    )
    assert sorted(value["destination"] for value in sent) == ["email", "slack"]
    log = {d.key: d for d in await store.deliveries()}
    assert set(log) == {slack_key, email_key}
    assert all([a.outcome for a in d.attempts] == ["sent"] for d in log.values())


async def _received(app: ClarityCastApp, topic: str, count: int) -> bool:
    monitor = app.monitor
    return monitor.messages_received_by_topic[topic] >= count and monitor.messages_active == 0


async def test_missing_data_waits_for_the_grace_then_goes_out_marked(
    store: Store, shop: Project, slack: SlackStandin, chain: ClarityCastApp, clock: ManualClock
) -> None:
    """Yesterday's data late: wait; it arrives → complete; it never does → sent, marked."""
    first = LAST - timedelta(days=29)
    await seed_history(
        store, PROJECT, TIMEZONE, first, LAST, ["overall", "browser"],
        skip=[(LAST, "overall"), (LAST, "browser")],
    )  # fmt: skip
    await connect(store, "late", "sessions", slack_channel="#web")
    await connect(store, "arrives", "top_browsers", slack_channel="#web")
    clock.set(NINE + timedelta(seconds=30))
    for name in ("late", "arrives"):
        key = delivery_key(name, TODAY.isoformat())
        waiting = await wait_for(lambda key=key: _in_state(store, key, DeliveryState.WAITING))
        assert waiting.incomplete == (f"{LAST} {'overall' if name == 'late' else 'browser'}",)
    assert slack.messages == []

    await store.save_snapshot(history_snapshot(PROJECT, LAST, "browser", TIMEZONE))
    clock.set(NINE + timedelta(minutes=6))
    arrived = await final(store, delivery_key("arrives", TODAY.isoformat()))
    assert arrived.state is DeliveryState.SENT and arrived.incomplete == ()
    assert len(slack.messages) == 1
    assert "incomplete" not in str(slack.messages[0].blocks).lower()
    late = await store.get_delivery(delivery_key("late", TODAY.isoformat()))
    assert late is not None and late.state is DeliveryState.WAITING

    clock.set(NINE + timedelta(hours=1, seconds=1))  # the grace is over
    sent = await final(store, delivery_key("late", TODAY.isoformat()))
    assert sent.state is DeliveryState.SENT
    assert sent.incomplete == (f"{LAST} overall",)
    assert len(slack.messages) == 2
    blocks = str(slack.messages[1].blocks)
    assert "Data incomplete" in blocks and str(LAST) in blocks


async def _in_state(store: Store, key: str, state: DeliveryState) -> Delivery | None:
    delivery = await store.get_delivery(key)
    return delivery if delivery is not None and delivery.state is state else None


async def test_a_refusing_channel_pauses_its_connection_and_is_not_retried(
    store: Store, shop: Project, slack: SlackStandin, chain: ClarityCastApp, clock: ManualClock
) -> None:
    await seed_history(store, PROJECT, TIMEZONE, LAST - timedelta(days=6), LAST, ["overall"])
    await connect(store, "secret", "sessions", slack_channel="#secret")
    clock.set(NINE + timedelta(seconds=30))
    failed = await final(store, delivery_key("secret", TODAY.isoformat()))
    assert failed.state is DeliveryState.FAILED
    assert [a.outcome for a in failed.attempts] == ["not_in_channel"]
    connection = await store.get_connection("secret")
    assert connection is not None and connection.status is ConnectionStatus.PAUSED
    assert connection.status_reason is not None and "not_in_channel" in connection.status_reason
    clock.advance(timedelta(hours=2))
    await wait_for(lambda: _ticked_past(store, clock), timeout_s=10)
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert slack.messages == []


async def _ticked_past(store: Store, clock: ManualClock) -> bool:
    """True once nothing is open: the tick has had its chance to (wrongly) retry."""
    return all(d.state.final for d in await store.deliveries())


async def test_an_unreachable_mail_server_is_retried_later_then_sent(
    store: Store,
    shop: Project,
    settings_values: dict[str, object],
    endpoints: Endpoints,
    clock: ManualClock,
    ca: trustme.CA,
) -> None:
    port = free_port()
    settings = load_settings(
        **settings_values, tick_interval_s=0.2, smtp_host="127.0.0.1", smtp_port=port,
        smtp_security="none", delivery_deadline_s=0.5, clarity_api_url=NO_CLARITY,
    )  # fmt: skip
    await seed_history(store, PROJECT, TIMEZONE, LAST - timedelta(days=6), LAST, ["overall"])
    await connect(store, "mail", "sessions", emails="ops@example.com")
    key = delivery_key("mail", TODAY.isoformat())
    app = create_app(settings, ["all"], endpoints, clock)
    async with running_app(app):
        clock.set(NINE + timedelta(seconds=30))
        retrying = await wait_for(lambda: _in_state(store, key, DeliveryState.RETRYING))
        assert [a.outcome for a in retrying.attempts] == ["unreachable"]
        assert retrying.next_check_at == NINE + timedelta(seconds=30, minutes=1)
        async with SmtpCatcher(port=port) as catcher:
            clock.advance(timedelta(minutes=1))
            sent = await final(store, key)
            assert [a.outcome for a in sent.attempts] == ["unreachable", "sent"]
            assert len(catcher.messages) == 1


async def test_a_paused_connection_skips_what_was_already_due(
    store: Store, shop: Project, slack: SlackStandin, chain: ClarityCastApp, clock: ManualClock
) -> None:
    """Paused while its report waits for data: it is skipped, never sent."""
    await seed_history(store, PROJECT, TIMEZONE, LAST - timedelta(days=6), LAST - timedelta(days=1),
                       ["overall"])  # fmt: skip
    await connect(store, "paused", "sessions", slack_channel="#web")
    clock.set(NINE + timedelta(seconds=30))
    key = delivery_key("paused", TODAY.isoformat())
    await wait_for(lambda: _in_state(store, key, DeliveryState.WAITING))
    await pause(store, "paused")
    skipped = await store.get_delivery(key)
    assert skipped is not None and skipped.state is DeliveryState.SKIPPED
    await store.save_snapshot(history_snapshot(PROJECT, LAST, "overall", TIMEZONE))
    clock.set(NINE + timedelta(hours=2))
    await wait_for(lambda: _ticked_past(store, clock), timeout_s=10)
    assert slack.messages == []
    assert [d.key for d in await store.deliveries()] == [key]
