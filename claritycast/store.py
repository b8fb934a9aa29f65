"""The MongoDB store: typed operations over PyMongo's native async client.

Agents and commands never build queries; they call these methods. Every
collection's indexes are created by `Store.ensure_indexes` at start-up, which
is idempotent (MongoDB's ``createIndexes`` is a no-op for an identical index),
so any number of workers may start at once.

PyMongo exceptions are translated here, and only here, into `StoreError`
(give up) and `StoreUnavailable` (retry later).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)

from claritycast.errors import StoreError, StoreUnavailable
from claritycast.redact import redact
from models.documents import Snapshot, WorkerBeat

SERVER_SELECTION_TIMEOUT_MS = 10_000

# Exceptions after which the same call may succeed later. Everything else that
# PyMongo raises is a `StoreError`.
RETRYABLE: tuple[type[PyMongoError], ...] = (
    ConnectionFailure,  # includes AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    ExecutionTimeout,
    WaitQueueTimeoutError,
    WTimeoutError,
)

INDEXES: dict[str, list[IndexModel]] = {
    "snapshots": [
        IndexModel(
            [("project_id", ASCENDING), ("local_date", ASCENDING), ("group", ASCENDING)],
            unique=True,
            name="one_per_project_date_group",
        ),
        IndexModel([("fetched_at", ASCENDING)], name="by_fetched_at"),
    ],
    "workers": [
        IndexModel([("seen_at", ASCENDING)], name="by_seen_at"),
    ],
}


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Map PyMongo's exceptions to ours; the message names the operation."""
    try:
        yield
    except RETRYABLE as exc:
        raise StoreUnavailable(f"MongoDB unavailable during {operation}: {_brief(exc)}") from exc
    except PyMongoError as exc:
        raise StoreError(f"MongoDB refused {operation}: {_brief(exc)}") from exc


def _brief(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text[:300])


class Store:
    """Typed access to claritycast's collections in one database."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[dict[str, Any]] = client[database]

    @classmethod
    def connect(
        cls, url: str, database: str, *, timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS
    ) -> Store:
        """A store on ``url``; no I/O happens until the first operation."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="claritycast",
        )
        return cls(client, database)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        with translated("ping"):
            await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        """Create every index claritycast relies on; safe to run on every start."""
        for collection, indexes in INDEXES.items():
            with translated(f"creating indexes on {collection}"):
                await self.db[collection].create_indexes(indexes)

    # Snapshots

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        """Store a snapshot unless one exists already; True when this call created it."""
        document = snapshot.to_document()
        key = {k: document[k] for k in ("project_id", "local_date", "group")}
        with translated("saving a snapshot"):
            try:
                result = await self.db.snapshots.update_one(
                    key, {"$setOnInsert": document}, upsert=True
                )
            except DuplicateKeyError:
                return False  # a concurrent writer stored the same snapshot first
        return result.upserted_id is not None

    async def get_snapshot(self, project_id: str, local_date: str, group: str) -> Snapshot | None:
        with translated("reading a snapshot"):
            doc = await self.db.snapshots.find_one(
                {"project_id": project_id, "local_date": local_date, "group": group}
            )
        return Snapshot.from_document(doc) if doc else None

    async def count_snapshots(self, project_id: str | None = None) -> int:
        query = {"project_id": project_id} if project_id else {}
        with translated("counting snapshots"):
            return await self.db.snapshots.count_documents(query)

    # Workers

    async def beat(self, worker: WorkerBeat) -> None:
        """Record that a worker is alive now."""
        document = worker.to_document()
        with translated("recording a worker heartbeat"):
            await self.db.workers.replace_one({"_id": worker.worker_id}, document, upsert=True)

    async def forget_worker(self, worker_id: str) -> None:
        with translated("removing a stopped worker"):
            await self.db.workers.delete_one({"_id": worker_id})

    async def live_workers(self, within_s: float, now: datetime | None = None) -> list[WorkerBeat]:
        """Workers that reported within the last ``within_s`` seconds."""
        since = (now or datetime.now(UTC)) - timedelta(seconds=within_s)
        with translated("listing workers"):
            cursor = self.db.workers.find({"seen_at": {"$gte": since}}).sort("_id", ASCENDING)
            return [WorkerBeat.from_document(doc) async for doc in cursor]


@asynccontextmanager
async def open_store(url: str, database: str) -> AsyncIterator[Store]:
    """A store for the length of a block, e.g. one CLI command."""
    store = Store.connect(url, database)
    try:
        yield store
    finally:
        await store.close()
