"""Operations, for admins: dead letters and replay, the quota table, workers and readiness.

Replay is the CLI's `replay` (one letter, or every letter a filter matches),
and what it did to each is said in its words; the quota table is the quota
report the quota check trusts, a page of sources at a time.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from claritycast.errors import ClarityCastError
from claritycast.ingest.quota import DAILY_LIMIT
from claritycast.ingest.replay import STAGES, replay
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context
from claritycast.web.pages.render import page, redirect, refused
from claritycast.web.pages.sources import source_views_page
from claritycast.web.routes.operations import dead_letters, status_view

router = APIRouter()
PAGE_SIZE = 50
REPLAY_WAIT_S = 5.0


@router.get("/operations")
async def operations_page(
    request: Request, who: Admin, ctx: Context, stage: str | None = None,
    source: str | None = None, replayed: str | None = None, cursor: str | None = None,
) -> Response:  # fmt: skip
    chosen = stage if stage in STAGES else None
    named = source.strip() if source and source.strip() else None
    letters = await dead_letters(who, ctx, chosen, named, replayed == "on", cursor, PAGE_SIZE)
    status = await status_view(ctx)
    shown_ids = sorted({letter.source for letter in letters.items})
    projects = await asyncio.gather(*(ctx.store.get_project(pid) for pid in shown_ids))
    query = urlencode({"stage": chosen or "", "source": named or "", "replayed": replayed or ""})
    return await page(
        request, "operations.html", section="operations", letters=letters.items,
        next_cursor=letters.next_cursor, first_page=not cursor, query=query, stages=STAGES,
        stage=chosen or "", source=named or "", replayed=replayed == "on", readiness=status,
        labels={p.project_id: p.label for p in projects if p is not None},
    )  # fmt: skip


@router.post("/operations/replay")
async def replay_letters(request: Request, _who: Admin, ctx: Context) -> Response:
    """One letter (``id``) or every waiting letter of a stage and source; what became of each."""
    form = await request.form()
    stage = str(form.get("stage", "")) or None
    source = str(form.get("source", "")).strip() or None
    letter = str(form.get("id", "")) or None
    try:
        results = await replay(
            ctx.store, ctx.publisher.send, ctx.clock.now(), stage=stage, project=source,
            default_timezone=ctx.settings.default_timezone, wait_s=REPLAY_WAIT_S,
            dead_letter_id=letter,
        )  # fmt: skip
    except ClarityCastError as exc:
        return refused(request, "/operations", f"Replay refused: {exc}")
    which = f"dead-letter:{letter}" if letter else (
        f"dead-letters:{stage or 'all'}" + (f" of {source}" if source else ""))  # fmt: skip
    name_object(request, which, f"{len(results)} replayed")
    if not results:
        return redirect("/operations", "Nothing to replay: no dead letter matches.")
    said = "; ".join(
        f"{r.letter.stage} {r.letter.key}: {r.outcome}"
        + (f" ({r.detail})" if r.detail else "")
        + (f", then {r.end}" if r.end else "")
        for r in results
    )
    return redirect("/operations", f"Replayed {len(results)}: {said}.")


@router.get("/operations/quota")
async def quota_page(
    request: Request, _who: Admin, ctx: Context, cursor: str | None = None
) -> Response:
    rows, next_cursor = await source_views_page(ctx, cursor)
    return await page(
        request, "quota.html", section="operations", rows=rows, limit=DAILY_LIMIT,
        next_cursor=next_cursor, first_page=not cursor,
    )  # fmt: skip
