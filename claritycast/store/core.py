"""The MongoDB store: typed operations over PyMongo's native async client.

Agents and commands never build queries; they call these methods, grouped by
collection in this wing's modules (projects, tokens, calls, snapshots,
deliveries, dead letters, the audit trail) and joined here into one `Store`.
Every collection's indexes are created by `Store.ensure_indexes` at start-up,
which is idempotent (MongoDB's ``createIndexes`` is a no-op for an identical
index), so any number of workers may start at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient, IndexModel

from claritycast.keyring import Keyring
from claritycast.store import (
    accounts,
    audit,
    calls,
    dead_letters,
    deliveries,
    due,
    projects,
    snapshots,
)
from claritycast.store.accounts import AccountsMixin
from claritycast.store.audit import AuditMixin
from claritycast.store.base import StoreBase, translated
from claritycast.store.calls import CallsMixin
from claritycast.store.claim_check import BlockStore
from claritycast.store.dead_letters import DeadLettersMixin
from claritycast.store.deliveries import OPEN_STATES, DeliveriesMixin
from claritycast.store.drain import DrainMixin
from claritycast.store.due import DueMixin
from claritycast.store.projects import ProjectsMixin
from claritycast.store.snapshots import SnapshotsMixin
from claritycast.store.tokens import TokensMixin

__all__ = ["INDEXES", "OPEN_STATES", "Store", "open_store", "translated"]


def _joined(*parts: dict[str, list[IndexModel]]) -> dict[str, list[IndexModel]]:
    """Each collection's indexes from every module that declares some."""
    joined: dict[str, list[IndexModel]] = {}
    for part in parts:
        for collection, indexes in part.items():
            joined.setdefault(collection, []).extend(indexes)
    return joined


INDEXES: dict[str, list[IndexModel]] = _joined(
    snapshots.INDEXES,
    projects.INDEXES,
    calls.INDEXES,
    deliveries.INDEXES,
    dead_letters.INDEXES,
    due.INDEXES,
    accounts.INDEXES,
    audit.INDEXES,
)


class Store(
    SnapshotsMixin,
    ProjectsMixin,
    TokensMixin,
    CallsMixin,
    DeliveriesMixin,
    DeadLettersMixin,
    DueMixin,
    DrainMixin,
    AccountsMixin,
    AuditMixin,
    StoreBase,
):
    """Typed access to claritycast's collections in one database."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        keyring: Keyring | None = None,
    ) -> None:
        super().__init__(client, database, keyring)
        self._blocks = BlockStore(self.db)

    async def ensure_indexes(self) -> None:
        """Create every index claritycast relies on; safe to run on every start."""
        for collection, indexes in INDEXES.items():
            with translated(f"creating indexes on {collection}"):
                await self.db[collection].create_indexes(indexes)


@asynccontextmanager
async def open_store(
    url: str, database: str, keyring: Keyring | None = None
) -> AsyncIterator[Store]:
    """A store for the length of a block, e.g. one CLI command."""
    store = Store.connect(url, database, keyring=keyring)
    try:
        yield store
    finally:
        await store.close()
