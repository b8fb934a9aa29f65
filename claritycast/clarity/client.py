"""The Clarity Data Export client: one request per call, errors by kind.

The client takes an ``httpx.AsyncClient`` (connection reuse, explicit
timeouts), so tests can hand it a transport and the service one shared pool.
Every httpx exception is translated here into the `ClarityError` tree; the
token never appears in an exception, a log line or a request description.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

import httpx

from claritycast.clarity.parse import BODY_KEPT_BYTES, parse_body
from claritycast.errors import (
    ClarityBadRequest,
    ClarityBodyError,
    ClarityError,
    ClarityForbidden,
    ClarityMalformed,
    ClarityQuotaExhausted,
    ClarityServerError,
    ClarityTokenInvalid,
    ClarityUnreachable,
)
from models.clarity import ClarityResponse, FetchGroup

USER_AGENT = "claritycast/0.1 (+https://github.com/claritycast)"


def http_client(timeout_s: float) -> httpx.AsyncClient:
    """A pooled client with one timeout for connect, read, write and pool."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        follow_redirects=False,
    )


class ClarityClient:
    """Fetch one group of one project from the Data Export endpoint."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self._path = urlsplit(url).path or "/"

    def describe(self, group: FetchGroup) -> str:
        """The request as it may be logged: method, path and query, no token."""
        return f"GET {self._path}?{urlencode(group.params)}"

    async def fetch(self, token: str, group: FetchGroup) -> ClarityResponse:
        """One request; raises a `ClarityError` subclass for every failure."""
        request = self.describe(group)
        try:
            response = await self.http.get(
                self.url, params=group.params, headers={"Authorization": f"Bearer {token}"}
            )
            body = await response.aread()
        except httpx.TimeoutException as exc:
            raise ClarityUnreachable(f"timed out ({type(exc).__name__})", request=request) from None
        except httpx.TransportError as exc:
            raise ClarityUnreachable(
                f"no answer from Clarity ({type(exc).__name__})", request=request
            ) from None
        except httpx.HTTPError as exc:
            raise ClarityUnreachable(
                f"HTTP failure ({type(exc).__name__})", request=request
            ) from None
        raise_for_status(response.status_code, body, request)
        try:
            return parse_body(body, group.dimensions, response.headers.get("content-type"))
        except ClarityBodyError as exc:
            raise type(exc)(
                str(exc), body=exc.body, status=response.status_code, request=request
            ) from None


def raise_for_status(status: int, body: bytes, request: str) -> None:
    """Map a non-200 answer to its error kind (see the API's error table)."""
    if status == 200:
        return
    kinds: dict[int, tuple[type[ClarityError], str]] = {
        400: (ClarityBadRequest, "Clarity refused the parameters (400)"),
        401: (ClarityTokenInvalid, "Clarity refused the token (401)"),
        403: (ClarityForbidden, "the token may not export this project (403)"),
        429: (ClarityQuotaExhausted, "the project's daily quota is spent (429)"),
    }
    if status in kinds:
        kind, message = kinds[status]
        raise kind(message, status=status, request=request)
    if status >= 500:
        raise ClarityServerError(f"Clarity failed ({status})", status=status, request=request)
    raise ClarityMalformed(
        f"unexpected status {status}", body=body[:BODY_KEPT_BYTES], status=status, request=request
    )
