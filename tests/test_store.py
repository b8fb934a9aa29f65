"""The MongoDB layer against a real SecantusDB server."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pymongo.errors
import pytest

from claritycast.errors import StoreError, StoreUnavailable
from claritycast.ports import free_port
from claritycast.store import INDEXES, Store, translated
from models.documents import Snapshot, WorkerBeat


def snapshot(blocks: list[dict[str, object]] | None = None) -> Snapshot:
    end = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    return Snapshot(
        project_id="p1",
        local_date="2026-03-29",
        group="url",
        window_start=end - timedelta(hours=24),
        window_end=end,
        fetched_at=end,
        blocks=blocks or [{"metricName": "Traffic", "information": []}],
    )


async def test_indexes_are_created_idempotently(store: Store) -> None:
    """Creating the indexes again, even from several workers at once, changes nothing."""
    await asyncio.gather(*(store.ensure_indexes() for _ in range(3)))
    for collection, models in INDEXES.items():
        names = set((await store.db[collection].index_information()).keys())
        assert {model.document["name"] for model in models} <= names


async def test_first_snapshot_wins(store: Store) -> None:
    """A second copy of the same (project, date, group) neither duplicates nor overwrites."""
    assert await store.save_snapshot(snapshot()) is True
    assert await store.save_snapshot(snapshot([{"metricName": "other"}])) is False
    stored = await store.get_snapshot("p1", "2026-03-29", "url")
    assert stored is not None
    assert stored.blocks == [{"metricName": "Traffic", "information": []}]
    assert stored.window_start.tzinfo is not None
    assert await store.count_snapshots("p1") == 1


async def test_snapshots_for_includes_both_ends(store: Store) -> None:
    """A date range includes its first and last day, for every group of each day."""
    for day in ("2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"):
        for group in ("overall", "url"):
            await store.save_snapshot(replace(snapshot(), local_date=day, group=group))
    found = await store.snapshots_for("p1", "2026-03-29", "2026-03-30")
    assert [(s.local_date, s.group) for s in found] == [
        ("2026-03-29", "overall"),
        ("2026-03-29", "url"),
        ("2026-03-30", "overall"),
        ("2026-03-30", "url"),
    ]
    assert len(await store.snapshots_for("p1", "2026-03-31", "2026-03-31", group="url")) == 1


async def test_concurrent_saves_create_exactly_one(store: Store) -> None:
    """Ten workers saving the same snapshot at once create it exactly once."""
    results = await asyncio.gather(*(store.save_snapshot(snapshot()) for _ in range(10)))
    assert results.count(True) == 1
    assert await store.count_snapshots("p1") == 1


async def test_live_workers_sees_only_recent_beats(store: Store) -> None:
    """A worker that stopped beating drops out of the live list."""
    now = datetime.now(UTC)
    for worker_id, seen in (("fresh", now), ("stale", now - timedelta(minutes=5))):
        await store.beat(WorkerBeat(worker_id, "app", ("store",), "host", 1, now, seen))
    assert [w.worker_id for w in await store.live_workers(within_s=30)] == ["fresh"]
    await store.forget_worker("fresh")
    assert await store.live_workers(within_s=30) == []


async def test_unreachable_server_is_store_unavailable() -> None:
    """Nothing listening: a retryable StoreUnavailable naming the operation."""
    store = Store.connect(f"mongodb://127.0.0.1:{free_port()}", "x", timeout_ms=300)
    try:
        with pytest.raises(StoreUnavailable, match="during ping"):
            await store.ping()
    finally:
        await store.close()


def _pymongo_exceptions() -> list[type[pymongo.errors.PyMongoError]]:
    return [
        cls
        for _, cls in inspect.getmembers(pymongo.errors, inspect.isclass)
        if issubclass(cls, pymongo.errors.PyMongoError)
    ]


@pytest.mark.parametrize("exc_type", _pymongo_exceptions(), ids=lambda cls: cls.__name__)
def test_every_pymongo_error_is_translated(exc_type: type[pymongo.errors.PyMongoError]) -> None:
    """Each exception PyMongo defines becomes a StoreError; connection trouble is retryable."""
    try:
        error = exc_type("boom mongodb://user:hunter2@db:27017")
    except (TypeError, AttributeError):  # constructors with required structured arguments
        error = exc_type.__new__(exc_type)
        Exception.__init__(error, "boom mongodb://user:hunter2@db:27017")
    with pytest.raises(StoreError) as caught, translated("testing"):
        raise error
    retryable = issubclass(
        exc_type,
        (
            pymongo.errors.ConnectionFailure,
            pymongo.errors.ExecutionTimeout,
            pymongo.errors.WaitQueueTimeoutError,
            pymongo.errors.WTimeoutError,
        ),
    )
    assert isinstance(caught.value, StoreUnavailable) is retryable
    assert "hunter2" not in str(caught.value)
