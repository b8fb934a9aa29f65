"""Users and API keys: who may use the HTTP API and the pages, and as which role.

People sign in with an email and a password, stored as an argon2id hash
(argon2-cffi's defaults: RFC 9106's low-memory profile). Services send an API
key, ``Authorization: Bearer cc_<id>_<secret>``: only the secret's SHA-256 is
stored, the key is shown once when it is made, and revoking it stops it at
once. Two roles: ``viewer`` reads, ``admin`` also changes.

Used alike by ``claritycast users`` / ``claritycast api-keys``, the web process
and the workers' ``/metrics`` (a Prometheus scrape sends an API key).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from claritycast.errors import Conflict, InputError, NotFound

ROLES = ("admin", "viewer")


class Store(Protocol):
    """What this module needs of the store (`claritycast.store.accounts`)."""

    async def add_user(self, document: dict[str, Any]) -> bool: ...
    async def get_user(self, email: str) -> dict[str, Any] | None: ...
    async def update_user(self, email: str, fields: dict[str, Any]) -> bool: ...
    async def add_api_key(self, document: dict[str, Any]) -> None: ...
    async def get_api_key(self, key_id: str) -> dict[str, Any] | None: ...
    async def revoke_api_key(self, key_id: str, at: datetime) -> dict[str, Any] | None: ...


MIN_PASSWORD_CHARS = 12
KEY_PREFIX = "cc"
_KEY = re.compile(r"^cc_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_HASHER = PasswordHasher()
# Checked against when the account does not exist, so both answers take as long.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in person or a service's API key, and its role."""

    kind: str  # user, api-key
    name: str  # the email, or the key's name
    role: str
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit trail and the logs name it."""
        return f"{self.kind}:{self.name}"


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}: one of {', '.join(ROLES)}", field="role")
    return role


def normalise_email(email: str) -> str:
    address = email.strip().lower()
    if not _EMAIL.match(address):
        raise InputError(f"not an email address: {email!r}", field="email")
    return address


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InputError(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters", field="password"
        )
    return password


async def add_user(store: Store, email: str, password: str, role: str, now: datetime) -> Principal:
    """Create a person who can sign in; an existing email is a `Conflict`."""
    address = normalise_email(email)
    document = {
        "_id": address,
        "role": _check_role(role),
        "password_hash": _HASHER.hash(_check_password(password)),
        "created_at": now,
        "updated_at": now,
    }
    if not await store.add_user(document):
        raise Conflict(f"a user {address!r} exists already", field="email")
    return Principal("user", address, role)


async def set_password(store: Store, email: str, password: str, now: datetime) -> None:
    address = normalise_email(email)
    fields = {"password_hash": _HASHER.hash(_check_password(password)), "updated_at": now}
    if not await store.update_user(address, fields):
        raise NotFound(f"no user {address!r}; see `claritycast users list`")


async def check_password(store: Store, email: str, password: str) -> Principal | None:
    """The user these credentials sign in, or None; says nothing about which part was wrong."""
    try:
        address = normalise_email(email)
    except InputError:
        address = ""
    user = await store.get_user(address) if address else None
    try:
        _HASHER.verify(user["password_hash"] if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    return Principal("user", address, user["role"])


# API keys


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never its secret."""

    key_id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ApiKey:
        return cls(
            key_id=doc["_id"],
            name=doc["name"],
            role=doc["role"],
            created_at=doc["created_at"],
            created_by=doc.get("created_by", ""),
            revoked_at=doc.get("revoked_at"),
            last_used_at=doc.get("last_used_at"),
        )


async def create_api_key(
    store: Store, name: str, role: str, now: datetime, created_by: str
) -> tuple[str, ApiKey]:
    """Make a key; returns the key itself (shown once, never stored) and its record."""
    if not name.strip():
        raise InputError("an API key needs a name", field="name")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    document = {
        "_id": key_id,
        "name": name.strip(),
        "role": _check_role(role),
        "secret_hash": _secret_hash(secret),
        "created_at": now,
        "created_by": created_by,
        "revoked_at": None,
        "last_used_at": None,
    }
    await store.add_api_key(document)
    return f"{KEY_PREFIX}_{key_id}_{secret}", ApiKey.from_document(document)


async def api_key_principal(store: Store, key: str) -> Principal | None:
    """The service a bearer key stands for, or None (malformed, unknown, revoked)."""
    match = _KEY.match(key.strip())
    if match is None:
        return None
    key_id, secret = match.groups()
    document = await store.get_api_key(key_id)
    if document is None or document.get("revoked_at") is not None:
        return None
    if not hmac.compare_digest(document["secret_hash"], _secret_hash(secret)):
        return None
    return Principal("api-key", document["name"], document["role"], key_id=key_id)


async def revoke_api_key(store: Store, key_id: str, now: datetime) -> ApiKey:
    revoked = await store.revoke_api_key(key_id, now)
    if revoked is None:
        raise NotFound(f"no API key {key_id!r}; see `claritycast api-keys list`")
    return ApiKey.from_document(revoked | {"revoked_at": now})
