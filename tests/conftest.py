"""Real servers for the suite: one Tansu broker and one SecantusDB per session.

They are started with the same argument lists `claritycast up` uses, on free
loopback ports, so overlapping test runs never collide. Every test gets its
own app id (consumer group), topic prefix and database from `settings`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from claritycast.clock import Clock, ManualClock, SystemClock
from claritycast.keyfile import keyring_for
from claritycast.keyring import new_key
from claritycast.runtime.app import ClarityCastApp, create_app
from claritycast.runtime.embedded import (
    Endpoints,
    ServerProcess,
    embedded_mongodb_url,
    secantusdb,
    tansu,
)
from claritycast.runtime.ports import free_port
from claritycast.settings import Settings, load_settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from tests.helpers import running_app, start_server_process, stop_server_process

TEST_PARTITIONS = 4
TEST_SESSION_TIMEOUT_S = 3.0
# The key that seals the session's Clarity tokens: fresh for each run, never committed.
TEST_SECRET_KEY = new_key()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `server` every test that starts a server process: those that use the
    session's Tansu and SecantusDB (the `servers` fixture, however indirectly) and
    the `slow` ones, which start whole processes of their own. `-m 'not server'`
    is then the fast part of the suite that a second Python runs (`make test-unit`).
    """
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()) or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own CLARITYCAST_* settings."""
    for name in list(os.environ):
        if name.startswith("CLARITYCAST_"):
            monkeypatch.delenv(name)


def _start(server: ServerProcess) -> subprocess.Popen[bytes]:
    return start_server_process(server.argv, server.port, server.log_path)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    """A real Tansu broker and a real SecantusDB for the whole session."""
    root = tmp_path_factory.mktemp("servers")
    broker = tansu(free_port(), root / "log")
    database = secantusdb(free_port(), root / "mongodb", root / "log", sync_on_commit=False)
    processes = [_start(broker)]
    try:
        processes.append(_start(database))
        yield Endpoints(
            kafka_url=f"kafka://127.0.0.1:{broker.port}",
            mongodb_url=embedded_mongodb_url(database.port),
            embedded_kafka=True,
            embedded_mongodb=True,
        )
    finally:
        for process in reversed(processes):
            stop_server_process(process)


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:10]


def isolated_settings(servers: Endpoints, test_id: str, folder: Path) -> dict[str, Any]:
    """Settings of their own (app id, topics, database, data folder) on the session's servers."""
    return {
        "kafka_url": servers.kafka_url,
        "mongodb_url": servers.mongodb_url,
        "kafka_flavour": "tansu",
        "app_id": f"t{test_id}",
        "topic_prefix": f"t{test_id}.",
        "mongodb_database": f"t_{test_id}",
        "data_dir": folder / "var",
        "partitions": TEST_PARTITIONS,
        "broker_session_timeout_s": TEST_SESSION_TIMEOUT_S,
        # Many hops and little data: short fetch waits (`claritycast.runtime.transport`, 5.).
        "broker_fetch_wait_ms": 50,
        # A web process on a free port (test runs overlap), signing with a test secret.
        "web_port": 0,
        "web_secret": "test-web-secret-not-for-production",
        "secret_keys": TEST_SECRET_KEY,
    }


def settings_as_env(values: dict[str, Any]) -> dict[str, str]:
    """Settings as the environment of a subprocess, without the developer's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env.update({f"CLARITYCAST_{k.upper()}": str(v) for k, v in values.items()})
    return env


@pytest.fixture
def settings_values(servers: Endpoints, test_id: str, tmp_path: Path) -> dict[str, Any]:
    """Settings of one isolated test, as keyword values."""
    return isolated_settings(servers, test_id, tmp_path)


@pytest.fixture
def settings(settings_values: dict[str, Any]) -> Settings:
    return load_settings(**settings_values)


@pytest.fixture
def settings_env(settings_values: dict[str, Any]) -> dict[str, str]:
    """The same settings as environment variables, for subprocesses."""
    return settings_as_env(settings_values)


@pytest.fixture
def endpoints(servers: Endpoints) -> Endpoints:
    return servers


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """A store on this test's own database, indexes created, sealing with the test's key."""
    assert settings.mongodb_url is not None
    store = Store.connect(
        settings.mongodb_url, settings.mongodb_database, keyring=keyring_for(settings)
    )
    await store.ensure_indexes()
    try:
        yield store
    finally:
        await store.client.drop_database(settings.mongodb_database)
        await store.close()


StartChain = Callable[..., Awaitable[ClarityCastApp]]
DEFAULT_START = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """The time of a test's chain and simulator: a `ManualClock` at the module's ``START``.

    A module whose ``START`` is None runs on the real clock (real worker processes).
    """
    start = getattr(request.module, "START", DEFAULT_START)
    return SystemClock() if start is None else ManualClock(start)


@pytest.fixture
async def simulator(clock: Clock) -> AsyncIterator[ClaritySimulator]:
    """The Clarity simulator on the test's clock, serving on a free loopback port."""
    async with ClaritySimulator(clock) as sim:
        yield sim


@pytest.fixture
async def start_chain(
    settings_values: dict[str, Any], endpoints: Endpoints, store: Store
) -> AsyncIterator[StartChain]:
    """Start an app with some stages in the test's own process; all stop after the test.

    ``start(clock, stages=("all",), settings=None, **overrides)``: the clock is
    the one the test moves (a `ManualClock` shared with the simulator); the
    settings are the test's own, or ``settings``, with keyword arguments
    overriding them (``clarity_api_url=…``).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            clock: Clock,
            stages: tuple[str, ...] = ("all",),
            settings: Settings | None = None,
            **overrides: Any,
        ) -> ClarityCastApp:
            if settings is None:
                settings = load_settings(**(settings_values | overrides))
            elif overrides:  # a copy, not a reload: a reload would lose the secrets' values
                settings = settings.model_copy(update=overrides)
            app = create_app(settings, list(stages), endpoints, clock)
            await stack.enter_async_context(running_app(app))
            return app

        yield start


@pytest.fixture
def chain_settings(settings_values: dict[str, Any], simulator: ClaritySimulator) -> Settings:
    """The chain's settings: the simulator's URL, a fast tick. A module may override it."""
    return load_settings(
        **settings_values, clarity_api_url=simulator.export_url, tick_interval_s=0.2
    )


@pytest.fixture
async def chain(
    start_chain: StartChain,
    clock: Clock,
    chain_settings: Settings,
    request: pytest.FixtureRequest,
) -> ClarityCastApp:
    """The module's ``CHAIN_STAGES`` (default: all) in the test's process, on its clock."""
    stages = getattr(request.module, "CHAIN_STAGES", ("all",))
    return await start_chain(clock, stages, settings=chain_settings)


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandin]:
    """The Slack stand-in: #web and #reports with the app in them, #secret without it."""
    standin = SlackStandin()
    for channel in ("web", "reports"):
        standin.add_channel(channel)
    standin.add_channel("secret", member=False)
    async with standin:
        yield standin
