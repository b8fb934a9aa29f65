"""The keys that encrypt Clarity tokens at rest, and the sealing itself.

A stolen database, backup or ``mongodump`` must not reveal a single Clarity
token, so a token is sealed before it reaches MongoDB with AES-256-GCM (an
authenticated cipher from ``cryptography``) under a key kept outside the
database (``CLARITYCAST_SECRET_KEYS``, or the embedded default's key file).

A sealed token is one string, ``cc1:<key id>:<project tag>:<nonce and ciphertext>``:

- the key id (the first 4 bytes of the key's SHA-256, in hex) names the key it
  was sealed with, so a keyring of several keys opens each token with the
  right one, and a rotation finds the tokens still on an old key;
- the project id is the associated data: a sealed token copied or moved to
  another project's document does not open there. The project tag (the first
  4 bytes of the project id's SHA-256) only lets that case be told apart from
  tampering in what the operator reads; it is authenticated like the rest.

Opening fails with a named error (`TokenKeyMissing`, `TokenForAnotherProject`,
`TokenTampered`): the project is then "token unreadable", never a crash.
Keys are written as ``ccsk_`` and 43 base64url characters (32 random bytes);
any base64 of 32 bytes is accepted, e.g. from ``openssl rand -base64 32``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claritycast.errors import (
    ConfigError,
    TokenForAnotherProject,
    TokenKeyMissing,
    TokenTampered,
)
from claritycast.redact import register_secret

SECRET_KEYS_SETTING = "CLARITYCAST_SECRET_KEYS"  # noqa: S105 - a setting's name
KEY_PREFIX = "ccsk_"
KEY_BYTES = 32
NONCE_BYTES = 12
SEALED_PREFIX = "cc1"
_ASSOCIATED = "claritycast clarity token v1"


def _digest_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def project_tag(project_id: str) -> str:
    """The short, non-secret tag of the project a token is sealed for."""
    return _digest_id(project_id.encode())


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not; anything else is refused, not skipped."""
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    padded = cleaned + "=" * (-len(cleaned) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SecretKey:
    """One 256-bit key and its id; the key's bytes never show in a repr."""

    key_id: str
    material: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, material: bytes) -> SecretKey:
        if len(material) != KEY_BYTES:
            raise ValueError(f"a key is {KEY_BYTES} bytes")
        return cls(_digest_id(material), material)


def new_key() -> str:
    """A fresh key, written as `claritycast keys new` prints it."""
    return KEY_PREFIX + _b64encode(os.urandom(KEY_BYTES))


def parse_key(text: str) -> SecretKey:
    """One key from its text; `ValueError` (saying why, never echoing it) if it is none."""
    body = text.strip().removeprefix(KEY_PREFIX)
    try:
        material = _b64decode(body)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(material) != KEY_BYTES:
        raise ValueError(f"is {len(material)} bytes, not {KEY_BYTES}")
    return SecretKey.from_bytes(material)


def parse_keys(text: str, source: str = SECRET_KEYS_SETTING) -> Keyring:
    """A keyring from a comma-separated list, the first key first; a `ConfigError` if bad.

    Every key is registered with the log redactor before anything can log it.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise ConfigError(source, "holds no key: make one with `claritycast keys new`")
    keys: list[SecretKey] = []
    for number, part in enumerate(parts, start=1):
        register_secret(part)
        register_secret(part.removeprefix(KEY_PREFIX))
        try:
            key = parse_key(part)
        except ValueError as exc:
            raise ConfigError(
                source,
                f"key {number} of {len(parts)} {exc}: a key is 32 random bytes in base64, "
                "as `claritycast keys new` prints",
            ) from None
        keys.append(key)
    return Keyring(keys, source=source)


class Keyring:
    """Keys in order: the first seals new tokens, every one opens what it sealed.

    Keeping an old key in the list after a rotation is what lets a worker
    still open a token that the rotation has not reached yet.
    """

    def __init__(self, keys: Sequence[SecretKey], *, source: str = SECRET_KEYS_SETTING) -> None:
        unique: dict[str, SecretKey] = {}
        for key in keys:
            known = unique.get(key.key_id)
            if known is not None and known.material != key.material:
                raise ConfigError(source, f"two different keys share the id {key.key_id}")
            unique.setdefault(key.key_id, key)
        if not unique:
            raise ConfigError(source, "holds no key: make one with `claritycast keys new`")
        self._keys = unique
        self.source = source
        self.writer = next(iter(unique.values()))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key's id, the writing key's first."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={self.key_ids!r})"

    def seal(self, token: str, project_id: str) -> str:
        """The token encrypted with the first key, bound to ``project_id``."""
        key = self.writer
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key.material).encrypt(
            nonce, token.encode(), _associated(key.key_id, project_id)
        )
        body = _b64encode(nonce + sealed)
        return f"{SEALED_PREFIX}:{key.key_id}:{project_tag(project_id)}:{body}"

    def open(self, sealed: str, project_id: str) -> str:
        """The token sealed for ``project_id``, or the named reason it cannot be read."""
        key_id, tag, body = parts_of(sealed)
        key = self._keys.get(key_id)
        if key is None:
            raise TokenKeyMissing(key_id, self.source)
        if tag != project_tag(project_id):
            raise TokenForAnotherProject(key_id)
        try:
            raw = _b64decode(body)
            plain = AESGCM(key.material).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(key_id, project_id)
            )
            return plain.decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise TokenTampered(key_id) from None

    def is_current(self, sealed: str) -> bool:
        """True when ``sealed`` is already sealed with the first key (nothing to rotate)."""
        return sealed_key_id(sealed) == self.writer.key_id


def _associated(key_id: str, project_id: str) -> bytes:
    return f"{_ASSOCIATED}|{key_id}|{project_id}".encode()


def is_sealed(text: str | None) -> bool:
    """Is this a sealed token (whatever its key), rather than something plain?"""
    if not text:
        return False
    pieces = text.split(":")
    return len(pieces) == 4 and pieces[0] == SEALED_PREFIX and all(pieces[1:])


def parts_of(sealed: str) -> tuple[str, str, str]:
    """(key id, project tag, body) of a sealed token; `TokenTampered` if it is not one."""
    if not is_sealed(sealed):
        raise TokenTampered(None)
    _, key_id, tag, body = sealed.split(":")
    return key_id, tag, body


def sealed_key_id(sealed: str) -> str | None:
    """The id of the key a token was sealed with (None when it is not a sealed token)."""
    return sealed.split(":")[1] if is_sealed(sealed) else None
