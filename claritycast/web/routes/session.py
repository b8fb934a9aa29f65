"""Signing in and out: a session cookie for people, and who a request is."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from claritycast.access import check_password, normalise_email
from claritycast.errors import InputError
from claritycast.web.audit_trail import name_actor, name_object
from claritycast.web.auth import Context, Viewer, WebContext, current_session
from claritycast.web.errors import ApiError
from claritycast.web.schemas import SessionView, SignIn, WhoAmI
from claritycast.web.sessions import COOKIE, Session, check_sign_in_allowed, record_sign_in
from models.audit import Actor, ActorKind

router = APIRouter(prefix="/api/v1/session", tags=["session"])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def set_session_cookie(request: Request, response: Response, value: str, max_age_s: int) -> None:
    """HttpOnly, SameSite=Lax; Secure whenever the page was reached over HTTPS."""
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        COOKIE, value, max_age=max_age_s, httponly=True, samesite="lax", secure=secure, path="/"
    )


def _address(email: str) -> str:
    try:
        return normalise_email(email)
    except InputError:
        return ""


async def sign_in(
    ctx: WebContext, request: Request, response: Response, email: str, password: str
) -> Session:
    """Check the limits, then the password; on success, the new session (cookie set)."""
    now = ctx.clock.now()
    # On the audit trail as the account tried, or "unknown" for no such account:
    # a password typed into the email field must not be kept.
    known = await ctx.store.get_user(_address(email))
    account = known["_id"] if known else "unknown"
    name_actor(request, Actor(ActorKind.USER, account))
    name_object(request, f"account:{account}")
    address = client_address(request)
    await check_sign_in_allowed(ctx.store, email, address, now)
    who = await check_password(ctx.store, email, password)
    await record_sign_in(ctx.store, email, address, now, succeeded=who is not None)
    if who is None:
        raise ApiError(401, "sign_in_failed", "the email or the password is wrong")
    cookie, session = await ctx.sessions.open(who, now)
    set_session_cookie(request, response, cookie, int(ctx.sessions.idle_timeout.total_seconds()))
    return session


@router.post("", response_model=SessionView, summary="Sign in")
async def create(body: SignIn, ctx: Context, request: Request, response: Response) -> SessionView:
    """A person signs in: a session cookie, and the CSRF token to send with every change."""
    session = await sign_in(ctx, request, response, body.email, body.password)
    principal = session.principal
    return SessionView(email=principal.name, role=principal.role, csrf_token=session.csrf_token)  # type: ignore[arg-type]


@router.get("", response_model=WhoAmI, summary="Who is asking")
async def whoami(who: Viewer) -> WhoAmI:
    return WhoAmI(kind=who.kind, name=who.name, role=who.role)  # type: ignore[arg-type]


@router.delete("", status_code=204, summary="Sign out")
async def delete(who: Viewer, ctx: Context, request: Request, response: Response) -> None:
    """Ends the session at once, on every web process."""
    session = await current_session(request)
    if session is not None:
        await ctx.sessions.close(session)
    response.delete_cookie(COOKIE, path="/")
