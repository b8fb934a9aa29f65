"""Sources: the list, Test & Connect with its pull arriving live, a source's charts, its life.

Each view calls what ``/api/v1/sources`` calls: `start_connect` (the token
checked locally first, its refusal shown by the field), `start_refresh` (the
quota's headroom said before the button is pressed, its refusal in words
after), pause, resume and remove.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from claritycast.errors import ClarityCastError
from claritycast.ingest.connect import start_connect
from claritycast.ingest.projects import get_project, pause_project, remove_project, resume_project
from claritycast.ingest.quota import DAILY_LIMIT
from claritycast.ingest.refresh import start_refresh
from claritycast.ingest.tokens import set_token
from claritycast.web import pagination, views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer, WebContext
from claritycast.web.errors import from_error
from claritycast.web.pages.charts import source_charts, sparklines
from claritycast.web.pages.render import page, plural, redirect, refused, when
from claritycast.web.routes.sources import one_source, read_pull
from claritycast.web.schemas import Source
from models.clarity import GROUP_NAMES
from models.delivery import WINDOWS

router = APIRouter()
PAGE_SIZE = 50
GROUP_TITLES = {
    "overall": "Overall (traffic, engagement, frustration)",
    "url": "Pages (URL)",
    "browser": "Browsers",
    "device": "Devices",
    "country": "Countries",
    "os": "Operating systems",
    "source": "Traffic sources",
}


def status_words(source: Source) -> tuple[str, str]:
    """The badge of a source: its words and its kind (for its colour)."""
    if source.quota.exhausted_until is not None:
        return f"exhausted until {when(source.quota.exhausted_until)}", "bad"
    if source.status == "active":
        return "active", "ok"
    if source.status == "paused":
        return "paused", "muted"
    return source.status, "bad"


def headroom(source: Source) -> str:
    """What a refresh may spend now, said before the button is pressed."""
    quota = source.quota
    used = f"{quota.used} of {DAILY_LIMIT} requests used in the last 24 hours"
    kept = f"{quota.reserved} kept for tonight's pull"
    if quota.exhausted_until is not None:
        return (
            f"Clarity answered that this project's daily quota is spent: nothing is asked "
            f"before {when(quota.exhausted_until)}."
        )
    if quota.refreshes_left > 0:
        return f"{plural(quota.refreshes_left, 'refresh', 'refreshes')} left now ({used}; {kept})."
    after = (
        f"; the next is possible after {when(quota.next_reset_at)}" if quota.next_reset_at else ""
    )
    return f"No refresh left now ({used}; {kept}){after}."


async def source_views_page(ctx: WebContext, cursor: str | None) -> tuple[list[Source], str | None]:
    """One page of sources by label, as the API shows them, and the next page's cursor."""
    after = pagination.decode(cursor, 2)
    projects = await ctx.store.projects_page((after[0], after[1]) if after else None, PAGE_SIZE + 1)
    shown = projects[:PAGE_SIZE]
    items = await views.sources(
        ctx.store, shown, ctx.clock.now(), ctx.settings.default_timezone,
        timedelta(seconds=ctx.settings.fetch_lease_s),
    )  # fmt: skip
    more = len(projects) > PAGE_SIZE and shown
    return items, pagination.encode([shown[-1].label, shown[-1].project_id]) if more else None


@router.get("/sources")
async def sources_page(
    request: Request, _who: Viewer, ctx: Context, cursor: str | None = None
) -> Response:
    items, next_cursor = await source_views_page(ctx, cursor)
    return await page(
        request, "sources.html", section="sources", sources=items,
        sparks=await sparklines(ctx.store, items), next_cursor=next_cursor, first_page=not cursor,
        status_words=status_words, limit=DAILY_LIMIT,
    )  # fmt: skip


async def _new_form(
    request: Request, ctx: Context, *, errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    organisations = await ctx.store.organisations()
    return await page(
        request, "source_new.html", section="sources", organisations=organisations,
        errors=errors or {}, values=values or {}, status=status,
        refusal="; ".join((errors or {}).values()) or None,
    )  # fmt: skip


@router.get("/sources/new")
async def new_source(request: Request, _who: Admin, ctx: Context) -> Response:
    return await _new_form(request, ctx)


@router.post("/sources/new")
async def connect(request: Request, _who: Admin, ctx: Context) -> Response:
    """Test & Connect: nothing is stored when the token fails its local check."""
    form = await request.form()
    token, label = str(form.get("token", "")), str(form.get("label", ""))
    organisation = str(form.get("organisation", "")) or None
    values = {"label": label, "organisation": organisation or ""}  # never the token
    name_object(request, "project:new", f"label {label!r}")
    if not token.strip():
        errors = {"token": "paste the project's Data Export token"}
        return await _new_form(request, ctx, errors=errors, values=values, status=422)
    try:
        project, pull = await start_connect(
            ctx.store, ctx.publisher.send, ctx.clock, token=token, label=label,
            org_name=organisation, default_timezone=ctx.settings.default_timezone,
        )  # fmt: skip
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {error.field or "organisation": error.message}
        return await _new_form(request, ctx, errors=errors, values=values, status=error.status)
    name_object(request, f"project:{project.project_id}", f"label {project.label!r}")
    return redirect(f"/sources/{project.project_id}/pulls/{pull.pull_id}")


@router.get("/sources/{source_id}/pulls/{pull_id}")
async def pull_page(
    source_id: str, pull_id: str, request: Request, who: Viewer, ctx: Context
) -> Response:
    pull = await read_pull(source_id, pull_id, who, ctx)
    source = await one_source(ctx, source_id)
    return await page(
        request, "pull.html", section="sources", pull=pull, source=source, titles=GROUP_TITLES,
        groups=GROUP_NAMES,
    )  # fmt: skip


@router.get("/sources/{source_id}")
async def source_page(
    source_id: str, request: Request, _who: Viewer, ctx: Context,
    days: Annotated[int, Query()] = 30,
) -> Response:  # fmt: skip
    source = await one_source(ctx, source_id)
    project = await get_project(ctx.store, source.id)
    days = days if days in WINDOWS else 30
    last = source.local_date
    first = last - timedelta(days=days - 1)
    collected = len(
        await ctx.store.snapshot_days(project.project_id, first.isoformat(), last.isoformat())
    )
    return await page(
        request, "source.html", section="sources", source=source, days=days, windows=WINDOWS,
        categories=await source_charts(ctx.store, project, first, last), first=first, last=last,
        collected=collected, badge_words=status_words(source), headroom=headroom(source),
    )  # fmt: skip


@router.post("/sources/{source_id}/refresh")
async def refresh(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    """Yesterday's missing groups now; a refusal comes back in the quota's own words."""
    try:
        pull = await start_refresh(
            ctx.store, ctx.publisher.send, source_id, [], ctx.clock.now(),
            default_timezone=ctx.settings.default_timezone,
        )  # fmt: skip
    except ClarityCastError as exc:
        return refused(request, f"/sources/{source_id}", f"Refresh refused: {exc}")
    return redirect(f"/sources/{pull.project_id}/pulls/{pull.pull_id}")


@router.post("/sources/{source_id}/pause")
async def pause(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    try:
        project = await pause_project(ctx.store, source_id)
    except ClarityCastError as exc:
        return refused(request, f"/sources/{source_id}", str(exc))
    return redirect(
        f"/sources/{project.project_id}",
        f"Paused {project.label}: nothing is asked of Clarity for it until it is resumed.",
    )


@router.post("/sources/{source_id}/resume")
async def resume(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    try:
        project = await resume_project(ctx.store, source_id)
    except ClarityCastError as exc:
        return refused(request, f"/sources/{source_id}", str(exc))
    return redirect(
        f"/sources/{project.project_id}",
        f"Resumed {project.label}: the next tick pulls what yesterday is missing.",
    )


@router.get("/sources/{source_id}/remove")
async def confirm_remove(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    project = await get_project(ctx.store, source_id)
    return await page(
        request, "source_remove.html", section="sources", project=project,
        connections=await ctx.store.connections(project_id=project.project_id),
        snapshots=await ctx.store.count_snapshots(project.project_id),
    )  # fmt: skip


@router.post("/sources/{source_id}/remove")
async def remove(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    form = await request.form()
    removed = await remove_project(
        ctx.store, source_id, with_snapshots=form.get("with_snapshots") == "yes"
    )
    detail = f"{len(removed.connections)} connections, {removed.snapshots} snapshots deleted"
    name_object(request, f"project:{removed.project.project_id}", detail)
    kept = "deleted" if removed.snapshots else "kept"
    return redirect(
        "/sources",
        f"Removed {removed.project.label}, its "
        f"{plural(len(removed.connections), 'connection')}; its snapshots were {kept}.",
    )


async def _token_form(
    request: Request, ctx: Context, source_id: str, *, error: str | None = None, status: int = 200
) -> Response:
    source = await one_source(ctx, source_id)
    return await page(
        request, "source_token.html", section="sources", source=source, error=error,
        status=status, refusal=error,
    )  # fmt: skip


@router.get("/sources/{source_id}/token")
async def token_page(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    return await _token_form(request, ctx, source_id)


@router.post("/sources/{source_id}/token")
async def replace_token(source_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    """`set_token`: checked locally first, stored sealed; a refused source is active again."""
    project = await get_project(ctx.store, source_id)
    name_object(request, f"project:{project.project_id}")
    token = str((await request.form()).get("token", ""))
    if not token.strip():
        error = "paste the project's new Data Export token"
        return await _token_form(request, ctx, project.project_id, error=error, status=422)
    try:
        result = await set_token(ctx.store, project.project_id, token, ctx.clock)
    except ClarityCastError as exc:
        error = from_error(exc)
        return await _token_form(
            request, ctx, project.project_id, error=error.message, status=error.status
        )
    name_object(request, f"project:{project.project_id}",
                f"was {result.previous_status}, now {result.project.status}")  # fmt: skip
    again = (
        " It is active again: the next tick pulls what is missing." if result.reactivated else ""
    )
    return redirect(f"/sources/{project.project_id}", f"Token replaced.{again}")
