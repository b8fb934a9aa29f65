"""The embedded database's expiry: `up` deletes what the TTL indexes expire, through them.

claritycast lets MongoDB expire what it keeps for a while only (a Clarity
answer's blocks after 7 days, refusals and pull jobs after 7, deliveries after
90, sign-in sessions, audit lines) with TTL indexes, and MongoDB's TTL monitor
finds what has expired through those indexes. SecantusDB's sweeper does not:
every 60 s it reads and decodes every document of every collection that has
a TTL index, holding the server's one global lock, so every read and write
of the chain waits behind it for longer the more the database keeps
(`bench.expiry`: 1.95 s a minute at 1,000 projects, whose blocks and
deliveries alone are 139,000 documents once a week of blocks and 90 days of
deliveries are kept).

So the embedded database runs with its sweeper off
(`claritycast.runtime.secantusdb_main`) and `up` does what MongoDB's TTL
monitor does, every ``CLARITYCAST_DATABASE_EXPIRY_S``: for each TTL index
(read from the database, so a new one is covered without a change here), the
documents whose date is older than the index says are found through the
index and deleted (a pinned answer's blocks have lost their date and stay).
MongoDB given by ``CLARITYCAST_MONGODB_URL`` keeps its own TTL monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from claritycast.logs import get_logger
from claritycast.settings import Settings

log = get_logger(__name__)

TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class TtlIndex:
    """One TTL index as MongoDB reads it: a single date field and a lifetime."""

    collection: str
    field: str
    lifetime: timedelta
    partial: Mapping[str, Any] | None = None

    def expired(self, now: datetime) -> dict[str, Any]:
        """The filter of what this index expires at ``now``, its fields side by side.

        Side by side, not under ``$and``, where the fields allow: a range on
        the indexed field at the top level of the filter is what a query
        planner reads through the index.
        """
        expired: dict[str, Any] = {self.field: {"$lt": now - self.lifetime}}
        if not self.partial:
            return expired
        if self.field in self.partial:
            return {"$and": [expired, dict(self.partial)]}
        return expired | dict(self.partial)


def ttl_index(collection: str, index: Mapping[str, Any]) -> TtlIndex | None:
    """The TTL index ``index`` is, or None: what mongod's TTL monitor would expire by.

    Only an ``expireAfterSeconds`` on a single field other than ``_id``, as mongod.
    """
    seconds = index.get("expireAfterSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return None
    key = dict(index.get("key", {}))
    if len(key) != 1:
        return None
    field = next(iter(key))
    if field == "_id":
        return None
    partial = index.get("partialFilterExpression")
    return TtlIndex(collection, field, timedelta(seconds=seconds), partial or None)


async def ttl_indexes(db: AsyncDatabase[dict[str, Any]]) -> list[TtlIndex]:
    """Every TTL index of the database, in collection order."""
    found: list[TtlIndex] = []
    for name in sorted(await db.list_collection_names()):
        async for index in await db[name].list_indexes():
            ttl = ttl_index(name, index)
            if ttl is not None:
                found.append(ttl)
    return found


async def expire(db: AsyncDatabase[dict[str, Any]], ttl: TtlIndex, now: datetime) -> int:
    """Delete what ``ttl`` expires at ``now``, in one delete through its index; how many.

    One delete, not batches: a sweep every minute deletes what expired in that
    minute (about 90 µs a document on SecantusDB, measured in `bench.expiry`),
    and batches cost more than they bound on SecantusDB: its ``find`` reads
    every expired document whatever the limit, and a delete by a list of
    ``_id`` beside the expiry is quadratic in the list (1,000: 1.3 s). The
    filter is the expiry itself, so a document pinned meanwhile (its date
    removed) stays.
    """
    result = await db[ttl.collection].delete_many(ttl.expired(now))
    return result.deleted_count


async def expire_all(db: AsyncDatabase[dict[str, Any]], now: datetime) -> dict[str, int]:
    """One sweep: what each collection had expired and lost, by collection."""
    deleted: dict[str, int] = {}
    for ttl in await ttl_indexes(db):
        count = await expire(db, ttl, now)
        if count:
            deleted[ttl.collection] = deleted.get(ttl.collection, 0) + count
    return deleted


class DatabaseExpiry:
    """Every ``CLARITYCAST_DATABASE_EXPIRY_S``, one sweep of the embedded database."""

    def __init__(self, settings: Settings, mongodb_url: str) -> None:
        self.mongodb_url = mongodb_url
        self.database_name = settings.mongodb_database
        self.every_s = settings.database_expiry_s

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: sweep every ``every_s``; a sweep that fails is logged and retried."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.mongodb_url,
            tz_aware=True,
            serverSelectionTimeoutMS=TIMEOUT_MS,
            socketTimeoutMS=TIMEOUT_MS,
            appname="claritycast-up-expiry",
        )
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_s)
                if not stop.is_set():
                    await self.sweep(client[self.database_name])
        finally:
            await client.close()

    async def sweep(self, db: AsyncDatabase[dict[str, Any]]) -> dict[str, int]:
        """One sweep at the wall clock's now (as MongoDB's); logged when it deleted anything."""
        began = time.monotonic()
        try:
            deleted = await expire_all(db, datetime.now(UTC))
        except PyMongoError as exc:  # down or restarting: the next sweep finds it all again
            log.warning("database.expiry_failed", error=type(exc).__name__)
            return {}
        if deleted:
            log.info(
                "database.expired",
                deleted=deleted,
                took_s=round(time.monotonic() - began, 2),
            )
        return deleted
