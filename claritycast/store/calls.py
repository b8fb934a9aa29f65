"""The durable call log and the quota check's refusals.

Every Clarity request is written here before it is made, so the quota can be
rebuilt after any restart; refusals say why a request was not granted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from claritycast.store.base import chunks, insert_new, translated
from models.documents import (
    Call,
    as_utc,
)

INDEXES: dict[str, list[IndexModel]] = {
    "calls": [
        IndexModel([("project_id", ASCENDING), ("at", ASCENDING)], name="by_project_time"),
        IndexModel(
            [("project_id", ASCENDING), ("local_date", ASCENDING), ("group", ASCENDING)],
            name="by_project_date_group",
        ),
    ],
    "refusals": [IndexModel([("at", ASCENDING)], expireAfterSeconds=7 * 86400, name="expire")],
    "pull_jobs": [
        IndexModel([("created_at", ASCENDING)], expireAfterSeconds=7 * 86400, name="expire")
    ],
}


class CallsMixin:
    """`Store` operations on the call log and refusals."""

    db: AsyncDatabase[dict[str, Any]]

    # The durable call log

    async def log_call(self, call: Call) -> bool:
        """Write a request to the log before it is made; False if already logged."""
        with translated("logging a Clarity call"):
            try:
                await self.db.calls.insert_one(call.to_document())
            except DuplicateKeyError:
                return False
        return True

    async def log_calls(self, calls: list[Call]) -> None:
        """`log_call` for many, one write for all; those logged already are left as they are."""
        with translated("logging Clarity calls"):
            for chunk in chunks(calls):
                await insert_new(self.db.calls, [call.to_document() for call in chunk])

    async def finish_call(
        self, request_id: str, outcome: str, status: int | None, detail: str | None
    ) -> None:
        with translated("recording a call's outcome"):
            await self.db.calls.update_one(
                {"_id": request_id},
                {"$set": {"outcome": outcome, "status": status, "detail": detail}},
            )

    async def settle_unmade_calls(self, recent: list[Call], granted_before: datetime) -> list[Call]:
        """Calls that were never made, each returned once, for the quota to stop counting.

        ``recent`` is the project's call log as just read (`calls_since`): the
        quota check reads it once and answers every question from it, so this
        costs no query when there is nothing to settle (nearly always). Those
        calls are grants never started (still ``granted``) older than a time,
        which this marks ``expired`` (the fetch stage moves a call to
        ``calling`` before its request, with the same condition, so each such
        call is either made or expired, never both), and calls the fetch stage
        ``skipped`` without a request (a refused token, a 429).
        """
        settled = []
        with translated("settling calls never made"):
            for call in recent:
                if call.settled:
                    continue
                if call.outcome == "granted" and call.at < granted_before:
                    change = {"outcome": "expired", "detail": "granted, never made"}
                elif call.outcome == "skipped":
                    change = {}
                else:
                    continue
                result = await self.db.calls.update_one(
                    {"_id": call.request_id, "outcome": call.outcome, "settled": {"$ne": True}},
                    {"$set": {**change, "settled": True}},
                )
                if result.modified_count == 1:
                    settled.append(call)
        return settled

    async def abandon_call(self, request_id: str, detail: str) -> None:
        """A call whose message was dead-lettered: no longer on its way (it may have been made)."""
        with translated("abandoning a call"):
            await self.db.calls.update_one(
                {"_id": request_id, "outcome": {"$in": ["granted", "calling"]}},
                {"$set": {"outcome": "handler error", "detail": detail[:300]}},
            )

    async def close_granted_call(self, request_id: str, outcome: str, detail: str) -> bool:
        """Close a call never made (skipped, expired) if it is still ``granted``; True if so."""
        with translated("closing a call"):
            result = await self.db.calls.update_one(
                {"_id": request_id, "outcome": "granted"},
                {"$set": {"outcome": outcome, "status": None, "detail": detail}},
            )
        return result.modified_count == 1

    async def start_call(self, request_id: str) -> bool:
        """Mark a granted call as being made; False if it expired or was started already."""
        with translated("starting a call"):
            result = await self.db.calls.update_one(
                {"_id": request_id, "outcome": "granted"}, {"$set": {"outcome": "calling"}}
            )
        return result.modified_count == 1

    async def start_calls(self, request_ids: list[str], claim: str) -> set[str]:
        """`start_call` for several calls: those this moved from ``granted`` to ``calling``.

        Two commands for all: the conditional update marks each call it moves
        with the caller's ``claim`` (unique to it), and the read finds them by
        that claim. A call moved by anyone else (a redelivered grant on another
        worker) does not carry this claim, so each call is started exactly
        once; retried with the same claim after an outage, it says the same.
        """
        if not request_ids:
            return set()
        with translated("starting calls"):
            await self.db.calls.update_many(
                {"_id": {"$in": request_ids}, "outcome": "granted"},
                {"$set": {"outcome": "calling", "claim": claim}},
            )
            cursor = self.db.calls.find({"_id": {"$in": request_ids}, "claim": claim}, {"_id": 1})
            return {doc["_id"] async for doc in cursor}

    async def finish_calls_ok(self, made: list[tuple[str, str | None]]) -> None:
        """Record answered calls (request id, the answer's notes) as ``ok``.

        One `update_many` per distinct note (nearly always one: no note), not a
        bulk of single updates: SecantusDB commits each statement of a bulk write
        on its own, with an fsync each.
        """
        by_detail: dict[str | None, list[str]] = {}
        for request_id, detail in made:
            by_detail.setdefault(detail, []).append(request_id)
        with translated("recording calls' outcomes"):
            for detail, ids in by_detail.items():
                for chunk in chunks(ids):
                    await self.db.calls.update_many(
                        {"_id": {"$in": chunk}},
                        {"$set": {"outcome": "ok", "status": 200, "detail": detail}},
                    )

    async def calls_since(self, project_id: str, since: datetime) -> list[Call]:
        """A project's calls since ``since``, oldest first (the index ``by_project_time``)."""
        with translated("reading the call log"):
            cursor = self.db.calls.find({"project_id": project_id, "at": {"$gte": since}})
            return [Call.from_document(doc) async for doc in cursor.sort("at", ASCENDING)]

    async def calls_since_many(
        self, project_ids: list[str], since: datetime
    ) -> dict[str, list[Call]]:
        """Several projects' calls since ``since``, oldest first, by project.

        One indexed query per project, all at once, like `pulls_since_many`.
        """

        async def one(project_id: str) -> list[Call]:
            cursor = self.db.calls.find({"project_id": project_id, "at": {"$gte": since}})
            return [Call.from_document(doc) async for doc in cursor.sort("at", ASCENDING)]

        with translated("reading the call log"):
            found = await asyncio.gather(*(one(project_id) for project_id in project_ids))
        return dict(zip(project_ids, found, strict=True))

    async def calls_for(
        self, project_id: str, local_date: str, group: str, since: datetime
    ) -> list[Call]:
        """The calls made for one group of one local date since ``since``.

        The query is the index ``by_project_date_group`` exactly, and the time
        is checked here: SecantusDB plans an extra range on another field by
        the project alone, which reads every call the project ever made.
        """
        with translated("reading the call log"):
            cursor = self.db.calls.find(
                {"project_id": project_id, "local_date": local_date, "group": group}
            )
            calls = [Call.from_document(doc) async for doc in cursor]
        return [call for call in calls if call.at >= since]

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

    # Pulls followed by someone (a connect's first pull, a refresh)

    async def record_pull(self, document: dict[str, Any]) -> None:
        """Remember which requests were sent together, so their progress can be read back."""
        with translated("recording a pull"):
            await self.db.pull_jobs.insert_one(document)

    async def get_pull(self, pull_id: str) -> dict[str, Any] | None:
        with translated("reading a pull"):
            return await self.db.pull_jobs.find_one({"_id": pull_id})
