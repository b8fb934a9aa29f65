"""The delivery log as pages: filter by connection and outcome; one delivery, as it went out.

The list is the API's own page of the log (`list_deliveries`); a delivery's
page shows its attempts and receipt, and the chart and words that were sent,
kept by the render stage (`Store.get_chart`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from claritycast.web import pagination
from claritycast.web.auth import Context, Viewer
from claritycast.web.pages.render import page
from claritycast.web.routes.deliveries import list_deliveries
from claritycast.web.routes.deliveries import read as read_delivery
from models.delivery import DeliveryState

router = APIRouter()
STATES = [state.value for state in DeliveryState]


@router.get("/deliveries")
async def deliveries_page(
    request: Request, who: Viewer, ctx: Context, connection: str | None = None,
    state: str | None = None, cursor: str | None = None,
) -> Response:  # fmt: skip
    """``state`` and ``connection`` come from a GET form: empty means any."""
    chosen = DeliveryState(state) if state in STATES else None
    name = connection.strip() if connection and connection.strip() else None
    found = await list_deliveries(who, ctx, name, chosen, cursor, pagination.DEFAULT_LIMIT)
    names = sorted(c.name for c in await ctx.store.connections())
    return await page(
        request, "deliveries.html", section="deliveries", deliveries=found.items,
        next_cursor=found.next_cursor, connection=name or "", state=chosen.value if chosen else "",
        states=STATES, names=names, first_page=not cursor,
    )  # fmt: skip


@router.get("/deliveries/{key:path}")
async def delivery_page(key: str, request: Request, who: Viewer, ctx: Context) -> Response:
    delivery = await read_delivery(key, who, ctx)
    report = await ctx.store.get_chart(key)
    return await page(
        request, "delivery.html", section="deliveries", delivery=delivery, report=report,
        final=DeliveryState(delivery.state).final,
    )  # fmt: skip
