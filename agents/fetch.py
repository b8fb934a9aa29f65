"""fetch group: make one granted Clarity request and pass the parsed snapshot on.

The token is read from MongoDB here, at the last moment, and decrypted only
then: it never travels on a topic. A token that cannot be decrypted marks its
project "token unreadable" and nothing is asked of Clarity.

Each outcome is written to the call log, and the failures of the API's error
table end in their documented states (`claritycast.ingest.fetch_failures`):
401/403 mark the project "token invalid" and tell its owner once; 429 marks it
exhausted until its next local midnight; 5xx, timeouts and garbled 200s are
retried by the tick after a backoff, then dead-lettered; 400 and malformed
answers are dead-lettered at once.

A grant is made only while the project may still be called: a project whose
token was refused, or which Clarity answered 429 until its next local
midnight, has its remaining grants skipped without a call (the quota check
forgets them, and the groups stay due for after the reset).

The answer's blocks go to MongoDB (the claim check, `claritycast.store.claim_check`)
and the snapshot record carries their reference: whatever Clarity sends, the
record stays small. Once the request is made, nothing after it may lose the
answer: storing it aside, sending it on and recording the outcome wait out a
MongoDB outage.
"""

from __future__ import annotations

import faust
from faust.types import StreamT

from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded, with_store_retry
from claritycast.errors import ClarityError
from claritycast.ingest.fetch_failures import after_failure
from claritycast.ingest.quota import GRANT_TTL
from claritycast.ingest.tokens import readable_token
from claritycast.localtime import is_late
from claritycast.logs import get_logger
from claritycast.store.claim_check import fetched_record
from claritycast.telemetry import CLARITY_CALLS, DEAD_LETTERS
from models.clarity import GROUPS_BY_NAME
from models.documents import ProjectStatus
from models.records import FetchGranted
from topics import (
    DEAD_FETCHES,
    DELIVERIES_DUE,
    FETCH_GRANTED,
    SNAPSHOTS_FETCHED,
    Topics,
    send_bounded,
)

log = get_logger(__name__)


async def handle(granted: FetchGranted, deps: Deps, topics: Topics) -> None:
    """Make the request (once), record its outcome, emit the snapshot."""
    store = deps.store
    call = await store.get_call(granted.request_id)
    if call is not None and call.outcome == "calling":
        # Redelivered after a worker died during the request: it may have reached
        # Clarity, and it is counted; asking again is the quota check's decision.
        await store.finish_call(granted.request_id, "interrupted", None, "worker stopped")
        return
    if call is not None and call.outcome != "granted":
        return  # already made: a redelivery must not spend another request
    project = await store.get_project(granted.project_id)
    called_at = deps.clock.now()
    if project is None or project.status != ProjectStatus.ACTIVE:
        status = project.status if project else "removed"
        await store.finish_call(granted.request_id, "skipped", None, f"project {status}")
        return
    context = {"project": project.project_id, "group": granted.group, "reason": granted.reason}
    if project.exhausted_until is not None and project.exhausted_until > called_at:
        # Clarity said 429: its count is the truth, whatever our ledger says.
        detail = f"Clarity answered 429; exhausted until {project.exhausted_until:%Y-%m-%d %H:%M}Z"
        await store.finish_call(granted.request_id, "skipped", None, detail)
        log.info("fetch.skipped", why=detail, **context)
        return
    if granted.granted_at < called_at - GRANT_TTL:
        # The quota counted this call from its grant time; made now, Clarity would
        # count it later than the quota does. The tick asks again if still needed.
        await store.finish_call(granted.request_id, "expired", None, "granted too long ago")
        log.info("fetch.expired", granted_at=granted.granted_at, **context)
        return
    token = await readable_token(store, project)
    if token is None:  # marked "token unreadable": nothing is asked of Clarity
        await store.finish_call(granted.request_id, "skipped", None, "token unreadable")
        return
    if not await store.start_call(granted.request_id):
        return  # the quota check expired it first: it will never be made
    try:
        response = await deps.clarity.fetch(token, GROUPS_BY_NAME[granted.group])
    except ClarityError as exc:
        # What the failure means (a held group, a dead letter) is settled before the
        # call is closed: the quota check sees the group held, never merely failed.
        CLARITY_CALLS.labels(exc.outcome).inc()
        outcome = await after_failure(exc, granted, store, called_at)
        await store.finish_call(granted.request_id, exc.outcome, exc.status, str(exc))
        log.warning("fetch.failed", outcome=exc.outcome, status=exc.status, **context)
        if outcome.dead_letter is not None:
            await send_bounded(topics[DEAD_FETCHES], granted.project_id, outcome.dead_letter)
            DEAD_LETTERS.labels("fetch").inc()
            log.error("fetch.dead_letter", why=outcome.dead_letter.reason, **context)
        for notice in outcome.notices:
            await send_bounded(topics[DELIVERIES_DUE], notice.connection, notice)
        return
    CLARITY_CALLS.labels("ok").inc()
    ref = await with_store_retry(
        "fetch", lambda: store.put_blocks(response.to_json(), called_at), **context
    )
    late = is_late(called_at, granted.local_date, granted.timezone)
    record = fetched_record(
        project.project_id, granted.local_date, granted.group, called_at, ref, late=late
    )
    await send_bounded(topics[SNAPSHOTS_FETCHED], project.project_id, record)
    detail = "; ".join(response.notes) or None
    await with_store_retry(
        "fetch", lambda: store.finish_call(granted.request_id, "ok", 200, detail), **context
    )
    log.info("fetch.ok", late=record.late, rows=sum(ref.rows.values()),
             bytes=ref.size_bytes, **context)  # fmt: skip


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the fetch agent to ``app``."""
    sink = DeadLetterSink("fetch", topics[DEAD_FETCHES], deps.store, deps.clock)

    @app.agent(topics[FETCH_GRANTED], name="claritycast.fetch")
    async def fetch_agent(stream: StreamT[FetchGranted]) -> None:
        async for granted in stream:
            await guarded(
                "fetch",
                lambda granted=granted: handle(granted, deps, topics),
                message=granted,
                key=granted.project_id,
                sink=sink,
                project=granted.project_id,
                group=granted.group,
            )
