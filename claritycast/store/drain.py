"""A drain: `up` asks the tick to start no new work until its broker is restarted.

The embedded broker keeps every message, and what a fetch costs it grows with
what it holds (`claritycast.runtime.broker_bound`), so `up` restarts it once it
passes its memory limit, at a moment when no message is in flight. A night of
thousands of projects has no such moment: the tick starts the next wave as soon
as the last is stored. So `up` writes a drain (one document, with the time it
ends by itself); the tick, reading it first, asks for nothing while it lasts;
what is in flight is handled, the chain falls quiet, `up` restarts the broker
and ends the drain, and the next tick picks up the night where it stopped.

The drain's times are wall-clock times of the machine (`up` and the workers
share it), never a worker's injected clock: the demo and `bench.month` run the
chain on a fast clock, and a drain must last seconds of real time there too.
A drain that `up` never ends (it was killed) ends by itself at ``until``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from claritycast.store.base import StoreBase, translated
from models.documents import as_utc

DRAIN_ID = "broker-drain"


class DrainMixin(StoreBase):
    """The runtime collection's drain document."""

    async def begin_drain(self, until: datetime, reason: str) -> None:
        """Ask the tick to start nothing new until ``until`` (or `end_drain`)."""
        with translated("beginning a drain"):
            await self.db.runtime.update_one(
                {"_id": DRAIN_ID},
                {"$set": {"until": until, "reason": reason, "since": datetime.now(UTC)}},
                upsert=True,
            )

    async def end_drain(self) -> None:
        """Let the tick start new work again."""
        with translated("ending a drain"):
            await self.db.runtime.delete_one({"_id": DRAIN_ID})

    async def draining_until(self) -> datetime | None:
        """When the current drain ends, or None when there is none (or it has ended by itself)."""
        with translated("reading the drain"):
            doc: dict[str, Any] | None = await self.db.runtime.find_one({"_id": DRAIN_ID})
        if doc is None:
            return None
        until = as_utc(doc["until"])
        return until if until > datetime.now(UTC) else None
