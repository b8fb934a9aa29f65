"""The embedded database's expiry: what TTL indexes expire, deleted through them by `up`.

SecantusDB's own sweeper reads every document of a TTL collection under its
global lock (`claritycast.runtime.database_expiry`), so `up` runs it without
one and expires documents itself. These tests run a real SecantusDB started
as `up` starts it: what expires goes and nothing else does (a document not
yet due, one pinned, one without the date, one outside a partial index, one
whose index is not a TTL index); what expires is found through the index;
and `up` itself sweeps a running database.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from secantus import cli
from structlog.testing import capture_logs

from claritycast.runtime import secantusdb_main
from claritycast.runtime.database_expiry import (
    DatabaseExpiry,
    TtlIndex,
    expire_all,
    ttl_index,
    ttl_indexes,
)
from claritycast.runtime.embedded import embedded_mongodb_url, secantusdb
from claritycast.runtime.ports import free_port
from claritycast.settings import Settings
from claritycast.store.claim_check import COLLECTION as BLOCKS
from tests.helpers import start_server_process, stop_server_process, wait_for
from tests.test_restarts import line_in, stop_up
from tests.test_up import UpProcess

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_ttl_index_is_one_date_field_and_a_lifetime() -> None:
    """What mongod's TTL monitor expires by, and nothing else."""
    week = {"key": {"created_at": 1}, "expireAfterSeconds": 7 * 86400, "name": "expire"}
    assert ttl_index("calls", week) == TtlIndex("calls", "created_at", timedelta(days=7))
    assert ttl_index("calls", week).expired(NOW) == {  # type: ignore[union-attr]
        "created_at": {"$lt": NOW - timedelta(days=7)}
    }
    at_its_date = {"key": {"expires_at": 1}, "expireAfterSeconds": 0}
    assert ttl_index("blocks", at_its_date) == TtlIndex("blocks", "expires_at", timedelta(0))
    partial = at_its_date | {"partialFilterExpression": {"kind": "draft"}}
    assert ttl_index("drafts", partial).expired(NOW) == {  # type: ignore[union-attr]
        "expires_at": {"$lt": NOW},
        "kind": "draft",
    }
    on_its_field = at_its_date | {"partialFilterExpression": {"expires_at": {"$exists": True}}}
    assert ttl_index("drafts", on_its_field).expired(NOW) == {  # type: ignore[union-attr]
        "$and": [{"expires_at": {"$lt": NOW}}, {"expires_at": {"$exists": True}}]
    }
    assert ttl_index("calls", {"key": {"created_at": 1}}) is None, "no lifetime"
    assert ttl_index("calls", {"key": {"a": 1, "b": 1}, "expireAfterSeconds": 5}) is None
    assert ttl_index("calls", {"key": {"_id": 1}, "expireAfterSeconds": 5}) is None
    assert ttl_index("calls", {"key": {"a": 1}, "expireAfterSeconds": True}) is None
    assert ttl_index("calls", {"key": {"a": 1}, "expireAfterSeconds": -1}) is None


def test_the_launcher_makes_secantusdb_without_its_sweeper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server `up` starts has no TTL thread; the one SecantusDB's CLI starts has one."""
    monkeypatch.setattr(cli, "SecantusDBServer", cli.SecantusDBServer)  # put back afterwards
    plain = cli.SecantusDBServer(storage_path=str(tmp_path / "plain"))
    try:
        assert plain.storage._ttl_thread is not None, "the check would prove nothing"
    finally:
        plain.storage.close()
    monkeypatch.setattr(cli, "main", lambda argv: 0)
    assert secantusdb_main.main([]) == 0
    ours = cli.SecantusDBServer(storage_path=str(tmp_path / "ours"))
    try:
        assert ours.storage._ttl_thread is None
    finally:
        ours.storage.close()


async def test_a_sweep_that_cannot_reach_the_database_is_one_line_and_no_harm() -> None:
    """Down or restarting (the watch restarts it): logged, nothing raised; the next one retries."""
    settings = Settings(database_expiry_s=60)
    url = f"mongodb://127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300"  # nobody listens
    expiry = DatabaseExpiry(settings, url)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        with capture_logs() as logged:
            assert await expiry.sweep(client["claritycast"]) == {}
    finally:
        await client.close()
    assert [line["event"] for line in logged] == ["database.expiry_failed"]
    assert logged[0]["error"] == "ServerSelectionTimeoutError"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A SecantusDB of its own, started as `up` starts it: without its sweeper."""
    root = tmp_path_factory.mktemp("expiry")
    server = secantusdb(
        free_port(), root / "mongodb", root / "log", sync_on_commit=False, ttl_sweeper=False
    )
    assert "claritycast.runtime.secantusdb_main" in server.argv
    process: subprocess.Popen[bytes] = start_server_process(
        server.argv, server.port, server.log_path
    )
    try:
        yield embedded_mongodb_url(server.port)
    finally:
        stop_server_process(process)


@pytest.fixture
async def db(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncDatabase]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(database_url, tz_aware=True)
    name = request.node.name[:40].replace("[", "_").replace("]", "_")
    await client.drop_database(name)
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def ids_in(db: AsyncDatabase, collection: str) -> set[Any]:
    return {doc["_id"] async for doc in db[collection].find({}, {"_id": 1})}


@pytest.mark.slow
async def test_what_has_expired_goes_and_nothing_else(db: AsyncDatabase) -> None:
    await db.blocks.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
    await db.calls.create_index([("created_at", ASCENDING)], expireAfterSeconds=7 * 86400)
    await db.drafts.create_index(
        [("at", ASCENDING)], expireAfterSeconds=0, partialFilterExpression={"kind": "draft"}
    )
    await db.kept.create_index([("at", ASCENDING)])  # not a TTL index: never expires
    expired = 2500
    await db.blocks.insert_many(
        [{"_id": f"old-{i}", "expires_at": NOW - timedelta(seconds=1 + i)} for i in range(expired)]
        + [
            {"_id": "due-later", "expires_at": NOW + timedelta(seconds=1)},
            {"_id": "pinned", "expires_at": None},
            {"_id": "no-date"},
        ]
    )
    await db.calls.insert_many([
        {"_id": "eight-days", "created_at": NOW - timedelta(days=8)},
        {"_id": "six-days", "created_at": NOW - timedelta(days=6)},
    ])  # fmt: skip
    await db.drafts.insert_many([
        {"_id": "draft", "kind": "draft", "at": NOW - timedelta(days=1)},
        {"_id": "final", "kind": "final", "at": NOW - timedelta(days=1)},
    ])  # fmt: skip
    await db.kept.insert_one({"_id": "kept", "at": NOW - timedelta(days=1000)})

    found = await ttl_indexes(db)
    assert [(ttl.collection, ttl.field) for ttl in found] == [
        ("blocks", "expires_at"),
        ("calls", "created_at"),
        ("drafts", "at"),
    ]
    assert await expire_all(db, NOW) == {"blocks": expired, "calls": 1, "drafts": 1}
    assert await ids_in(db, "blocks") == {"due-later", "pinned", "no-date"}
    assert await ids_in(db, "calls") == {"six-days"}
    assert await ids_in(db, "drafts") == {"final"}
    assert await ids_in(db, "kept") == {"kept"}
    assert await expire_all(db, NOW) == {}, "a second sweep finds nothing"


@pytest.mark.slow
async def test_what_has_expired_is_found_through_the_index(db: AsyncDatabase) -> None:
    """A sweep reads what has expired, not the collection: the query planner says so."""
    await db.blocks.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expire")
    await db.blocks.insert_many(
        [{"_id": i, "expires_at": NOW + timedelta(days=7)} for i in range(50)]
    )
    (ttl,) = await ttl_indexes(db)
    plan = await db.command(
        "explain", {"find": "blocks", "filter": ttl.expired(NOW)}, verbosity="executionStats"
    )
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"]), plan
    assert plan["executionStats"]["totalDocsExamined"] == 0, plan["executionStats"]


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_up_expires_the_embedded_databases_documents_itself(tmp_path: Path) -> None:
    """`up` runs SecantusDB through the launcher and sweeps it: an expired answer goes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env |= {
        "CLARITYCAST_PARTITIONS": "2",
        "CLARITYCAST_WEB_PORT": "0",
        "CLARITYCAST_DATABASE_EXPIRY_S": "0.5",
    }
    up = UpProcess(tmp_path / "var", env=env)
    try:
        await line_in(up, "claritycast is ready")
        database = int(up.state()["children"]["secantusdb"])  # type: ignore[index]
        assert "claritycast.runtime.secantusdb_main" in command_line(database)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            str(up.state()["mongodb_url"]), tz_aware=True
        )
        try:
            blocks = client["claritycast"][BLOCKS]
            now = datetime.now(UTC)
            await blocks.insert_many([
                {"_id": "sha256:old", "expires_at": now - timedelta(minutes=1)},
                {"_id": "sha256:new", "expires_at": now + timedelta(days=7)},
                {"_id": "sha256:pinned", "expires_at": None},
            ])  # fmt: skip

            async def swept() -> bool:
                return await blocks.count_documents({"_id": "sha256:old"}) == 0

            await wait_for(swept, timeout_s=30, interval_s=0.2)
            names = {doc["_id"] async for doc in blocks.find({}, {"_id": 1})}
            assert names == {"sha256:new", "sha256:pinned"}
        finally:
            await client.close()
        line = await line_in(up, "database.expired")
        assert "blocks" in line, line
        await stop_up(up)
        assert "Traceback" not in "".join(up.lines)
    finally:
        up.stop()
