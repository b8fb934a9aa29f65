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

The embedded broker keeps every message in memory: once it passes
``CLARITYCAST_BROKER_MEMORY_LIMIT_MB``, `up` restarts it empty at a quiet
moment, stopping the worker and the web process around it
(`claritycast.runtime.broker_bound`). The embedded database is probed with a
write and started again if it hangs or exits
(`claritycast.runtime.database_watch`), and `up` expires its documents
through their TTL indexes (`claritycast.runtime.database_expiry`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

import httpx

import agents
from claritycast.errors import ServerFailedToStart
from claritycast.keyfile import keyring_for
from claritycast.logs import get_logger
from claritycast.runtime.app import app_id_for
from claritycast.runtime.broker_bound import BrokerBound, consumed_topics
from claritycast.runtime.database_expiry import DatabaseExpiry
from claritycast.runtime.database_watch import DatabaseWatch
from claritycast.runtime.embedded import (
    ChildProcess,
    RunDir,
    RunState,
    ServerProcess,
    new_state,
    start_servers,
    stop_all,
)
from claritycast.runtime.ports import bind, free_port
from claritycast.settings import Settings
from claritycast.store.core import Store, open_store

log = get_logger(__name__)

READY_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
RESTART_STABLE_S = 120.0


async def run_up(
    settings: Settings, stages: Sequence[str], announce: Callable[[str], None] = print
) -> int:
    """Run until a signal arrives; returns the exit code."""
    run_dir = RunDir(settings.run_dir)
    run_dir.acquire()
    try:
        web_port = _web_port(settings)  # a taken port says so before anything is made
        # The embedded default makes its key on the first start; an external MongoDB
        # without CLARITYCAST_SECRET_KEYS stops here, before anything is started. The
        # web process always needs it (it seals the tokens people give), the worker
        # when it fetches (it opens them).
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
        servers = await start_servers(settings, own_expiry=settings.database_expiry_s > 0)
        children.extend(servers)
        state = new_state(settings, servers)
        state.web_url = f"http://{settings.web_host}:{web_port}"
        run_dir.write_state(state)
        env = dict(os.environ)
        env.setdefault("CLARITYCAST_METRICS_PORT", "0")  # a worker's /metrics on a free port
        worker = ChildProcess(
            "worker", [sys.executable, "-m", "claritycast", "worker", "--stages", ",".join(stages)]
        )
        web = ChildProcess("web", [sys.executable, "-m", "claritycast", "web"])
        web_env = env | {"CLARITYCAST_WEB_PORT": str(web_port)}
        for child, child_env in ((worker, env), (web, web_env)):
            await child.spawn(env=child_env)
            children.append(child)
            assert child.pid is not None
            state.children[child.name] = child.pid
        run_dir.write_state(state)

        if await _wait_ready(settings, state, worker, stop) and await _web_answers(
            state.web_url, web, stop
        ):
            announce(
                f"claritycast is ready: web at {state.web_url}, kafka at {state.kafka_url}, "
                f"mongodb at {state.mongodb_url}, data in {settings.data_dir}. Ctrl-C to stop."
            )
            for line in await _first_steps(settings, state):
                announce(line)
        envs = {"worker": env, "web": web_env}
        supervisor = Supervisor(settings, [worker, web], envs, state, run_dir, stop, announce)
        return await supervisor.run(
            _broker_bound(settings, servers, stages, supervisor),
            _database_watch(settings, servers, state, supervisor),
            _database_expiry(settings, servers, state),
        )
    finally:
        await _stop_children(children)
        run_dir.release()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _web_port(settings: Settings) -> int:
    """The web process's port, checked free now (0: a free one) so a taken one is one line."""
    if settings.web_port == 0:
        return free_port(settings.web_host)
    probe = bind(settings.web_host, settings.web_port)
    probe.close()
    return settings.web_port


async def _web_answers(url: str, web: ChildProcess, stop: asyncio.Event) -> bool:
    """True once the web process answers ``/healthz``."""
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2.0) as client:
        while not stop.is_set() and web.returncode is None:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return True
            if asyncio.get_running_loop().time() > deadline:
                raise ServerFailedToStart(
                    f"the web process (pid {web.pid}) did not answer within "
                    f"{READY_TIMEOUT_S:.0f} s; see its log lines above"
                )
            await asyncio.sleep(0.25)
    return False


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


async def _first_steps(settings: Settings, state: RunState) -> list[str]:
    """What a person should do next: create the first user, connect the first project."""
    store = Store.connect(state.mongodb_url, settings.mongodb_database)
    try:
        has_users = await store.count_users() > 0
        has_projects = bool(await store.projects_page(None, 1))
    finally:
        await store.close()
    lines = []
    if not has_users:
        lines.append(
            "No one can sign in yet: create the first admin with "
            "`claritycast users add you@example.com --role admin`, then open "
            f"{state.web_url}. Services use API keys: `claritycast api-keys create NAME`."
        )
    if not has_projects:
        lines.append(
            "No Clarity project is connected yet. Connect one with "
            "`claritycast connect --label NAME --token -`, or see everything work "
            "first with `claritycast demo` (30 simulated days in about a minute, "
            f"reports in {settings.data_dir / 'outbox'})."
        )
    return lines


class Watch(Protocol):
    """What runs beside the children until `up` stops: the broker's bound, the database's."""

    async def watch(self, stop: asyncio.Event) -> None: ...


class Supervisor:
    """Keeps the worker and the web process running; pauses them for a planned broker restart.

    A child that exits on its own is started again with backoff; one stopped by
    `pause` is left to `resume`, which starts both again and waits until the
    worker reports in and the web process answers.
    """

    def __init__(
        self,
        settings: Settings,
        children: list[ChildProcess],
        envs: dict[str, dict[str, str]],
        state: RunState,
        run_dir: RunDir,
        stop: asyncio.Event,
        announce: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.children = children
        self.envs = envs
        self.state = state
        self.run_dir = run_dir
        self.stop = stop
        self.announce = announce
        self.running = asyncio.Event()
        self.running.set()

    async def run(self, *watches: Watch | None) -> int:
        """Until a signal; returns the exit code."""
        watchers = [watch.watch(self.stop) for watch in watches if watch is not None]
        await asyncio.gather(*(self._keep_running(child) for child in self.children), *watchers)
        log.info("up.stopping", reason="signal")
        return 0

    async def pause(self) -> None:
        """Stop the worker and the web process (a planned stop, not a crash)."""
        self.running.clear()
        await asyncio.gather(*(child.stop(WORKER_STOP_TIMEOUT_S) for child in self.children))

    async def resume(self) -> None:
        """Start them again and wait until they are ready; nothing when `up` is stopping."""
        try:
            if self.stop.is_set():
                return
            for child in self.children:
                await self._spawn(child)
            worker = next(child for child in self.children if child.name == "worker")
            web = next(child for child in self.children if child.name == "web")
            try:
                await _wait_ready(self.settings, self.state, worker, self.stop)
                if self.state.web_url is not None:
                    await _web_answers(self.state.web_url, web, self.stop)
            except ServerFailedToStart as exc:  # each is restarted as after any exit
                log.error("up.resume_slow", error=str(exc))
        finally:
            self.running.set()

    async def _spawn(self, child: ChildProcess) -> None:
        await child.spawn(env=self.envs[child.name])
        assert child.pid is not None
        self.state.children[child.name] = child.pid
        self.run_dir.write_state(self.state)

    async def broker_emptied(self) -> int:
        """Deliveries opened but never sent are sent by the next tick (see `BrokerBound`)."""
        async with self._store() as store:
            return await store.recheck_due_deliveries_at_once()

    async def drain(self, until: datetime | None) -> None:
        """Begin (until ``until``) or end the drain the tick reads (`claritycast.store.drain`)."""
        async with self._store() as store:
            if until is None:
                await store.end_drain()
            else:
                await store.begin_drain(until, reason="broker restart")

    def _store(self) -> AbstractAsyncContextManager[Store]:
        return open_store(self.state.mongodb_url, self.settings.mongodb_database)

    def server_restarted(self, server: ServerProcess) -> None:
        """Record a restarted server's new pid (its port is the same) for `status` and others."""
        assert server.pid is not None
        self.state.children[server.name] = server.pid
        self.run_dir.write_state(self.state)

    async def _keep_running(self, child: ChildProcess) -> None:
        loop = asyncio.get_running_loop()
        delay_s = RESTART_FIRST_S
        while True:
            started = loop.time()
            code = await _wait_end(child, self.stop)
            if code is None:
                return
            if not self.running.is_set():  # paused for a broker restart: resume starts it
                await _first(self.running, self.stop)
                if self.stop.is_set():
                    return
                continue
            if loop.time() - started > RESTART_STABLE_S:
                delay_s = RESTART_FIRST_S
            what = "the worker" if child.name == "worker" else f"the {child.name} process"
            log.error(f"up.{child.name}_exited", pid=child.pid, exit_code=code,
                      restart_in_s=delay_s)  # fmt: skip
            self.announce(f"{what} (pid {child.pid}) exited with code {code}; "
                          f"starting a new one in {delay_s:.0f} s")  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay_s)
            await _first(self.running, self.stop)  # never in the middle of a planned restart
            if self.stop.is_set():
                return
            if child.returncode is None:  # a planned restart started it meanwhile
                continue
            delay_s = min(delay_s * 2, RESTART_MAX_S)
            await self._spawn(child)
            log.info(f"up.{child.name}_restarted", pid=child.pid)


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of ``events`` is set."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


def _broker_bound(
    settings: Settings, servers: list[ServerProcess], stages: Sequence[str], sup: Supervisor
) -> BrokerBound | None:
    """The embedded broker's watcher, when there is one and a limit is set."""
    broker = next((server for server in servers if server.name == "tansu"), None)
    if broker is None or settings.broker_memory_limit_mb == 0:
        return None
    names = tuple(stage.name for stage in agents.select(stages))
    group = app_id_for(settings, names)
    return BrokerBound(
        settings, broker, group, consumed_topics(settings, names), sup, sup.server_restarted
    )


def _database_watch(
    settings: Settings, servers: list[ServerProcess], state: RunState, sup: Supervisor
) -> DatabaseWatch | None:
    """The embedded database's watch, when there is one and it is not turned off."""
    database = next((server for server in servers if server.name == "secantusdb"), None)
    if database is None or settings.database_watch_s == 0:
        return None
    return DatabaseWatch(settings, database, state.mongodb_url, sup.server_restarted)


def _database_expiry(
    settings: Settings, servers: list[ServerProcess], state: RunState
) -> DatabaseExpiry | None:
    """The embedded database's expiry, unless SecantusDB's own sweeper was left on."""
    if not any(server.name == "secantusdb" for server in servers):
        return None
    if settings.database_expiry_s == 0:
        return None
    return DatabaseExpiry(settings, state.mongodb_url)


async def _wait_end(child: ChildProcess, stop: asyncio.Event) -> int | None:
    """The child's exit code when it exits on its own; None when a signal came first."""
    assert child.process is not None
    stopped = asyncio.create_task(stop.wait())
    exited = asyncio.create_task(child.process.wait())
    await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    exited.cancel()
    if stop.is_set():
        return None
    return child.returncode if child.returncode is not None else 1


async def _stop_children(children: list[ChildProcess]) -> None:
    """The web process and the worker first (in parallel), then the servers they use."""
    processes = [child for child in children if child.name in ("worker", "web")]
    servers = [child for child in children if child.name not in ("worker", "web")]

    async def stop(child: ChildProcess) -> None:
        code = await child.stop(WORKER_STOP_TIMEOUT_S)
        log.info("process.stopped", process=child.name, pid=child.pid, exit_code=code)

    await asyncio.gather(*(stop(child) for child in processes))
    await stop_all(servers)
