"""Snapshots, the pulls' progress, and answers' blocks (the claim check).

One snapshot per (project, local date, fetch group); the small ``pulls``
record per project and day (``_id`` ``<project>/<date>``) says which groups
are stored or held, so the tick and the quota check never scan snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from claritycast.store import claim_check
from claritycast.store.base import DUE_AT_ONCE, chunks, insert_new, translated
from claritycast.store.claim_check import BlocksRef, BlockStore
from models.documents import (
    PullProgress,
    Snapshot,
    snapshot_id,
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
    # Read by id (the tick, the quota check) or by project and date (the API's lists).
    "pulls": [
        IndexModel([("project_id", ASCENDING), ("local_date", ASCENDING)], name="by_project_date"),
    ],
    claim_check.COLLECTION: claim_check.INDEXES,
}


# Past this many (project, day) pairs a window is read by its index range instead of by ids.
BY_ID_AT_MOST = 5000


def _days(first_date: str, last_date: str) -> list[str]:
    """Every ISO date from ``first_date`` to ``last_date``, both included."""
    first, last = date.fromisoformat(first_date), date.fromisoformat(last_date)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _by_id_or_range(
    project_ids: list[str], first_date: str, last_date: str, group: str
) -> list[dict[str, Any]]:
    """Queries for one group's snapshots in a window: by their ids, unless there are too many.

    By id, a read costs the same whatever else is stored: by the index range
    (project, dates), SecantusDB reads and decodes every group's snapshot of
    those days and only then drops the other groups (mongod would check the
    group in the index), so a report read 7 snapshots for each one it drew once
    every group was stored: a report's cost grew night by night for the length
    of its window (`bench.month`). Each query's ``$in`` is one chunk.
    """
    days = _days(first_date, last_date)
    if not days:
        return []
    if len(days) * len(project_ids) <= BY_ID_AT_MOST:
        ids = [snapshot_id(project_id, day, group) for project_id in project_ids for day in days]
        return [{"_id": {"$in": chunk}} for chunk in chunks(ids)]
    # ``$lt`` the next day: SecantusDB 0.7.0b3 drops the entries equal to an ``$lte``
    # bound on a middle field of a compound index (mongod does not).
    after_last = (date.fromisoformat(last_date) + timedelta(days=1)).isoformat()
    return [{
        "project_id": {"$in": project_ids},
        "local_date": {"$gte": first_date, "$lt": after_last},
        "group": group,
    }]  # fmt: skip


class SnapshotsMixin:
    """`Store` operations on snapshots, pulls and blocks."""

    db: AsyncDatabase[dict[str, Any]]
    _blocks: BlockStore

    # Answers' blocks (the claim check: topics carry their reference)

    async def put_blocks(self, blocks: list[dict[str, Any]], now: datetime) -> BlocksRef:
        """Store an answer's blocks aside and return their reference; idempotent."""
        with translated("storing an answer's blocks"):
            return await self._blocks.put(blocks, now)

    async def put_blocks_many(
        self, answers: list[list[dict[str, Any]]], now: datetime
    ) -> list[BlocksRef]:
        """`put_blocks` for several answers, in one write for all but the largest."""
        with translated("storing answers' blocks"):
            return await self._blocks.put_many(answers, now)

    async def get_blocks(self, ref: str) -> list[dict[str, Any]]:
        """An answer's blocks by reference; `BlocksMissing` or `BlocksCorrupt` if unusable."""
        with translated("reading an answer's blocks"):
            return await self._blocks.get(ref)

    async def get_blocks_many(self, refs: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """The blocks of many references, a few reads for all; raises as `get_blocks` does."""
        found: dict[str, list[dict[str, Any]]] = {}
        with translated("reading answers' blocks"):
            for chunk in chunks(refs):
                found.update(await self._blocks.get_many(chunk))
        return found

    async def pin_blocks(self, ref: str) -> None:
        """Keep an answer's blocks for good: a snapshot needs the complete answer."""
        with translated("keeping an answer's blocks"):
            await self._blocks.pin(ref)

    async def snapshot_exists(self, project_id: str, local_date: str, group: str) -> bool:
        with translated("looking for a snapshot"):
            found = await self.db.snapshots.find_one(
                {"_id": snapshot_id(project_id, local_date, group)}, {"_id": 1}
            )
        return found is not None

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
                result = None  # a concurrent writer stored the same snapshot first
            # The small per-day progress record the tick reads (idempotent too).
            await self.db.pulls.update_one(
                {"_id": f"{snapshot.project_id}/{snapshot.local_date}"},
                {
                    "$set": {"project_id": snapshot.project_id, "local_date": snapshot.local_date},
                    "$addToSet": {"groups": snapshot.group},
                },
                upsert=True,
            )
        return result is not None and result.upserted_id is not None

    async def save_snapshots(self, snapshots: list[Snapshot]) -> set[str]:
        """Store many snapshots as `save_snapshot` stores one; returns the ids this call created.

        One insert for the snapshots that skips those stored already, then the
        pulls' progress in a few statements whatever the number of projects:
        one insert of the missing pull records, then one ``update_many`` per
        distinct set of groups (`_record_progress`).
        """
        created: set[str] = set()
        pulls: dict[str, tuple[str, str, set[str]]] = {}
        for snapshot in snapshots:
            key = f"{snapshot.project_id}/{snapshot.local_date}"
            pulls.setdefault(key, (snapshot.project_id, snapshot.local_date, set()))[2].add(
                snapshot.group
            )
        with translated("saving snapshots"):
            for chunk in chunks(snapshots):
                documents = list({doc["_id"]: doc for doc in map(Snapshot.to_document, chunk)}
                                 .values())  # fmt: skip
                skipped = await insert_new(self.db.snapshots, documents)
                created |= {doc["_id"] for i, doc in enumerate(documents) if i not in skipped}
            for chunk in chunks(list(pulls.items())):
                await self._record_progress(dict(chunk))
        return created

    async def _record_progress(self, pulls: dict[str, tuple[str, str, set[str]]]) -> None:
        """Add stored groups to their pull records, creating the records that are missing.

        Not a bulk of upserts, one per (project, day): SecantusDB commits each
        statement of a bulk write alone, an fsync each, and those commits were
        the store stage's slowest step in a night. Both steps are idempotent: a
        record that exists already (the usual case) is left as it is, and a group
        is added once.
        """
        records = [{"_id": key, "project_id": project_id, "local_date": day, "groups": []}
                   for key, (project_id, day, _groups) in pulls.items()]  # fmt: skip
        await insert_new(self.db.pulls, records)
        by_groups: dict[tuple[str, ...], list[str]] = {}
        for key, (_project_id, _day, groups) in pulls.items():
            by_groups.setdefault(tuple(sorted(groups)), []).append(key)
        for groups, keys in by_groups.items():
            await self.db.pulls.update_many(
                {"_id": {"$in": keys}}, {"$addToSet": {"groups": {"$each": list(groups)}}}
            )

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

    async def snapshots_for(
        self,
        project_id: str,
        first_date: str,
        last_date: str,
        group: str | None = None,
        *,
        metrics: Collection[str] | None = None,
    ) -> list[Snapshot]:
        """A project's snapshots with local dates in [first_date, last_date], by date.

        With ``metrics``, only those blocks are decoded (what a chart needs).
        One group's are read by id (`_by_id_or_range`); every group's by the
        index range, its upper bound written as ``$lt`` the next day: SecantusDB
        0.7.0b3 drops the entries equal to an ``$lte`` bound on a middle field
        of a compound index (mongod does not); for ISO dates both mean the same.
        """
        if group is not None:
            found = await self.snapshots_for_many([project_id], first_date, last_date, group,
                                                  metrics=metrics)  # fmt: skip
            return found[project_id]
        after_last = (date.fromisoformat(last_date) + timedelta(days=1)).isoformat()
        query: dict[str, Any] = {
            "project_id": project_id,
            "local_date": {"$gte": first_date, "$lt": after_last},
        }
        with translated("reading snapshots"):
            cursor = self.db.snapshots.find(query).sort(
                [("local_date", ASCENDING), ("group", ASCENDING)]
            )
            return [Snapshot.from_document(doc, metrics) async for doc in cursor]

    async def snapshots_for_many(
        self,
        project_ids: list[str],
        first_date: str,
        last_date: str,
        group: str,
        *,
        metrics: Collection[str] | None = None,
    ) -> dict[str, list[Snapshot]]:
        """Several projects' snapshots of one group in [first_date, last_date], in a few queries.

        For a page of sources, each with its sparkline, and for `snapshots_for`
        of one group; read by id (`_by_id_or_range`); each project's by date.
        """
        found: dict[str, list[Snapshot]] = {project_id: [] for project_id in project_ids}
        projection = None
        if metrics is not None and len(metrics) == 1:  # a sparkline's: only that block is sent
            fields = (
                "project_id", "local_date", "group", "window_start", "window_end", "fetched_at",
                "late", "stored_at", "blocks_ref", "rows_total", "cut_down",
            )  # fmt: skip
            projection = dict.fromkeys(fields, 1) | {
                "blocks": {"$elemMatch": {"metric": next(iter(metrics))}}
            }
        with translated("reading snapshots"):
            for query in _by_id_or_range(project_ids, first_date, last_date, group):
                async for doc in self.db.snapshots.find(query, projection):
                    found[doc["project_id"]].append(Snapshot.from_document(doc, metrics))
        for snapshots in found.values():
            snapshots.sort(key=lambda snapshot: snapshot.local_date)
        return found

    async def groups_stored(self, project_id: str, local_date: str) -> set[str]:
        """Which fetch groups of one project and local date are stored."""
        with translated("listing stored groups"):
            cursor = self.db.snapshots.find(
                {"project_id": project_id, "local_date": local_date}, {"group": 1}
            )
            return {doc["group"] async for doc in cursor}

    async def pull_progress(self, project_id: str, local_date: str) -> PullProgress:
        """What is stored and what is held of one project's pull of one day, in one read."""
        with translated("reading a pull's progress"):
            doc = await self.db.pulls.find_one({"_id": f"{project_id}/{local_date}"})
        return PullProgress.from_document(doc)

    async def hold_group(
        self, project_id: str, local_date: str, group: str, until: datetime | None
    ) -> None:
        """Keep the tick from asking for a group until ``until``; None: for good (dead letter).

        A retry also brings the project's next look by the tick forward to it
        (`claritycast.store.due`).
        """
        field = f"retry_at.{group}" if until is not None else f"dead.{group}"
        with translated("holding a group"):
            await self.db.pulls.update_one(
                {"_id": f"{project_id}/{local_date}"},
                {
                    "$set": {"project_id": project_id, "local_date": local_date,
                             field: until or True},
                    "$setOnInsert": {"groups": []},
                },
                upsert=True,
            )  # fmt: skip
            if until is not None:
                await self.db.projects.update_one(
                    {"_id": project_id, "next_pull_at": {"$gt": until}},
                    {"$set": {"next_pull_at": until}},
                )

    async def release_group(self, project_id: str, local_date: str, group: str) -> None:
        """Let the tick ask for a held group again (a replay), at its next run."""
        with translated("releasing a group"):
            await self.db.pulls.update_one(
                {"_id": f"{project_id}/{local_date}"},
                {"$unset": {f"retry_at.{group}": "", f"dead.{group}": ""}},
            )
            await self.db.projects.update_one(
                {"_id": project_id}, {"$set": {"next_pull_at": DUE_AT_ONCE}}
            )

    async def pulls_since_many(
        self, project_ids: list[str], first_date: str
    ) -> dict[str, dict[str, set[str]]]:
        """Several projects' stored groups by local date from ``first_date``.

        One indexed query per project, all at once: a single ``$in`` over the
        projects is planned as a scan of every pull by some servers
        (SecantusDB), an equality on the project never is.
        """

        async def one(project_id: str) -> dict[str, set[str]]:
            cursor = self.db.pulls.find(
                {"project_id": project_id, "local_date": {"$gte": first_date}},
                {"local_date": 1, "groups": 1},
            )
            return {doc["local_date"]: set(doc["groups"]) async for doc in cursor
                    if doc.get("groups")}  # fmt: skip

        with translated("reading the pulls' progress"):
            found = await asyncio.gather(*(one(project_id) for project_id in project_ids))
        return dict(zip(project_ids, found, strict=True))

    async def remove_snapshots(self, project_id: str) -> int:
        """Delete every snapshot of a project and its pulls' progress; how many snapshots."""
        with translated("removing snapshots"):
            result = await self.db.snapshots.delete_many({"project_id": project_id})
            await self.db.pulls.delete_many({"project_id": project_id})
        return result.deleted_count

    async def snapshot_days(self, project_id: str, first_date: str, last_date: str) -> set[str]:
        """The local dates with at least one snapshot in [first_date, last_date]."""
        after_last = (date.fromisoformat(last_date) + timedelta(days=1)).isoformat()
        with translated("listing snapshot days"):
            cursor = self.db.pulls.find(
                {"project_id": project_id, "local_date": {"$gte": first_date, "$lt": after_last}},
                {"local_date": 1, "groups": 1},
            )
            return {doc["local_date"] async for doc in cursor if doc.get("groups")}

    async def last_snapshot_date(self, project_id: str) -> str | None:
        with translated("reading the last snapshot"):
            doc = await self.db.snapshots.find_one(
                {"project_id": project_id}, {"local_date": 1}, sort=[("local_date", -1)]
            )
        return doc["local_date"] if doc else None
