"""Turning a view into HTML: the Jinja2 environment, page responses, what a change said.

Autoescaping is on for every template, so text from Clarity (page titles,
URLs, referrers) and from people (labels, names) is always shown as text; the
only markup passed through is the charts' SVG, which ElementTree wrote and
escaped. A URL becomes a link only through `safe_href`: http and https only.

A change answers with a redirect (post, redirect, get), and what it did or
why it was refused travels to the next page in a short-lived cookie, so a
reload never repeats it. Every page is sent with a strict Content Security
Policy: scripts only from ``/static``, none inline, so even an escaping
mistake could not run a script.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from claritycast import __version__
from claritycast.redact import redact
from claritycast.web.audit_trail import name_refusal
from claritycast.web.auth import current_session

FLASH_COOKIE = "claritycast_flash"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def safe_href(url: object) -> str | None:
    """``url`` if it may be a link target (http or https, with a host), else None."""
    if not isinstance(url, str):
        return None
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return text


def when(moment: datetime | None) -> str:
    """``2026-11-24 14:30 UTC``; a dash when there is no such moment."""
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else "—"


def day(value: date | str | None) -> str:
    if value is None:
        return "—"
    parsed = date.fromisoformat(value) if isinstance(value, str) else value
    return f"{parsed:%a %d %b %Y}"


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def shown(value: object) -> str:
    """A receipt's value for people: a list as its items, nothing as a dash."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "—"
    return "—" if value is None or value == "" else str(value)


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("claritycast.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
ENV.filters.update(
    safe_href=safe_href, when=when, day=day, number=number, plural=plural, shown=shown
)
ENV.globals.update(version=__version__)


def trusted_svg(svg: bytes) -> Markup:
    """An SVG we drew (ElementTree escaped its text), inline: without its XML declaration."""
    text = svg.decode()
    if text.startswith("<?xml"):
        text = text.split("?>", 1)[1]
    return Markup(text)  # noqa: S704 - written by ElementTree, every text node escaped


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        said = json.loads(base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(said, dict) or not isinstance(said.get("text"), str):
        return None
    return {"text": said["text"], "kind": "error" if said.get("kind") == "error" else "ok"}


async def page(
    request: Request, template: str, *, status: int = 200, refusal: str | None = None,
    **values: Any,
) -> HTMLResponse:  # fmt: skip
    """A template rendered for the signed-in person (or nobody), with what the last change said.

    ``refusal``: the words a form was refused with, for the audit trail.
    """
    if refusal is not None:
        request.state.audit_message = redact(refusal)
    session = await current_session(request)
    who = getattr(request.state, "principal", None) or (session.principal if session else None)
    flash = _read_flash(request)
    html = ENV.get_template(template).render(
        request=request,
        who=who,
        csrf=session.csrf_token if session else "",
        flash=flash,
        **values,
    )
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(url: str, said: str | None = None, *, error: bool = False) -> RedirectResponse:
    """See Other: the next page shows ``said``, once."""
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if said:
        payload = json.dumps({"text": said, "kind": "error" if error else "ok"})
        value = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
        response.set_cookie(
            FLASH_COOKIE, value, max_age=60, httponly=True, samesite="lax", path="/"
        )
    return response


def refused(request: Request, url: str, said: str) -> RedirectResponse:
    """Back to ``url``, saying why not; the audit trail records the refusal in those words."""
    name_refusal(request, redact(said))
    return redirect(url, said, error=True)


def local_path(target: str | None, default: str = "/sources") -> str:
    """A path on this site to go to after signing in; anything else goes to ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
