"""quota check: grant a fetch only within Clarity's 10 requests a day, log it first.

Keyed by project and co-partitioned with ``fetch.requested``, so exactly one
worker owns each project's counter, held in a Faust table whose changelog
brings it back on another worker. When the table has nothing for a project
(first sight, or a broker that lost everything), the state is rebuilt from the
durable call log in MongoDB before anything is granted.

Every request ends in one of three ways, each logged with why: granted (the
call is logged, then passed on), refused (the quota or Clarity's own 429 says
no; recorded with when the next is possible), or dropped as not due (stored
already, being fetched, or stale). Refusals, and drops of requests someone
waits for (connect, refresh, replay), are recorded so the waiting command can
say what happened.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import faust
from faust.streams import _current_event
from faust.types import EventT, StreamT, TopicT

from agents.batch import BATCH_MAX, BATCH_WAIT_S, guarded_batch
from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded
from claritycast.ingest.quota import (
    COUNTED_FOR,
    DAILY_LIMIT,
    GRANT_TTL,
    ON_ITS_WAY,
    STORED_ALREADY,
    QuotaState,
    decide,
    in_flight,
)
from claritycast.logs import get_logger
from claritycast.telemetry import QUOTA_LEFT, QUOTA_USED
from models.documents import Call, Project, ProjectStatus, PullProgress
from models.records import FetchGranted, FetchRequested
from topics import DEAD_QUOTA, FETCH_GRANTED, FETCH_REQUESTED, Topics, send_bounded

log = get_logger(__name__)

STALE_AFTER = timedelta(minutes=15)
# The fetch stage refuses grants older than GRANT_TTL by its own clock; the margin
# covers the clocks of two machines.
EXPIRED_AFTER = GRANT_TTL + timedelta(seconds=30)
# Clocks of two machines differ by less than this: a request's call is logged no
# earlier than this before the request was made.
REQUEST_SKEW = timedelta(hours=1)


def load_state(
    table: QuotaTable, request: FetchRequested, recent: list[Call], now: datetime
) -> QuotaState:
    """The project's quota from the table; rebuilt from the call log when the table has none."""
    stored = table.get(request.project_id)
    if stored is not None:
        return QuotaState.from_json(stored)
    calls = [call for call in recent if call.at >= now - COUNTED_FOR]
    if calls:
        log.info("quota.rebuilt", project=request.project_id, calls=len(calls))
    return QuotaState.from_calls(calls, now)


def project_refusal(project: Project | None, now: datetime) -> tuple[str, datetime | None] | None:
    """Why no request may be granted for this project now, and until when; None if it may.

    After a 429 Clarity's count is the truth, whatever our ledger says: nothing
    is granted until the project's next local midnight.
    """
    if project is None:
        return "the project was removed", None
    if project.status != ProjectStatus.ACTIVE:
        return f"the project is {project.status}", None
    if project.exhausted_until is not None and project.exhausted_until > now:
        return "Clarity answered 429: its daily quota is spent", project.exhausted_until
    return None


@dataclass
class ProjectView:
    """One project as a batch of its requests sees it: read once, updated as they are decided.

    ``recent`` is the project's call log of the last 24 hours (reaching back
    `REQUEST_SKEW` before the oldest request when that is earlier), read once:
    it answers every question about calls (was a request decided already, is a
    group on its way, which grants were never made, the quota when the table
    has nothing), and each new grant is added to it. The pulls' progress is
    read per day when first needed, and the quota state when the first request
    gets that far.
    """

    project: Project | None
    recent: list[Call]
    progress: dict[str, PullProgress] = field(default_factory=dict)
    state: QuotaState | None = None
    deferred_until: datetime | None = None  # written once the batch's calls are logged


async def handle(
    request: FetchRequested, table: QuotaTable, deps: Deps, granted_topic: TopicT
) -> None:
    """Decide one request; a grant is logged durably before it is passed on."""
    await handle_batch([request], table, deps, granted_topic)


async def handle_batch(
    requests: Sequence[FetchRequested], table: QuotaTable, deps: Deps, granted_topic: TopicT
) -> None:
    """Decide a batch of requests, in order; every grant is logged durably before any goes out.

    A project's requests are decided one after the other against one view of
    it (`ProjectView`), exactly as they would be one message at a time; the
    reads are per project, not per request, and the calls of the whole batch
    are written in one insert, before the table, before any grant is sent and
    before a refusal defers the project (the tick and tests read a deferred
    project as one with nothing in flight).
    """
    store = deps.store
    now = deps.clock.now()
    by_project: dict[str, list[FetchRequested]] = {}
    for request in requests:
        by_project.setdefault(request.project_id, []).append(request)
    projects = await store.get_projects(by_project)
    outcomes: list[tuple[FetchRequested, Call, str | None]] = []
    views: dict[str, ProjectView] = {}
    for project_id, mine in by_project.items():
        since = min(now - COUNTED_FOR, min(r.requested_at for r in mine) - REQUEST_SKEW)
        view = views[project_id] = ProjectView(
            projects.get(project_id), await store.calls_since(project_id, since)
        )
        for request in mine:
            decided = await _decide(request, view, table, deps, now)
            if decided is not None:
                outcomes.append((request, *decided))
    await store.log_calls([call for _, call, used in outcomes if used is not None])
    for project_id, view in views.items():  # after the grants: never deferred with calls unlogged
        if view.deferred_until is not None:
            await store.set_deferred_until(project_id, view.deferred_until)
    for project_id, view in views.items():
        if view.state is not None:
            table[project_id] = view.state.to_json()
    for request, call, used in outcomes:
        await send_bounded(granted_topic, request.project_id, _granted(request, call))
        if used is not None:
            log.info("quota.granted", used=used, project=request.project_id,
                     group=request.group, reason=request.reason)  # fmt: skip


async def _decide(
    request: FetchRequested, view: ProjectView, table: QuotaTable, deps: Deps, now: datetime
) -> tuple[Call, str | None] | None:
    """(the call to pass on, how much is used if it is new) or None: dropped or refused."""
    store = deps.store
    context = {"project": request.project_id, "group": request.group, "reason": request.reason}
    existing = next((c for c in view.recent if c.request_id == request.request_id), None)
    if existing is not None:  # a redelivered request: never count it twice
        if existing.outcome == "granted":
            return existing, None
        log.info("quota.dropped", why=f"decided already ({existing.outcome})", **context)
        return None
    refusal = project_refusal(view.project, now)
    if refusal is not None:
        why, next_at = refusal
        await store.record_refusal(request.request_id, request.project_id, why, next_at, now)
        log.info("quota.refused", why=why, next_at=next_at, **context)
        return None
    lease = timedelta(seconds=deps.settings.fetch_lease_s)
    key = f"{request.local_date}/{request.group}"
    if request.reason != "refresh":
        not_due = await _not_due_because(request, deps, now, lease, view)
        if not_due is not None:
            if request.reason != "daily":  # someone waits for an answer
                await store.record_refusal(
                    request.request_id, request.project_id, not_due, None, now, kind="not due"
                )
            log.info("quota.dropped", why=not_due, **context)
            return None
    if view.state is None:
        view.state = load_state(table, request, view.recent, now)
        caught_up = view.state.count_logged(view.recent, now)
        if caught_up:
            log.info("quota.caught_up", calls=caught_up, why="logged, not in the table",
                     **context)  # fmt: skip
        # Grants never made (expired, or skipped by the fetch stage) stop counting.
        for call in await store.settle_unmade_calls(view.recent, now - EXPIRED_AFTER):
            view.state.forget_call(call.at, call.reason)
    state = view.state
    if request.reason != "refresh":
        # The call log, just read, says nothing for this group is on its way: a lease
        # left in the table belongs to a call that failed (and was dead-lettered).
        state.leases.pop(key, None)
    decision = decide(
        state, reason=request.reason, local_date=request.local_date, group=request.group,
        now=now, lease=lease,
    )  # fmt: skip
    used = state.used(now)
    QUOTA_USED.labels(request.project_id).set(used)
    QUOTA_LEFT.labels(request.project_id).set(max(0, DAILY_LIMIT - used))
    if not decision.granted:
        if request.reason != "refresh":
            view.deferred_until = decision.next_possible_at
        await store.record_refusal(
            request.request_id, request.project_id, decision.reason,
            decision.next_possible_at, now,
        )  # fmt: skip
        log.info("quota.refused", why=decision.reason, next_at=decision.next_possible_at,
                 **context)  # fmt: skip
        return None
    call = Call(
        request_id=request.request_id,
        project_id=request.project_id,
        local_date=request.local_date,
        group=request.group,
        reason=request.reason,
        at=now,
    )
    view.recent.append(call)
    return call, decision.reason


async def _not_due_because(
    request: FetchRequested, deps: Deps, now: datetime, lease: timedelta, view: ProjectView
) -> str | None:
    """Why a daily, connect or replay request would spend a call for nothing; None if due.

    The tick asks again on every run while a group is missing, so a backlog
    can hold many copies. Not due: a request older than `STALE_AFTER` (the tick
    asks again if still needed); a group already stored; a group held (its last
    call failed and waits for a retry, or was dead-lettered: a replay releases
    it first); a group granted or fetched (``ok`` in the call log) less than
    the lease ago: its snapshot is on its way. Older than that and still not
    stored, the grant or the snapshot was lost on the way (a worker died, a
    message was dropped in a rebalance): asking again is safe, and the quota
    counts it like any other.

    The calls were read before the pull's progress: the fetch stage holds a
    failed group before it closes the call, so a call seen closed has its hold
    visible here.
    """
    day_group = f"{request.local_date} {request.group}"
    if request.requested_at < now - STALE_AFTER:
        return f"asked for at {request.requested_at:%H:%M:%S}Z, too long ago to be current"
    progress = view.progress.get(request.local_date)
    if progress is None:
        progress = await deps.store.pull_progress(request.project_id, request.local_date)
        view.progress[request.local_date] = progress
    if request.group in progress.stored:
        return f"{day_group} {STORED_ALREADY}"
    held = progress.held(request.group, now)
    if held is not None:
        return f"{day_group} is held: {held}"
    for call in view.recent:
        if call.local_date != request.local_date or call.group != request.group:
            continue
        if call.at >= now - COUNTED_FOR and in_flight(call, now, lease):
            return f"{day_group} {ON_ITS_WAY} (a call {call.outcome} at {call.at:%H:%M:%S}Z)"
    return None


class QuotaTable(Protocol):
    """What the quota check needs of its table: a Faust table, or a stand-in in tests."""

    def get(self, key: str) -> Any: ...

    def __setitem__(self, key: str, value: Any) -> None: ...


class EventTable:
    """The quota table as a batch writes it: each project's entry within its own event.

    Faust sends a table's change to the changelog partition of the event being
    handled, which it reads from the stream's context (``faust.streams.
    _current_event``); a batch is handled after the stream has moved on, so each
    write here names the event it belongs to: one of its project's requests,
    which all share the project's partition. Pinned by ``tests/test_transport.py``.
    """

    def __init__(self, table: faust.Table, events: dict[str, EventT]) -> None:
        self.table = table
        self.events = events

    def get(self, key: str) -> Any:
        return self.table.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        token = _current_event.set(weakref.ref(self.events[key]))
        try:
            self.table[key] = value
        finally:
            _current_event.reset(token)


def _granted(request: FetchRequested, call: Call) -> FetchGranted:
    return FetchGranted(
        request_id=request.request_id,
        project_id=request.project_id,
        local_date=request.local_date,
        group=request.group,
        reason=request.reason,
        timezone=request.timezone,
        granted_at=call.at.astimezone(UTC),
    )


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the quota table and agent to ``app``."""
    table = app.Table("quota", default=None, partitions=topics.partitions)
    granted_topic = topics[FETCH_GRANTED]
    sink = DeadLetterSink("quota", topics[DEAD_QUOTA], deps.store, deps.clock)

    async def one(event: EventT) -> None:
        request: FetchRequested = event.value
        events = EventTable(table, {request.project_id: event})
        await guarded(
            "quota",
            lambda: handle(request, events, deps, granted_topic),
            message=request,
            key=request.project_id,
            sink=sink,
            project=request.project_id,
            group=request.group,
            reason=request.reason,
        )

    @app.agent(topics[FETCH_REQUESTED], name="claritycast.quota")
    async def quota_agent(stream: StreamT[FetchRequested]) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WAIT_S):
            requests = [event.value for event in events]
            batch_table = EventTable(table, {event.value.project_id: event for event in events})
            await guarded_batch(
                "quota",
                lambda requests=requests, batch_table=batch_table: handle_batch(
                    requests, batch_table, deps, granted_topic
                ),
                messages=events,
                one_by_one=one,
            )
