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
record stays small. A batch of grants is made in waves (`handle_batch`), so
that a request costs the embedded database no commit of its own: a wave's
calls are started, its answers stored aside and its calls closed in one write
each. Once the request is made, nothing after it may lose the
answer: storing it aside, sending it on and recording the outcome wait out a
MongoDB outage.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import faust
from faust.types import StreamT

from agents.batch import BATCH_MAX, BATCH_WAIT_S, guarded_batch
from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded, with_store_retry
from claritycast.errors import ClarityError, StoreError
from claritycast.ingest.fetch_failures import after_failure
from claritycast.ingest.quota import GRANT_TTL
from claritycast.ingest.tokens import readable_token
from claritycast.localtime import is_late
from claritycast.logs import get_logger
from claritycast.store.claim_check import BlocksRef, fetched_record
from claritycast.telemetry import CLARITY_CALLS, DEAD_LETTERS
from models.clarity import GROUPS_BY_NAME, ClarityResponse
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


async def handle(granted: FetchGranted, deps: Deps, topics: Topics) -> None:
    """Make the request (once), record its outcome, emit the snapshot."""
    await handle_for(granted, await deps.store.get_project(granted.project_id), deps, topics)


async def handle_for(
    granted: FetchGranted, project: Project | None, deps: Deps, topics: Topics
) -> None:
    """Make the request of a grant whose project was just read.

    A grant is made only if its call is still ``granted`` in the call log,
    and moving it to ``calling`` is the same conditional write that decides
    it (`Store.start_call`): one write for the usual case. The call is read
    only when that fails, to tell a redelivery after a worker died during the
    request (counted, and closed as ``interrupted``) from one already made.
    """
    called_at = deps.clock.now()
    token = await _token_unless_skipped(granted, project, deps, called_at)
    if token is None:
        return
    if not await deps.store.start_call(granted.request_id):
        await _not_started(granted, deps)
        return
    response = await _request(granted, token, deps, topics, called_at)
    if response is None:
        return
    ref = await with_store_retry(
        "fetch", lambda: deps.store.put_blocks(response.to_json(), called_at), **_context(granted)
    )
    await _send_on(granted, response, ref, called_at, topics)
    detail = _detail(response)
    await with_store_retry(
        "fetch",
        lambda: deps.store.finish_call(granted.request_id, "ok", 200, detail),
        **_context(granted),
    )


Guard = Callable[[FetchGranted, Callable[[], Awaitable[None]]], Awaitable[None]]


async def handle_batch(
    grants: Sequence[FetchGranted], deps: Deps, topics: Topics, guard: Guard
) -> None:
    """`handle` for a batch: its projects in one read, its requests in waves (`waves`).

    A wave holds at most ``CLARITYCAST_FETCH_CONCURRENCY`` grants (requests in
    flight at once) and at most one per project, so
    a project's grants are made in turn: after a 429 (or a refused token) the
    project is read again before its next wave, and its next grant is then
    skipped; a batch never sends Clarity a request the previous answer forbade.
    See `_make_wave` for what a wave writes.
    """
    projects = await deps.store.get_projects({granted.project_id for granted in grants})
    changed: set[str] = set()  # projects whose state a failed request just changed
    for wave in waves(grants, deps.settings.fetch_concurrency):
        stale = changed & {granted.project_id for granted in wave}
        if stale:  # what the batch read is stale: read it again
            fresh = await deps.store.get_projects(stale)
            for project_id in stale:
                projects.pop(project_id, None)
                if project_id in fresh:
                    projects[project_id] = fresh[project_id]
            changed -= stale
        await _make_wave(wave, projects, deps, topics, guard, changed)


def waves(grants: Sequence[FetchGranted], size: int) -> list[list[FetchGranted]]:
    """The grants in waves of at most ``size``, no two of one project, each project's in order.

    Each wave takes the next grant of the projects with the most left (the
    first seen first among equals), so a batch takes as few waves as the rule
    allows: the most grants of one project, or the batch over ``size``.
    """
    queues: dict[str, deque[FetchGranted]] = {}
    for granted in grants:
        queues.setdefault(granted.project_id, deque()).append(granted)
    found = []
    while queues:
        first = sorted(queues, key=lambda project_id: -len(queues[project_id]))[:size]
        found.append([queues[project_id].popleft() for project_id in first])
        queues = {project_id: queue for project_id, queue in queues.items() if queue}
    return found


async def _make_wave(
    wave: list[FetchGranted],
    projects: dict[str, Project],
    deps: Deps,
    topics: Topics,
    guard: Guard,
    changed: set[str],
) -> None:
    """One wave: its calls started in one write, its requests at once, its answers passed on.

    The calls are started (`Store.start_calls`) just before the requests and
    closed as ``ok`` in one write just after the snapshots are sent on, their
    blocks stored before that in one write: a worker killed in between leaves
    at most a wave's calls ``calling``, no more than as many requests in
    flight one by one would. Each grant's own steps (the skip checks, the
    token, the request and its failure) are guarded alone: a grant that fails
    becomes a dead letter alone and the others go through.
    """
    store = deps.store
    called_at = deps.clock.now()
    tokens: dict[str, str] = {}

    async def prepare(granted: FetchGranted) -> None:
        project = projects.get(granted.project_id)
        token = await _token_unless_skipped(granted, project, deps, called_at)
        if token is not None:
            tokens[granted.request_id] = token

    for granted in wave:
        await guard(granted, lambda granted=granted: prepare(granted))
    ready = [granted for granted in wave if granted.request_id in tokens]
    claim = uuid.uuid4().hex  # the same claim when retried: started calls stay ours
    ids = [granted.request_id for granted in ready]
    started = await with_store_retry("fetch", lambda: store.start_calls(ids, claim))
    answered: list[tuple[FetchGranted, ClarityResponse]] = []

    async def make(granted: FetchGranted) -> None:
        response = await _request(granted, tokens[granted.request_id], deps, topics, called_at)
        if response is None:  # a 429 or a refused token may have changed the project
            changed.add(granted.project_id)
        else:
            answered.append((granted, response))

    await asyncio.gather(*(
        guard(granted, lambda granted=granted: make(granted))
        for granted in ready if granted.request_id in started
    ))  # fmt: skip
    for granted in ready:
        if granted.request_id not in started:
            await guard(granted, lambda granted=granted: _not_started(granted, deps))
    if answered:
        await _pass_on_wave(answered, deps, topics, guard, called_at)


async def _pass_on_wave(
    answered: list[tuple[FetchGranted, ClarityResponse]],
    deps: Deps,
    topics: Topics,
    guard: Guard,
    called_at: datetime,
) -> None:
    """Store a wave's answers aside (one write), send them on, close their calls (one write).

    Should a shared write be refused for another reason than an outage (which
    is waited out), each answer goes on alone, guarded, as one grant would.
    """
    store = deps.store
    try:
        refs = await with_store_retry(
            "fetch",
            lambda: store.put_blocks_many([r.to_json() for _, r in answered], called_at),
            calls=len(answered),
        )
    except StoreError as exc:
        log.warning("fetch.wave_store_failed", calls=len(answered), error=str(exc)[:300],
                    then="one answer at a time")  # fmt: skip
        refs = [None] * len(answered)
    made: list[tuple[FetchGranted, str | None]] = []
    for (granted, response), ref in zip(answered, refs, strict=True):

        async def send(
            granted: FetchGranted = granted,
            response: ClarityResponse = response,
            ref: BlocksRef | None = ref,
        ) -> None:
            if ref is None:
                ref = await store.put_blocks(response.to_json(), called_at)
            await _send_on(granted, response, ref, called_at, topics)
            made.append((granted, _detail(response)))

        await guard(granted, send)
    closing = [(granted.request_id, detail) for granted, detail in made]
    try:
        await with_store_retry("fetch", lambda: store.finish_calls_ok(closing), calls=len(made))
        return
    except StoreError as exc:
        log.warning("fetch.close_failed", calls=len(made), error=str(exc)[:300],
                    then="one call at a time")  # fmt: skip
    for granted, detail in made:
        await guard(
            granted,
            lambda r=granted.request_id, d=detail: store.finish_call(r, "ok", 200, d),
        )


async def _token_unless_skipped(
    granted: FetchGranted, project: Project | None, deps: Deps, called_at: datetime
) -> str | None:
    """The project's token when this grant may be made now; else the grant is closed, None."""
    store = deps.store
    skip = _why_not_now(granted, project, called_at)
    if skip is not None:
        outcome, detail = skip
        if await store.close_granted_call(granted.request_id, outcome, detail):
            log.info(f"fetch.{outcome}", why=detail, granted_at=granted.granted_at,
                     **_context(granted))  # fmt: skip
        else:
            await _not_started(granted, deps)
        return None
    assert project is not None
    token = await readable_token(store, project)  # decrypted at the last moment
    if token is None:  # marked "token unreadable": nothing is asked of Clarity
        await store.close_granted_call(granted.request_id, "skipped", "token unreadable")
    return token


async def _not_started(granted: FetchGranted, deps: Deps) -> None:
    """A grant whose call was not ``granted`` any more: redelivered, or made already."""
    call = await deps.store.get_call(granted.request_id)
    if call is not None and call.outcome == "calling":
        # Redelivered after a worker died during the request: it may have reached
        # Clarity, and it is counted; asking again is the quota check's decision.
        await deps.store.finish_call(granted.request_id, "interrupted", None, "worker stopped")
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


async def _request(
    granted: FetchGranted, token: str, deps: Deps, topics: Topics, called_at: datetime
) -> ClarityResponse | None:
    """The request itself: Clarity's answer, or None once its failure is recorded."""
    store = deps.store
    context = _context(granted)
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
        return None
    CLARITY_CALLS.labels("ok").inc()
    return response


async def _send_on(
    granted: FetchGranted,
    response: ClarityResponse,
    ref: BlocksRef,
    called_at: datetime,
    topics: Topics,
) -> None:
    """The snapshot's record, with the reference of its blocks stored aside, to the store."""
    late = is_late(called_at, granted.local_date, granted.timezone)
    record = fetched_record(
        granted.project_id, granted.local_date, granted.group, called_at, ref, late=late
    )
    await send_bounded(topics[SNAPSHOTS_FETCHED], granted.project_id, record)
    log.info("fetch.ok", late=record.late, rows=sum(ref.rows.values()),
             bytes=ref.size_bytes, **_context(granted))  # fmt: skip


def _detail(response: ClarityResponse) -> str | None:
    return "; ".join(response.notes) or None


def _context(granted: FetchGranted) -> dict[str, str]:
    return {"project": granted.project_id, "group": granted.group, "reason": granted.reason}


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the fetch agent to ``app``."""
    sink = DeadLetterSink("fetch", topics[DEAD_FETCHES], deps.store, deps.clock)

    async def guard(granted: FetchGranted, handler: Callable[[], Awaitable[None]]) -> None:
        await guarded("fetch", handler, message=granted, key=granted.project_id, sink=sink,
                      project=granted.project_id, group=granted.group)  # fmt: skip

    async def one(granted: FetchGranted) -> None:
        await guard(granted, lambda: handle(granted, deps, topics))

    @app.agent(topics[FETCH_GRANTED], name="claritycast.fetch")
    async def fetch_agent(stream: StreamT[FetchGranted]) -> None:
        async for grants in stream.take(BATCH_MAX, within=BATCH_WAIT_S):
            await guarded_batch(
                "fetch",
                lambda grants=grants: handle_batch(grants, deps, topics, guard),
                messages=grants,
                one_by_one=one,
            )
