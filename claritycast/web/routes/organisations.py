"""Organisations: who owns projects, and in which timezone their day runs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from claritycast.ingest.connect import add_organisation
from claritycast.ingest.projects import set_timezone
from claritycast.web import views
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer
from claritycast.web.schemas import Organisation, OrganisationChange, OrganisationCreate

router = APIRouter(prefix="/api/v1/organisations", tags=["organisations"])


@router.get("", response_model=list[Organisation], summary="List organisations")
async def list_organisations(_who: Viewer, ctx: Context) -> list[Organisation]:
    return [views.organisation(org) for org in await ctx.store.organisations()]


@router.post("", response_model=Organisation, status_code=201, summary="Add an organisation")
async def create(
    body: OrganisationCreate, _who: Admin, ctx: Context, request: Request
) -> Organisation:
    org = await add_organisation(ctx.store, body.name, body.timezone, ctx.clock.now())
    name_object(request, f"organisation:{org.org_id}", f"{org.name}, {org.timezone}")
    return views.organisation(org)


@router.patch("/{org_id}", response_model=Organisation, summary="Change its timezone")
async def change(
    org_id: str, body: OrganisationChange, _who: Admin, ctx: Context, request: Request
) -> Organisation:
    """From the next tick, "yesterday" and "midnight" are the new timezone's."""
    name_object(request, f"organisation:{org_id}", f"timezone {body.timezone}")
    return views.organisation(await set_timezone(ctx.store, org_id, body.timezone))
