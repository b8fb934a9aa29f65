"""Organisations, projects with their metric sources, and workers' heartbeats."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    DuplicateKeyError,
)

from claritycast.store.base import DUE_AT_ONCE, chunks, translated
from claritycast.store.tokens import ensure_sealed
from models.documents import (
    Organisation,
    Project,
    WorkerBeat,
)

INDEXES: dict[str, list[IndexModel]] = {
    "organisations": [IndexModel([("name", ASCENDING)], unique=True, name="unique_name")],
    "projects": [
        IndexModel([("org_id", ASCENDING), ("label", ASCENDING)], unique=True, name="unique_label"),
        IndexModel([("status", ASCENDING)], name="by_status"),
    ],
    "metric_sources": [
        IndexModel(
            [("project_id", ASCENDING), ("metric_id", ASCENDING)],
            unique=True,
            name="one_per_metric",
        ),
    ],
    "workers": [
        IndexModel([("seen_at", ASCENDING)], name="by_seen_at"),
    ],
}


class ProjectsMixin:
    """`Store` operations on organisations, projects, metric sources and workers."""

    db: AsyncDatabase[dict[str, Any]]

    # Organisations

    async def add_organisation(self, org: Organisation) -> bool:
        """Create an organisation; False when one of that name exists already."""
        with translated("adding an organisation"):
            try:
                await self.db.organisations.insert_one(org.to_document())
            except DuplicateKeyError:
                return False
        return True

    async def get_organisation(self, org_id: str) -> Organisation | None:
        with translated("reading an organisation"):
            doc = await self.db.organisations.find_one({"_id": org_id})
        return Organisation.from_document(doc) if doc else None

    async def set_organisation_timezone(self, org_id: str, timezone: str) -> bool:
        """Change an organisation's timezone; False when there is no such organisation."""
        with translated("changing an organisation's timezone"):
            result = await self.db.organisations.update_one(
                {"_id": org_id}, {"$set": {"timezone": timezone}}
            )
        return result.matched_count == 1

    async def set_organisation_name(self, org_id: str, name: str) -> bool:
        """Rename an organisation; False when there is no such organisation."""
        with translated("renaming an organisation"):
            result = await self.db.organisations.update_one(
                {"_id": org_id}, {"$set": {"name": name}}
            )
        return result.matched_count == 1

    async def organisations(self) -> list[Organisation]:
        with translated("listing organisations"):
            cursor = self.db.organisations.find().sort("name", ASCENDING)
            return [Organisation.from_document(doc) async for doc in cursor]

    # Projects and their metric sources

    async def add_project(self, project: Project, metric_ids: list[str]) -> bool:
        """Store a project and one metric source per catalogue metric (idempotent)."""
        ensure_sealed(project)
        with translated("adding a project"):
            try:
                await self.db.projects.insert_one(project.to_document())
            except DuplicateKeyError:
                return False
            if metric_ids:
                await self.db.metric_sources.bulk_write(
                    [
                        UpdateOne(
                            {"project_id": project.project_id, "metric_id": metric_id},
                            {"$setOnInsert": {"created_at": project.connected_at}},
                            upsert=True,
                        )
                        for metric_id in metric_ids
                    ],
                    ordered=False,
                )
        return True

    async def get_project(self, project_id: str) -> Project | None:
        with translated("reading a project"):
            doc = await self.db.projects.find_one({"_id": project_id})
        return Project.from_document(doc) if doc else None

    async def get_projects(self, project_ids: Collection[str]) -> dict[str, Project]:
        """Many projects by id, a read per `IN_CHUNK` (a batch of messages about them)."""
        found = {}
        with translated("reading projects"):
            for chunk in chunks(project_ids):
                cursor = self.db.projects.find({"_id": {"$in": chunk}})
                found.update({doc["_id"]: Project.from_document(doc) async for doc in cursor})
        return found

    async def find_project(self, label_or_id: str) -> Project | None:
        with translated("finding a project"):
            doc = await self.db.projects.find_one(
                {"$or": [{"_id": label_or_id}, {"label": label_or_id}]}
            )
        return Project.from_document(doc) if doc else None

    async def projects(self, status: str | None = None) -> list[Project]:
        query = {"status": status} if status else {}
        with translated("listing projects"):
            cursor = self.db.projects.find(query).sort("label", ASCENDING)
            return [Project.from_document(doc) async for doc in cursor]

    async def projects_page(self, after: tuple[str, str] | None, limit: int) -> list[Project]:
        """Projects by label (then id), those after ``after`` (label, id): one page."""
        query: dict[str, Any] = {}
        if after is not None:
            label, project_id = after
            query = {
                "$or": [{"label": {"$gt": label}}, {"label": label, "_id": {"$gt": project_id}}]
            }
        with translated("listing projects"):
            cursor = self.db.projects.find(query).sort([("label", ASCENDING), ("_id", ASCENDING)])
            return [Project.from_document(doc) async for doc in cursor.limit(limit)]

    async def change_project_status(
        self, project_id: str, from_status: str, to_status: str, reason: str | None
    ) -> bool:
        """Move a project from one status to another; True for the one caller that did."""
        with translated("updating a project's status"):
            result = await self.db.projects.update_one(
                {"_id": project_id, "status": from_status},
                {"$set": {"status": to_status, "status_reason": reason}},
            )
        return result.modified_count == 1

    async def set_project_status(self, project_id: str, status: str, reason: str | None) -> None:
        with translated("updating a project's status"):
            await self.db.projects.update_one(
                {"_id": project_id}, {"$set": {"status": status, "status_reason": reason}}
            )

    async def set_exhausted_until(self, project_id: str, until: datetime | None) -> None:
        with translated("marking a project's quota"):
            await self.db.projects.update_one(
                {"_id": project_id}, {"$set": {"exhausted_until": until}}
            )

    async def set_deferred_until(self, project_id: str, until: datetime | None) -> None:
        """The quota is full until ``until``: the tick leaves the project alone till then.

        A deferral lifted (None) or brought forward makes the project due
        earlier than the tick's stored moment (``next_pull_at``,
        `claritycast.store.due`): that moment is removed or lowered with it.
        """
        with translated("deferring a project's pull"):
            await self.db.projects.update_one(
                {"_id": project_id}, {"$set": {"deferred_until": until}}
            )
            earliest = DUE_AT_ONCE if until is None else until
            await self.db.projects.update_one(
                {"_id": project_id,
                 "$or": [{"next_pull_at": {"$gt": earliest}}, {"next_pull_at": None}]},
                {"$set": {"next_pull_at": earliest}},
            )  # fmt: skip

    async def remove_project(self, project_id: str) -> bool:
        """Delete a project and its metric sources (its snapshots and call log stay)."""
        with translated("removing a project"):
            result = await self.db.projects.delete_one({"_id": project_id})
            await self.db.metric_sources.delete_many({"project_id": project_id})
        return result.deleted_count == 1

    async def metric_sources(self, project_id: str) -> list[str]:
        with translated("listing metric sources"):
            cursor = self.db.metric_sources.find({"project_id": project_id}, {"metric_id": 1})
            return [doc["metric_id"] async for doc in cursor]

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
