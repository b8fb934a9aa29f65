"""The embedded broker's memory bound: a planned restart by `up` loses nothing, doubles nothing.

`up` runs with a limit below an empty broker's memory, so it restarts the
broker at every quiet moment it is allowed (one per ten checks). A night's
pull and its deliveries run in two waves around those restarts; Clarity's
request log (the simulator's), the store stage's own log lines and the
receipts of the Slack stand-in and a real SMTP server judge the result.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents import STAGES
from claritycast.clock import SystemClock
from claritycast.delivery.connections import create_connection
from claritycast.delivery.log import due_deliveries
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.localtime import local_yesterday
from claritycast.runtime.app import create_app
from claritycast.runtime.broker_bound import CONSUMED_BY_STAGE, consumed_topics
from claritycast.runtime.embedded import Endpoints
from claritycast.settings import Settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.delivery import DeliveryState
from models.documents import Organisation, Project
from tests.helpers import wait_for
from tests.test_contention import add_waiting_project
from tests.test_restarts import line_in, stop_up
from tests.test_up import UpProcess

WAVES = (["p1", "p2", "p3", "p4"], ["p5", "p6", "p7", "p8"])
# Clarity's answers take a while; the first wave's pull is moreover held (one answer kept
# back) until `up` has deferred a restart for it, rather than hoping a latency outlasts the
# ten checks (5 s) that must pass before the first planned restart.
LATENCY_S = 0.2
RESTARTED = "broker.restarted"


def test_the_stage_topics_are_those_the_agents_consume(settings: Settings) -> None:
    """The topics whose lag makes a quiet moment are exactly those a worker's agents read."""
    assert settings.kafka_url is not None and settings.mongodb_url is not None
    endpoints = Endpoints(settings.kafka_url, settings.mongodb_url, True, True)
    for name in STAGES:
        app = create_app(settings, [name], endpoints)
        read = {agent.channel.get_topic_name() for agent in app.agents.values()}
        assert read == set(consumed_topics(settings, [name])), name
    assert set(CONSUMED_BY_STAGE) < set(STAGES), "the tick only produces"


async def test_a_delivery_opened_but_never_sent_is_sent_by_the_next_tick(store: Store) -> None:
    """What a tick stopped between opening and sending leaves is re-sent at once, not in 10 min.

    `up` calls this with the worker stopped and every consumed message handled,
    just before it empties the broker.
    """
    now = datetime(2026, 11, 24, 9, 0, 30, tzinfo=UTC)
    await store.add_organisation(Organisation("acme", "Acme", "UTC", now))
    await store.add_project(Project("p1", "P1", "acme", connected_at=now), [])
    await create_connection(
        store, project="p1", metric="sessions", now=now - timedelta(days=2), at="09:00",
        timezone="UTC", emails="p1@example.com", name="daily-p1",
    )  # fmt: skip
    (opened,) = await due_deliveries(store, now)  # the tick opened it; its message is lost
    later = now + timedelta(minutes=1)
    assert await due_deliveries(store, later) == [], "otherwise re-sent only after 10 minutes"
    assert await store.recheck_due_deliveries_at_once() == 1
    (again,) = await due_deliveries(store, later)
    assert again.delivery_key == opened.delivery_key
    assert await due_deliveries(store, later) == [], "re-sent once"


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    for project_id in (*WAVES[0], *WAVES[1]):
        sim.add_project(project_id).latency_s = LATENCY_S
    async with sim:
        yield sim


def assert_each_group_once(up: UpProcess, simulator: ClaritySimulator, projects: list[str]) -> None:
    """Clarity was asked once for each group, all answered 200, and each was stored once."""
    for project_id in projects:
        seen = simulator.requests_for(project_id)
        assert len(seen) == len(GROUP_NAMES), f"{project_id}: {len(seen)} Clarity requests"
        assert all(request.status == 200 for request in seen)
    stored = stored_lines(up)
    assert stored == Counter({(p, g): 1 for p in projects for g in GROUP_NAMES}), stored


def bound_env(simulator: ClaritySimulator, **settings: str) -> dict[str, str]:
    """`up`'s environment here: a 1 MB limit checked twice a second, and ``settings``.

    An empty broker uses about 18 MB, so `up` restarts it at every quiet moment
    it is allowed (one per ten checks: 5 s).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    return (
        env
        | {
            "CLARITYCAST_PARTITIONS": "2",
            "CLARITYCAST_WEB_PORT": "0",
            "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
            "CLARITYCAST_BROKER_MEMORY_LIMIT_MB": "1",
            "CLARITYCAST_BROKER_MEMORY_CHECK_S": "0.5",
            "CLARITYCAST_BROKER_FETCH_WAIT_MS": "50",  # as every test: many hops, little data
        }
        | {f"CLARITYCAST_{name.upper()}": value for name, value in settings.items()}
    )


def store_of(up: UpProcess) -> Store:
    """The store of `up`'s database, with the key `up` made in its data folder."""
    keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())
    return Store.connect(str(up.state()["mongodb_url"]), "claritycast", keyring=keyring)


def restarts(up: UpProcess) -> list[str]:
    return [line for line in list(up.lines) if RESTARTED in line]


def stored_lines(up: UpProcess) -> Counter[tuple[str, str]]:
    """How often the store stage handled each (project, group), from the worker's log lines."""
    seen: Counter[tuple[str, str]] = Counter()
    for line in list(up.lines):
        if "snapshot.stored" in line:
            project = re.search(r"project=(\S+)", line)
            group = re.search(r"group=(\S+)", line)
            assert project and group, line
            seen[(project.group(1), group.group(1))] += 1
    return seen


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_planned_broker_restart_loses_nothing_and_fetches_nothing_twice(
    tmp_path: Path, simulator: ClaritySimulator
) -> None:
    """Two waves of a night's pull and reports, planned restarts between: all exactly once.

    The restart waits while the first wave is in flight (it logs that it is
    deferred, with the lag it saw), happens once the chain is quiet, and the
    second wave runs on the new, empty broker: its topics declared again, its
    quota rebuilt from the call log. The tick keeps running after a second
    restart, and asks for nothing again.
    """
    slack = SlackStandin()
    for project_id in (*WAVES[0], *WAVES[1]):
        slack.add_channel(f"reports-{project_id}")
    async with SmtpCatcher() as smtp, slack as slack_url:
        env = bound_env(
            simulator,
            tick_interval_s="0.3",
            slack_token=slack.token,
            slack_api_url=slack_url,
            smtp_host="127.0.0.1",
            smtp_port=str(smtp.port),
            smtp_security="none",
            delivery_grace_s="0",  # never waits, whatever the hour of the run
        )
        up = UpProcess(tmp_path / "var", env=env)
        try:
            await line_in(up, "claritycast is ready")
            before = up.state()
            store = store_of(up)
            try:
                await night(up, store, simulator, smtp, slack)
            finally:
                await store.close()
            after = up.state()
            await stop_up(up)
        finally:
            up.stop()
        assert "Traceback" not in "".join(up.lines)
        print("".join(line for line in up.lines if "broker.restart" in line))  # pytest -s
        assert after["kafka_url"] == before["kafka_url"], "the same port"
        assert after["children"]["tansu"] != before["children"]["tansu"]  # type: ignore[index]

    every = [*WAVES[0], *WAVES[1]]
    assert_each_group_once(up, simulator, every)
    by_channel = Counter(message.channel_name for message in slack.messages)
    assert by_channel == Counter({f"reports-{p}": 1 for p in every}), by_channel
    by_recipient = Counter(rcpt for message in smtp.messages for rcpt in message.rcpt_tos)
    assert by_recipient == Counter({f"{p}@example.com": 1 for p in every}), by_recipient


async def night(
    up: UpProcess,
    store: Store,
    simulator: ClaritySimulator,
    smtp: SmtpCatcher,
    slack: SlackStandin,
) -> None:
    now = datetime.now(UTC)
    for project_id in (*WAVES[0], *WAVES[1]):
        await add_waiting_project(store, simulator, project_id, now)
    day = local_yesterday("UTC", now).isoformat()

    held = WAVES[0][-1]
    simulator.hold(held)
    await let_pull_go(store, WAVES[0])
    deferred = await line_in(up, "broker.restart_deferred", timeout_s=30)
    assert int(re.search(r"lag=(\d+)", deferred).group(1)) > 0, deferred  # type: ignore[union-attr]
    assert simulator.requests_for(held) == [], "its first answer is still held"
    assert not restarts(up), "restarted while a Clarity request was in flight"
    simulator.release(held)
    await run_wave(store, WAVES[0], day, smtp, slack, sent_before=0)
    first = await line_in(up, RESTARTED, timeout_s=60)
    assert re.search(r"rss_before_mib=\S+ ", first) and "rss_after_mib=" in first, first

    await run_wave(store, WAVES[1], day, smtp, slack, sent_before=len(WAVES[0]))
    count = len(restarts(up))

    async def restarted_again() -> bool:
        return len(restarts(up)) > count

    await wait_for(restarted_again, timeout_s=60, interval_s=0.2)
    await asyncio.sleep(2)  # several ticks on the new broker: none may ask again
    for delivery in await store.deliveries(limit=100):
        assert delivery.state is DeliveryState.SENT, delivery
        assert [a.outcome for a in delivery.attempts] == ["sent"], delivery


async def let_pull_go(store: Store, projects: list[str]) -> None:
    """The projects were added waiting; their pull may start at the next tick."""
    for project_id in projects:
        await store.set_deferred_until(project_id, None)


async def run_wave(
    store: Store,
    projects: list[str],
    day: str,
    smtp: SmtpCatcher,
    slack: SlackStandin,
    sent_before: int,
) -> None:
    """Let the projects' pull go, wait until it is stored, then their reports until sent."""
    await let_pull_go(store, projects)

    async def pulled() -> bool:
        for project_id in projects:
            if len(await store.groups_stored(project_id, day)) < len(GROUP_NAMES):
                return False
        return True

    await wait_for(pulled, timeout_s=90, interval_s=0.2)
    created = datetime.now(UTC) - timedelta(days=2)  # so that today's report is due now
    at = (datetime.now(UTC) - timedelta(minutes=2)).strftime("%H:%M")
    for project_id in projects:
        await create_connection(
            store, project=project_id, metric="sessions", now=created, at=at, timezone="UTC",
            slack_channel=f"#reports-{project_id}", name=f"slack-{project_id}",
        )  # fmt: skip
        await create_connection(
            store, project=project_id, metric="sessions", now=created, at=at, timezone="UTC",
            emails=f"{project_id}@example.com", name=f"email-{project_id}",
        )  # fmt: skip
    expected = sent_before + len(projects)

    async def sent() -> bool:
        return len(slack.messages) >= expected and len(smtp.messages) >= expected

    await wait_for(sent, timeout_s=60, interval_s=0.2)


NIGHT = [f"n{i:02d}" for i in range(16)]


@pytest.fixture
async def busy_simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    for project_id in NIGHT:
        sim.add_project(project_id).latency_s = 0.25
    async with sim:
        yield sim


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_night_with_no_quiet_moment_is_drained_for_the_restart(
    tmp_path: Path, busy_simulator: ClaritySimulator
) -> None:
    """Over the limit in a night that never falls quiet: drain, restart mid-night, go on.

    The tick asks for two projects at a time (`CLARITYCAST_PULL_IN_FLIGHT`=14)
    and the next two as soon as they are stored, so the chain is never quiet on
    its own. `up` drains it: the tick asks for nothing more, the lag falls to
    zero, the broker is restarted while most of the night is still to come, and
    the new worker's tick goes on with it. Every group is asked of Clarity once
    and stored once, and nothing is asked for while the drain lasts.
    """
    simulator = busy_simulator
    # The waves go on by the wave timer alone: no tick comes during the night.
    env = bound_env(simulator, tick_interval_s="30", pull_in_flight="14")
    up = UpProcess(tmp_path / "var", env=env)
    try:
        await line_in(up, "claritycast is ready")
        store = store_of(up)
        try:
            now = datetime.now(UTC)
            for project_id in NIGHT:
                await add_waiting_project(store, simulator, project_id, now)
            await let_pull_go(store, NIGHT)
            await line_in(up, RESTARTED, timeout_s=90)
            day = local_yesterday("UTC", now).isoformat()

            async def stored_all() -> bool:
                for project_id in NIGHT:
                    if len(await store.groups_stored(project_id, day)) < len(GROUP_NAMES):
                        return False
                return True

            await wait_for(stored_all, timeout_s=120, interval_s=0.3)
        finally:
            await store.close()
        await stop_up(up)
    finally:
        up.stop()
    lines = list(up.lines)
    assert "Traceback" not in "".join(lines)
    print("".join(line for line in lines if "broker." in line or "drain" in line))  # pytest -s

    def first(text: str, after: int = 0) -> int:
        return next(i for i, line in enumerate(lines) if i >= after and text in line)

    began = first("broker.drain_begins")
    draining = first("tick.draining", began)
    restarted = first(RESTARTED, draining)
    assert re.search(r"drained_s=\d", lines[restarted]), lines[restarted]
    assert not [line for line in lines[draining:restarted] if "tick.requested" in line]
    assert first("broker.drain_ends", restarted)
    stored_before = sum("snapshot.stored" in line for line in lines[:restarted])
    assert 0 < stored_before < len(NIGHT) * len(GROUP_NAMES) / 2, "most of it after the restart"
    assert_each_group_once(up, simulator, NIGHT)
