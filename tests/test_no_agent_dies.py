"""No agent dies on a message: a real worker with a fault injected into every stage's handler.

The worker is `tests.faulty_worker`: the real command, with each stage's
handler raising a plain ``RuntimeError`` for messages about projects or
connections named ``poison-<stage>…``. Each such message must become a dead
letter of its stage while the healthy project and report next to it go
through, and no agent may crash. An agent that crashes anyway (a fault in its
loop, outside the handler) must take the worker down with a non-zero exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from claritycast.clock import SystemClock
from claritycast.delivery.connections import create_connection, send_now
from claritycast.localtime import local_yesterday
from claritycast.runtime.publisher import Publisher
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from claritycast.store.dead_letters import HANDLER_ERROR
from models import catalogue
from models.clarity import GROUP_NAMES
from models.delivery import DeliveryState
from models.documents import Organisation, Project
from tests.helpers import WorkerProcess, produce, run_cli, seed_history, wait_for
from tests.test_smoke import fetched
from topics import DELIVERIES_DUE, SNAPSHOTS_FETCHED

pytestmark = pytest.mark.slow

STAGES = ("quota", "fetch", "store", "render", "deliver")
INGEST = ("healthy", "poison-quota", "poison-fetch", "poison-store")
LEASE_S = 5


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    async with ClaritySimulator(SystemClock()) as sim:
        for name in INGEST:
            sim.add_project(name)
        yield sim


@pytest.fixture
def env(
    settings_env: dict[str, str], simulator: ClaritySimulator, slack: SlackStandin
) -> dict[str, str]:
    return settings_env | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_TICK_INTERVAL_S": "0.3",
        # Short: a group not held back would be asked for again within the test.
        "CLARITYCAST_FETCH_LEASE_S": str(LEASE_S),
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "FAULTY_HANDLERS": ",".join(STAGES),
    }


async def add_projects(store: Store, simulator: ClaritySimulator, now: datetime) -> None:
    long_ago = now - timedelta(days=40)
    await store.add_organisation(Organisation("acme", "Acme", "UTC", long_ago))
    for name in INGEST:
        sealed = store.seal_token(simulator.projects[name].token, name)
        project = Project(name, name, "acme", sealed, connected_at=now)
        await store.add_project(project, [m.id for m in catalogue.METRICS])


async def letters(store: Store, stage: str) -> list[str]:
    return [
        letter.project_id if stage in ("quota", "fetch", "store") else letter.key
        for letter, state in await store.dead_letters(stage=stage)
        if state == "dead" and letter.reason == HANDLER_ERROR
    ]


async def test_a_fault_in_every_stage_is_dead_lettered_and_the_next_message_goes_through(
    env: dict[str, str], store: Store, simulator: ClaritySimulator, slack: SlackStandin
) -> None:
    """Each stage's poisoned messages become its dead letters; the healthy ones are handled."""
    now = SystemClock().now()
    yesterday = local_yesterday("UTC", now)
    await add_projects(store, simulator, now)
    before = yesterday - timedelta(days=1)  # yesterday itself is for the tick to pull
    await seed_history(store, "healthy", "UTC", before - timedelta(days=6), before, ["overall"])
    for name in ("poison-render", "poison-deliver", "healthy-report"):
        await create_connection(
            store, project="healthy", metric="sessions", now=now, slack_channel="#web", name=name
        )
    worker = WorkerProcess(env, module="tests.faulty_worker")
    await worker.start(store)
    try:
        publisher = Publisher(
            env["CLARITYCAST_KAFKA_URL"],
            env["CLARITYCAST_TOPIC_PREFIX"],
            int(env["CLARITYCAST_PARTITIONS"]),
        )
        async with publisher:
            for name in ("poison-render", "poison-deliver", "healthy-report"):
                due = await send_now(store, name, SystemClock().now())
                await publisher.send(DELIVERIES_DUE, due.connection, due)
        healthy_key = due.delivery_key

        async def everything_settled() -> bool:
            report = await store.get_delivery(healthy_key)
            return all(
                [
                    len(await store.groups_stored("healthy", yesterday.isoformat())) == 7,
                    report is not None and report.state is DeliveryState.SENT,
                    len(await letters(store, "quota")) == 7,
                    len(await letters(store, "fetch")) == 7,
                    len(await letters(store, "store")) == 7,
                    await letters(store, "render") == ["poison-render"],
                    await letters(store, "deliver") == ["poison-deliver"],
                ]
            )

        await wait_for(everything_settled, timeout_s=90, interval_s=0.5)
        await asyncio.sleep(2 * LEASE_S + 1)  # past the fetch lease: held groups stay held
        assert worker.process is not None and worker.process.returncode is None
    finally:
        code = await worker.stop()
    output = await worker.output()
    assert code == 0, output
    assert "Crashed" not in output and "agent.crashed" not in output
    assert set(await letters(store, "quota")) == {"poison-quota"}
    assert set(await letters(store, "fetch")) == {"poison-fetch"}
    assert set(await letters(store, "store")) == {"poison-store"}
    assert [r.status for r in simulator.requests_for("poison-quota")] == []
    assert [r.status for r in simulator.requests_for("poison-fetch")] == []
    assert len(simulator.requests_for("poison-store")) == 7, "fetched once, never again"
    assert len(simulator.requests_for("healthy")) == 7
    assert len(slack.messages) == 1, "only the healthy report went out"
    delivery = await store.get_delivery(healthy_key)
    assert delivery is not None and delivery.receipt is not None
    assert delivery.receipt["ts"] == slack.messages[0].ts
    for stage in STAGES:
        assert worker.logged(f"{stage}.dead_letter"), stage

    # Fixed (a worker without the faults), the operator replays: the stored answers of
    # the store stage's letters, without asking Clarity again; the quota's through it.
    healthy = WorkerProcess(env | {"FAULTY_HANDLERS": ""})
    await healthy.start(store)
    try:
        code, out, err = await run_cli(env, "replay", "--stage", "store", "--wait", "60")
        assert code == 0, out + err
        assert out.count("→ stored") == 7, out
        assert len(simulator.requests_for("poison-store")) == 7, "no new request"
        code, out, err = await run_cli(env, "replay", "--stage", "quota", "--wait", "60")
        assert code == 0, out + err
        assert out.count("→ stored") == 7, out
    finally:
        await healthy.stop()
    assert len(simulator.requests_for("poison-quota")) == 7
    assert await store.groups_stored("poison-store", yesterday.isoformat()) == set(GROUP_NAMES)


async def test_an_agent_that_crashes_anyway_stops_the_worker_with_a_non_zero_exit(
    settings_env: dict[str, str], settings_values: dict[str, object], store: Store
) -> None:
    """A fault in an agent's own loop: the worker exits non-zero within seconds, not runs on."""
    env = settings_env | {"FAULTY_AGENT": "store"}
    worker = WorkerProcess(env, stages="store", module="tests.faulty_worker")
    await worker.start(store)
    try:
        topic = SNAPSHOTS_FETCHED.full_name(str(settings_values["topic_prefix"]))
        await produce(
            str(settings_values["kafka_url"]), topic, "crash-1", await fetched(store, "crash-1")
        )
        code = await worker.wait(timeout_s=30)
    finally:
        await worker.stop()
    output = await worker.output()
    assert code != 0, output
    assert worker.logged("agent.crashed") and worker.logged("worker.stopping"), output
    assert "injected into the store agent's loop" in output
