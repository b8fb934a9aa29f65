"""Restarts: a worker killed in the middle of a night's pull, and a full restart of `up`.

Both are judged by Clarity's own request log (the simulator's): no snapshot
lost, and never more than 10 requests for a project in 24 hours.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents import quota
from claritycast.cli.main import cli
from claritycast.clock import ManualClock, SystemClock
from claritycast.ingest.quota import COUNTED_FOR, DAILY_LIMIT, LEASE
from claritycast.ingest.quota_report import quota_report
from claritycast.localtime import local_yesterday
from claritycast.settings import load_settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES, GROUPS_BY_NAME
from models.documents import Call, Project
from models.records import FetchGranted, FetchRequested
from tests.helpers import WorkerProcess, produce, read_topic, run_cli, wait_for
from tests.test_contention import add_waiting_project, start_workers, stop_workers
from tests.test_tick import max_in_24h
from tests.test_up import UpProcess
from topics import FETCH_REQUESTED

PROJECTS = [f"p{i:02d}" for i in range(1, 21)]
LATENCY_S = 0.08
PULL = len(PROJECTS) * len(GROUP_NAMES)


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    for project_id in PROJECTS:
        sim.add_project(project_id).latency_s = LATENCY_S
    async with sim:
        yield sim


def projects_of(worker: WorkerProcess) -> set[str]:
    """The projects this worker's quota check decided: those of its partitions."""
    found = set()
    for line in worker.logged("quota.granted"):
        match = re.search(r"project=(\S+)", line)
        if match:
            found.add(match.group(1))
    return found


def group_of(params: dict[str, str]) -> str:
    first = params.get("dimension1")
    return next(n for n, g in GROUPS_BY_NAME.items() if (g.dimensions or (None,))[0] == first)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_kill_9_of_a_worker_mid_pull_spends_no_extra_and_is_taken_over(
    settings_env: dict[str, str], store: Store, simulator: ClaritySimulator
) -> None:
    """The survivor takes the dead worker's partitions and quota; every group is stored, ≤ 10.

    Nothing may be lost in the rebalance: every grant in the call log reaches
    the fetch stage (a lost grant would stay ``granted`` until the quota check
    expires it after 2.5 min), and every group is stored. The fetch lease is
    30 s instead of 10 min, so that the group whose request died with the
    victim is asked for again within the test; it is longer than the
    survivor's takeover and backlog under load, which would otherwise be asked
    for twice and spend the quota the re-ask needs.
    """
    now = datetime.now(UTC)
    for project_id in PROJECTS:
        await add_waiting_project(store, simulator, project_id, now)
    env = settings_env | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_TICK_INTERVAL_S": "0.3",
        "CLARITYCAST_FETCH_LEASE_S": "30",
    }
    workers = await start_workers(env, store, 2)
    victim, survivor = workers
    yesterday = local_yesterday("UTC", now).isoformat()
    try:
        for project_id in PROJECTS:
            await store.set_deferred_until(project_id, None)

        async def both_working() -> bool:
            stored = await store.count_snapshots()
            return stored >= PULL // 5 and all(w.logged("snapshot.stored") for w in workers)

        await wait_for(both_working, timeout_s=60, interval_s=0.05)
        stored_at_kill = await store.count_snapshots()
        await victim.kill()
        killed_at = datetime.now(UTC)
        killed_monotonic = time.monotonic()
        assert stored_at_kill < PULL, "the pull ended before the kill: make it slower"
        victims_projects = projects_of(victim) - projects_of(survivor)

        async def all_done() -> bool:
            return await all_stored(store, yesterday) and not await unfinished_grants(store)

        try:
            # The survivor works through the victim's backlog too; with another test
            # process on the same 2 cores that took more than 90 s once.
            await wait_for(all_done, timeout_s=150, interval_s=0.2)
        except AssertionError:
            raise AssertionError(await pull_diagnosis(store, yesterday, workers)) from None
        finished_s = time.monotonic() - killed_monotonic
    finally:
        await stop_workers(workers)

    per_project = {p: simulator.requests_for(p) for p in PROJECTS}
    for project_id, seen in per_project.items():
        assert max_in_24h([r.at for r in seen]) <= DAILY_LIMIT, project_id
        assert all(r.status == 200 for r in seen), project_id
    tokens = [simulator.projects[p].token for p in PROJECTS]
    assert not any(t in line for w in workers for line in w.lines for t in tokens), "a token leaked"
    total = sum(len(seen) for seen in per_project.values())
    repeated = {p: len(seen) - len(GROUP_NAMES) for p, seen in per_project.items() if len(seen) > 7}
    taken_over = [
        snapshot.stored_at
        for project_id in victims_projects
        for snapshot in await store.snapshots_for(project_id, yesterday, yesterday)
        if snapshot.stored_at > killed_at
    ]
    takeover_s = (min(taken_over) - killed_at).total_seconds() if taken_over else None
    print(  # the figures worth quoting (pytest -s)
        f"\nkill -9 at {stored_at_kill}/{PULL} snapshots; the victim's partitions held "
        f"{len(victims_projects)} projects; their first snapshot after the kill came "
        f"{takeover_s} s later; all stored {finished_s:.1f} s after the kill; {total} requests "
        f"for {PULL} snapshots, repeated: {repeated or 'none'}"
    )


async def all_stored(store: Store, day: str) -> bool:
    """True once every project has all 7 groups of ``day``."""
    for project_id in PROJECTS:
        if len(await store.groups_stored(project_id, day)) < len(GROUP_NAMES):
            return False
    return True


async def unfinished_grants(store: Store) -> list[Call]:
    """Calls granted but never finished by the fetch stage: their grant message is still due."""
    since = datetime(2000, 1, 1, tzinfo=UTC)
    return [
        call
        for project_id in PROJECTS
        for call in await store.calls_since(project_id, since)
        if call.outcome in ("granted", "calling")
    ]


async def pull_diagnosis(store: Store, day: str, workers: list[WorkerProcess]) -> str:
    """What is missing, what the call log says, and the workers' last lines.

    ``granted``: the grant never reached the fetch stage; ``calling``: the
    request was made and the grant never redelivered; ``ok``: Clarity answered
    and the snapshot never reached the store.
    """
    lines = ["messages lost in the rebalance:"]
    for project_id in PROJECTS:
        missing = set(GROUP_NAMES) - await store.groups_stored(project_id, day)
        calls = await store.calls_since(project_id, datetime(2000, 1, 1, tzinfo=UTC))
        unfinished = {c.group: c.outcome for c in calls if c.outcome in ("granted", "calling")}
        outcomes = {c.group: c.outcome for c in calls if c.group in missing}
        if missing or unfinished:
            lines.append(
                f"{project_id} misses {sorted(missing)} {outcomes}; unfinished {unfinished}"
            )
    output = "\n".join("".join(w.lines[-30:]) for w in workers)
    return "\n".join(lines) + f"\nworkers' last lines:\n{output}"


class SentRecords:
    """Stands in for the fetch.granted topic: keeps what the quota check sends."""

    def __init__(self) -> None:
        self.sent: list[FetchGranted] = []

    def get_topic_name(self) -> str:
        return "fetch.granted"

    async def send(self, *, key: str, value: FetchGranted) -> None:
        self.sent.append(value)


@pytest.mark.parametrize(
    ("outcome", "age", "asked_again"),
    [
        ("ok", timedelta(minutes=1), False),  # its snapshot is on its way to the store
        ("ok", LEASE + timedelta(minutes=1), True),  # the snapshot was lost on the way
        ("granted", timedelta(minutes=1), False),  # the fetch may still happen
        ("granted", LEASE + timedelta(minutes=1), True),  # the grant was lost
        ("calling", timedelta(minutes=1), False),  # the request is being made
        ("calling", LEASE + timedelta(minutes=1), True),  # its worker died while making it
    ],
)
async def test_a_snapshot_or_grant_lost_in_a_failover_is_asked_for_again(
    store: Store, outcome: str, age: timedelta, asked_again: bool
) -> None:
    """A group fetched or granted but never stored is fetched again once its lease is over."""
    now = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)
    await store.add_project(Project("p1", "P1", "acme", connected_at=now), [])
    await store.log_call(
        Call("first", "p1", "2026-11-23", "device", "daily", now - age, outcome=outcome)
    )
    deps = SimpleNamespace(store=store, clock=ManualClock(now), settings=load_settings())
    request = FetchRequested(
        request_id="again", project_id="p1", local_date="2026-11-23", group="device",
        reason="daily", timezone="UTC", requested_at=now,
    )  # fmt: skip
    topic = SentRecords()
    await quota.handle(request, {}, deps, topic)  # type: ignore[arg-type]
    assert [g.request_id for g in topic.sent] == (["again"] if asked_again else [])
    assert (await store.get_call("again") is not None) == asked_again


def up_env(simulator: ClaritySimulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    return env | {
        "CLARITYCAST_PARTITIONS": "2",
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_TICK_INTERVAL_S": "0.5",
        "CLARITYCAST_WEB_PORT": "0",
    }


async def line_in(up: UpProcess, text: str, timeout_s: float = 60) -> str:
    """The first line of up's output containing ``text`` (up must keep running)."""

    async def found() -> str | None:
        if up.process.poll() is not None:
            raise AssertionError(f"up exited with {up.process.returncode}:\n{''.join(up.lines)}")
        return next((line for line in list(up.lines) if text in line), None)

    return await wait_for(found, timeout_s=timeout_s, interval_s=0.1)


async def stop_up(up: UpProcess) -> None:
    """What Ctrl-C does; up must exit 0."""
    os.killpg(up.process.pid, signal.SIGINT)
    code = await asyncio.to_thread(up.process.wait, 60)
    assert code == 0, "".join(up.lines)


async def forget_groups(store: Store, project_id: str, day: str, groups: list[str]) -> None:
    """Delete stored snapshots behind the service's back, so these groups are missing.

    The tick looks at a project only when its next moment comes
    (`claritycast.store.due`): the groups are then released as a replay
    releases them, which makes the project due at the next tick.
    """
    await store.db.snapshots.delete_many(
        {"project_id": project_id, "local_date": day, "group": {"$in": groups}}
    )
    remaining = await store.groups_stored(project_id, day)
    await store.db.pulls.update_one(
        {"_id": f"{project_id}/{day}"}, {"$set": {"groups": sorted(remaining)}}
    )
    for group in groups:
        await store.release_group(project_id, day, group)


@pytest.fixture
async def shop_simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    sim.add_project("shop")
    async with sim:
        yield sim


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_full_restart_of_up_rebuilds_the_quota_from_the_call_log(
    tmp_path: Path, shop_simulator: ClaritySimulator
) -> None:
    """After `up` restarts with an empty broker, the call log alone keeps the day's 10.

    Before: connect (7 calls) and a refresh of 3 groups deleted by hand (3
    calls): 10 used. After the restart, Tansu has no quota table; one more
    group is deleted: the tick's request for it is dropped (the call log says
    it was fetched); `refresh` is refused before it is sent (the call log holds
    10), and a refresh request sent straight to the topic is refused by the
    quota check (its table, rebuilt from the call log, holds 10). Clarity sees
    no new request.
    """
    simulator = shop_simulator
    shop = simulator.projects["shop"]
    up = UpProcess(tmp_path / "var", env=up_env(simulator))
    try:
        await line_in(up, "claritycast is ready")
        await line_in(up, "No Clarity project is connected yet")
        env = up.env
        code, out, err = await run_cli(
            env, "connect", "--token", "-", "--label", "Shop", stdin=shop.token
        )
        assert code == 0, out + err
        project_id = out.split()[3]
        day = out.splitlines()[1].split()[1]
        mongodb_url = str(up.state()["mongodb_url"])
        store = Store.connect(mongodb_url, "claritycast")
        try:
            await forget_groups(store, project_id, day, list(GROUP_NAMES[4:]))
            code, out, err = await run_cli(env, "refresh", "Shop", "--wait", "60")
            assert code == 0, out + err
            assert [line.split()[1] for line in out.splitlines()] == ["stored"] * 3
        finally:
            await store.close()
        assert len(simulator.requests_for("shop")) == DAILY_LIMIT
        await stop_up(up)
    finally:
        up.stop()

    again = UpProcess(tmp_path / "var", env=up_env(simulator))
    try:
        await line_in(again, "claritycast is ready")
        assert not any("No Clarity project" in line for line in again.lines), "the store kept it"
        state = again.state()
        store = Store.connect(str(state["mongodb_url"]), "claritycast")
        try:
            await forget_groups(store, project_id, day, ["overall"])
            topic = FETCH_REQUESTED.full_name("claritycast.")

            async def tick_asked() -> bool:
                values = await read_topic(str(state["kafka_url"]), topic, 1, timeout_s=5)
                return any(
                    v.get("group") == "overall" and v.get("reason") == "daily" for v in values
                )

            await wait_for(tick_asked, timeout_s=30, interval_s=0.5)
            code, out, err = await run_cli(env, "refresh", "Shop", "--wait", "60")
            assert code == 1, out + err
            # Refused as one line: how much is used, and when the next refresh is possible.
            assert out == "" and err.startswith("claritycast: Shop: "), out + err
            assert f"10 of {DAILY_LIMIT} requests used in 24 h" in err, err
            assert "the next refresh is possible at" in err, err
            # The CLI refused from the call log before sending; a request that reaches
            # the quota check anyway (another service's) meets the table rebuilt from it.
            direct = FetchRequested(
                request_id="direct-refresh", project_id=project_id, local_date=day,
                group="overall", reason="refresh", timezone="UTC",
                requested_at=datetime.now(UTC),
            )  # fmt: skip
            await produce(str(state["kafka_url"]), topic, project_id, direct)
            rebuilt = await line_in(again, "quota.rebuilt", timeout_s=30)
            assert "calls=10" in rebuilt
            refusals = await wait_for(
                lambda: store.refusals_by_id(["direct-refresh"]), timeout_s=30
            )
            kind, reason, _ = refusals["direct-refresh"]
            assert kind == "refused" and f"{DAILY_LIMIT} of {DAILY_LIMIT}" in reason, reason
            assert await store.get_call("direct-refresh") is None, "a refusal is not a call"

            calls = await store.calls_since(project_id, datetime.now(UTC) - COUNTED_FOR)
            assert len(calls) == DAILY_LIMIT, "no call logged after the restart"
            (row,) = await quota_report(store, datetime.now(UTC), "Shop")
            assert (row.used, row.left, row.refreshes_left) == (DAILY_LIMIT, 0, 0)
            assert row.next_reset_at == min(call.at for call in calls) + COUNTED_FOR
            if "quota" in cli.commands:  # registered by the lead after this file was written
                code, out, err = await run_cli(env, "quota", "Shop")
                assert code == 0, err
                assert out.splitlines()[1].split()[2:4] == [f"{DAILY_LIMIT}/{DAILY_LIMIT}", "0"]
        finally:
            await store.close()
        requests_seen = simulator.requests_for("shop")
        assert len(requests_seen) == DAILY_LIMIT, "the same day is not fetched again"
        assert all(r.status == 200 for r in requests_seen)
        await stop_up(again)
    finally:
        again.stop()
    assert shop.token not in "".join(up.lines + again.lines), "the token leaked into a log"
