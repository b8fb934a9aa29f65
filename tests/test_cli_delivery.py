"""The delivery commands across processes: a worker process, the CLI, Slack and SMTP stand-ins."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from claritycast.clock import SystemClock
from claritycast.localtime import local_yesterday
from claritycast.runtime.ports import free_port
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models import catalogue
from models.delivery import Delivery, DeliveryState
from models.documents import Organisation, Project
from tests.helpers import WorkerProcess, run_cli, seed_history, wait_for

pytestmark = pytest.mark.slow

TIMEZONE = "America/New_York"


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCatcher]:
    async with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture
def env(settings_env: dict[str, str], slack: SlackStandin, smtp: SmtpCatcher) -> dict[str, str]:
    return settings_env | {
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "CLARITYCAST_SMTP_HOST": "127.0.0.1",
        "CLARITYCAST_SMTP_PORT": str(smtp.port),
        "CLARITYCAST_SMTP_SECURITY": "none",
        "CLARITYCAST_CLARITY_API_URL": f"http://127.0.0.1:{free_port()}/export",
        "CLARITYCAST_TICK_INTERVAL_S": "0.5",
        "CLARITYCAST_DELIVERY_GRACE_S": "0",  # near midnight, never wait for tomorrow's data
    }


@pytest.fixture
async def shop(store: Store) -> Project:
    now = SystemClock().now()
    await store.add_organisation(Organisation("acme", "Acme", TIMEZONE, now))
    project = Project("shop-1", "Shop", "acme", connected_at=now - timedelta(days=40))
    await store.add_project(project, [m.id for m in catalogue.METRICS])
    last = local_yesterday(TIMEZONE, now)
    await seed_history(store, "shop-1", TIMEZONE, last - timedelta(days=29), last, ["overall"])
    return project


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "bounce_rate", "--slack", "#reports"], "unknown metric 'bounce_rate'"),
        (["--metric", "sessions", "--email", "ops@", ], "malformed address 'ops@'"),
        (["--metric", "sessions", "--slack", "#reports", "--at", "9am"], "invalid time '9am'"),
        (["--metric", "sessions", "--slack", "#r", "--timezone", "Mars/X"], "unknown timezone"),
        (["--metric", "sessions", "--slack", "#r", "--schedule", "weekly:xyz"], "invalid schedule"),
    ],
)  # fmt: skip
async def test_bad_input_is_refused_at_add(
    env: dict[str, str], shop: Project, args: list[str], message: str
) -> None:
    code, _, err = await run_cli(env, "connections", "add", "--project", "Shop", *args)
    assert code == 1
    assert err.startswith(f"claritycast: {message}") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.timeout(300)
async def test_add_preview_send_now_schedule_and_the_delivery_log(
    env: dict[str, str],
    shop: Project,
    store: Store,
    slack: SlackStandin,
    smtp: SmtpCatcher,
    tmp_path: Path,
) -> None:
    code, out, err = await run_cli(
        env, "connections", "add", "--project", "Shop", "--metric", "sessions",
        "--slack", "#reports", "--schedule", "weekly:monday", "--at", "08:30",
    )  # fmt: skip
    assert code == 0, err
    assert "added shop-sessions-slack" in out and "weekly on Monday at 08:30" in out
    assert "America/New_York" in out
    code, out, err = await run_cli(
        env, "connections", "add", "--project", "Shop", "--metric", "scroll_depth",
        "--email", "ops@example.com,cto@example.com", "--name", "scroll-mail", "--window", "7",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = await run_cli(env, "connections", "list")
    assert code == 0, err
    assert "shop-sessions-slack" in out and "scroll-mail" in out
    assert "email ops@example.com, cto@example.com" in out

    chart = tmp_path / "chart.png"
    code, out, err = await run_cli(env, "preview", "shop-sessions-slack", "--out", str(chart))
    assert code == 0, err
    assert "Sessions · Shop — 30 days to" in out and "summary (plain):" in out
    assert Image.open(io.BytesIO(chart.read_bytes())).size == (1600, 900)
    assert slack.calls == [] and smtp.messages == []  # a preview sends nothing

    # A daily report due in 30 to 90 seconds, at a whole minute as `--at` takes it.
    due_at = (datetime.now(ZoneInfo(TIMEZONE)) + timedelta(seconds=90)).replace(
        second=0, microsecond=0
    )
    code, out, err = await run_cli(
        env, "connections", "add", "--project", "Shop", "--metric", "distinct_users",
        "--email", "daily@example.com", "--at", f"{due_at:%H:%M}", "--name", "daily-mail",
    )  # fmt: skip
    assert code == 0, err
    worker = WorkerProcess(env, stages="all")
    await worker.start(store)
    try:
        code, out, err = await run_cli(env, "send-now", "shop-sessions-slack")
        assert code == 0, out + err
        assert "sent" in out and f"ts={slack.messages[0].ts}" in out
        code, out, err = await run_cli(env, "send-now", "scroll-mail")
        assert code == 0, out + err
        assert len(smtp.messages) == 1
        assert set(smtp.messages[0].rcpt_tos) == {"ops@example.com", "cto@example.com"}

        code, out, err = await run_cli(env, "connections", "pause", "scroll-mail")
        assert code == 0, err
        code, out, err = await run_cli(env, "send-now", "scroll-mail")
        assert code == 1 and "is paused" in err

        # The scheduled one goes out on its own, at its time, once.
        key = f"daily-mail/{due_at.date()}"
        scheduled = await wait_for(lambda: _sent(store, key), timeout_s=150)
        assert scheduled.scheduled_at == due_at.astimezone(UTC)
        assert scheduled.sent_at is not None
        assert timedelta(0) <= scheduled.sent_at - scheduled.scheduled_at < timedelta(seconds=20)
        await asyncio.sleep(2)  # a few more ticks
    finally:
        await worker.stop()
    daily = [m for m in smtp.messages if m.rcpt_tos == ("daily@example.com",)]
    assert len(daily) == 1
    assert daily[0].message["Message-ID"] == scheduled.receipt["message_id"]
    assert f"{due_at.day} {due_at:%b} {due_at.year}" in daily[0].message["Subject"]
    smtp.messages.remove(daily[0])

    code, out, err = await run_cli(env, "deliveries")
    assert code == 0, err
    assert out.count("sent") >= 2 and "shop-sessions-slack/now-" in out
    assert f"message_id={smtp.messages[0].message['Message-ID']}" in out
    assert f"daily-mail/{due_at.date()}" in out
    assert len(slack.messages) == 1 and len(smtp.messages) == 1
    code, out, err = await run_cli(env, "connections", "remove", "scroll-mail")
    assert code == 0, err
    code, out, err = await run_cli(env, "connections", "remove", "scroll-mail")
    assert code == 1 and "no connection 'scroll-mail'" in err


async def _sent(store: Store, key: str) -> Delivery | None:
    delivery = await store.get_delivery(key)
    return delivery if delivery is not None and delivery.state is DeliveryState.SENT else None
