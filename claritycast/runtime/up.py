"""`claritycast up`: the embedded servers and a worker, stopped together.

Order matters both ways: the broker and the database start and listen before
the worker starts; on Ctrl-C or SIGTERM the worker stops first (committing
its offsets against a live broker), then the servers. Every child runs in its
own session with ``PR_SET_PDEATHSIG``, so even a ``kill -9`` of this process
leaves nothing running.

A worker that exits on its own (an agent crashed, so it stopped rather than
run on without a stage) is started again, after a backoff that doubles from
`RESTART_FIRST_S` to `RESTART_MAX_S` and starts over once a worker has run
for `RESTART_STABLE_S`; each restart is announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

import agents
from claritycast.errors import ServerFailedToStart
from claritycast.keyfile import keyring_for
from claritycast.logs import get_logger
from claritycast.runtime.embedded import (
    ChildProcess,
    RunDir,
    RunState,
    new_state,
    start_servers,
    stop_all,
)
from claritycast.settings import Settings
from claritycast.store.core import Store

log = get_logger(__name__)

READY_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
RESTART_STABLE_S = 120.0


async def run_up(
    settings: Settings, stages: Sequence[str], announce: Callable[[str], None] = print
) -> int:
    """Run until a signal arrives or the worker exits; returns the exit code."""
    run_dir = RunDir(settings.run_dir)
    run_dir.acquire()
    try:
        # The embedded default makes its key on the first start; an external MongoDB
        # without CLARITYCAST_SECRET_KEYS stops here, before anything is started.
        if any(stage.name == "fetch" for stage in agents.select(stages)):
            keyring_for(settings, create=True)
    except BaseException:
        run_dir.release()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    children: list[ChildProcess] = []
    try:
        servers = await start_servers(settings)
        children.extend(servers)
        state = new_state(settings, servers)
        run_dir.write_state(state)
        worker = ChildProcess(
            "worker", [sys.executable, "-m", "claritycast", "worker", "--stages", ",".join(stages)]
        )
        await worker.spawn(env=dict(os.environ))
        children.append(worker)
        assert worker.pid is not None
        state.children["worker"] = worker.pid
        run_dir.write_state(state)

        if await _wait_ready(settings, state, worker, stop):
            announce(
                f"claritycast is ready: kafka at {state.kafka_url}, mongodb at "
                f"{state.mongodb_url}, data in {settings.data_dir}. Ctrl-C to stop."
            )
            if not await _has_projects(settings, state):
                announce(
                    "No Clarity project is connected yet. Connect one with "
                    "`claritycast connect --label NAME --token -`, or see everything work "
                    "first with `claritycast demo` (30 simulated days in about a minute, "
                    f"reports in {settings.data_dir / 'outbox'})."
                )
        return await _supervise(worker, state, run_dir, stop, announce)
    finally:
        await _stop_children(children)
        run_dir.release()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _wait_ready(
    settings: Settings, state: RunState, worker: ChildProcess, stop: asyncio.Event
) -> bool:
    """True once the worker's first heartbeat is in the database."""
    store = Store.connect(state.mongodb_url, settings.mongodb_database)
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    try:
        while not stop.is_set() and worker.returncode is None:
            workers = await store.live_workers(within_s=60)
            if any(beat.pid == worker.pid for beat in workers):
                return True
            if asyncio.get_running_loop().time() > deadline:
                raise ServerFailedToStart(
                    f"the worker (pid {worker.pid}) did not report ready within "
                    f"{READY_TIMEOUT_S:.0f} s; see its log lines above"
                )
            await asyncio.sleep(0.25)
        return False
    finally:
        await store.close()


async def _has_projects(settings: Settings, state: RunState) -> bool:
    store = Store.connect(state.mongodb_url, settings.mongodb_database)
    try:
        return bool(await store.projects())
    finally:
        await store.close()


async def _supervise(
    worker: ChildProcess,
    state: RunState,
    run_dir: RunDir,
    stop: asyncio.Event,
    announce: Callable[[str], None],
) -> int:
    """Keep a worker running until a signal: one that exits is started again, with backoff."""
    loop = asyncio.get_running_loop()
    delay_s = RESTART_FIRST_S
    while True:
        started = loop.time()
        code = await _wait_end(worker, stop)
        if code is None:
            return 0
        if loop.time() - started > RESTART_STABLE_S:
            delay_s = RESTART_FIRST_S
        log.error("up.worker_exited", pid=worker.pid, exit_code=code, restart_in_s=delay_s)
        announce(f"the worker (pid {worker.pid}) exited with code {code}; "
                 f"starting a new one in {delay_s:.0f} s")  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay_s)
        if stop.is_set():
            log.info("up.stopping", reason="signal")
            return 0
        delay_s = min(delay_s * 2, RESTART_MAX_S)
        await worker.spawn(env=dict(os.environ))
        assert worker.pid is not None
        state.children["worker"] = worker.pid
        run_dir.write_state(state)
        log.info("up.worker_restarted", pid=worker.pid)


async def _wait_end(worker: ChildProcess, stop: asyncio.Event) -> int | None:
    """The worker's exit code when it exits on its own; None when a signal came first."""
    assert worker.process is not None
    stopped = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(worker.process.wait())
    await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    exited.cancel()
    if stop.is_set():
        log.info("up.stopping", reason="signal")
        return None
    return worker.returncode if worker.returncode is not None else 1


async def _stop_children(children: list[ChildProcess]) -> None:
    workers = [child for child in children if child.name == "worker"]
    servers = [child for child in children if child.name != "worker"]
    for worker in workers:
        code = await worker.stop(WORKER_STOP_TIMEOUT_S)
        log.info("process.stopped", process="worker", pid=worker.pid, exit_code=code)
    await stop_all(servers)
