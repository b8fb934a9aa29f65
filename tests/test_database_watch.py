"""The embedded database's watch: a hung or vanished SecantusDB is started again by `up`.

A hang is made the way the month benchmark met one, as the chain sees it:
the process is there, its port open, and nothing answers (SIGSTOP). `up`
must see it within its limit, start the database again over the same files
on the same port, and the worker must go on with the night without being
restarted: what was stored before is still there, and the next pull is
asked of Clarity once per group, as always.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claritycast.clock import SystemClock
from claritycast.localtime import local_yesterday
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from tests.helpers import wait_for
from tests.test_broker_bound import bound_env, store_of
from tests.test_contention import add_waiting_project
from tests.test_restarts import line_in, stop_up
from tests.test_up import UpProcess

PROJECTS = ("p1", "p2", "p3")


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(SystemClock())
    for project_id in PROJECTS:
        sim.add_project(project_id)
    async with sim:
        yield sim


async def pull(store: Store, simulator: ClaritySimulator, project_id: str) -> None:
    """Connect a project, let the tick pull it, wait until all its groups are stored."""
    await add_waiting_project(store, simulator, project_id, datetime.now(UTC))
    await store.set_deferred_until(project_id, None)
    day = local_yesterday("UTC", datetime.now(UTC)).isoformat()

    async def stored() -> bool:
        return len(await store.groups_stored(project_id, day)) == len(GROUP_NAMES)

    await wait_for(stored, timeout_s=60, interval_s=0.2)


def pid_of(up: UpProcess, name: str) -> int:
    return int(up.state()["children"][name])  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_hung_database_is_started_again_and_the_night_goes_on(
    tmp_path: Path, simulator: ClaritySimulator
) -> None:
    env = bound_env(
        simulator,
        tick_interval_s="0.3",
        broker_memory_limit_mb="0",  # this test is about the database alone
        database_watch_s="0.5",
        database_hung_s="3",
    )
    up = UpProcess(tmp_path / "var", env=env)
    hung = 0
    try:
        await line_in(up, "claritycast is ready")
        before = up.state()
        worker = pid_of(up, "worker")
        store = store_of(up)
        try:
            await pull(store, simulator, "p1")

            hung = pid_of(up, "secantusdb")
            os.kill(hung, signal.SIGSTOP)  # there, listening, answering nothing
            await line_in(up, "database.hung", timeout_s=30)
            restarted = await line_in(up, "database.restarted", timeout_s=30)
            assert "why=hung" in restarted, restarted
            assert pid_of(up, "secantusdb") != hung
            day = local_yesterday("UTC", datetime.now(UTC)).isoformat()
            assert len(await store.groups_stored("p1", day)) == len(GROUP_NAMES), "kept"
            await pull(store, simulator, "p2")  # the same worker, reconnected by itself

            gone = pid_of(up, "secantusdb")
            os.kill(gone, signal.SIGKILL)
            await line_in(up, "database.exited", timeout_s=30)

            async def replaced() -> bool:
                return sum("database.restarted" in line for line in list(up.lines)) == 2

            await wait_for(replaced, timeout_s=30, interval_s=0.2)
            assert pid_of(up, "secantusdb") != gone
            await pull(store, simulator, "p3")
        finally:
            await store.close()
        after = up.state()
        await stop_up(up)
    finally:
        up.stop()
        if hung:  # a stopped process left behind would never exit
            with contextlib.suppress(ProcessLookupError):
                os.kill(hung, signal.SIGKILL)
    output = "".join(up.lines)
    print("".join(line for line in up.lines if "database." in line))  # pytest -s
    assert "Traceback" not in output
    assert output.count("database.restarted") == 2, output
    assert after["mongodb_url"] == before["mongodb_url"], "the same port"
    assert after["children"]["worker"] == worker, "the worker was not restarted"  # type: ignore[index]
    assert "up.worker_exited" not in output
    for project_id in PROJECTS:
        seen = simulator.requests_for(project_id)
        assert len(seen) == len(GROUP_NAMES), f"{project_id}: {len(seen)} Clarity requests"
        assert all(request.status == 200 for request in seen)
