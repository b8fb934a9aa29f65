"""Connections: the list with its buttons, and a new connection previewed before it is saved.

The form is checked by `check_connection`, the same function as the API's
and the CLI's, and each refusal is shown next to the field it names. Preview
draws exactly what would be sent (`preview_report`: the PNG and the summary)
and saves nothing; Save calls `create_connection`.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from claritycast.delivery import connections as conns
from claritycast.delivery.preview import preview_report
from claritycast.errors import ClarityCastError
from claritycast.web import pagination, views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer
from claritycast.web.errors import from_error
from claritycast.web.pages.render import page, redirect, refused, when
from models import catalogue
from models.catalogue import Category
from models.delivery import WEEKDAYS, WINDOWS
from topics import DELIVERIES_DUE

router = APIRouter()
PAGE_SIZE = 50
FIELDS = ("source", "metric", "destination", "slack_channel", "emails", "schedule", "at",
          "window_days", "ai_summary", "name")  # fmt: skip
SCHEDULES = [
    ("Every day", [("daily", "daily")]),
    ("Every week", [(f"weekly:{day}", f"weekly on {day.title()}") for day in WEEKDAYS]),
    (
        "Every month",
        [(f"monthly:{n}", f"monthly on day {n}") for n in range(1, 29)]
        + [("monthly:last", "monthly on the last day")],
    ),
]


def metric_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (category.value, [(m.id, m.title) for m in catalogue.METRICS if m.category is category])
        for category in Category
    ]


@router.get("/connections")
async def connections_page(
    request: Request, _who: Viewer, ctx: Context, cursor: str | None = None
) -> Response:
    after = pagination.decode(cursor, 1)
    found = await ctx.store.connections_page(after[0] if after else None, PAGE_SIZE + 1, None)
    shown = found[:PAGE_SIZE]
    now = ctx.clock.now()
    shown_ids = sorted({c.project_id for c in shown})
    projects = await asyncio.gather(*(ctx.store.get_project(pid) for pid in shown_ids))
    labels = {p.project_id: p.label for p in projects if p is not None}
    next_cursor = pagination.encode([shown[-1].name]) if len(found) > PAGE_SIZE else None
    return await page(
        request, "connections.html", section="connections",
        connections=[views.connection(c, now) for c in shown], labels=labels,
        metrics={m.id: m.title for m in catalogue.METRICS}, next_cursor=next_cursor,
        first_page=not cursor,
    )  # fmt: skip


def _arguments(form: FormData | dict[str, str]) -> dict[str, Any]:
    """The form's fields as `check_connection`'s arguments: one destination, by its kind."""
    kind = str(form.get("destination", "slack"))
    window = str(form.get("window_days", "30"))
    return {
        "project": str(form.get("source", "")),
        "metric": str(form.get("metric", "")),
        "slack_channel": str(form.get("slack_channel", "")) if kind == "slack" else None,
        "emails": str(form.get("emails", "")) if kind == "email" else None,
        "schedule": str(form.get("schedule", "daily")),
        "at": str(form.get("at", "09:00")),
        "window_days": int(window) if window.isdigit() else 0,
        "ai_summary": form.get("ai_summary") == "on",
        "name": str(form.get("name", "")).strip() or None,
    }


async def _form(
    request: Request, ctx: Context, values: dict[str, str], *, errors: dict[str, str] | None = None,
    preview: dict[str, Any] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    projects = await ctx.store.projects()
    return await page(
        request, "connection_new.html", section="connections", projects=projects,
        metrics=metric_choices(), schedules=SCHEDULES, windows=WINDOWS, values=values,
        errors=errors or {}, preview=preview, status=status,
        refusal="; ".join((errors or {}).values()) or None,
    )  # fmt: skip


@router.get("/connections/new")
async def new_connection(
    request: Request, _who: Admin, ctx: Context, source: str | None = None
) -> Response:
    values = dict.fromkeys(FIELDS, "") | {
        "source": source or "", "destination": "slack", "schedule": "daily", "at": "09:00",
        "window_days": "30", "metric": "sessions",
    }  # fmt: skip
    return await _form(request, ctx, values)


def _field_of(field: str | None) -> str:
    """Where a refusal shows: ``project`` is the form's source field; no field, the form's top."""
    return {"project": "source", None: "form"}.get(field, field or "form")


async def _values(request: Request) -> tuple[dict[str, str], dict[str, Any]]:
    form = await request.form()
    return {name: str(form.get(name, "")) for name in FIELDS}, _arguments(form)


@router.post("/connections/new")
async def save(request: Request, _who: Admin, ctx: Context) -> Response:
    """Every field checked by `create_connection`; a refusal is shown by its field."""
    values, arguments = await _values(request)
    now = ctx.clock.now()
    try:
        saved = await conns.create_connection(ctx.store, now=now, **arguments)
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {_field_of(error.field): error.message}
        return await _form(request, ctx, values, errors=errors, status=error.status)
    name_object(request, f"connection:{saved.name}", f"{saved.metric_id} to "
                f"{saved.destination.describe()}, {saved.schedule.describe()}")  # fmt: skip
    due = views.connection(saved, now).next_due_at
    return redirect("/connections", f"Saved {saved.name}: the first report goes out {when(due)}.")


@router.post("/connections/preview")
async def preview(request: Request, _who: Admin, ctx: Context) -> Response:
    """What this connection would send now: checked like a new one, saved and sent nowhere."""
    values, arguments = await _values(request)
    now = ctx.clock.now()
    try:
        connection = await conns.check_connection(ctx.store, now=now, **arguments)
        period = conns.local_today(connection, now)
        report, source = await preview_report(ctx.store, connection, period, ctx.settings)
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {_field_of(error.field): error.message}
        return await _form(request, ctx, values, errors=errors, status=error.status)
    shown = {
        "report": report,
        "summary_source": source,
        "png": base64.b64encode(report.png).decode() if report.png else None,
        "destination": connection.destination.describe(),
        "schedule": connection.schedule.describe(),
    }
    return await _form(request, ctx, values, preview=shown)


@router.post("/connections/{name}/pause")
async def pause(name: str, _who: Admin, ctx: Context) -> Response:
    await conns.pause(ctx.store, name)
    return redirect("/connections", f"Paused {name}: what it had due is skipped, never sent later.")


@router.post("/connections/{name}/resume")
async def resume(name: str, _who: Admin, ctx: Context) -> Response:
    await conns.resume(ctx.store, name)
    return redirect("/connections", f"Resumed {name}.")


@router.post("/connections/{name}/send")
async def send_now(name: str, request: Request, _who: Admin, ctx: Context) -> Response:
    """Today's report, outside the schedule, through the workers; its page follows it."""
    try:
        due = await conns.send_now(ctx.store, name, ctx.clock.now())
    except ClarityCastError as exc:
        return refused(request, "/connections", str(exc))
    await ctx.publisher.send(DELIVERIES_DUE, due.connection, due)
    return redirect(f"/deliveries/{due.delivery_key}", f"Sending {name} now, through the workers.")


@router.get("/connections/{name}/remove")
async def confirm_remove(name: str, request: Request, _who: Admin, ctx: Context) -> Response:
    connection = await conns.get_connection(ctx.store, name)
    return await page(
        request, "connection_remove.html", section="connections",
        connection=views.connection(connection, ctx.clock.now()),
    )  # fmt: skip


@router.post("/connections/{name}/remove")
async def remove(name: str, _who: Admin, ctx: Context) -> Response:
    await conns.remove(ctx.store, name)
    return redirect("/connections", f"Removed {name}; its delivery log stays.")
