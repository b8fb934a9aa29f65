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

from datetime import UTC, datetime, timedelta

import faust
from faust.types import StreamT, TopicT

from agents.deps import Deps
from agents.guard import DeadLetterSink, guarded
from claritycast.ingest.quota import COUNTED_FOR, GRANT_TTL, QuotaState, decide, in_flight
from claritycast.logs import get_logger
from models.documents import Call, Project, ProjectStatus
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
    table: faust.Table, request: FetchRequested, recent: list[Call], now: datetime
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


async def handle(
    request: FetchRequested, table: faust.Table, deps: Deps, granted_topic: TopicT
) -> None:
    """Decide one request; a grant is logged durably before it is passed on.

    The project's call log of the last 24 hours is read once and answers
    every question about calls: was this request decided already, is its group
    on its way, which grants were never made, and (when the table has nothing)
    the quota itself. It also holds this request's own call if it has one:
    that call was logged after the request was made, and the read reaches
    back to `REQUEST_SKEW` before the request when that is earlier.
    """
    store = deps.store
    context = {"project": request.project_id, "group": request.group, "reason": request.reason}
    now = deps.clock.now()
    recent = await store.calls_since(
        request.project_id, min(now - COUNTED_FOR, request.requested_at - REQUEST_SKEW)
    )
    existing = next((call for call in recent if call.request_id == request.request_id), None)
    if existing is not None:  # a redelivered request: never count it twice
        if existing.outcome == "granted":
            await send_bounded(granted_topic, request.project_id, _granted(request, existing))
        else:
            log.info("quota.dropped", why=f"decided already ({existing.outcome})", **context)
        return
    refusal = project_refusal(await store.get_project(request.project_id), now)
    if refusal is not None:
        why, next_at = refusal
        await store.record_refusal(request.request_id, request.project_id, why, next_at, now)
        log.info("quota.refused", why=why, next_at=next_at, **context)
        return
    lease = timedelta(seconds=deps.settings.fetch_lease_s)
    key = f"{request.local_date}/{request.group}"
    if request.reason != "refresh":
        not_due = await _not_due_because(request, deps, now, lease, recent)
        if not_due is not None:
            if request.reason != "daily":  # someone waits for an answer
                await store.record_refusal(
                    request.request_id, request.project_id, not_due, None, now, kind="not due"
                )
            log.info("quota.dropped", why=not_due, **context)
            return
    state = load_state(table, request, recent, now)
    # Grants never made (expired, or skipped by the fetch stage) stop counting.
    for call in await store.settle_unmade_calls(recent, now - EXPIRED_AFTER):
        state.forget_call(call.at, call.reason)
    if request.reason != "refresh":
        # The call log, just read, says nothing for this group is on its way: a lease
        # left in the table belongs to a call that failed (and was dead-lettered).
        state.leases.pop(key, None)
    decision = decide(
        state, reason=request.reason, local_date=request.local_date, group=request.group,
        now=now, lease=lease,
    )  # fmt: skip
    if not decision.granted:
        table[request.project_id] = state.to_json()
        if request.reason != "refresh":
            await store.set_deferred_until(request.project_id, decision.next_possible_at)
        await store.record_refusal(
            request.request_id, request.project_id, decision.reason,
            decision.next_possible_at, now,
        )  # fmt: skip
        log.info("quota.refused", why=decision.reason, next_at=decision.next_possible_at,
                 **context)  # fmt: skip
        return
    call = Call(
        request_id=request.request_id,
        project_id=request.project_id,
        local_date=request.local_date,
        group=request.group,
        reason=request.reason,
        at=now,
    )
    await store.log_call(call)
    table[request.project_id] = state.to_json()
    await send_bounded(granted_topic, request.project_id, _granted(request, call))
    log.info("quota.granted", used=decision.reason, **context)


async def _not_due_because(
    request: FetchRequested, deps: Deps, now: datetime, lease: timedelta, recent: list[Call]
) -> str | None:
    """Why a daily, connect or replay request would spend a call for nothing; None if due.

    The tick asks again on every run while a group is missing, so a backlog
    can hold many copies. Not due: a request older than `STALE_AFTER` (the tick
    asks again if still needed); a group already stored; a group held (its last
    call failed and waits for a retry, or was dead-lettered: a replay releases
    it first); a group granted or fetched (``ok`` in the call log) less than
    the lease ago: its snapshot is on its way.

    The calls (``recent``) were read before the pull's progress: the fetch
    stage holds a failed group before it closes the call, so a call seen
    closed has its hold visible here. Older than that and still not
    stored, the grant or the snapshot was lost on the way (a worker died, a
    message was dropped in a rebalance): asking again is safe, and the quota
    counts it like any other.
    """
    day_group = f"{request.local_date} {request.group}"
    if request.requested_at < now - STALE_AFTER:
        return f"asked for at {request.requested_at:%H:%M:%S}Z, too long ago to be current"
    progress = await deps.store.pull_progress(request.project_id, request.local_date)
    if request.group in progress.stored:
        return f"{day_group} is stored already"
    held = progress.held(request.group, now)
    if held is not None:
        return f"{day_group} is held: {held}"
    for call in recent:
        if call.local_date != request.local_date or call.group != request.group:
            continue
        if call.at >= now - COUNTED_FOR and in_flight(call, now, lease):
            return f"{day_group} is on its way (a call {call.outcome} at {call.at:%H:%M:%S}Z)"
    return None


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

    @app.agent(topics[FETCH_REQUESTED], name="claritycast.quota")
    async def quota_agent(stream: StreamT[FetchRequested]) -> None:
        async for request in stream:
            await guarded(
                "quota",
                lambda request=request: handle(request, table, deps, granted_topic),
                message=request,
                key=request.project_id,
                sink=sink,
                project=request.project_id,
                group=request.group,
                reason=request.reason,
            )
