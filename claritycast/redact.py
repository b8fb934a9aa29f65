"""Keep secrets out of every line claritycast writes.

Clarity tokens are JWTs, Slack tokens start with ``xox``, claritycast's own
keys with ``ccsk_``, and URLs may carry a password: each is recognised by its
shape, so a secret that was never registered is still caught. Values known
to be secret (SMTP passwords, keys given without their prefix, which have no
shape) are registered once at start-up and replaced wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens (Clarity Data Export tokens): three base64url parts.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),
    # Slack bot, user, app and refresh tokens.
    (re.compile(r"\bxox[abeoprs]-[A-Za-z0-9-]{6,}"), MASK),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{6,}"), MASK),
    # claritycast's own secret keys (`claritycast keys new`).
    (re.compile(r"\bccsk_[A-Za-z0-9_-]{16,}"), MASK),
    # claritycast's own API keys (`claritycast api-keys create`): the id may show, not the rest.
    (re.compile(r"\b(cc_[0-9a-f]{12}_)[A-Za-z0-9_-]{20,}"), rf"\1{MASK}"),
    # OpenAI-style API keys.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
    # Authorization headers, whatever the scheme's token looks like.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {MASK}"),
    # Passwords in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@/\s]+@"), rf"\1{MASK}@"),
    # key=value and "key": "value" pairs whose key says secret.
    (
        re.compile(
            r"(?i)\b((?:password|passwd|secret|token|api[_-]?key|authorization)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]+)"
        ),
        rf"\1{MASK}",
    ),
)

SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "passwd",
        "secret",
        "api_key",
        "apikey",
        "authorization",
        "clarity_token",
        "slack_token",
        "smtp_password",
        "summariser_api_key",
        "secret_keys",
    }
)

_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears later."""
    if value and len(value) >= 4:
        _known.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every known or token-shaped secret masked."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """Mask a whole value when its key names a secret, else redact inside it."""
    if key.lower() in SECRET_KEYS and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value("", v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def redact_mapping(event: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Redact every value of a log event (a structlog event dict)."""
    skipped = set(skip)
    return {k: (v if k in skipped else redact_value(k, v)) for k, v in event.items()}
