"""Cursors: a page's last sort key, opaque to clients, checked when it comes back."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date
from typing import Any

from claritycast.web.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, size: int) -> list[Any] | None:
    """The sort key of a cursor (``size`` parts), or an `ApiError` naming the field."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise ApiError(422, "invalid", "cursor: not one this API made", field="cursor")
    return key


ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


def parse_day(text: str | None, field: str) -> date | None:
    """An ISO date from a query parameter (the pattern already checked its shape)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid", f"{field}: not a date: {text!r}", field=field) from None
