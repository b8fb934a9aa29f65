"""Signed-in people: session cookies, their CSRF tokens, and the limit on failed sign-ins.

A session is a random id, kept by the browser in a signed cookie (HttpOnly,
SameSite=Lax, Secure over HTTPS) and by the store as a SHA-256, with its own
CSRF token and the time it was last used: after ``CLARITYCAST_WEB_IDLE_TIMEOUT_S``
without use it ends, and signing out ends it at once, on every web process.

The cookie is signed with the web secret (`web_secret`): every web process
behind a load balancer must share it. The embedded default keeps one in the
data folder; with an external MongoDB it must be set.

Failed sign-ins are counted per account and per address over
`FAILURE_WINDOW`; past the limits, sign-in is refused for a while with the
same words whichever limit was reached, so an attacker learns nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, Signer

from claritycast.access import Principal
from claritycast.errors import ClarityCastError, ConfigError
from claritycast.settings import Settings
from claritycast.store.core import Store
from models.documents import as_utc

COOKIE = "claritycast_session"
CSRF_COOKIE = "claritycast_csrf"
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
SECRET_FILE = "web-secret"  # noqa: S105 - a file name, not a secret


class TooManySignIns(ClarityCastError):
    """Sign-in refused for a while: too many failures for this account or address."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            f"too many failed sign-ins; try again in {max(1, retry_after_s // 60)} min"
        )


def web_secret(settings: Settings) -> str:
    """The key session cookies are signed with: the setting, or the embedded default's file."""
    if settings.web_secret is not None:
        return settings.web_secret.get_secret_value()
    if not settings.embedded_mongodb:
        raise ConfigError(
            "CLARITYCAST_WEB_SECRET",
            "unset: with an external MongoDB every web process must share one "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
        )
    path = settings.data_dir / "secrets" / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    session_hash: str


class Sessions:
    """Opening, reading and closing sessions; one per web process."""

    def __init__(self, store: Store, secret: str, idle_timeout: timedelta) -> None:
        self.store = store
        self.signer = Signer(secret, salt="claritycast.session")
        self.idle_timeout = idle_timeout

    async def open(self, principal: Principal, now: datetime) -> tuple[str, Session]:
        """A new session; returns the cookie value and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(24), _hash(session_id))
        await self.store.add_session(
            {
                "_id": session.session_hash,
                "email": principal.name,
                "role": principal.role,
                "csrf": session.csrf_token,
                "created_at": now,
                "seen_at": now,
                "expires_at": now + self.idle_timeout,
            }
        )
        return self.signer.sign(session_id).decode(), session

    async def read(self, cookie: str | None, now: datetime) -> Session | None:
        """The live session of a cookie, its idle time renewed; None if there is none."""
        if not cookie:
            return None
        try:
            session_id = self.signer.unsign(cookie).decode()
        except BadSignature:
            return None
        # base64 leaves spare bits in the signature's last character: only the
        # exact cookie this process signed is accepted, never a variant of it
        if not hmac.compare_digest(self.signer.sign(session_id).decode(), cookie):
            return None
        session_hash = _hash(session_id)
        document = await self.store.get_session(session_hash)
        if document is None or as_utc(document["seen_at"]) < now - self.idle_timeout:
            return None
        user = await self.store.get_user(document["email"])
        if user is None:  # removed since: the session ends with the account
            return None
        await self.store.touch_session(session_hash, now, now + self.idle_timeout)
        principal = Principal("user", document["email"], user["role"])
        return Session(principal, document["csrf"], session_hash)

    async def close(self, session: Session) -> None:
        await self.store.remove_session(session.session_hash)


async def check_sign_in_allowed(store: Store, email: str, address: str, now: datetime) -> None:
    """Refuse a sign-in attempt while its account or its address failed too often."""
    since = now - FAILURE_WINDOW
    account = await store.count_login_failures(f"account:{email.strip().lower()}", since)
    by_address = await store.count_login_failures(f"address:{address}", since)
    if account >= MAX_FAILURES_PER_ACCOUNT or by_address >= MAX_FAILURES_PER_ADDRESS:
        raise TooManySignIns(int(FAILURE_WINDOW.total_seconds()))


async def record_sign_in(
    store: Store, email: str, address: str, now: datetime, *, succeeded: bool
) -> None:
    account = f"account:{email.strip().lower()}"
    if succeeded:
        await store.clear_login_failures(account)
    else:
        await store.add_login_failures([account, f"address:{address}"], now)
