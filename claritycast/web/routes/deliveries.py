"""The delivery log: every report, its attempts and its receipt, and what went out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from claritycast.errors import NotFound
from claritycast.web import pagination, views
from claritycast.web.auth import Context, Viewer
from claritycast.web.schemas import Delivery, Page
from models.delivery import DeliveryState

router = APIRouter(prefix="/api/v1/deliveries", tags=["deliveries"])


@router.get("", response_model=Page[Delivery], summary="The delivery log, newest first")
async def list_deliveries(
    _who: Viewer,
    ctx: Context,
    connection: str | None = None,
    state: DeliveryState | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = pagination.DEFAULT_LIMIT,
) -> Page[Delivery]:
    """Filter by connection and by state (sent, failed, retrying, …)."""
    after = pagination.decode(cursor, 2)
    before = None
    if after is not None:
        try:
            before = (datetime.fromisoformat(after[0]), after[1])
        except ValueError:
            before = None
    found = await ctx.store.deliveries(
        connection, limit + 1, state=state.value if state else None, before=before
    )
    page = found[:limit]
    last = page[-1] if page else None
    more = len(found) > limit and last is not None
    return Page[Delivery](
        items=[views.delivery(item) for item in page],
        next_cursor=pagination.encode([last.created_at.isoformat(), last.key])
        if more and last
        else None,
    )


@router.get("/{key:path}/chart", summary="The chart that went out (PNG)", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})  # fmt: skip
async def chart(key: str, _who: Viewer, ctx: Context) -> Response:
    report = await ctx.store.get_chart(key)
    if report is None:
        raise NotFound(f"no chart for {key!r} (not drawn yet, or older than 90 days)")
    return Response(report.png, media_type="image/png")


@router.get("/{key:path}", response_model=Delivery, summary="One delivery")
async def read(key: str, _who: Viewer, ctx: Context) -> Delivery:
    delivery = await ctx.store.get_delivery(key)
    if delivery is None:
        raise NotFound(f"no delivery {key!r}; see `claritycast deliveries`")
    return views.delivery(delivery)
