"""One error shape for every 4xx and 5xx answer, in the CLI's own words.

::

    {"error": {"code": "not_found", "message": "no project 'x'; see `claritycast sources`",
               "field": null}}

``code`` is stable, for programs; ``message`` is the same one line the CLI
prints; ``field`` names the input at fault, when there is one. A refusal by the
quota adds ``next_possible_at`` and ``refreshes_left``. Our exceptions are
mapped here, once, and nothing else reaches a client: an unexpected error is a
500 with a generic message, logged with its traceback (and secrets masked).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from claritycast.errors import (
    ClarityCastError,
    ClarityTokenInvalid,
    ConfigError,
    Conflict,
    InputError,
    NotFound,
    QuotaRefused,
    StoreUnavailable,
)
from claritycast.logs import get_logger
from claritycast.redact import redact
from claritycast.web.sessions import TooManySignIns

log = get_logger(__name__)


class ApiError(Exception):
    """An answer other than success, with its status, code and words."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        error = {"code": self.code, "message": redact(self.message), "field": self.field}
        return {"error": error | self.extra}


def unauthenticated() -> ApiError:
    return ApiError(
        401, "unauthenticated", "sign in, or send an API key as a bearer token (cc_…)",
        headers={"WWW-Authenticate": 'Bearer realm="claritycast"'},
    )  # fmt: skip


def forbidden(message: str = "your role may read, not change: ask an admin") -> ApiError:
    return ApiError(403, "forbidden", message)


def from_error(exc: ClarityCastError) -> ApiError:
    """Our exceptions as answers."""
    field = getattr(exc, "field", None)
    if isinstance(exc, QuotaRefused):
        when = exc.next_possible_at.isoformat() if exc.next_possible_at else None
        headers = {}
        if exc.next_possible_at is not None:
            headers["Retry-After"] = exc.next_possible_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return ApiError(
            429, "quota_refused", str(exc), headers=headers, next_possible_at=when,
            refreshes_left=exc.refreshes_left,
        )  # fmt: skip
    if isinstance(exc, TooManySignIns):
        return ApiError(
            429, "rate_limited", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        )
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc), field=field)
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc), field=field)
    if isinstance(exc, ClarityTokenInvalid):
        return ApiError(422, "token_refused", str(exc), field="token")
    if isinstance(exc, InputError):
        return ApiError(422, "invalid", str(exc), field=field)
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "unavailable", "the database does not answer; try again soon")
    if isinstance(exc, ConfigError):
        return ApiError(500, "misconfigured", str(exc))
    return ApiError(500, "failed", str(exc))


def _validation_error(exc: RequestValidationError) -> ApiError:
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query")]
    field = ".".join(location) or None
    message = str(first.get("msg", "invalid request"))
    return ApiError(422, "invalid", f"{field}: {message}" if field else message, field=field)


def install(app: FastAPI) -> None:
    """Every error an app can raise answers in the one shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        request.state.audit_message = redact(exc.message)  # the outcome on the audit trail
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    async def on_our_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ClarityCastError)
        return await on_api_error(request, from_error(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, _validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed", 400: "invalid"}
        code = codes.get(exc.status_code, "failed")
        message = "no such resource" if exc.status_code == 404 else str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None  # e.g. a 405's Allow
        return await on_api_error(
            request, ApiError(exc.status_code, code, message, headers=headers)
        )

    async def on_anything(request: Request, exc: Exception) -> JSONResponse:
        log.exception("web.failed", path=request.url.path, kind=type(exc).__name__)
        return await on_api_error(request, ApiError(500, "failed", "something went wrong"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ClarityCastError, on_our_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_anything)
