"""Settings: organisations (name, timezone) and, for admins, people and API keys.

A timezone change is said before it is saved: the form's first button
reviews it (`timezone_change` says what it does to tonight's pull), the
second saves it. People and keys are managed with `claritycast.access`, as
``claritycast users`` and ``claritycast api-keys`` do; a new key is shown once,
on the page that answers its creation, and never again.
"""

from __future__ import annotations

import functools
import zoneinfo

from fastapi import APIRouter, Request
from fastapi.responses import Response

from claritycast import access
from claritycast.errors import ClarityCastError, NotFound
from claritycast.ingest.connect import add_organisation
from claritycast.ingest.projects import (
    get_organisation,
    rename_organisation,
    set_timezone,
    timezone_change,
)
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context, Viewer
from claritycast.web.errors import from_error
from claritycast.web.pages.render import page, redirect, refused
from claritycast.web.routes.accounts import api_keys, users

router = APIRouter()


@functools.cache
def timezones() -> list[str]:
    """Every IANA name this machine knows, for the searchable list."""
    return sorted(zoneinfo.available_timezones())


async def _organisations(
    request: Request, ctx: Context, *, review: dict[str, object] | None = None,
    errors: dict[str, str] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    return await page(
        request, "settings_organisation.html", section="settings",
        organisations=await ctx.store.organisations(), timezones=timezones(),
        review=review, errors=errors or {}, status=status,
        refusal="; ".join((errors or {}).values()) or None,
    )  # fmt: skip


@router.get("/settings")
async def settings_home(_who: Viewer) -> Response:
    return redirect("/settings/organisation")


@router.get("/settings/organisation")
async def organisation_page(request: Request, _who: Viewer, ctx: Context) -> Response:
    return await _organisations(request, ctx)


@router.post("/settings/organisations")
async def add(request: Request, _who: Admin, ctx: Context) -> Response:
    form = await request.form()
    name, timezone = str(form.get("name", "")), str(form.get("timezone", "")).strip() or "UTC"
    try:
        org = await add_organisation(ctx.store, name, timezone, ctx.clock.now())
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {f"new.{error.field or 'name'}": error.message}
        return await _organisations(request, ctx, errors=errors, status=error.status)
    name_object(request, f"organisation:{org.org_id}", f"{org.name}, {org.timezone}")
    return redirect("/settings/organisation", f"Added {org.name}, in {org.timezone}.")


async def _change(request: Request) -> tuple[str, str]:
    form = await request.form()
    return str(form.get("name", "")).strip(), str(form.get("timezone", "")).strip()


@router.post("/settings/organisations/{org_id}/review")
async def review(org_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    """What a new name and timezone would do, said before anything is saved."""
    org = await get_organisation(ctx.store, org_id)
    name, timezone = await _change(request)
    try:
        effects = timezone_change(org.timezone, timezone, ctx.clock.now())
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {f"{org.org_id}.{error.field or 'name'}": error.message}
        return await _organisations(request, ctx, errors=errors, status=error.status)
    shown = {"org": org.org_id, "name": name, "timezone": timezone, "effects": effects}
    return await _organisations(request, ctx, review=shown)


@router.post("/settings/organisations/{org_id}")
async def change(org_id: str, request: Request, _who: Admin, ctx: Context) -> Response:
    """The reviewed change: its name, then its timezone (`set_timezone`)."""
    org = await get_organisation(ctx.store, org_id)
    name, timezone = await _change(request)
    try:
        effects = timezone_change(org.timezone, timezone, ctx.clock.now())
        await rename_organisation(ctx.store, org.org_id, name)
        changed = await set_timezone(ctx.store, org.org_id, timezone)
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {f"{org.org_id}.{error.field or 'name'}": error.message}
        return await _organisations(request, ctx, errors=errors, status=error.status)
    name_object(request, f"organisation:{org.org_id}", f"{changed.name}, {changed.timezone}")
    return redirect(
        "/settings/organisation",
        f"Saved {changed.name}, in {changed.timezone}. " + " ".join(effects[:2]),
    )


async def _access(
    request: Request, who: access.Principal, ctx: Context, *, new_key: str | None = None,
    errors: dict[str, str] | None = None, values: dict[str, str] | None = None, status: int = 200,
) -> Response:  # fmt: skip
    return await page(
        request, "settings_access.html", section="settings", users=await users(who, ctx),
        keys=await api_keys(who, ctx), new_key=new_key, errors=errors or {},
        values=values or {}, roles=access.ROLES, min_password=access.MIN_PASSWORD_CHARS,
        status=status, refusal="; ".join((errors or {}).values()) or None,
    )  # fmt: skip


@router.get("/settings/access")
async def access_page(request: Request, who: Admin, ctx: Context) -> Response:
    return await _access(request, who, ctx)


@router.post("/settings/users")
async def add_user(request: Request, who: Admin, ctx: Context) -> Response:
    form = await request.form()
    email, role = str(form.get("email", "")), str(form.get("role", "viewer"))
    name_object(request, f"user:{email.strip().lower() or 'new'}", role)  # refused ones too
    try:
        added = await access.add_user(
            ctx.store, email, str(form.get("password", "")), role, ctx.clock.now()
        )
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {f"user.{error.field or 'email'}": error.message}
        values = {"email": email, "role": role}  # never the password
        return await _access(request, who, ctx, errors=errors, values=values, status=error.status)
    name_object(request, f"user:{added.name}", added.role)
    return redirect("/settings/access", f"Added {added.name} ({added.role}); they can sign in now.")


@router.post("/settings/users/{email}/remove")
async def remove_user(email: str, request: Request, who: Admin, ctx: Context) -> Response:
    address = access.normalise_email(email)
    if address == who.name:
        return refused(request, "/settings/access", "You cannot remove yourself.")
    if not await ctx.store.remove_user(address):
        raise NotFound(f"no user {email!r}", field="email")
    return redirect("/settings/access", f"Removed {address}; their sessions ended at once.")


@router.post("/settings/api-keys")
async def create_key(request: Request, who: Admin, ctx: Context) -> Response:
    """The key is on this answer only; only its hash is stored."""
    form = await request.form()
    name, role = str(form.get("name", "")), str(form.get("role", "viewer"))
    try:
        key, made = await access.create_api_key(ctx.store, name, role, ctx.clock.now(), who.actor)
    except ClarityCastError as exc:
        error = from_error(exc)
        errors = {f"key.{error.field or 'name'}": error.message}
        values = {"key_name": name, "key_role": role}
        return await _access(request, who, ctx, errors=errors, values=values, status=error.status)
    name_object(request, f"api-key-id:{made.key_id}", f"{made.name} ({made.role})")
    return await _access(request, who, ctx, new_key=key)


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_key(key_id: str, _who: Admin, ctx: Context) -> Response:
    revoked = await access.revoke_api_key(ctx.store, key_id, ctx.clock.now())
    return redirect("/settings/access", f"Revoked {revoked.name}: it stopped working at once.")
