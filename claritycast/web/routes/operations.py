"""Operations: dead letters and replay, the quota table, workers, topics, status, the catalogue."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from claritycast.ingest.projects import get_project
from claritycast.ingest.quota_report import quota_report
from claritycast.ingest.replay import replay
from claritycast.web import pagination, views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer, WebContext
from claritycast.web.errors import ApiError
from claritycast.web.schemas import (
    DeadLetter,
    Metric,
    Page,
    Replayed,
    ReplayRequest,
    SourceQuota,
    Status,
    Worker,
)
from topics.schema import topic_contracts

router = APIRouter(prefix="/api/v1", tags=["operations"])
WORKER_FRESH_S = 30.0


@router.get("/metrics", response_model=list[Metric], summary="The metric catalogue")
async def catalogue(_who: Viewer) -> list[Metric]:
    """Every metric a chart can show, in its category, with its unit and fetch group."""
    return views.catalogue_view()


@router.get("/dead-letters", response_model=Page[DeadLetter], summary="Dead letters")
async def dead_letters(
    _who: Viewer,
    ctx: Context,
    stage: str | None = None,
    source: str | None = None,
    include_replayed: bool = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = pagination.DEFAULT_LIMIT,
) -> Page[DeadLetter]:
    """Work that failed for good, oldest first: when, where, why, after how many tries."""
    project_id = (await get_project(ctx.store, source)).project_id if source else None
    after = pagination.decode(cursor, 2)
    position = None
    if after is not None:
        try:
            position = (datetime.fromisoformat(after[0]), after[1])
        except ValueError:
            raise ApiError(
                422, "invalid", "cursor: not one this API made", field="cursor"
            ) from None
    letters = await ctx.store.dead_letters(
        stage=stage, project_id=project_id, state=None if include_replayed else "dead",
        after=position, limit=limit + 1,
    )  # fmt: skip
    page = letters[:limit]
    last = page[-1][0] if page else None
    more = len(letters) > limit and last is not None
    return Page[DeadLetter](
        items=[views.dead_letter(letter, state) for letter, state in page],
        next_cursor=pagination.encode([last.failed_at.isoformat(), last.dead_letter_id])
        if more and last
        else None,
    )


@router.post("/dead-letters/replay", response_model=list[Replayed], summary="Replay")
async def replay_letters(
    body: ReplayRequest, _who: Admin, ctx: Context, request: Request
) -> list[Replayed]:
    """The same filters as `claritycast replay`; waits up to ``wait_s`` for each end."""
    which = f"dead-letters:{body.stage or 'all'}" + (f" of {body.source}" if body.source else "")
    name_object(request, which)
    results = await replay(
        ctx.store, ctx.publisher.send, ctx.clock.now(), stage=body.stage, project=body.source,
        since=body.since, default_timezone=ctx.settings.default_timezone, wait_s=body.wait_s,
    )  # fmt: skip
    name_object(request, which, f"{len(results)} replayed")
    return [
        Replayed(id=r.letter.dead_letter_id, outcome=r.outcome, detail=r.detail, end=r.end,
                 end_detail=r.end_detail)
        for r in results
    ]  # fmt: skip


@router.get("/quota", response_model=list[SourceQuota], summary="The quota table")
async def quota(_who: Viewer, ctx: Context, source: str | None = None) -> list[SourceQuota]:
    """Clarity requests per source, from the durable call log the quota check trusts."""
    rows = await quota_report(
        ctx.store, ctx.clock.now(), source, default_timezone=ctx.settings.default_timezone,
        lease=timedelta(seconds=ctx.settings.fetch_lease_s),
    )  # fmt: skip
    return [views.source_quota(row) for row in rows]


@router.get("/workers", response_model=list[Worker], summary="Workers alive")
async def workers(_who: Viewer, ctx: Context) -> list[Worker]:
    """Workers whose heartbeat is fresh, with their stages."""
    return [views.worker(beat) for beat in await ctx.store.live_workers(WORKER_FRESH_S)]


@router.get("/topics", summary="The topics other services read, and their schemas")
async def topics(_who: Viewer, ctx: Context) -> list[dict[str, Any]]:
    contracts = topic_contracts(ctx.settings.topic_prefix, ctx.settings.partitions)
    return [contract.as_json() for contract in contracts]


@router.get("/status", response_model=Status, summary="Where the servers are, and readiness")
async def status(_who: Viewer, ctx: Context) -> Status:
    """The same answer as `claritycast status` and `/readyz`."""
    return await status_view(ctx)


async def status_view(ctx: WebContext) -> Status:
    return await views.status(
        ctx.store, ctx.kafka_url, ctx.mongodb_url, ctx.settings.mongodb_database
    )
