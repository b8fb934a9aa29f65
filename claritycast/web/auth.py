"""Who is asking, and may they: the dependencies every route declares.

Nothing but ``/healthz`` answers without credentials. A request carries
either ``Authorization: Bearer <API key>`` (services) or a session cookie (people
signed in). Reading needs any role; changing needs ``admin``, and a change
made with a session cookie must also carry that session's CSRF token, as the
``X-CSRF-Token`` header or a ``csrf_token`` form field: a page on another site
cannot make a signed-in browser change anything. API keys need no CSRF token
(a browser never sends them on its own).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from claritycast.access import Principal, api_key_principal
from claritycast.clock import Clock
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings
from claritycast.store.core import Store
from claritycast.web.errors import ApiError, forbidden, unauthenticated
from claritycast.web.sessions import COOKIE, Session, Sessions

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# An API key's last use is recorded at most this often per key and process.
KEY_TOUCH_S = 60.0
_UNREAD = object()


@dataclass
class WebContext:
    """What a web process holds for its whole life."""

    settings: Settings
    store: Store
    publisher: Publisher
    sessions: Sessions
    clock: Clock
    kafka_url: str
    mongodb_url: str
    key_touched: dict[str, float]


def context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


async def _bearer(request: Request, ctx: WebContext) -> Principal | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return None
    principal = await api_key_principal(ctx.store, key)
    if principal is None:
        raise unauthenticated()
    assert principal.key_id is not None
    last = ctx.key_touched.get(principal.key_id, 0.0)
    if time.monotonic() - last > KEY_TOUCH_S:
        ctx.key_touched[principal.key_id] = time.monotonic()
        await ctx.store.touch_api_key(principal.key_id, ctx.clock.now())
    return principal


async def current_session(request: Request) -> Session | None:
    """The request's live session, if its cookie names one."""
    cached = getattr(request.state, "session", _UNREAD)
    if cached is not _UNREAD:
        return cached  # type: ignore[no-any-return]
    ctx = context(request)
    session = await ctx.sessions.read(request.cookies.get(COOKIE), ctx.clock.now())
    request.state.session = session
    return session


async def principal(request: Request) -> Principal:
    """Any signed-in person or valid API key; else 401."""
    ctx = context(request)
    found = await _bearer(request, ctx)
    if found is None:
        session = await current_session(request)
        if session is None:
            raise unauthenticated()
        # Named before the CSRF check: a forged change is refused on the audit trail.
        request.state.principal = session.principal
        if request.method in UNSAFE:
            await _check_csrf(request, session)
        found = session.principal
    request.state.principal = found
    return found


async def _check_csrf(request: Request, session: Session) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, session.csrf_token):
        raise ApiError(403, "csrf_failed", "the form is out of date or not ours: reload the page")


async def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """An admin; a viewer is refused with 403."""
    if not who.is_admin:
        raise forbidden()
    return who


Viewer = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
Context = Annotated[WebContext, Depends(context)]
