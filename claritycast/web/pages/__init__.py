"""The web pages: server-rendered HTML for people who never open a terminal.

Each page is a plain form or a table over the same functions the JSON API
calls (connect, refresh, the quota report, connections, preview, replay), with
the same access rules: every page needs a signed-in person, only an admin
sees a button that changes something, and every form that changes something
carries the session's CSRF token (checked by `claritycast.web.auth`). Forms
work without JavaScript; ``static/pages.js`` only makes the live parts live
(a pull's groups arriving, a delivery being sent), and each has a fallback.

The sign-in page, its CSS and its script answer without credentials; they
hold nothing of the data. Errors on a page are pages too: not signed in
goes to the sign-in page, and a refusal is said in the CLI's words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from claritycast.errors import ClarityCastError
from claritycast.logs import get_logger
from claritycast.redact import redact
from claritycast.web.errors import ApiError, from_error
from claritycast.web.pages import connections, deliveries, operations, settings, signin, sources
from claritycast.web.pages.render import SECURITY_HEADERS, page

log = get_logger(__name__)
NOT_PAGES = ("/api/", "/static/", "/metrics", "/healthz", "/readyz")
Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_page(request: Request) -> bool:
    return not request.url.path.startswith(NOT_PAGES)


def _as_error(request: Request, exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ClarityCastError):
        return from_error(exc)
    if isinstance(exc, RequestValidationError):
        return ApiError(422, "invalid", "this address is not one the pages make: check the link")
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return ApiError(404, "not_found", "there is no such page")
        return ApiError(exc.status_code, "failed", str(exc.detail))
    log.exception("web.page_failed", path=request.url.path, kind=type(exc).__name__)
    return ApiError(500, "failed", "something went wrong; it is in the web process's log")


def _html_for_pages(json_handler: Handler) -> Handler:
    """Answer a page's error with a page (or the sign-in page), the API's with its JSON."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await json_handler(request, exc)
        error = _as_error(request, exc)
        request.state.audit_message = redact(error.message)  # the audit trail's outcome
        if error.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(
                f"/sign-in?next={quote(target, safe='')}", 303, headers=SECURITY_HEADERS
            )
        return await page(request, "error.html", status=error.status, error=error)

    return handle


def install(app: FastAPI) -> None:
    """Serve the pages and their static files; page errors as pages."""
    static = files("claritycast.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    for module in (signin, sources, connections, deliveries, operations, settings):
        app.include_router(module.router, include_in_schema=False)
    for kind, handler in list(app.exception_handlers.items()):
        app.add_exception_handler(kind, _html_for_pages(handler))
