"""Refuse a hopeless Clarity token before a request of the quota is spent.

Clarity's Data Export tokens are JWTs bound to one project, with claims
``sub``, ``exp``, ``iss: "clarity"`` and ``aud: "clarity.data-exporter"``. The
signature cannot be checked here (Clarity does not publish its key), so this is
a shape check, not authentication: Clarity still has the last word (401).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from claritycast.errors import ClarityTokenInvalid

ISSUER = "clarity"
AUDIENCE = "clarity.data-exporter"


@dataclass(frozen=True)
class TokenClaims:
    """What the token says about itself (never the token)."""

    subject: str | None
    expires_at: datetime | None


def _decode_part(part: str) -> dict[str, Any]:
    padded = part + "=" * (-len(part) % 4)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise ClarityTokenInvalid("token is not a JWT (a part is not base64url JSON)") from None
    if not isinstance(decoded, dict):
        raise ClarityTokenInvalid("token is not a JWT (a part is not a JSON object)")
    return decoded


def plain_token(text: str) -> str:
    """The token as Clarity takes it: without the spaces or ``Bearer`` pasted with it."""
    token = text.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def fingerprint(token: str) -> str:
    """A token's short identifying mark, safe to show and to store beside the sealed token.

    A prefix of the SHA-256 of the plain token: enough to tell two tokens
    apart on a screen, nothing to recover a JWT's signature from.
    """
    return "sha256:" + hashlib.sha256(plain_token(token).encode()).hexdigest()[:10]


def check_token(token: str, now: datetime) -> TokenClaims:
    """The token's claims, or `ClarityTokenInvalid` saying why it cannot work."""
    parts = plain_token(token).split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise ClarityTokenInvalid("token is not a JWT (expected three dot-separated parts)")
    _decode_part(parts[0])
    claims = _decode_part(parts[1])

    issuer = claims.get("iss")
    if issuer is not None and issuer != ISSUER:
        raise ClarityTokenInvalid(f"token was not issued by Clarity (iss={str(issuer)[:40]!r})")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if audience is not None and AUDIENCE not in audiences:
        raise ClarityTokenInvalid(
            "token is not a Data Export token (aud is not clarity.data-exporter)"
        )
    expires_at: datetime | None = None
    exp = claims.get("exp")
    if exp is not None:
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise ClarityTokenInvalid("token has an unreadable expiry (exp)")
        expires_at = datetime.fromtimestamp(exp, UTC)
        if expires_at <= now:
            raise ClarityTokenInvalid(f"token expired at {expires_at:%Y-%m-%d %H:%M} UTC")
    subject = claims.get("sub")
    return TokenClaims(subject=str(subject) if subject is not None else None, expires_at=expires_at)
