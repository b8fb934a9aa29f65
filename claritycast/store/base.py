"""The MongoDB connection and the one place PyMongo's exceptions become ours.

PyMongo exceptions are translated here, and only here, into `StoreError`
(give up) and `StoreUnavailable` (retry later): every operation of the store
runs inside `translated`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)

from claritycast.errors import StoreError, StoreUnavailable
from claritycast.keyring import Keyring
from claritycast.redact import redact

SERVER_SELECTION_TIMEOUT_MS = 10_000
# The longest ``$in`` list one query carries. SecantusDB matches an ``$in``
# against every candidate by walking the list, so a query's cost grows with
# the square of its length (measured: 100 ids in 17 ms, 1,000 in 1.2 s, 10,000
# in 92 s); MongoDB seeks each value in the index. A long list goes as several
# queries of this many.
IN_CHUNK = 100
# MongoDB's error code for a write that a unique index refused.
DUPLICATE_KEY = 11000
# The tick's next moment for a project that must be looked at on the next tick
# (a deferral lifted, a group released). A value, not a removed field: the
# tick's own conditional write of a moment read as missing must not succeed
# over it (`claritycast.store.due`).
DUE_AT_ONCE = datetime(1970, 1, 1, tzinfo=UTC)

T = TypeVar("T")


def chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """``values`` in lists of at most ``size``, for ``$in`` queries and bulk writes."""
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# Exceptions after which the same call may succeed later. Everything else that
# PyMongo raises is a `StoreError`.
RETRYABLE: tuple[type[PyMongoError], ...] = (
    ConnectionFailure,  # includes AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    ExecutionTimeout,
    WaitQueueTimeoutError,
    WTimeoutError,
)


async def insert_new(
    collection: AsyncCollection[dict[str, Any]], documents: Sequence[dict[str, Any]]
) -> set[int]:
    """Insert ``documents`` in one statement, leaving those whose key exists; their indexes.

    One unordered insert rather than a bulk of upserts: SecantusDB commits each
    statement of a bulk write alone (an fsync each). A document stored before,
    or by a concurrent writer, is refused by its unique key and left as it is;
    any other refusal is raised.
    """
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != DUPLICATE_KEY for error in errors):
            raise
        return {error["index"] for error in errors}
    return set()


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


class StoreBase:
    """A client on one database; `Store` adds the operations, collection by collection."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        keyring: Keyring | None = None,
    ) -> None:
        self.client = client
        self.db: AsyncDatabase[dict[str, Any]] = client[database]
        self.keyring = keyring

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        *,
        keyring: Keyring | None = None,
        timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS,
    ) -> Self:
        """A store on ``url``; no I/O happens until the first operation.

        ``keyring`` seals and opens Clarity tokens (`claritycast.store.tokens`);
        a store without one can do everything but touch a token.
        """
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="claritycast",
        )
        return cls(client, database, keyring)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        with translated("ping"):
            await self.db.command("ping")
