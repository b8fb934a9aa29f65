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

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import faust
from faust.types import StreamT

from agents.batch import BATCH_MAX, BATCH_WAIT_S, guarded_batch
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
from models.documents import Project, ProjectStatus
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

# Requests in flight at once per worker: Clarity answers in hundreds of milliseconds,
# and a batch's requests are independent (the quota counted each already).
CONCURRENCY = 8


async def handle(granted: FetchGranted, deps: Deps, topics: Topics) -> None:
    """Make the request (once), record its outcome, emit the snapshot."""
    await handle_for(granted, await deps.store.get_project(granted.project_id), deps, topics)


async def handle_batch(
    grants: Sequence[FetchGranted],
    deps: Deps,
    topics: Topics,
    one_by_one: Callable[[FetchGranted, Project | None, set[str]], Awaitable[None]],
) -> None:
    """`handle` for a batch: its projects in one read, up to `CONCURRENCY` projects at once.

    Past the read, each grant is handled alone and guarded (``one_by_one``):
    a grant once started is never handled again because another failed, and
    Clarity's latency is spent in parallel rather than in turn. A project's own
    grants are made in turn, never at once: after a 429 (or a refused token)
    the project is read again before its next grant, which is then skipped, so
    a batch never sends Clarity a request the previous answer forbade.
    """
    projects = await deps.store.get_projects({granted.project_id for granted in grants})
    by_project: dict[str, list[FetchGranted]] = {}
    for granted in grants:
        by_project.setdefault(granted.project_id, []).append(granted)
    changed: set[str] = set()  # projects whose state a failed request just changed
    slots = asyncio.Semaphore(CONCURRENCY)

    async def in_turn(project_id: str, own: list[FetchGranted]) -> None:
        async with slots:
            for granted in own:
                if project_id in changed:  # what the batch read is stale: read it again
                    fresh = await deps.store.get_project(project_id)
                    if fresh is None:
                        projects.pop(project_id, None)
                    else:
                        projects[project_id] = fresh
                    changed.discard(project_id)
                await one_by_one(granted, projects.get(project_id), changed)

    await asyncio.gather(*(in_turn(pid, own) for pid, own in by_project.items()))


async def handle_for(
    granted: FetchGranted,
    project: Project | None,
    deps: Deps,
    topics: Topics,
    changed: set[str] | None = None,
) -> None:
    """Make the request of a grant whose project was just read.

    A grant is made only if its call is still ``granted`` in the call log,
    and moving it to ``calling`` is the same conditional write that decides
    it (`Store.start_call`): one write for the usual case. The call is read
    only when that fails, to tell a redelivery after a worker died during the
    request (counted, and closed as ``interrupted``) from one already made.
    """
    store = deps.store
    called_at = deps.clock.now()
    context = {"project": granted.project_id, "group": granted.group, "reason": granted.reason}
    skip = _why_not_now(granted, project, called_at)
    if skip is not None:
        outcome, detail = skip
        if await store.close_granted_call(granted.request_id, outcome, detail):
            log.info(f"fetch.{outcome}", why=detail, granted_at=granted.granted_at, **context)
            return
    else:
        assert project is not None
        token = await readable_token(store, project)  # decrypted at the last moment
        if token is None:  # marked "token unreadable": nothing is asked of Clarity
            await store.close_granted_call(granted.request_id, "skipped", "token unreadable")
            return
        if await store.start_call(granted.request_id):
            answered = await _make(granted, token, deps, topics, called_at, context)
            if not answered and changed is not None:  # a 429 or a refused token changed it
                changed.add(granted.project_id)
            return
    call = await store.get_call(granted.request_id)
    if call is not None and call.outcome == "calling":
        # Redelivered after a worker died during the request: it may have reached
        # Clarity, and it is counted; asking again is the quota check's decision.
        await store.finish_call(granted.request_id, "interrupted", None, "worker stopped")
    # Otherwise already made, skipped or expired: a redelivery must not spend another request.


def _why_not_now(
    granted: FetchGranted, project: Project | None, now: datetime
) -> tuple[str, str] | None:
    """(outcome, why) when this grant must not become a request; None when it may."""
    if project is None or project.status != ProjectStatus.ACTIVE:
        return "skipped", f"project {project.status if project else 'removed'}"
    if project.exhausted_until is not None and project.exhausted_until > now:
        # Clarity said 429: its count is the truth, whatever our ledger says.
        return "skipped", (
            f"Clarity answered 429; exhausted until {project.exhausted_until:%Y-%m-%d %H:%M}Z"
        )
    if granted.granted_at < now - GRANT_TTL:
        # The quota counted this call from its grant time; made now, Clarity would
        # count it later than the quota does. The tick asks again if still needed.
        return "expired", "granted too long ago"
    return None


async def _make(
    granted: FetchGranted,
    token: str,
    deps: Deps,
    topics: Topics,
    called_at: datetime,
    context: dict[str, str],
) -> bool:
    """The request itself, and what follows: the answer stored aside and sent on, or the failure.

    True when Clarity answered; False when it did not (the failure is recorded).
    """
    store = deps.store
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
        return False
    CLARITY_CALLS.labels("ok").inc()
    ref = await with_store_retry(
        "fetch", lambda: store.put_blocks(response.to_json(), called_at), **context
    )
    late = is_late(called_at, granted.local_date, granted.timezone)
    record = fetched_record(
        granted.project_id, granted.local_date, granted.group, called_at, ref, late=late
    )
    await send_bounded(topics[SNAPSHOTS_FETCHED], granted.project_id, record)
    detail = "; ".join(response.notes) or None
    await with_store_retry(
        "fetch", lambda: store.finish_call(granted.request_id, "ok", 200, detail), **context
    )
    log.info("fetch.ok", late=record.late, rows=sum(ref.rows.values()),
             bytes=ref.size_bytes, **context)  # fmt: skip
    return True


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the fetch agent to ``app``."""
    sink = DeadLetterSink("fetch", topics[DEAD_FETCHES], deps.store, deps.clock)

    async def guard(granted: FetchGranted, handler: Callable[[], Awaitable[None]]) -> None:
        await guarded("fetch", handler, message=granted, key=granted.project_id, sink=sink,
                      project=granted.project_id, group=granted.group)  # fmt: skip

    async def one(granted: FetchGranted) -> None:
        await guard(granted, lambda: handle(granted, deps, topics))

    async def in_batch(granted: FetchGranted, project: Project | None, changed: set[str]) -> None:
        await guard(granted, lambda: handle_for(granted, project, deps, topics, changed))

    @app.agent(topics[FETCH_GRANTED], name="claritycast.fetch")
    async def fetch_agent(stream: StreamT[FetchGranted]) -> None:
        async for grants in stream.take(BATCH_MAX, within=BATCH_WAIT_S):
            await guarded_batch(
                "fetch",
                lambda grants=grants: handle_batch(grants, deps, topics, in_batch),
                messages=grants,
                one_by_one=one,
            )
