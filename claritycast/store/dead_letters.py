"""Dead letters for messages a stage could not handle, and the work they hold back.

A stage's handler may fail in ways nobody planned for: a bug, a document of
an older shape, a library raising what it never raised before. The agent
must not die of it (Faust has already acknowledged the message, so it would
be lost, and the stage would stop for every later message too), and the
failure must not repeat forever. So the message becomes a dead letter on its
stage's ``deadletters.<stage>`` topic and in the store, with the error, and
its work is held until an operator replays it:

- a fetch-chain message (quota, fetch, store) holds its group, so the tick
  stops asking for it (asking again would spend quota on the same failure
  every day);
- a delivery-chain message (render, deliver) moves its delivery to
  ``failed``, so the tick stops re-sending it.

`claritycast replay` lets both go again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from claritycast.store.base import translated

if TYPE_CHECKING:
    from claritycast.store.core import Store

import json
from datetime import datetime

import faust

from claritycast.redact import redact
from models.delivery import DeliveryState
from models.documents import as_utc
from models.records import DeadLetter

HANDLER_ERROR = "handler error"
DETAIL_MAX_CHARS = 2000


def identity(message: faust.Record) -> str:
    """What a message is about: a delivery key, or a project's group of one day."""
    delivery_key = getattr(message, "delivery_key", None)
    if delivery_key is not None:
        return str(delivery_key)
    return f"{message.project_id}/{message.local_date}/{message.group}"  # type: ignore[attr-defined]


def dead_letter_id(stage: str, message: faust.Record) -> str:
    return f"{stage}/{identity(message)}"


def handler_error_letter(
    stage: str, message: faust.Record, key: str, exc: BaseException, now: datetime
) -> DeadLetter:
    """The dead letter of a message whose handler raised ``exc``; never carries a secret."""
    detail = redact(f"{type(exc).__name__}: {exc}")[:DETAIL_MAX_CHARS]
    return DeadLetter(
        dead_letter_id=dead_letter_id(stage, message),
        stage=stage,
        key=key,
        project_id=str(getattr(message, "project_id", "")),
        reason=HANDLER_ERROR,
        detail=detail,
        attempts=1,
        original_type=message._options.namespace,
        original=json.loads(message.dumps(serializer="json")),
        failed_at=now,
    )


async def hold_work(store: Store, letter: DeadLetter) -> None:
    """Keep the tick from sending this letter's work again until it is replayed."""
    original = letter.original
    if "delivery_key" in original:
        await store.move_delivery(original["delivery_key"], DeliveryState.FAILED)
    else:
        await store.hold_group(letter.project_id, original["local_date"], original["group"], None)
        request_id = original.get("request_id")
        if request_id is not None:
            await store.abandon_call(request_id, letter.detail)


INDEXES: dict[str, list[IndexModel]] = {
    "dead_letters": [
        IndexModel([("stage", ASCENDING), ("failed_at", ASCENDING)], name="by_stage_time"),
        IndexModel([("project_id", ASCENDING)], name="by_project"),
    ],
}


class DeadLettersMixin:
    """`Store` operations on the dead letters (also on their topics, kept here for operators)."""

    db: AsyncDatabase[dict[str, Any]]

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
        after: tuple[datetime, str] | None = None,
        limit: int = 0,
    ) -> list[tuple[DeadLetter, str]]:
        """Dead letters, oldest first, with their state (``dead``, ``replayed``, ``expired``).

        ``after`` (failed at, id) and ``limit`` read one page of them.
        """
        query: dict[str, Any] = {}
        if stage:
            query["stage"] = stage
        if project_id:
            query["project_id"] = project_id
        if since:
            query["failed_at"] = {"$gte": since}
        if state:
            query["state"] = state
        if after is not None:
            at, letter_id = after
            query["$or"] = [
                {"failed_at": {"$gt": at}},
                {"failed_at": at, "_id": {"$gt": letter_id}},
            ]
        with translated("listing dead letters"):
            cursor = self.db.dead_letters.find(query).sort(
                [("failed_at", ASCENDING), ("_id", ASCENDING)]
            )
            return [_dead_letter(doc) async for doc in cursor.limit(limit)]

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


def _dead_letter(doc: dict[str, Any]) -> tuple[DeadLetter, str]:
    fields = {k: v for k, v in doc.items() if k in DeadLetter._options.fields}
    fields["failed_at"] = as_utc(fields["failed_at"])
    return DeadLetter(**fields), doc["state"]
