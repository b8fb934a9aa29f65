"""The long-lived clients that agents use, opened and closed with the app."""

from __future__ import annotations

from dataclasses import dataclass

from claritycast.store import Store


@dataclass
class Deps:
    """What a stage's handlers may call. Built once per app; no Kafka inside."""

    store: Store

    async def open(self) -> None:
        """Check the database answers and create its indexes."""
        await self.store.ensure_indexes()

    async def close(self) -> None:
        await self.store.close()
