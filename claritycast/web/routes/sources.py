"""Sources (connected Clarity projects): Test & Connect, the pull's progress, refresh, life cycle.

Test & Connect checks the token locally first (nothing is stored when it
fails), stores the project and sends yesterday's 7 requests through the
chain; the answer is at once (202), with a *pull* whose groups a client polls
(``GET …/pulls/{id}``) or streams as server-sent events (``…/events``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sse_starlette.sse import EventSourceResponse

from claritycast.errors import NotFound
from claritycast.ingest.connect import Pull as PullRecord
from claritycast.ingest.connect import start_connect, wait_for_outcomes
from claritycast.ingest.projects import get_project, pause_project, remove_project, resume_project
from claritycast.ingest.refresh import start_refresh
from claritycast.ingest.tokens import set_token
from claritycast.localtime import local_yesterday
from claritycast.web import pagination, views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer, WebContext
from claritycast.web.errors import ApiError
from claritycast.web.schemas import (
    MetricData,
    Page,
    Pull,
    RefreshRequest,
    Removed,
    Source,
    SourceCreate,
    SourceCreated,
    TokenReplace,
)
from models import catalogue

router = APIRouter(prefix="/api/v1/sources", tags=["sources"])
STREAM_FOR_S = 180.0
STREAM_POLL_S = 0.5
MAX_RANGE_DAYS = 366


async def one_source(ctx: WebContext, ref: str) -> Source:
    project = await get_project(ctx.store, ref)
    settings = ctx.settings
    [view] = await views.sources(
        ctx.store, [project], ctx.clock.now(), settings.default_timezone,
        timedelta(seconds=settings.fetch_lease_s),
    )  # fmt: skip
    return view


@router.get("", response_model=Page[Source], summary="List sources")
async def list_sources(
    _who: Viewer,
    ctx: Context,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = pagination.DEFAULT_LIMIT,
) -> Page[Source]:
    """Every connected project: status, last day stored, days collected, today's quota."""
    after = pagination.decode(cursor, 2)
    projects = await ctx.store.projects_page((after[0], after[1]) if after else None, limit + 1)
    page = projects[:limit]
    items = await views.sources(
        ctx.store, page, ctx.clock.now(), ctx.settings.default_timezone,
        timedelta(seconds=ctx.settings.fetch_lease_s),
    )  # fmt: skip
    last = page[-1] if page else None
    more = len(projects) > limit and last is not None
    next_cursor = pagination.encode([last.label, last.project_id]) if more and last else None
    return Page[Source](items=items, next_cursor=next_cursor)


@router.post(
    "", response_model=SourceCreated, status_code=202, summary="Test & Connect a Clarity project"
)
async def create(
    body: SourceCreate, _who: Admin, ctx: Context, request: Request, response: Response
) -> SourceCreated:
    """Check the token, store the project, and start pulling yesterday (7 groups)."""
    name_object(request, "project:new", f"label {body.label!r}")
    project, pull = await start_connect(
        ctx.store, ctx.publisher.send, ctx.clock, token=body.token, label=body.label,
        org_name=body.organisation, default_timezone=ctx.settings.default_timezone,
    )  # fmt: skip
    name_object(request, f"project:{project.project_id}", f"label {project.label!r}")
    response.headers["Location"] = f"/api/v1/sources/{project.project_id}/pulls/{pull.pull_id}"
    return SourceCreated(source=await one_source(ctx, project.project_id),
                         pull=await views.pull(ctx.store, pull))  # fmt: skip


@router.get("/{source_id}", response_model=Source, summary="One source")
async def read(source_id: str, _who: Viewer, ctx: Context) -> Source:
    return await one_source(ctx, source_id)


async def _pull(ctx: WebContext, source_id: str, pull_id: str) -> PullRecord:
    project = await get_project(ctx.store, source_id)
    document = await ctx.store.get_pull(pull_id)
    if document is None or document["project_id"] != project.project_id:
        raise NotFound(f"no pull {pull_id!r} of {project.label!r}")
    return PullRecord.from_document(document)


@router.get("/{source_id}/pulls/{pull_id}", response_model=Pull, summary="A pull's progress")
async def read_pull(source_id: str, pull_id: str, _who: Viewer, ctx: Context) -> Pull:
    """Where each group stands: stored, pending, refused, not due, or a failure kind."""
    return await views.pull(ctx.store, await _pull(ctx, source_id, pull_id))


@router.get(
    "/{source_id}/pulls/{pull_id}/events",
    summary="A pull's progress as server-sent events",
    response_class=EventSourceResponse,
)
async def stream_pull(
    source_id: str, pull_id: str, _who: Viewer, ctx: Context
) -> EventSourceResponse:
    """One ``group`` event per group as it ends, then ``done`` (or after 3 minutes)."""
    record = await _pull(ctx, source_id, pull_id)

    async def events() -> AsyncIterator[dict[str, str]]:
        told: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_FOR_S
        while True:
            view = await views.pull(ctx.store, record)
            for group in view.groups:
                if group.outcome != "pending" and group.group not in told:
                    told.add(group.group)
                    yield {"event": "group", "data": group.model_dump_json()}
            if view.done or loop.time() > deadline:
                yield {"event": "done", "data": json.dumps({"done": view.done})}
                return
            await asyncio.sleep(STREAM_POLL_S)

    return EventSourceResponse(events())


@router.post("/{source_id}/refresh", response_model=Pull, summary="Refresh now")
async def refresh(source_id: str, body: RefreshRequest, _who: Admin, ctx: Context) -> Pull:
    """Yesterday's missing groups now, from the quota's headroom; 429 when there is none."""
    pull = await start_refresh(
        ctx.store, ctx.publisher.send, source_id, body.groups, ctx.clock.now(),
        default_timezone=ctx.settings.default_timezone,
    )  # fmt: skip
    if body.wait_s > 0:
        await wait_for_outcomes(ctx.store, pull.requests, body.wait_s)
    return await views.pull(ctx.store, pull)


@router.put("/{source_id}/token", response_model=Source, summary="Replace its token")
async def replace_token(
    source_id: str, body: TokenReplace, _who: Admin, ctx: Context, request: Request
) -> Source:
    """Checked locally first (nothing is stored when it cannot work), then stored encrypted.

    A source that was "token invalid" or "token unreadable" is active again;
    its history stays, and the next tick pulls what yesterday is missing.
    """
    project = await get_project(ctx.store, source_id)
    name_object(request, f"project:{project.project_id}")
    result = await set_token(ctx.store, project.project_id, body.token, ctx.clock)
    name_object(request, f"project:{project.project_id}",
                f"was {result.previous_status}, now {result.project.status}")  # fmt: skip
    return await one_source(ctx, project.project_id)


@router.post("/{source_id}/pause", response_model=Source, summary="Pause fetching")
async def pause(source_id: str, _who: Admin, ctx: Context) -> Source:
    project = await pause_project(ctx.store, source_id)
    return await one_source(ctx, project.project_id)


@router.post("/{source_id}/resume", response_model=Source, summary="Resume fetching")
async def resume(source_id: str, _who: Admin, ctx: Context) -> Source:
    project = await resume_project(ctx.store, source_id)
    return await one_source(ctx, project.project_id)


@router.delete("/{source_id}", response_model=Removed, summary="Remove a source")
async def remove(
    source_id: str, _who: Admin, ctx: Context, with_snapshots: bool = False
) -> Removed:
    """Its connections go with it; its stored snapshots only when ``with_snapshots``."""
    removed = await remove_project(ctx.store, source_id, with_snapshots=with_snapshots)
    return Removed(
        source=removed.project.project_id,
        connections_removed=list(removed.connections),
        snapshots_removed=removed.snapshots,
    )


@router.get(
    "/{source_id}/metrics/{metric_id}", response_model=MetricData, summary="A metric's stored data"
)
async def metric_data(
    source_id: str,
    metric_id: str,
    _who: Viewer,
    ctx: Context,
    first: Annotated[str | None, Query(pattern=pagination.ISO_DATE)] = None,
    last: Annotated[str | None, Query(pattern=pagination.ISO_DATE)] = None,
) -> MetricData:
    """A daily series (gaps as null) or a breakdown's top values, from the store only."""
    project = await get_project(ctx.store, source_id)
    try:
        metric = catalogue.get(metric_id)
    except KeyError as exc:
        raise NotFound(str(exc.args[0]), field="metric_id") from None
    org = await ctx.store.get_organisation(project.org_id)
    timezone = org.timezone if org else ctx.settings.default_timezone
    last_day = pagination.parse_day(last, "last") or local_yesterday(timezone, ctx.clock.now())
    first_day = pagination.parse_day(first, "first") or last_day - timedelta(days=29)
    if first_day > last_day or (last_day - first_day).days >= MAX_RANGE_DAYS:
        raise ApiError(
            422, "invalid", f"first..last must be 1 to {MAX_RANGE_DAYS} days, in order",
            field="first",
        )  # fmt: skip
    return await views.metric_data(ctx.store, project, metric, first_day, last_day)
