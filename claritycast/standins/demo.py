"""``claritycast demo``: the whole service, on a fast clock, with nothing outside the machine.

It starts its own embedded broker and database (under ``<data_dir>/demo``, so
a real installation's data is never touched), the Clarity simulator, a real
SMTP server, a Slack Web API stand-in and an OpenAI-compatible stand-in; then
runs every stage in this process on a manual clock. The clock jumps from one
event to the next — a local midnight, a delivery's time, the end of a wait —
and waits at each for the chain to settle, so 30 simulated days take about a
minute while every message still crosses the real broker and database.

What was "sent" lands in the outbox: Slack messages as JSON with their PNGs,
emails as ``.eml`` files.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agents.tick import Ticker, tick_deliveries
from claritycast.clock import ManualClock
from claritycast.delivery.connections import create_connection
from claritycast.delivery.schedule import next_due
from claritycast.errors import ClarityCastError
from claritycast.ingest.connect import add_organisation, connect_project
from claritycast.ingest.quota import LEASE
from claritycast.keyring import new_key
from claritycast.localtime import local_midnight, local_yesterday
from claritycast.runtime.app import ClarityCastApp, create_app
from claritycast.runtime.embedded import (
    Endpoints,
    embedded_mongodb_url,
    start_servers,
    stop_all,
)
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings, load_settings
from claritycast.standins.ai import AIStandin
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import OPEN_STATES, Store
from models.delivery import ConnectionStatus, DeliveryState
from topics import (
    CHARTS_RENDERED,
    DELIVERIES_DUE,
    FETCH_GRANTED,
    FETCH_REQUESTED,
    SNAPSHOTS_FETCHED,
)

TIMEZONE = "Europe/Paris"
POLL_S = 0.01
# A step gives up waiting for the chain after this long (real seconds).
STEP_TIMEOUT_S = 60.0
# Every stage but the tick: the demo is the clock's hand, so it ticks itself
# right after moving the clock, and knows when each tick has been answered.
STAGES = ["quota", "fetch", "store", "render", "deliver"]
# The topics those stages consume.
CONSUMED = (FETCH_REQUESTED, FETCH_GRANTED, SNAPSHOTS_FETCHED, DELIVERIES_DUE, CHARTS_RENDERED)


@dataclass(frozen=True)
class DemoConnection:
    project: str
    metric: str
    schedule: str
    at: str = "09:00"
    slack: str | None = None
    email: str | None = None
    ai: bool = False


PROJECTS = {"Shop": 2400, "Blog": 700}  # label -> sessions per day
CONNECTIONS = (
    DemoConnection("Shop", "sessions", "daily", slack="#web-metrics", ai=True),
    DemoConnection("Shop", "top_pages_by_sessions", "weekly:monday", email="team@example.com"),
    DemoConnection("Blog", "active_time", "weekly:friday", at="08:30", slack="#blog"),
    DemoConnection("Blog", "rage_clicks", "monthly:last", email="editors@example.com"),
)


@dataclass
class DemoResult:
    days: int
    snapshots: int
    sent: dict[str, int] = field(default_factory=dict)
    outbox: Path = Path()
    final_chart: Path | None = None


def _demo_settings(settings: Settings, root: Path, **extra: Any) -> Settings:
    """The demo's own settings: its own folder, database and topics, whatever is configured."""
    values: dict[str, Any] = dict(
        data_dir=root,
        kafka_url=None,
        mongodb_url=None,
        mongodb_database="claritycast_demo",
        app_id="claritycast-demo",
        topic_prefix="claritycast-demo.",
        partitions=4,
        kafka_flavour="tansu",
        broker_session_timeout_s=3.0,
        mongodb_sync_on_commit=False,
        log_level=settings.log_level if settings.log_level == "DEBUG" else "WARNING",
        log_format=settings.log_format,
    )
    return load_settings(**(values | extra))


def _fresh_folders(root: Path, outbox: Path) -> None:
    """The demo starts from nothing: its data folder and the outbox's last results go."""
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("slack", "email"):
        shutil.rmtree(outbox / sub, ignore_errors=True)
    outbox.mkdir(parents=True, exist_ok=True)


async def run_demo(
    settings: Settings,
    *,
    days: int = 30,
    outbox: Path,
    announce: Callable[[str], None] = print,
) -> DemoResult:
    """Run ``days`` simulated days; returns what was stored and sent."""
    root = settings.data_dir / "demo"
    _fresh_folders(root, outbox)
    key = new_key()  # the demo's database starts from nothing each run, and so does its key
    base = _demo_settings(settings, root, secret_keys=key)
    if base.log_level != "DEBUG":
        for name in ("faust", "aiokafka", "mode", "claritycast", "agents"):
            logging.getLogger(name).setLevel(logging.WARNING)
    today = datetime.now(UTC).astimezone(ZoneInfo(TIMEZONE)).date()
    first_night = today - timedelta(days=days)
    clock = ManualClock(local_midnight(first_night, TIMEZONE) + timedelta(minutes=30))

    announce(f"demo: starting a broker and a database under {root} ...")
    servers = await start_servers(base)
    simulator = ClaritySimulator(clock)
    slack = SlackStandin(outbox=outbox)
    slack.add_channel("web-metrics")
    slack.add_channel("blog")
    ai = AIStandin()
    try:
        async with SmtpCatcher(outbox=outbox) as smtp, slack as slack_url:
            for label, sessions in PROJECTS.items():
                simulator.add_project(label.lower(), sessions)
            await simulator.start()
            ai_url = await ai.start()
            ports = {server.name: server.port for server in servers}
            kafka_url = f"kafka://127.0.0.1:{ports['tansu']}"
            mongodb_url = embedded_mongodb_url(ports["secantusdb"])
            live = _demo_settings(
                settings, root, secret_keys=key, kafka_url=kafka_url, mongodb_url=mongodb_url,
                clarity_api_url=simulator.export_url,
                slack_token=slack.token, slack_api_url=slack_url,
                smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                smtp_from="claritycast demo <demo@claritycast.localhost>",
                summariser_url=ai_url, summariser_model="demo", delivery_grace_s=3600,
            )  # fmt: skip
            endpoints = Endpoints(kafka_url, mongodb_url, True, True)
            return await _run(live, endpoints, clock, simulator, today, days, outbox, announce)
    finally:
        await ai.stop()
        await simulator.stop()
        await stop_all(servers)


async def _run(
    settings: Settings,
    endpoints: Endpoints,
    clock: ManualClock,
    simulator: ClaritySimulator,
    today: date,
    days: int,
    outbox: Path,
    announce: Callable[[str], None],
) -> DemoResult:
    app = create_app(settings, STAGES, endpoints, clock)
    await app.start()
    try:
        store = app.deps.store
        ticker = Ticker(app.deps, app.declared[FETCH_REQUESTED])
        due_topic = app.declared[DELIVERIES_DUE]

        async def tick() -> int:
            return await ticker.tick() + await tick_deliveries(app.deps, due_topic)

        publisher = Publisher(endpoints.kafka_url, settings.topic_prefix, settings.partitions)
        async with publisher:
            await _set_up(store, publisher, clock, simulator, announce)
        idle = _idleness(app)
        announce(f"demo: {days} simulated days, night by night (Ctrl-C stops) ...")
        end = local_midnight(today, TIMEZONE) + timedelta(hours=12)
        last_day: date | None = None
        started = time.monotonic()
        while clock.now() < end:
            moment = await _next_event(store, clock.now(), end)
            clock.set(moment)
            await _settle(store, clock, tick, idle)
            day = clock.now().astimezone(ZoneInfo(TIMEZONE)).date()
            if day != last_day and last_day is not None:
                await _progress(store, last_day, today, days, announce)
            last_day = day
        await _progress(store, today, today, days, announce)
        result = await _result(store, days, outbox)
        announce(f"demo: done in {time.monotonic() - started:.0f} s")
        return result
    finally:
        await app.stop()


async def _set_up(
    store: Store,
    publisher: Publisher,
    clock: ManualClock,
    simulator: ClaritySimulator,
    announce: Callable[[str], None],
) -> None:
    org = await add_organisation(store, "Demo", TIMEZONE, clock.now())
    for label in PROJECTS:
        token = simulator.projects[label.lower()].token
        result = await connect_project(
            store, publisher.send, clock, token=token, label=label, org_name=org.name,
            wait_s=60,
        )  # fmt: skip
        stored = sum(1 for group in result.groups if group.outcome == "stored")
        announce(f"demo: connected {label}; first pull {result.local_date}: {stored}/7 stored")
    for spec in CONNECTIONS:
        connection = await create_connection(
            store, project=spec.project, metric=spec.metric, now=clock.now(),
            slack_channel=spec.slack, emails=spec.email, schedule=spec.schedule, at=spec.at,
            ai_summary=spec.ai,
        )  # fmt: skip
        announce(
            f"demo: {connection.name}: {connection.destination.describe()}, "
            f"{connection.schedule.describe()}" + (", AI summary" if spec.ai else "")
        )


async def _next_event(store: Store, now: datetime, end: datetime) -> datetime:
    """The next moment something is due: a local midnight, a send, a wait's end."""
    local_today = now.astimezone(ZoneInfo(TIMEZONE)).date()
    candidates = [end] + [
        local_midnight(local_today + timedelta(days=k), TIMEZONE) + timedelta(minutes=1)
        for k in (0, 1)
    ]
    for connection in await store.connections(status=ConnectionStatus.ACTIVE):
        candidates.append(next_due(connection.schedule, connection.timezone, now)[1])
    yesterday = local_yesterday(TIMEZONE, now).isoformat()
    for project in await store.projects():
        waiting = project.waiting_until()
        if waiting is not None and waiting > now:
            candidates.append(waiting + timedelta(seconds=1))
        elif len(await store.groups_stored(project.project_id, yesterday)) < 7:
            candidates.append(now + LEASE + timedelta(seconds=1))  # the tick asks again then
    for delivery in await store.deliveries(limit=20):
        if delivery.state in OPEN_STATES and delivery.next_check_at is not None:
            candidates.append(delivery.next_check_at)
    return min(c for c in candidates if c > now)


async def _busy(store: Store, now: datetime) -> str | None:
    """What is in flight, if anything: a Clarity call not yet answered, a delivery on its way."""
    for project in await store.projects():
        calls = await store.calls_since(project.project_id, now - timedelta(days=2))
        if any(call.outcome in ("granted", "calling") for call in calls):
            return f"{project.label}: a Clarity call is unanswered"
    in_flight = (DeliveryState.DUE, DeliveryState.RENDERED, DeliveryState.SENDING)
    for delivery in await store.deliveries(limit=20):
        if delivery.state in in_flight:
            return f"{delivery.key} is {delivery.state.value}"
    return None


def _idleness(app: ClarityCastApp) -> Callable[[], bool]:
    """A test for "every message this app sent to its own stages has been handled".

    Faust's monitor counts messages sent and received per topic; what was
    received before now without being sent by this app (connect's first pulls,
    sent by a separate producer) is set aside.
    """
    monitor = app.monitor
    names = [spec.full_name(app.declared.prefix) for spec in CONSUMED]
    excess = {
        n: monitor.messages_received_by_topic[n] - monitor.messages_sent_by_topic[n] for n in names
    }

    def idle() -> bool:
        return monitor.messages_active == 0 and all(
            monitor.messages_received_by_topic[n] - excess[n] >= monitor.messages_sent_by_topic[n]
            for n in names
        )

    return idle


async def _settle(
    store: Store,
    clock: ManualClock,
    tick: Callable[[], Awaitable[int]],
    idle: Callable[[], bool],
) -> None:
    """Tick, wait until the chain has handled it all, and again, until a tick finds nothing."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while await tick():
        while not idle() or await _busy(store, clock.now()) is not None:
            if time.monotonic() > deadline:
                raise ClarityCastError(
                    f"the demo's chain did not settle within {STEP_TIMEOUT_S:.0f} s "
                    f"at {clock.now():%Y-%m-%d %H:%M}Z"
                    + ("" if idle() else ": messages still in flight")
                )
            await asyncio.sleep(POLL_S)


async def _progress(
    store: Store, day: date, today: date, days: int, announce: Callable[[str], None]
) -> None:
    number = days - (today - day).days
    stored = await store.count_snapshots()
    sent = [d for d in await store.deliveries(limit=10_000) if d.period == day.isoformat()]
    done = ", ".join(f"{d.connection} {d.state.value}" for d in sent) or "no report due"
    announce(f"  day {number:>2}/{days} {day}: {stored} snapshots stored; {done}")


async def _result(store: Store, days: int, outbox: Path) -> DemoResult:
    deliveries = await store.deliveries(limit=10_000)
    sent: dict[str, int] = {}
    for delivery in deliveries:
        if delivery.state is DeliveryState.SENT:
            sent[delivery.connection] = sent.get(delivery.connection, 0) + 1
    pngs = sorted((outbox / "slack").glob("web-metrics-*.png"), key=lambda p: p.stat().st_mtime)
    return DemoResult(
        days=days,
        snapshots=await store.count_snapshots(),
        sent=sent,
        outbox=outbox,
        final_chart=pngs[-1] if pngs else None,
    )


def describe(result: DemoResult) -> list[str]:
    lines = [f"demo: {result.snapshots} snapshots stored over {result.days} simulated days"]
    for connection, count in sorted(result.sent.items()):
        lines.append(f"  {connection}: {count} report(s) sent")
    lines.append(f"what was sent is in {result.outbox}:")
    lines.append(f"  {result.outbox / 'slack'}  Slack messages (.json) and their charts (.png)")
    lines.append(f"  {result.outbox / 'email'}  emails (.eml: open in any mail client)")
    if result.final_chart is not None:
        lines.append(f"the latest 30-day chart: {result.final_chart}")
    return lines
