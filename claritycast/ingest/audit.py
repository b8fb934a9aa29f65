"""Record what operators do: one append-only audit record per action, in MongoDB and on a topic.

Two ways in, for every face (the CLI, the HTTP API, workers):

- `record` writes one record: ``await record(store, send, actor=Actor(...),
  action=Action.PROJECT_SET_TOKEN, object="project:shop-1a2b3c", outcome="ok")``;
- `audited` wraps an action: the record is written when the block ends, with
  ``ok``, or with ``refused: <why>`` / ``failed: <why>`` when it raised
  (and the error goes on), so an action can never happen unrecorded.

MongoDB is written first: it is the trail `claritycast audit` reads. The
topic copy is for other services; if Kafka cannot take it, that is logged and
the action stands, because it has already happened. Nothing secret may be in
a record: the object and the detail pass the log redactor too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from claritycast.errors import ClarityCastError, ClarityPermanent, InputError
from claritycast.ingest.connect import SendFn
from claritycast.logs import get_logger
from claritycast.redact import redact
from claritycast.store.core import Store
from models.audit import Action, Actor, AuditEvent
from topics import AUDIT

log = get_logger(__name__)

OK = "ok"
DETAIL_MAX_CHARS = 500


async def record(
    store: Store,
    send: SendFn,
    *,
    actor: Actor,
    action: str,
    object: str,
    outcome: str = OK,
    detail: str | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one audit record (MongoDB, then the ``audit`` topic); returns it.

    ``outcome`` is ``ok``, ``refused: <why>`` or ``failed: <why>``. An unknown
    ``action`` or outcome shape is a bug and raises `ValueError`.
    """
    if action not in Action.ALL:
        raise ValueError(f"unknown audit action {action!r}: add it to models.audit.Action")
    if outcome != OK and not outcome.startswith(("refused: ", "failed: ")):
        raise ValueError(f"an outcome is 'ok', 'refused: …' or 'failed: …', not {outcome!r}")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    event = AuditEvent(
        audit_id=uuid.uuid4().hex,
        # MongoDB keeps milliseconds: the topic's copy says exactly what the trail says.
        at=moment.replace(microsecond=moment.microsecond // 1000 * 1000),
        actor_kind=actor.kind,
        actor_name=redact(actor.name),
        action=action,
        object=redact(object),
        outcome=redact(outcome)[:DETAIL_MAX_CHARS],
        detail=redact(detail)[:DETAIL_MAX_CHARS] if detail else None,
    )
    await store.add_audit_event(event)
    try:
        await send(AUDIT, event.object, event)
    except ClarityCastError as exc:
        log.warning("audit.unpublished", action=action, object=event.object, error=str(exc))
    return event


@dataclass
class Audited:
    """What an audited block says about itself: the object once known, a detail."""

    object: str
    detail: str | None = None


def outcome_of(exc: BaseException) -> str:
    """``refused: …`` for input the service would not take, ``failed: …`` for the rest.

    A bug's message is not kept (it may hold anything); its type is.
    """
    if isinstance(exc, InputError | ClarityPermanent):
        return f"refused: {exc}"
    if isinstance(exc, ClarityCastError):
        return f"failed: {exc}"
    return f"failed: {type(exc).__name__}"


@asynccontextmanager
async def audited(
    store: Store, send: SendFn, actor: Actor, action: str, object: str
) -> AsyncIterator[Audited]:
    """Record the action done in the block, however it ends; exceptions go on."""
    note = Audited(object)
    try:
        yield note
    except Exception as exc:
        await record(store, send, actor=actor, action=action, object=note.object,
                     outcome=outcome_of(exc), detail=note.detail)  # fmt: skip
        raise
    await record(store, send, actor=actor, action=action, object=note.object,
                 detail=note.detail)  # fmt: skip
