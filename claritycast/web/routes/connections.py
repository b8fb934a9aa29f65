"""Connections: which metric goes where, on which schedule; preview and send now."""

from __future__ import annotations

import base64
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from claritycast.delivery import connections as conns
from claritycast.delivery.preview import preview_report
from claritycast.web import pagination, views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer, WebContext
from claritycast.web.schemas import (
    Connection,
    ConnectionChange,
    ConnectionCreate,
    Page,
    ReportPreview,
    SendNow,
    Sent,
)
from models.delivery import Connection as ConnectionRecord
from topics import DELIVERIES_DUE

router = APIRouter(prefix="/api/v1/connections", tags=["connections"])
Period = Annotated[
    str | None,
    Query(pattern=pagination.ISO_DATE, description="The report's local date (default: today)"),
]


@router.get("", response_model=Page[Connection], summary="List connections")
async def list_connections(
    _who: Viewer,
    ctx: Context,
    source: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = pagination.DEFAULT_LIMIT,
) -> Page[Connection]:
    after = pagination.decode(cursor, 1)
    project_id = None
    if source is not None:
        project_id = (await conns.get_project_of(ctx.store, source)).project_id
    found = await ctx.store.connections_page(after[0] if after else None, limit + 1, project_id)
    page = found[:limit]
    now = ctx.clock.now()
    more = len(found) > limit
    return Page[Connection](
        items=[views.connection(item, now) for item in page],
        next_cursor=pagination.encode([page[-1].name]) if more else None,
    )


def _create_arguments(body: ConnectionCreate) -> dict[str, object]:
    return {
        "project": body.source, "metric": body.metric, "slack_channel": body.slack_channel,
        "emails": body.emails, "schedule": body.schedule, "at": body.at,
        "timezone": body.timezone, "window_days": body.window_days,
        "ai_summary": body.ai_summary, "name": body.name,
    }  # fmt: skip


@router.post("", response_model=Connection, status_code=201, summary="Add a connection")
async def create(body: ConnectionCreate, _who: Admin, ctx: Context, request: Request) -> Connection:
    """Every field is checked first; a bad one is a 422 naming it."""
    now = ctx.clock.now()
    connection = await conns.create_connection(ctx.store, now=now, **_create_arguments(body))  # type: ignore[arg-type]
    name_object(request, f"connection:{connection.name}",
                f"{connection.metric_id} of {connection.project_id}")  # fmt: skip
    return views.connection(connection, now)


async def _preview(
    ctx: WebContext, connection: ConnectionRecord, period: date | None
) -> ReportPreview:
    day = period or conns.local_today(connection, ctx.clock.now())
    report, source = await preview_report(ctx.store, connection, day, ctx.settings)
    return ReportPreview(
        title=report.title, period_label=report.period_label, period=day, summary=report.summary,
        summary_source=source, note=report.note, alt_text=report.alt_text,  # type: ignore[arg-type]
        png_base64=base64.b64encode(report.png).decode(),
    )  # fmt: skip


@router.post("/preview", response_model=ReportPreview, summary="Preview a connection not saved")
async def preview_unsaved(
    body: ConnectionCreate, _who: Viewer, ctx: Context, period: Period = None
) -> ReportPreview:
    """What a connection with these settings would send; nothing is saved or sent."""
    connection = await conns.check_connection(
        ctx.store,
        now=ctx.clock.now(),
        **_create_arguments(body),  # type: ignore[arg-type]
    )
    return await _preview(ctx, connection, pagination.parse_day(period, "period"))


@router.get("/{name}", response_model=Connection, summary="One connection")
async def read(name: str, _who: Viewer, ctx: Context) -> Connection:
    return views.connection(await conns.get_connection(ctx.store, name), ctx.clock.now())


@router.patch("/{name}", response_model=Connection, summary="Change a connection")
async def change(name: str, body: ConnectionChange, _who: Admin, ctx: Context) -> Connection:
    """Only the fields given change; each is checked as for a new connection."""
    now = ctx.clock.now()
    changed = await conns.change_connection(
        ctx.store, name, now, **body.model_dump(exclude_none=True)
    )
    return views.connection(changed, now)


@router.post("/{name}/pause", response_model=Connection, summary="Pause a connection")
async def pause(name: str, _who: Admin, ctx: Context) -> Connection:
    """What it had due and not yet sent is skipped, never sent later."""
    await conns.pause(ctx.store, name)
    return await read(name, _who, ctx)


@router.post("/{name}/resume", response_model=Connection, summary="Resume a connection")
async def resume(name: str, _who: Admin, ctx: Context) -> Connection:
    await conns.resume(ctx.store, name)
    return await read(name, _who, ctx)


@router.delete("/{name}", status_code=204, summary="Remove a connection")
async def remove(name: str, _who: Admin, ctx: Context) -> None:
    """Its delivery log stays."""
    await conns.remove(ctx.store, name)


@router.get(
    "/{name}/preview",
    summary="The chart it would send now (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def preview_png(name: str, _who: Viewer, ctx: Context, period: Period = None) -> Response:
    """The PNG exactly as it would be sent; nothing is sent."""
    connection = await conns.get_connection(ctx.store, name)
    day = pagination.parse_day(period, "period") or conns.local_today(connection, ctx.clock.now())
    report, _ = await preview_report(ctx.store, connection, day, ctx.settings)
    return Response(report.png, media_type="image/png")


@router.get("/{name}/report", response_model=ReportPreview, summary="Preview: image and summary")
async def preview(name: str, _who: Viewer, ctx: Context, period: Period = None) -> ReportPreview:
    connection = await conns.get_connection(ctx.store, name)
    return await _preview(ctx, connection, pagination.parse_day(period, "period"))


@router.post("/{name}/send", response_model=Sent, status_code=202, summary="Send now")
async def send(name: str, body: SendNow, _who: Admin, ctx: Context) -> Sent:
    """Today's report, outside the schedule, through the workers; waits up to ``wait_s``."""
    due = await conns.send_now(ctx.store, name, ctx.clock.now())
    await ctx.publisher.send(DELIVERIES_DUE, due.connection, due)
    delivery = None
    if body.wait_s > 0:
        delivery = await conns.wait_for_delivery(ctx.store, due.delivery_key, body.wait_s)
    else:
        delivery = await ctx.store.get_delivery(due.delivery_key)
    return Sent(
        delivery=views.delivery(delivery) if delivery else None, delivery_key=due.delivery_key
    )
