"""People and API keys, for admins: the same as `claritycast users` and `claritycast api-keys`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from claritycast import access as accounts
from claritycast.errors import NotFound
from claritycast.web.audit_trail import name_object
from claritycast.web.auth import Admin, Context
from claritycast.web.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyView, User

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def key_view(key: accounts.ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.key_id, name=key.name, role=key.role, created_at=key.created_at,  # type: ignore[arg-type]
        created_by=key.created_by, revoked_at=key.revoked_at, last_used_at=key.last_used_at,
    )  # fmt: skip


@router.get("/users", response_model=list[User], summary="People who can sign in")
async def users(_who: Admin, ctx: Context) -> list[User]:
    return [
        User(email=doc["_id"], role=doc["role"], created_at=doc["created_at"])
        for doc in await ctx.store.users()
    ]


@router.delete("/users/{email}", status_code=204, summary="Remove a person")
async def remove_user(email: str, _who: Admin, ctx: Context) -> None:
    """Their sessions end at once."""
    if not await ctx.store.remove_user(accounts.normalise_email(email)):
        raise NotFound(f"no user {email!r}", field="email")


@router.get("/api-keys", response_model=list[ApiKeyView], summary="API keys (never the keys)")
async def api_keys(_who: Admin, ctx: Context) -> list[ApiKeyView]:
    return [key_view(accounts.ApiKey.from_document(doc)) for doc in await ctx.store.api_keys()]


@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, summary="Make a key")
async def create_api_key(
    body: ApiKeyCreate, who: Admin, ctx: Context, request: Request
) -> ApiKeyCreated:
    """The key is in this answer only: keep it, only its hash is stored."""
    key, record = await accounts.create_api_key(
        ctx.store, body.name, body.role, ctx.clock.now(), who.actor
    )
    name_object(request, f"api-key-id:{record.key_id}", f"{record.name} ({record.role})")
    return ApiKeyCreated(key=key, api_key=key_view(record))


@router.delete("/api-keys/{key_id}", response_model=ApiKeyView, summary="Revoke a key")
async def revoke_api_key(key_id: str, _who: Admin, ctx: Context) -> ApiKeyView:
    """It stops working at once, on every web process and worker."""
    return key_view(await accounts.revoke_api_key(ctx.store, key_id, ctx.clock.now()))
