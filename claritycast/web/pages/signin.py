"""Signing in and out with a form: the same check, limits and words as ``POST /api/v1/session``.

There is no session yet to hold a CSRF token for the sign-in form, so it is
a double-submit token: a random value in a SameSite=Strict, HttpOnly cookie
and in the form, which must match. Another site can make a browser post the
form but cannot read the cookie, so it cannot sign a visitor into its own
account (login CSRF).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from claritycast.web.auth import CSRF_FIELD, Context, Viewer, current_session
from claritycast.web.errors import ApiError, from_error
from claritycast.web.pages.render import local_path, page, redirect
from claritycast.web.routes.session import sign_in
from claritycast.web.sessions import COOKIE, CSRF_COOKIE, TooManySignIns

router = APIRouter()
CSRF_FAILED = "the form is out of date or not ours: reload the page"


@router.get("/")
async def home(_who: Viewer) -> RedirectResponse:
    return redirect("/sources")


async def _form(
    request: Request, next_path: str, *, email: str = "", error: str | None = None,
    status: int = 200,
) -> HTMLResponse:  # fmt: skip
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = await page(
        request, "sign_in.html", status=status, form_token=token, next_path=next_path,
        email=email, error=error,
    )  # fmt: skip
    secure = request.url.scheme == "https"
    response.set_cookie(
        CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/sign-in"
    )
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    if await current_session(request) is not None:
        return redirect(local_path(next))
    return await _form(request, local_path(next))


@router.post("/sign-in")
async def sign_in_form(request: Request, ctx: Context) -> Response:
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_path = local_path(str(form.get("next", "")))
    sent, expected = str(form.get(CSRF_FIELD, "")), request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        return await _form(request, next_path, email=email, error=CSRF_FAILED, status=403)
    response = redirect(next_path)
    try:
        await sign_in(ctx, request, response, email, password)
    except TooManySignIns as exc:
        error = from_error(exc)
        return await _form(request, next_path, email=email, error=error.message, status=429)
    except ApiError as exc:
        return await _form(request, next_path, email=email, error=exc.message, status=exc.status)
    response.delete_cookie(CSRF_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, _who: Viewer, ctx: Context) -> Response:
    """Ends the session at once, on every web process (the form carries its CSRF token)."""
    session = await current_session(request)
    if session is not None:
        await ctx.sessions.close(session)
    response = redirect("/sign-in", "Signed out.")
    response.delete_cookie(COOKIE, path="/")
    return response
