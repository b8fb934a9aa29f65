"""Parse Clarity's answer into `ClarityResponse`, accepting every known variant.

The quirks handled here (numbered as in ``shared/clarity-api.md``):
1. ``distantUserCount``/``PagesPerSessionPercentage`` → the live spellings;
2. spaced metric names (``Popular Pages``) → CamelCase;
3. dimension keys matched case-insensitively (``Url`` for ``URL``), and
   ``Country`` accepted for ``Country/Region``;
4. the ``null`` aggregate row is kept and marked, never counted twice;
7. counts sent as strings become numbers; a missing or ``null`` figure is
   absent; an empty ``information`` list is an empty block.

A 200 that is not an answer at all is `ClarityGarbled`, retried like a 5xx: an
empty body, an HTML page (a gateway's or proxy's error page during an outage),
or JSON cut short. Complete JSON of the wrong shape, or a body that is neither
JSON nor HTML, is `ClarityMalformed`: asking again would get the same, so it is
a dead letter at once. Either way a failed fetch, never zero data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from claritycast.errors import ClarityGarbled, ClarityMalformed
from models.clarity import (
    ALL_BLOCKS,
    FIELD_ALIASES,
    LABEL_KEYS,
    Block,
    ClarityResponse,
    Row,
)

BODY_KEPT_BYTES = 64 * 1024

_METRIC_NAMES = {name.lower(): name for name in ALL_BLOCKS}


def _dimension_key(key: str, dimensions: Sequence[str]) -> str | None:
    """The requested dimension a row key stands for, if any."""
    lowered = key.lower()
    for dimension in dimensions:
        names = {dimension.lower()}
        if dimension == "Country/Region":
            names |= {"country", "countryregion", "country/region", "country_region"}
        if lowered in names:
            return dimension
    return None


def canonical_metric(name: str) -> str:
    """``Popular Pages`` and ``PopularPages`` are the same block."""
    squashed = "".join(name.split())
    return _METRIC_NAMES.get(squashed.lower(), squashed)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def parse_row(raw: dict[str, Any], dimensions: Sequence[str], notes: list[str]) -> Row:
    values: dict[str, float] = {}
    dims: dict[str, str | None] = {}
    label: str | None = None
    for key, value in raw.items():
        dimension = _dimension_key(key, dimensions)
        if dimension is not None:
            dims[dimension] = None if value is None else str(value)
        elif key.lower() in LABEL_KEYS and not dimensions:
            label = None if value is None else str(value)
        else:
            number = _number(value)
            if number is not None:
                values[FIELD_ALIASES.get(key.lower(), key)] = number
            elif value is not None:
                notes.append(f"ignored non-numeric {key}={str(value)[:40]!r}")
    if dimensions and not dims:
        dims = dict.fromkeys(dimensions)  # no dimension value at all: the aggregate row
    return Row(values=values, dims=dims, label=label)


def parse_blocks(data: Any, dimensions: Sequence[str]) -> ClarityResponse:
    """Turn decoded JSON into a response, or raise `ClarityMalformed`."""
    if not isinstance(data, list):
        raise ClarityMalformed(f"expected a JSON array, got {type(data).__name__}")
    notes: list[str] = []
    blocks: list[Block] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("metricName"), str):
            raise ClarityMalformed(f"item {index} is not a metric block")
        information = item.get("information")
        if information is None:
            information = []
        if not isinstance(information, list) or not all(isinstance(r, dict) for r in information):
            raise ClarityMalformed(f"block {item['metricName']!r} has no list of rows")
        metric = canonical_metric(item["metricName"])
        if metric not in ALL_BLOCKS:
            notes.append(f"unknown metric block {metric!r} kept as is")
        rows = tuple(parse_row(raw, dimensions, notes) for raw in information)
        blocks.append(Block(metric, rows))
    return ClarityResponse(tuple(blocks), tuple(dict.fromkeys(notes)))


def looks_like_html(body: bytes, content_type: str | None) -> bool:
    """A web page rather than an API answer: by its content type, or by how it starts."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in ("text/html", "application/xhtml+xml"):
        return True
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _cut_short(body: bytes, exc: ValueError) -> bool:
    """Did decoding fail only because the body ends too early?

    ``json`` reports an unterminated string at the string's start and other
    end-of-input errors at the end of the text; a UTF-8 sequence cut in two
    fails to decode in its last bytes.
    """
    text = body.rstrip()
    if text.lstrip()[:1] not in (b"[", b"{"):
        return False
    if isinstance(exc, UnicodeDecodeError):
        return exc.start >= len(text) - 4
    assert isinstance(exc, json.JSONDecodeError)
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(exc.doc.rstrip()) - 6


def parse_body(
    body: bytes, dimensions: Sequence[str], content_type: str | None = None
) -> ClarityResponse:
    """Decode and parse a 200 body (see the module docstring for what fails how)."""
    kept = body[:BODY_KEPT_BYTES]
    if not body.strip():
        raise ClarityGarbled("empty body with status 200", body=kept)
    if looks_like_html(body, content_type):
        raise ClarityGarbled(
            "an HTML page instead of JSON (a gateway or proxy answering for the API?)", body=kept
        )
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if _cut_short(body, exc):
            raise ClarityGarbled(
                f"the body ends before its JSON does (cut short after {len(body):,} bytes)",
                body=kept,
            ) from None
        reason = exc.reason if isinstance(exc, UnicodeDecodeError) else exc.msg
        raise ClarityMalformed(f"body is not JSON ({reason})", body=kept) from None
    try:
        return parse_blocks(data, dimensions)
    except ClarityMalformed as exc:
        raise ClarityMalformed(str(exc), body=kept) from None
