"""quota check: grant a fetch only within Clarity's 10 requests a day, log it first.

Keyed by project and co-partitioned with ``fetch.requested``, so exactly one
worker owns each project's counter, held in a Faust table whose changelog
brings it back on another worker. When the table has nothing for a project
(first sight, or a broker that lost everything), the state is rebuilt from the
durable call log in MongoDB before anything is granted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import faust
from faust.types import StreamT, TopicT

from agents.guard import guarded
from claritycast.deps import Deps
from claritycast.logs import get_logger
from claritycast.quota import COUNTED_FOR, GRANT_TTL, QuotaState, decide, in_flight
from models.documents import Call
from models.records import FetchGranted, FetchRequested
from topics import FETCH_GRANTED, FETCH_REQUESTED, Topics

log = get_logger(__name__)

STALE_AFTER = timedelta(minutes=15)
# The fetch stage refuses grants older than GRANT_TTL by its own clock; the margin
# covers the clocks of two machines.
EXPIRED_AFTER = GRANT_TTL + timedelta(seconds=30)


async def load_state(table: faust.Table, request: FetchRequested, deps: Deps) -> QuotaState:
    stored = table.get(request.project_id)
    if stored is not None:
        return QuotaState.from_json(stored)
    now = deps.clock.now()
    calls = await deps.store.calls_since(request.project_id, now - COUNTED_FOR)
    if calls:
        log.info("quota.rebuilt", project=request.project_id, calls=len(calls))
    return QuotaState.from_calls(calls, now)


async def handle(
    request: FetchRequested, table: faust.Table, deps: Deps, granted_topic: TopicT
) -> None:
    """Decide one request; a grant is logged durably before it is passed on."""
    context = {"project": request.project_id, "group": request.group, "reason": request.reason}
    existing = await deps.store.get_call(request.request_id)
    if existing is not None:  # a redelivered request: never count it twice
        if existing.outcome == "granted":
            await granted_topic.send(key=request.project_id, value=_granted(request, existing))
        return
    now = deps.clock.now()
    lease = timedelta(seconds=deps.settings.fetch_lease_s)
    if request.reason != "refresh" and await _no_longer_due(request, deps, now, lease):
        return
    state = await load_state(table, request, deps)
    # Grants the fetch stage will never make (lost, or older than it accepts) stop counting.
    for call in await deps.store.expire_unmade_grants(request.project_id, now - EXPIRED_AFTER):
        state.forget_call(call.at, call.reason)
        state.leases.pop(f"{call.local_date}/{call.group}", None)
    decision = decide(
        state, reason=request.reason, local_date=request.local_date, group=request.group,
        now=now, lease=lease,
    )  # fmt: skip
    if not decision.granted:
        table[request.project_id] = state.to_json()
        if not decision.duplicate and request.reason != "refresh":
            await deps.store.set_deferred_until(request.project_id, decision.next_possible_at)
        if not decision.duplicate:
            await deps.store.record_refusal(
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
    await deps.store.log_call(call)
    table[request.project_id] = state.to_json()
    await granted_topic.send(key=request.project_id, value=_granted(request, call))
    log.info("quota.granted", used=decision.reason, **context)


async def _no_longer_due(
    request: FetchRequested, deps: Deps, now: datetime, lease: timedelta
) -> bool:
    """A stale or already-satisfied daily/connect request spends nothing.

    The tick asks again on every run while a group is missing, so a backlog
    can hold many copies. Dropped: a request older than `STALE_AFTER` (the tick
    asks again if still needed); a group already stored; a group granted or
    fetched (``ok`` in the call log) less than `LEASE` ago: its snapshot is on
    its way. Older than that and still not stored, the grant or the snapshot
    was lost on the way (a worker died, a message was dropped in a rebalance):
    asking again is safe, and the quota counts it like any other request.
    """
    if request.requested_at < now - STALE_AFTER:
        return True
    stored = await deps.store.groups_stored(request.project_id, request.local_date)
    if request.group in stored:
        return True
    calls = await deps.store.calls_for(
        request.project_id, request.local_date, request.group, now - COUNTED_FOR
    )
    return any(in_flight(call, now, lease) for call in calls)


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

    @app.agent(topics[FETCH_REQUESTED], name="claritycast.quota")
    async def quota_agent(stream: StreamT[FetchRequested]) -> None:
        async for request in stream:
            await guarded(
                "quota",
                lambda request=request: handle(request, table, deps, granted_topic),
                project=request.project_id,
                group=request.group,
                reason=request.reason,
            )
