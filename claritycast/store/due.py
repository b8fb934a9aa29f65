"""What the tick reads: the projects and connections due now, found by an indexed time.

Each active project carries ``next_pull_at`` and each active connection
``next_due_at``: the earliest moment the tick may have something to do for
it (a local midnight, a lease running out, a retry, a scheduled send). The
tick reads only those whose moment has come, through an index on (status,
moment), and writes the next moment once it has handled them. So a tick's
cost follows what is due, not what exists: with nothing due it makes the same
few small queries for 10 projects or 100,000.

A document without the field is due: new projects and connections (their
insertion does not need to know about it), and whatever an older version
wrote. The tick finds them with a second query for the missing value, on
the same index. Whatever can make a project due earlier than its stored
moment lowers or removes it: holding a group for a retry lowers it to the
retry, releasing a held group (a replay) or lifting a deferral sets it to
`DUE_AT_ONCE` (``Store.hold_group``, ``Store.set_deferred_until``,
``Store.release_group``). A paused project or connection keeps its moment, so on
resuming it is due at once if that moment has passed.

The bounds are ``$lte`` on the last field of the index, which SecantusDB
reads exactly (its ``$lte`` bug is on a middle field).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from claritycast.store.base import chunks, insert_new, translated
from models.delivery import Connection, ConnectionStatus, Delivery
from models.documents import ProjectStatus, PullProgress, as_utc

INDEXES: dict[str, list[IndexModel]] = {
    "projects": [
        IndexModel([("status", ASCENDING), ("next_pull_at", ASCENDING)], name="due"),
    ],
    "connections": [
        IndexModel([("status", ASCENDING), ("next_due_at", ASCENDING)], name="due"),
    ],
}


@dataclass(frozen=True)
class DueProject:
    """What the tick needs of a due project (never its token)."""

    project_id: str
    org_id: str
    connected_at: datetime
    waiting_until: datetime | None
    next_pull_at: datetime | None  # as read: the tick's write is conditional on it

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DueProject:
        moments = [as_utc(doc[k]) for k in ("exhausted_until", "deferred_until") if doc.get(k)]
        next_pull_at = doc.get("next_pull_at")
        return cls(
            project_id=doc["_id"],
            org_id=doc["org_id"],
            connected_at=as_utc(doc["connected_at"]),
            waiting_until=max(moments) if moments else None,
            next_pull_at=as_utc(next_pull_at) if next_pull_at else None,
        )


PROJECT_FIELDS = {
    "org_id": 1, "connected_at": 1, "exhausted_until": 1, "deferred_until": 1, "next_pull_at": 1,
    "status": 1,
}  # fmt: skip


class DueMixin:
    """`Store` operations of the tick: what is due, and when to look again."""

    db: AsyncDatabase[dict[str, Any]]

    async def due_project_ids(self, now: datetime) -> list[str]:
        """Every active project whose pull moment has come, or that has none yet, in order.

        Those without a moment first (new projects), then the longest due
        first: the order the tick asks for them in. Ids only, read once for a
        night's waves (`Ticker`): SecantusDB reads every document a range
        matches before it applies a limit, so reading a wave's worth of a
        night's due projects at a time read them all on every wave, some 2
        million documents over a night of 10,000 projects.
        """
        active = ProjectStatus.ACTIVE
        with translated("finding due projects"):
            found: list[str] = []
            for moment in (None, {"$lte": now}):
                cursor = self.db.projects.find(
                    {"status": active, "next_pull_at": moment}, {"_id": 1}
                )
                if moment is not None:
                    cursor = cursor.sort("next_pull_at", ASCENDING)
                found += [doc["_id"] async for doc in cursor]
        return found

    async def projects_if_due(self, project_ids: list[str], now: datetime) -> list[DueProject]:
        """These projects read again, in this order, as far as they are still active and due.

        By id, so the cost is the ids' and not the night's: one read of the
        ids named whatever else is due. A project paused, removed or scheduled
        later since its id was read is left out.
        """
        with translated("reading due projects"):
            found: dict[str, dict[str, Any]] = {}
            for chunk in chunks(project_ids):
                cursor = self.db.projects.find({"_id": {"$in": chunk}}, PROJECT_FIELDS)
                found.update({doc["_id"]: doc async for doc in cursor})
        due = []
        for project_id in project_ids:
            doc = found.get(project_id)
            if doc is None or doc.get("status") != ProjectStatus.ACTIVE:
                continue
            moment = doc.get("next_pull_at")
            if moment is None or as_utc(moment) <= now:
                due.append(DueProject.from_document(doc))
        return due

    async def set_next_pulls(
        self, projects: Iterable[DueProject], moments: dict[str, datetime]
    ) -> None:
        """Write each project's next moment, unless it changed since it was read.

        A hold or a release written meanwhile wins over the tick's moment. One
        update per distinct pair of moments (read, new) and `IN_CHUNK`
        projects: a night's tick writes thousands of projects in a few
        commands.
        """
        groups: dict[tuple[datetime | None, datetime], list[str]] = defaultdict(list)
        for project in projects:
            groups[(project.next_pull_at, moments[project.project_id])].append(project.project_id)
        with translated("scheduling the next pulls"):
            for (read, new), ids in groups.items():
                for chunk in chunks(ids):
                    await self.db.projects.update_many(
                        {"_id": {"$in": chunk}, "next_pull_at": read},
                        {"$set": {"next_pull_at": new}},
                    )

    async def timezones_of(self, org_ids: Collection[str]) -> dict[str, str]:
        """Organisation id -> IANA timezone, for these organisations only."""
        timezones = {}
        with translated("reading organisations"):
            for chunk in chunks(org_ids):
                cursor = self.db.organisations.find({"_id": {"$in": chunk}}, {"timezone": 1})
                timezones.update({doc["_id"]: doc["timezone"] async for doc in cursor})
        return timezones

    async def pulls_of(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], PullProgress]:
        """(project, local date) -> that pull's progress, for these pulls only."""
        found = {}
        with translated("reading the pulls' progress"):
            for chunk in chunks(f"{project_id}/{day}" for project_id, day in keys):
                cursor = self.db.pulls.find({"_id": {"$in": chunk}})
                found.update({
                    (doc["project_id"], doc["local_date"]): PullProgress.from_document(doc)
                    async for doc in cursor
                })  # fmt: skip
        return found

    # Connections and deliveries

    async def connections_due(self, now: datetime) -> list[Connection]:
        """Active connections whose next send has come, or that have none yet."""
        active = ConnectionStatus.ACTIVE.value
        with translated("finding due connections"):
            found = []
            for moment in ({"$lte": now}, None):
                cursor = self.db.connections.find({"status": active, "next_due_at": moment})
                found += [Connection.from_document(doc) async for doc in cursor]
        return found

    async def set_next_dues(self, moments: dict[str, datetime]) -> None:
        """Write each connection's next send (name -> moment), a few commands for many."""
        groups: dict[datetime, list[str]] = defaultdict(list)
        for name, at in moments.items():
            groups[at].append(name)
        with translated("scheduling connections"):
            for at, names in groups.items():
                for chunk in chunks(names):
                    await self.db.connections.update_many(
                        {"_id": {"$in": chunk}}, {"$set": {"next_due_at": at}}
                    )

    async def open_deliveries(self, documents: list[dict[str, Any]]) -> set[str]:
        """Insert new deliveries (`new_delivery`); returns the keys this call created.

        The key is unique in the log, so of two ticks opening the same delivery
        exactly one creates it: a key that exists already is left as it is.
        """
        created: set[str] = set()
        with translated("opening deliveries"):
            for chunk in chunks(documents):
                existing = await insert_new(self.db.deliveries, chunk)
                created |= {doc["_id"] for i, doc in enumerate(chunk) if i not in existing}
        return created

    async def connections_named(self, names: Collection[str]) -> dict[str, Connection]:
        found = {}
        with translated("reading connections"):
            for chunk in chunks(names):
                cursor = self.db.connections.find({"_id": {"$in": chunk}})
                found.update({doc["_id"]: Connection.from_document(doc) async for doc in cursor})
        return found

    async def deliveries_to_check(self, now: datetime, states: Collection[str]) -> list[Delivery]:
        """Open deliveries whose next check has come (index ``by_state``)."""
        with translated("finding deliveries to check"):
            cursor = self.db.deliveries.find(
                {"state": {"$in": list(states)}, "next_check_at": {"$lte": now}}
            )
            return [Delivery.from_document(doc) async for doc in cursor]
