"""The audit trail in MongoDB: append-only, one document per operator action.

Only two operations exist, an insert and a read: nothing in claritycast
updates or deletes an audit record, so the trail of what operators did can
only grow. (An attacker with write access to the database can still change
it; the copy on the ``audit`` topic is the second witness.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from claritycast.store.base import translated
from models.audit import AuditEvent
from models.documents import as_utc

INDEXES: dict[str, list[IndexModel]] = {
    "audit": [
        IndexModel([("at", DESCENDING)], name="by_time"),
        IndexModel([("object", ASCENDING), ("at", DESCENDING)], name="by_object_time"),
    ],
}

AUDIT_FIELDS = ("at", "actor_kind", "actor_name", "action", "object", "outcome", "detail")


class AuditMixin:
    """`Store` operations on the audit trail."""

    db: AsyncDatabase[dict[str, Any]]

    async def add_audit_event(self, event: AuditEvent) -> None:
        """Append one record (an insert: a record is never changed afterwards)."""
        document = {"_id": event.audit_id} | {name: getattr(event, name) for name in AUDIT_FIELDS}
        with translated("recording an audit event"):
            await self.db.audit.insert_one(document)

    async def audit_events(
        self, *, since: datetime | None = None, object_name: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The newest ``limit`` records (of one object, since a time), oldest first."""
        query: dict[str, Any] = {}
        if object_name is not None:
            query["object"] = object_name
        if since is not None:
            query["at"] = {"$gte": since}
        with translated("reading the audit trail"):
            cursor = self.db.audit.find(query).sort("at", DESCENDING).limit(limit)
            documents = [doc async for doc in cursor]
        return [_event(doc) for doc in reversed(documents)]


def _event(doc: dict[str, Any]) -> AuditEvent:
    fields = {name: doc.get(name) for name in AUDIT_FIELDS}
    return AuditEvent(audit_id=doc["_id"], **fields | {"at": as_utc(doc["at"])})
