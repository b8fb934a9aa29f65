"""The embedded database's watch: `up` restarts SecantusDB when it stops answering.

SecantusDB can hang for good. Seen once, in the month benchmark's 24th night
(1,000 projects, 2.7 GiB of data): a connection thread held SecantusDB's
global lock while it waited in WiredTiger's cache eviction, and eviction
waited for pages pinned by the threads that were waiting for that lock. The
process stayed up and its port open, its load fell to zero, and the worker's
every database call timed out from then on: a night lost without a word.

So `up` writes one small document to the embedded database every
``CLARITYCAST_DATABASE_WATCH_S`` (a write, because a hang lives in the
storage engine and a ``ping`` is answered without touching it). A write that
has not come back within ``CLARITYCAST_DATABASE_HUNG_S``, or a database
process that has exited, is logged (``database.hung`` or
``database.exited``) and the database is started again on the same port,
over the same files (``database.restarted``), after a SIGTERM and, a hung
process not handling it, a SIGKILL.

Nothing is lost: the embedded database fsyncs every commit
(``CLARITYCAST_MONGODB_SYNC_ON_COMMIT``), so what it acknowledged is on disk
and WiredTiger's recovery finds it; a write it never acknowledged failed in
its caller with `StoreUnavailable`, whose handler runs again (every write is
keyed, so once). The worker and the web process keep running: the driver
reconnects by itself once the port answers again.

The limit is generous (a minute by default) because a busy night can make a
single write wait for seconds behind a large one, and a restart costs the
work in flight; and a restart is followed by a pause of the same length
before the next probe, so the database's own recovery is not taken for a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from claritycast.errors import ServerFailedToStart
from claritycast.logs import get_logger
from claritycast.runtime.embedded import ServerProcess
from claritycast.settings import Settings

log = get_logger(__name__)

PROBE_COLLECTION = "up_database_watch"
STOP_HUNG_S = 5.0  # a hung SecantusDB does not handle SIGTERM: kill it soon after


class DatabaseWatch:
    """Probes the embedded database with a write; restarts it when hung or gone."""

    def __init__(
        self,
        settings: Settings,
        database: ServerProcess,
        mongodb_url: str,
        on_restarted: Callable[[ServerProcess], None],
    ) -> None:
        self.database = database
        self.mongodb_url = mongodb_url
        self.database_name = settings.mongodb_database
        self.every_s = settings.database_watch_s
        self.hung_s = settings.database_hung_s
        self.on_restarted = on_restarted
        self.restarts = 0

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: probe every ``every_s``; restart on a hang or an exit."""
        if self.every_s == 0:
            return
        client = self._client()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_s)
                if stop.is_set():
                    return
                trouble = await self._probe(client)
                if trouble is None or stop.is_set():
                    continue
                await self.restart(trouble)
                # Closed once the new one answers: it says goodbye to the server first.
                await client.close()
                client = self._client()
                with contextlib.suppress(TimeoutError):  # its recovery is not a hang
                    await asyncio.wait_for(stop.wait(), self.hung_s)
        finally:
            await client.close()

    def _client(self) -> AsyncMongoClient[dict[str, Any]]:
        timeout_ms = int(self.hung_s * 1000)
        return AsyncMongoClient(
            self.mongodb_url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            appname="claritycast-up-watch",
        )

    async def _probe(self, client: AsyncMongoClient[dict[str, Any]]) -> str | None:
        """None when a write came back in time; else what is wrong, for the log."""
        if self._exited():
            return "exited"
        began = time.monotonic()
        probe = client[self.database_name][PROBE_COLLECTION].update_one(
            {"_id": "up"}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
        )
        try:
            await asyncio.wait_for(probe, self.hung_s)
        except (TimeoutError, PyMongoError) as exc:
            if self._exited():  # it died while the write waited
                return "exited"
            log.error("database.hung", pid=self.database.pid,
                      waited_s=round(time.monotonic() - began, 1),
                      error=type(exc).__name__)  # fmt: skip
            return "hung"
        return None

    def _exited(self) -> bool:
        """True, and logged, when the database process has exited."""
        if self.database.returncode is None:
            return False
        log.error("database.exited", pid=self.database.pid, exit_code=self.database.returncode)
        return True

    async def restart(self, why: str) -> None:
        """Stop what is left of the database and start it again on its port and files."""
        began = time.monotonic()
        old_pid = self.database.pid
        await self.database.stop(timeout_s=STOP_HUNG_S)
        try:
            await self.database.start()
        except ServerFailedToStart as exc:  # the next probe finds it gone and tries again
            log.error("database.restart_failed", error=str(exc))
            return
        self.restarts += 1
        self.on_restarted(self.database)
        log.warning("database.restarted", why=why, old_pid=old_pid, pid=self.database.pid,
                    took_s=round(time.monotonic() - began, 1))  # fmt: skip
