"""The quota under contention: real worker processes, a nightly pull and 50 refreshes at once.

All workers run every stage in one consumer group, so the quota table's
partitions are spread among them and exactly one owns the project; the
refreshes land on that owner's partition while the leader's tick asks for the
pull. Clarity's own request log is the judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from claritycast.clock import SystemClock
from claritycast.ingest.quota import COUNTED_FOR, DAILY_LIMIT, REFRESHES_PER_DAY
from claritycast.ingest.refresh import refresh_requests
from claritycast.localtime import local_yesterday
from claritycast.runtime.publisher import Publisher
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES
from models.documents import Organisation, Project
from models.records import FetchRequested
from tests.helpers import WorkerProcess, wait_for
from tests.test_tick import max_in_24h
from topics import FETCH_REQUESTED

pytestmark = pytest.mark.slow

PROJECT = "busy"
REFRESHES = 50
LATENCY_S = 0.05
USED_UP = re.compile(rf"^\d+ of {DAILY_LIMIT} requests used in 24 h$")


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    sim.add_project(PROJECT).latency_s = LATENCY_S
    async with sim:
        yield sim


@pytest.fixture
def worker_env(settings_env: dict[str, str], simulator: ClaritySimulator) -> dict[str, str]:
    return settings_env | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_TICK_INTERVAL_S": "0.3",
    }


async def start_workers(env: dict[str, str], store: Store, count: int) -> list[WorkerProcess]:
    workers = [WorkerProcess(env) for _ in range(count)]
    started = await asyncio.gather(*(w.start(store) for w in workers), return_exceptions=True)
    failures = [outcome for outcome in started if isinstance(outcome, BaseException)]
    if failures:
        with contextlib.suppress(AssertionError):  # the start failure is the one to report
            await stop_workers(workers)
        raise failures[0]
    return workers


async def stop_workers(workers: list[WorkerProcess]) -> None:
    """Stop them all; a worker that does not stop cleanly fails the test with its output."""
    running = [w for w in workers if w.process is not None]
    codes = await asyncio.gather(*(w.stop() for w in running), return_exceptions=True)
    for worker, code in zip(running, codes, strict=True):
        if code not in (0, -signal.SIGKILL):
            raise AssertionError(f"worker ended with {code!r}:\n{await worker.output()}")


async def add_waiting_project(
    store: Store, simulator: ClaritySimulator, project_id: str, now: datetime
) -> None:
    """A connected project (UTC) that the tick leaves alone until the test lets it go."""
    if await store.get_organisation("acme") is None:
        await store.add_organisation(Organisation("acme", "Acme", "UTC", now))
    project = Project(
        project_id,
        project_id.title(),
        "acme",
        store.seal_token(simulator.projects[project_id].token, project_id),
        connected_at=now,
        deferred_until=now + timedelta(hours=1),
    )
    await store.add_project(project, [metric.id for metric in catalogue.METRICS])


@pytest.mark.parametrize("worker_count", [2, 3])
@pytest.mark.parametrize("moment", ["as the pull starts", "once the pull is under way"])
@pytest.mark.timeout(150)
async def test_fifty_refreshes_during_the_nightly_pull(
    worker_count: int,
    moment: str,
    worker_env: dict[str, str],
    settings_values: dict[str, object],
    store: Store,
    simulator: ClaritySimulator,
) -> None:
    """≤ 10 requests in 24 h, the 7 groups stored, 3 refreshes granted and 47 told when.

    Sent as the tick starts the pull, the refreshes mostly come first and take
    groups the pull then finds fetched; sent once the pull's first call is
    logged, they queue behind its 7 and fill the quota to exactly 10.
    """
    now = datetime.now(UTC)
    await add_waiting_project(store, simulator, PROJECT, now)
    workers = await start_workers(worker_env, store, worker_count)
    try:
        requests: list[FetchRequested] = [
            (await refresh_requests(store, PROJECT, [GROUP_NAMES[i % 7]], now, "UTC"))[0]
            for i in range(REFRESHES)
        ]
        publisher = Publisher(
            str(settings_values["kafka_url"]),
            str(settings_values["topic_prefix"]),
            int(str(settings_values["partitions"])),
        )
        async with publisher:
            await store.set_deferred_until(PROJECT, None)  # the tick's pull may start now
            if moment == "once the pull is under way":
                await wait_for(lambda: store.calls_since(PROJECT, now), timeout_s=30)
            await asyncio.gather(
                *(publisher.send(FETCH_REQUESTED, PROJECT, request) for request in requests)
            )
        yesterday = local_yesterday("UTC", now).isoformat()
        ids = [request.request_id for request in requests]

        async def settled() -> bool:
            answered = len(await store.calls_by_id(ids)) + len(await store.refusals_by_id(ids))
            calls = await store.calls_since(PROJECT, now - timedelta(hours=1))
            return (
                answered == REFRESHES
                and all(call.outcome not in ("granted", "calling") for call in calls)
                and len(await store.groups_stored(PROJECT, yesterday)) == 7
            )

        await wait_for(settled, timeout_s=60, interval_s=0.2)
    finally:
        await stop_workers(workers)

    requests_seen = simulator.requests_for(PROJECT)
    assert max_in_24h([r.at for r in requests_seen]) <= DAILY_LIMIT
    assert all(r.status == 200 for r in requests_seen), "Clarity never had to say 429"
    assert await store.groups_stored(PROJECT, yesterday) == set(GROUP_NAMES)

    calls = await store.calls_since(PROJECT, now - timedelta(hours=1))
    assert len(requests_seen) == sum(1 for call in calls if call.outcome == "ok")
    refreshed = sorted(
        (call for call in calls if call.reason == "refresh"), key=lambda call: call.at
    )
    assert len(refreshed) == REFRESHES_PER_DAY
    daily = {call.group for call in calls if call.reason == "daily"}
    assert daily | {call.group for call in refreshed} == set(GROUP_NAMES)

    refusals = await store.refusals_by_id(ids)
    assert len(refusals) == REFRESHES - REFRESHES_PER_DAY
    first_refresh_ages_out = refreshed[0].at + COUNTED_FOR
    for _kind, reason, next_possible_at in refusals.values():
        assert next_possible_at is not None, reason
        assert next_possible_at > now
        if reason.startswith("no refresh left"):
            assert abs(next_possible_at - first_refresh_ages_out) < timedelta(milliseconds=2)
        else:
            assert USED_UP.match(reason), reason
    owners = sum(1 for w in workers if w.logged("quota.granted") or w.logged("quota.refused"))
    print(  # the figures worth quoting (pytest -s)
        f"\n{worker_count} workers, {moment}: {len(requests_seen)} requests to Clarity, "
        f"{len(refreshed)} refreshes, {len(daily)} daily, {len(refusals)} refused; "
        f"quota decided by {owners} worker(s)"
    )
