"""The MongoDB store: typed operations over PyMongo's native async client.

Agents and commands never build queries; they call these methods. Every
collection's indexes are created by `Store.ensure_indexes` at start-up, which
is idempotent (MongoDB's ``createIndexes`` is a no-op for an identical index),
so any number of workers may start at once.

PyMongo exceptions are translated here, and only here, into `StoreError`
(give up) and `StoreUnavailable` (retry later).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bson import Binary
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)

from claritycast.errors import StoreError, StoreUnavailable
from claritycast.redact import redact
from claritycast.store import claim_check
from claritycast.store.claim_check import BlocksRef, BlockStore
from models.delivery import Attempt, Connection, ConnectionStatus, Delivery, DeliveryState
from models.documents import (
    Call,
    Organisation,
    Project,
    PullProgress,
    Snapshot,
    WorkerBeat,
    as_utc,
)
from models.records import DeadLetter
from models.report import Report

SERVER_SELECTION_TIMEOUT_MS = 10_000

# Exceptions after which the same call may succeed later. Everything else that
# PyMongo raises is a `StoreError`.
RETRYABLE: tuple[type[PyMongoError], ...] = (
    ConnectionFailure,  # includes AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    ExecutionTimeout,
    WaitQueueTimeoutError,
    WTimeoutError,
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
    "pulls": [IndexModel([("local_date", ASCENDING)], name="by_local_date")],
    claim_check.COLLECTION: claim_check.INDEXES,
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
    "calls": [
        IndexModel([("project_id", ASCENDING), ("at", ASCENDING)], name="by_project_time"),
        IndexModel(
            [("project_id", ASCENDING), ("local_date", ASCENDING), ("group", ASCENDING)],
            name="by_project_date_group",
        ),
    ],
    "refusals": [IndexModel([("at", ASCENDING)], expireAfterSeconds=7 * 86400, name="expire")],
    "workers": [
        IndexModel([("seen_at", ASCENDING)], name="by_seen_at"),
    ],
    "connections": [IndexModel([("project_id", ASCENDING)], name="by_project")],
    "deliveries": [
        IndexModel([("connection", ASCENDING), ("created_at", ASCENDING)], name="by_connection"),
        IndexModel([("state", ASCENDING), ("next_check_at", ASCENDING)], name="by_state"),
    ],
    "dead_letters": [
        IndexModel([("stage", ASCENDING), ("failed_at", ASCENDING)], name="by_stage_time"),
        IndexModel([("project_id", ASCENDING)], name="by_project"),
    ],
    "charts": [
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=90 * 86400, name="expire")
    ],
}

# Delivery states a worker may still move forward; the others are final.
OPEN_STATES = [
    DeliveryState.DUE,
    DeliveryState.WAITING,
    DeliveryState.RENDERED,
    DeliveryState.SENDING,
    DeliveryState.RETRYING,
]


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Map PyMongo's exceptions to ours; the message names the operation."""
    try:
        yield
    except RETRYABLE as exc:
        raise StoreUnavailable(f"MongoDB unavailable during {operation}: {_brief(exc)}") from exc
    except PyMongoError as exc:
        raise StoreError(f"MongoDB refused {operation}: {_brief(exc)}") from exc


def _brief(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text[:300])


class Store:
    """Typed access to claritycast's collections in one database."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self.client = client
        self.db: AsyncDatabase[dict[str, Any]] = client[database]
        self._blocks = BlockStore(self.db)

    @classmethod
    def connect(
        cls, url: str, database: str, *, timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS
    ) -> Store:
        """A store on ``url``; no I/O happens until the first operation."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            appname="claritycast",
        )
        return cls(client, database)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        with translated("ping"):
            await self.db.command("ping")

    async def ensure_indexes(self) -> None:
        """Create every index claritycast relies on; safe to run on every start."""
        for collection, indexes in INDEXES.items():
            with translated(f"creating indexes on {collection}"):
                await self.db[collection].create_indexes(indexes)

    # Answers' blocks (the claim check: topics carry their reference)

    async def put_blocks(self, blocks: list[dict[str, Any]], now: datetime) -> BlocksRef:
        """Store an answer's blocks aside and return their reference; idempotent."""
        with translated("storing an answer's blocks"):
            return await self._blocks.put(blocks, now)

    async def get_blocks(self, ref: str) -> list[dict[str, Any]]:
        """An answer's blocks by reference; `BlocksMissing` or `BlocksCorrupt` if unusable."""
        with translated("reading an answer's blocks"):
            return await self._blocks.get(ref)

    async def pin_blocks(self, ref: str) -> None:
        """Keep an answer's blocks for good: a snapshot needs the complete answer."""
        with translated("keeping an answer's blocks"):
            await self._blocks.pin(ref)

    async def snapshot_exists(self, project_id: str, local_date: str, group: str) -> bool:
        with translated("looking for a snapshot"):
            found = await self.db.snapshots.find_one(
                {"_id": f"{project_id}/{local_date}/{group}"}, {"_id": 1}
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

        The upper bound is written as ``$lt`` the next day: SecantusDB 0.7.0b3
        drops the entries equal to an ``$lte`` bound on a middle field of a
        compound index (mongod does not); for ISO dates both mean the same.
        """
        after_last = (date.fromisoformat(last_date) + timedelta(days=1)).isoformat()
        query: dict[str, Any] = {
            "project_id": project_id,
            "local_date": {"$gte": first_date, "$lt": after_last},
        }
        if group is not None:
            query["group"] = group
        with translated("reading snapshots"):
            cursor = self.db.snapshots.find(query).sort(
                [("local_date", ASCENDING), ("group", ASCENDING)]
            )
            return [Snapshot.from_document(doc, metrics) async for doc in cursor]

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
        """Keep the tick from asking for a group until ``until``; None: for good (dead letter)."""
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

    async def release_group(self, project_id: str, local_date: str, group: str) -> None:
        """Let the tick ask for a held group again (a replay)."""
        with translated("releasing a group"):
            await self.db.pulls.update_one(
                {"_id": f"{project_id}/{local_date}"},
                {"$unset": {f"retry_at.{group}": "", f"dead.{group}": ""}},
            )

    async def groups_not_due_on(
        self, local_dates: list[str], now: datetime
    ) -> dict[tuple[str, str], set[str]]:
        """(project, date) -> groups the tick must not ask for now, in one small query.

        Those are the groups stored, dead-lettered, or waiting for a retry.
        """
        not_due: dict[tuple[str, str], set[str]] = {}
        with translated("listing the pulls' progress"):
            cursor = self.db.pulls.find({"local_date": {"$in": local_dates}})
            async for doc in cursor:
                groups = set(doc.get("groups") or ()) | set(doc.get("dead") or {})
                groups |= {g for g, at in (doc.get("retry_at") or {}).items() if as_utc(at) > now}
                not_due[(doc["project_id"], doc["local_date"])] = groups
        return not_due

    async def last_snapshot_date(self, project_id: str) -> str | None:
        with translated("reading the last snapshot"):
            doc = await self.db.snapshots.find_one(
                {"project_id": project_id}, {"local_date": 1}, sort=[("local_date", -1)]
            )
        return doc["local_date"] if doc else None

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

    async def organisations(self) -> list[Organisation]:
        with translated("listing organisations"):
            cursor = self.db.organisations.find().sort("name", ASCENDING)
            return [Organisation.from_document(doc) async for doc in cursor]

    # Projects and their metric sources

    async def add_project(self, project: Project, metric_ids: list[str]) -> bool:
        """Store a project and one metric source per catalogue metric (idempotent)."""
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
        """The quota is full until ``until``: the tick leaves the project alone till then."""
        with translated("deferring a project's pull"):
            await self.db.projects.update_one(
                {"_id": project_id}, {"$set": {"deferred_until": until}}
            )

    async def metric_sources(self, project_id: str) -> list[str]:
        with translated("listing metric sources"):
            cursor = self.db.metric_sources.find({"project_id": project_id}, {"metric_id": 1})
            return [doc["metric_id"] async for doc in cursor]

    # The durable call log

    async def log_call(self, call: Call) -> bool:
        """Write a request to the log before it is made; False if already logged."""
        with translated("logging a Clarity call"):
            try:
                await self.db.calls.insert_one(call.to_document())
            except DuplicateKeyError:
                return False
        return True

    async def finish_call(
        self, request_id: str, outcome: str, status: int | None, detail: str | None
    ) -> None:
        with translated("recording a call's outcome"):
            await self.db.calls.update_one(
                {"_id": request_id},
                {"$set": {"outcome": outcome, "status": status, "detail": detail}},
            )

    async def settle_unmade_calls(self, project_id: str, granted_before: datetime) -> list[Call]:
        """Calls that were never made, each returned once, for the quota to stop counting.

        Those are grants never started (still ``granted``) older than a time,
        which this marks ``expired`` (the fetch stage moves a call to
        ``calling`` before its request, with the same condition, so each such
        call is either made or expired, never both), and calls the fetch stage
        ``skipped`` without a request (a refused token, a 429).
        """
        settled = []
        with translated("settling calls never made"):
            cursor = self.db.calls.find(
                {
                    "project_id": project_id,
                    "$or": [
                        {"outcome": "granted", "at": {"$lt": granted_before}},
                        {"outcome": "skipped", "settled": {"$ne": True}},
                    ],
                }
            )
            for doc in [doc async for doc in cursor]:
                if doc["outcome"] == "granted":
                    change = {"outcome": "expired", "detail": "granted, never made"}
                else:
                    change = {"settled": True}
                result = await self.db.calls.update_one(
                    {"_id": doc["_id"], "outcome": doc["outcome"], "settled": {"$ne": True}},
                    {"$set": {**change, "settled": True}},
                )
                if result.modified_count == 1:
                    settled.append(Call.from_document(doc))
        return settled

    async def abandon_call(self, request_id: str, detail: str) -> None:
        """A call whose message was dead-lettered: no longer on its way (it may have been made)."""
        with translated("abandoning a call"):
            await self.db.calls.update_one(
                {"_id": request_id, "outcome": {"$in": ["granted", "calling"]}},
                {"$set": {"outcome": "handler error", "detail": detail[:300]}},
            )

    async def start_call(self, request_id: str) -> bool:
        """Mark a granted call as being made; False if it expired or was started already."""
        with translated("starting a call"):
            result = await self.db.calls.update_one(
                {"_id": request_id, "outcome": "granted"}, {"$set": {"outcome": "calling"}}
            )
        return result.modified_count == 1

    async def calls_since(self, project_id: str, since: datetime) -> list[Call]:
        with translated("reading the call log"):
            cursor = self.db.calls.find({"project_id": project_id, "at": {"$gte": since}})
            return [Call.from_document(doc) async for doc in cursor.sort("at", ASCENDING)]

    async def calls_for(
        self, project_id: str, local_date: str, group: str, since: datetime
    ) -> list[Call]:
        """The calls made for one group of one local date since ``since``."""
        with translated("reading the call log"):
            cursor = self.db.calls.find(
                {"project_id": project_id, "local_date": local_date, "group": group,
                 "at": {"$gte": since}}
            )  # fmt: skip
            return [Call.from_document(doc) async for doc in cursor]

    async def get_call(self, request_id: str) -> Call | None:
        with translated("reading a call"):
            doc = await self.db.calls.find_one({"_id": request_id})
        return Call.from_document(doc) if doc else None

    async def record_refusal(
        self,
        request_id: str,
        project_id: str,
        reason: str,
        next_at: datetime | None,
        at: datetime,
        *,
        kind: str = "refused",
    ) -> None:
        """Remember why the quota check did not grant a request (refusals are not calls).

        ``kind`` is ``refused`` (the quota or Clarity said no) or ``not due``
        (the group is stored, or on its way).
        """
        with translated("recording a refusal"):
            await self.db.refusals.update_one(
                {"_id": request_id},
                {
                    "$setOnInsert": {
                        "project_id": project_id,
                        "kind": kind,
                        "reason": reason,
                        "next_possible_at": next_at,
                        "at": at,
                    }
                },
                upsert=True,
            )

    async def refusals_by_id(
        self, request_ids: list[str]
    ) -> dict[str, tuple[str, str, datetime | None]]:
        """request id -> (kind, reason, next possible at) for those not granted."""
        with translated("reading refusals"):
            cursor = self.db.refusals.find({"_id": {"$in": request_ids}})
            return {
                doc["_id"]: (
                    doc.get("kind", "refused"),
                    doc["reason"],
                    as_utc(doc["next_possible_at"]) if doc.get("next_possible_at") else None,
                )
                async for doc in cursor
            }

    async def calls_by_id(self, request_ids: list[str]) -> list[Call]:
        with translated("reading calls"):
            cursor = self.db.calls.find({"_id": {"$in": request_ids}})
            return [Call.from_document(doc) async for doc in cursor]

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

    async def set_connection_status(
        self, name: str, status: ConnectionStatus, reason: str | None
    ) -> bool:
        """Pause or resume a connection; False when there is no such connection."""
        with translated("updating a connection"):
            result = await self.db.connections.update_one(
                {"_id": name}, {"$set": {"status": status.value, "status_reason": reason}}
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
        document = {
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

    async def deliveries(self, connection: str | None = None, limit: int = 50) -> list[Delivery]:
        """The delivery log, newest first."""
        query = {"connection": connection} if connection else {}
        with translated("listing deliveries"):
            cursor = self.db.deliveries.find(query).sort("created_at", -1).limit(limit)
            return [Delivery.from_document(doc) async for doc in cursor]

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
        with translated("claiming a delivery"):
            doc = await self.db.deliveries.find_one_and_update(
                {
                    "_id": key,
                    "$or": [
                        {"state": {"$in": [DeliveryState.RENDERED.value,
                                           DeliveryState.RETRYING.value]}},
                        {"state": DeliveryState.SENDING.value, "claimed_at": {"$lt": now - lease}},
                    ],
                },
                {"$set": {"state": DeliveryState.SENDING.value, "claimed_at": now,
                          "claimed_by": worker}},
                return_document=ReturnDocument.AFTER,
            )  # fmt: skip
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

    # Dead letters (also on their topics; kept here for the operator's commands)

    async def save_dead_letter(self, letter: DeadLetter) -> None:
        """Record (or update) a dead letter; it is ``dead`` until replayed."""
        document = letter.asdict()
        document["state"] = "dead"
        document["replayed_at"] = None
        with translated("saving a dead letter"):
            await self.db.dead_letters.replace_one(
                {"_id": letter.dead_letter_id}, {"_id": letter.dead_letter_id, **document},
                upsert=True,
            )  # fmt: skip

    async def dead_letters(
        self,
        *,
        stage: str | None = None,
        project_id: str | None = None,
        since: datetime | None = None,
        state: str | None = "dead",
    ) -> list[tuple[DeadLetter, str]]:
        """Dead letters, oldest first, with their state (``dead``, ``replayed``, ``expired``)."""
        query: dict[str, Any] = {}
        if stage:
            query["stage"] = stage
        if project_id:
            query["project_id"] = project_id
        if since:
            query["failed_at"] = {"$gte": since}
        if state:
            query["state"] = state
        with translated("listing dead letters"):
            cursor = self.db.dead_letters.find(query).sort("failed_at", ASCENDING)
            return [_dead_letter(doc) async for doc in cursor]

    async def get_dead_letter(self, dead_letter_id: str) -> tuple[DeadLetter, str] | None:
        """One dead letter and its state, by id."""
        with translated("reading a dead letter"):
            doc = await self.db.dead_letters.find_one({"_id": dead_letter_id})
        return _dead_letter(doc) if doc else None

    async def mark_dead_letter(self, dead_letter_id: str, state: str, at: datetime) -> None:
        with translated("updating a dead letter"):
            await self.db.dead_letters.update_one(
                {"_id": dead_letter_id}, {"$set": {"state": state, "replayed_at": at}}
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


def _dead_letter(doc: dict[str, Any]) -> tuple[DeadLetter, str]:
    fields = {k: v for k, v in doc.items() if k in DeadLetter._options.fields}
    fields["failed_at"] = as_utc(fields["failed_at"])
    return DeadLetter(**fields), doc["state"]


@asynccontextmanager
async def open_store(url: str, database: str) -> AsyncIterator[Store]:
    """A store for the length of a block, e.g. one CLI command."""
    store = Store.connect(url, database)
    try:
        yield store
    finally:
        await store.close()
