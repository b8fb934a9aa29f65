"""Connections, the delivery log and rendered charts.

The delivery key is the log's ``_id``: opening a delivery is an insert, and a
claim decides which worker sends it, so each report goes out once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    DuplicateKeyError,
)

from claritycast.store.base import translated
from models.delivery import Attempt, Connection, ConnectionStatus, Delivery, DeliveryState
from models.documents import as_utc
from models.report import Report

INDEXES: dict[str, list[IndexModel]] = {
    "connections": [IndexModel([("project_id", ASCENDING)], name="by_project")],
    "deliveries": [
        IndexModel([("connection", ASCENDING), ("created_at", ASCENDING)], name="by_connection"),
        IndexModel([("state", ASCENDING), ("next_check_at", ASCENDING)], name="by_state"),
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
    ],
    "charts": [
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=90 * 86400, name="expire")
    ],
}

# How far back a page of the delivery log looks first, then next; the last
# try looks back to the beginning (`DeliveriesMixin.deliveries`).
RECENT_WINDOWS = (
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=31),
)
NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]

# Delivery states a worker may still move forward; the others are final.
OPEN_STATES = [
    DeliveryState.DUE,
    DeliveryState.WAITING,
    DeliveryState.RENDERED,
    DeliveryState.SENDING,
    DeliveryState.RETRYING,
]


def new_delivery(
    key: str,
    *,
    connection: str,
    period: str,
    reason: str,
    scheduled_at: datetime,
    now: datetime,
    next_check_at: datetime,
) -> dict[str, Any]:
    """The delivery log's document of a delivery just opened (state ``due``)."""
    return {
        "_id": key,
        "connection": connection,
        "period": period,
        "reason": reason,
        "scheduled_at": scheduled_at,
        "state": DeliveryState.DUE.value,
        "created_at": now,
        "next_check_at": next_check_at,
        "attempts": [],
    }


class DeliveriesMixin:
    """`Store` operations on connections, deliveries and charts."""

    db: AsyncDatabase[dict[str, Any]]

    # Connections

    async def add_connection(self, connection: Connection) -> bool:
        """Store a new connection; False when one of that name exists already."""
        with translated("adding a connection"):
            try:
                await self.db.connections.insert_one(connection.to_document())
            except DuplicateKeyError:
                return False
        return True

    async def get_connection(self, name: str) -> Connection | None:
        with translated("reading a connection"):
            doc = await self.db.connections.find_one({"_id": name})
        return Connection.from_document(doc) if doc else None

    async def connections(
        self, status: ConnectionStatus | None = None, project_id: str | None = None
    ) -> list[Connection]:
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status.value
        if project_id is not None:
            query["project_id"] = project_id
        with translated("listing connections"):
            cursor = self.db.connections.find(query).sort("_id", ASCENDING)
            return [Connection.from_document(doc) async for doc in cursor]

    async def connections_page(
        self, after_name: str | None, limit: int, project_id: str | None = None
    ) -> list[Connection]:
        """Connections by name, those after ``after_name``: one page of a listing."""
        query: dict[str, Any] = {"_id": {"$gt": after_name}} if after_name else {}
        if project_id is not None:
            query["project_id"] = project_id
        with translated("listing connections"):
            cursor = self.db.connections.find(query).sort("_id", ASCENDING).limit(limit)
            return [Connection.from_document(doc) async for doc in cursor]

    async def set_connection_status(
        self, name: str, status: ConnectionStatus, reason: str | None
    ) -> bool:
        """Pause or resume a connection; False when there is no such connection."""
        with translated("updating a connection"):
            result = await self.db.connections.update_one(
                {"_id": name}, {"$set": {"status": status.value, "status_reason": reason}}
            )
        return result.matched_count == 1

    async def replace_connection(self, connection: Connection) -> bool:
        """Store a changed connection under its name; False when there is no such connection."""
        with translated("changing a connection"):
            result = await self.db.connections.replace_one(
                {"_id": connection.name}, connection.to_document()
            )
        return result.matched_count == 1

    async def remove_connection(self, name: str) -> bool:
        """Delete a connection (its delivery log stays); False when there was none."""
        with translated("removing a connection"):
            result = await self.db.connections.delete_one({"_id": name})
        return result.deleted_count == 1

    # The delivery log

    async def open_delivery(
        self,
        key: str,
        *,
        connection: str,
        period: str,
        reason: str,
        scheduled_at: datetime,
        now: datetime,
        next_check_at: datetime,
    ) -> bool:
        """Create a delivery in state ``due``; False when its key exists (it is not new)."""
        document = new_delivery(
            key, connection=connection, period=period, reason=reason,
            scheduled_at=scheduled_at, now=now, next_check_at=next_check_at,
        )  # fmt: skip
        with translated("opening a delivery"):
            try:
                await self.db.deliveries.insert_one(document)
            except DuplicateKeyError:
                return False
        return True

    async def get_delivery(self, key: str) -> Delivery | None:
        with translated("reading a delivery"):
            doc = await self.db.deliveries.find_one({"_id": key})
        return Delivery.from_document(doc) if doc else None

    async def deliveries_by_key(self, keys: list[str]) -> dict[str, Delivery]:
        with translated("reading deliveries"):
            cursor = self.db.deliveries.find({"_id": {"$in": keys}})
            return {doc["_id"]: Delivery.from_document(doc) async for doc in cursor}

    async def deliveries(
        self,
        connection: str | None = None,
        limit: int = 50,
        *,
        state: str | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[Delivery]:
        """The delivery log, newest first; ``before`` (created at, key) pages on.

        The log grows by every report every day, so a page is read from a
        recent window first and the window widens only while it holds fewer
        than ``limit`` deliveries (see `RECENT_WINDOWS`): a server reads the
        window, never the whole log, however it plans a sort with a limit.
        The last try has no lower bound, so the answer is always exact.
        """
        query: dict[str, Any] = {"connection": connection} if connection else {}
        if state:
            query["state"] = state
        if before is not None:
            at, key = before
            query["$or"] = [{"created_at": {"$lt": at}}, {"_id": {"$lt": key}}]
        newest = as_utc(before[0]) if before is not None else datetime.now(UTC)
        found: list[Delivery] = []
        for window in (*RECENT_WINDOWS, None):
            created: dict[str, Any] = {} if window is None else {"$gte": newest - window}
            if before is not None:
                created["$lte"] = before[0]
            if created:
                query["created_at"] = created
            else:
                query.pop("created_at", None)
            with translated("listing deliveries"):
                cursor = self.db.deliveries.find(query).sort(NEWEST_FIRST).limit(limit)
                found = [Delivery.from_document(doc) async for doc in cursor]
            if len(found) >= limit:
                break
        return found

    async def recheck_delivery(self, key: str, now: datetime, next_check_at: datetime) -> bool:
        """Take an open delivery whose check is due; True for exactly one caller.

        The tick re-sends such a delivery down the chain (its message may have
        been lost, or its data was missing); the conditional update makes two
        ticks at once re-send it only once.
        """
        with translated("rechecking a delivery"):
            result = await self.db.deliveries.update_one(
                {
                    "_id": key,
                    "state": {"$in": [state.value for state in OPEN_STATES]},
                    "next_check_at": {"$lte": now},
                },
                {"$set": {"next_check_at": next_check_at}},
            )
        return result.modified_count == 1

    async def recheck_due_deliveries_at_once(self) -> int:
        """Make every `due` delivery's recheck due now; returns how many.

        For a broker about to be emptied (`up`'s planned restart), with the
        worker stopped and every consumed message handled: a delivery still
        `due` then has no message on its way (the tick opened it and was stopped
        before sending it), so the next tick must send it rather than wait for
        its recheck. Its recheck time becomes the moment it was opened, which no
        worker's clock is before.
        """
        with translated("rechecking due deliveries"):
            cursor = self.db.deliveries.find({"state": DeliveryState.DUE.value}, {"created_at": 1})
            opened = [(doc["_id"], doc["created_at"]) async for doc in cursor]
            for key, created_at in opened:
                await self.db.deliveries.update_one(
                    {"_id": key, "state": DeliveryState.DUE.value},
                    {"$set": {"next_check_at": created_at}},
                )
        return len(opened)

    async def move_delivery(
        self, key: str, to: DeliveryState, *, unless_final: bool = True, **fields: Any
    ) -> bool:
        """Set a delivery's state (and fields); never moves one out of a final state."""
        query: dict[str, Any] = {"_id": key}
        if unless_final:
            query["state"] = {"$in": [state.value for state in OPEN_STATES]}
        with translated("updating a delivery"):
            result = await self.db.deliveries.update_one(
                query, {"$set": {"state": to.value, **fields}}
            )
        return result.matched_count == 1

    async def skip_open_deliveries(self, connection: str) -> int:
        """Mark a connection's not-yet-sending deliveries skipped; returns how many."""
        waiting = [DeliveryState.DUE, DeliveryState.WAITING, DeliveryState.RENDERED,
                   DeliveryState.RETRYING]  # fmt: skip
        with translated("skipping deliveries"):
            result = await self.db.deliveries.update_many(
                {"connection": connection, "state": {"$in": [s.value for s in waiting]}},
                {"$set": {"state": DeliveryState.SKIPPED.value}},
            )
        return result.modified_count

    async def claim_delivery(
        self, key: str, worker: str, now: datetime, lease: timedelta
    ) -> Delivery | None:
        """Take a rendered delivery for sending; None when it is sent or someone holds it.

        A claim older than ``lease`` is taken over: its worker died while
        sending. This is the one window in which a report can go out twice (the
        destination took it, the worker died before writing the receipt).
        """
        claim = {"$set": {"state": DeliveryState.SENDING.value, "claimed_at": now,
                          "claimed_by": worker}}  # fmt: skip
        # Conditional `update_one`s, then a read of the delivery claimed: on SecantusDB a
        # `find_one_and_update` that matches scans the whole collection (183 ms per
        # claim at 20,000 deliveries against 1.6 ms for `update_one`; `bench.month`'s
        # reports of 1,000 connections took 50 s on the first night, 212 s on the sixth).
        with translated("claiming a delivery"):
            result = await self.db.deliveries.update_one(
                {"_id": key, "state": {"$in": [DeliveryState.RENDERED.value,
                                               DeliveryState.RETRYING.value]}},
                claim,
            )  # fmt: skip
            if result.modified_count == 0:
                result = await self.db.deliveries.update_one(
                    {"_id": key, "state": DeliveryState.SENDING.value,
                     "claimed_at": {"$lt": now - lease}},
                    claim,
                )  # fmt: skip
            if result.modified_count == 0:
                return None
            doc = await self.db.deliveries.find_one({"_id": key})
        return Delivery.from_document(doc) if doc else None

    async def finish_attempt(
        self,
        key: str,
        attempt: Attempt,
        state: DeliveryState,
        *,
        receipt: dict[str, Any] | None = None,
        next_check_at: datetime | None = None,
    ) -> None:
        """Record one attempt and where it left the delivery (sent, retrying, failed)."""
        fields: dict[str, Any] = {"state": state.value, "next_check_at": next_check_at}
        if receipt is not None:
            fields["receipt"] = receipt
            fields["sent_at"] = attempt.at
        with translated("recording a delivery attempt"):
            await self.db.deliveries.update_one(
                {"_id": key}, {"$set": fields, "$push": {"attempts": attempt.to_document()}}
            )

    # Rendered charts (kept out of Kafka: topics carry the delivery key only)

    async def save_chart(self, key: str, report: Report, now: datetime) -> None:
        document = {
            "_id": key,
            "title": report.title,
            "period_label": report.period_label,
            "summary": report.summary,
            "alt_text": report.alt_text,
            "png": Binary(report.png),
            "local_date": report.local_date,
            "note": report.note,
            "created_at": now,
        }
        with translated("saving a chart"):
            await self.db.charts.replace_one({"_id": key}, document, upsert=True)

    async def get_chart(self, key: str) -> Report | None:
        with translated("reading a chart"):
            doc = await self.db.charts.find_one({"_id": key})
        if doc is None:
            return None
        return Report(
            title=doc["title"],
            period_label=doc["period_label"],
            summary=doc["summary"],
            alt_text=doc["alt_text"],
            png=bytes(doc["png"]),
            local_date=doc["local_date"],
            note=doc.get("note"),
        )
