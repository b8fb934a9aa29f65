"""A real local SMTP server that keeps what it receives: for the demo and the tests.

It is aiosmtpd's SMTP protocol on a server in the caller's own event loop, on
a port the kernel picks, so starting it never blocks the loop and runs never
collide. It can offer STARTTLS (or speak implicit TLS), ask for a login (over
TLS only), write each message to ``<outbox>/email/<timestamp>-<n>.eml``, and
misbehave on request: refuse recipients matching a pattern, or answer the next
DATA commands with 421 (then hang up) or 451.
"""

from __future__ import annotations

import asyncio
import email.policy
import hmac
import os
import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from claritycast.runtime.ports import LOOPBACK


@dataclass(frozen=True)
class CaughtMessage:
    """One message as the server received it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage
    tls: bool
    user: str | None
    path: Path | None = None


@dataclass
class _Faults:
    refuse: re.Pattern[str] | None = None
    data_failures: list[int] = field(default_factory=list)  # codes for the next DATA commands


class _Handler:
    """aiosmtpd hooks: the catcher's rules and its in-memory inbox."""

    def __init__(self, catcher: SmtpCatcher) -> None:
        self.catcher = catcher

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.catcher.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refuse = self.catcher.faults.refuse
        if refuse is not None and refuse.search(address):
            return f"550 5.1.1 <{address}>: recipient refused"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failures = self.catcher.faults.data_failures
        if failures:
            code = failures.pop(0)
            self.catcher.data_refused += 1
            if code == 421:
                # Hang up once the reply is written, as a server shutting down does.
                transport = server.transport
                if transport is not None:
                    asyncio.get_running_loop().call_soon(transport.close)
                return "421 4.3.2 Service shutting down, try again later"
            return f"{code} 4.3.0 Temporary failure, try again later"
        caught = await self.catcher.record(envelope, session)
        return f"250 2.0.0 OK queued as {len(self.catcher.messages)}" + (
            f" ({caught.path.name})" if caught.path else ""
        )


class SmtpCatcher:
    """An SMTP server on ``host`` that keeps every message it accepts.

    ``tls_context`` (a server context) enables STARTTLS, or implicit TLS with
    ``implicit_tls=True``; ``require_starttls`` refuses mail sent in the clear.
    ``username``/``password`` require a login, offered over TLS only. Use as
    ``async with SmtpCatcher(...) as catcher:``; ``catcher.port`` is then bound.
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        outbox: Path | None = None,
        refuse_recipients: str | re.Pattern[str] | None = None,
        server_name: str = "claritycast-catcher",
    ) -> None:
        if (implicit_tls or require_starttls) and tls_context is None:
            raise ValueError("implicit_tls and require_starttls need a tls_context")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if username is not None and tls_context is None:
            raise ValueError("a login is only offered over TLS: give a tls_context")
        self.host = host
        self.port = port
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.require_starttls = require_starttls
        self.username = username
        self._password = password
        self.outbox = outbox
        self.server_name = server_name
        self.faults = _Faults()
        self.refuse_recipients(refuse_recipients)
        self.messages: list[CaughtMessage] = []
        self.data_refused = 0  # DATA commands answered by an injected fault
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._connections: set[SMTP] = set()

    # Fault injection.

    def refuse_recipients(self, pattern: str | re.Pattern[str] | None) -> None:
        """Answer 550 to every RCPT whose address matches ``pattern`` (None: accept all)."""
        self.faults.refuse = re.compile(pattern) if isinstance(pattern, str) else pattern

    def fail_next_data(self, count: int = 1, code: int = 451) -> None:
        """Answer the next ``count`` DATA commands with ``code`` (421 also hangs up)."""
        if code not in (421, 450, 451, 452):
            raise ValueError("inject a 4xx reply: 421, 450, 451 or 452")
        self.faults.data_failures.extend([code] * count)

    # Life cycle.

    async def start(self) -> None:
        """Listen; ``self.port`` is the bound port afterwards."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            host=self.host,
            port=self.port,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is None:
            return
        self._server.close()
        tasks = []
        for connection in self._connections:
            # Close the socket itself too: a STARTTLS handshake cut short leaves
            # aiosmtpd waiting on a TLS layer that never reports the loss.
            original = getattr(connection, "_original_transport", None)
            for transport in (connection.transport, original):
                if transport is not None:
                    transport.close()
            task = _task(connection)
            if task is not None:
                task.cancel()
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        self._connections.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # Internals.

    def _protocol(self) -> SMTP:
        # Forget connections that have ended (the demo runs for hours).
        self._connections = {c for c in self._connections if not _ended(c)}
        connection = SMTP(
            self._handler,
            hostname=self.server_name,
            tls_context=None if self.implicit_tls else self.tls_context,
            require_starttls=self.require_starttls,
            # Implicit TLS is encrypted from the first byte, which aiosmtpd
            # cannot see; a login is still refused in the clear (no context).
            auth_require_tls=not self.implicit_tls,
            authenticator=self._authenticate if self.username is not None else None,
            auth_exclude_mechanism=None if self.username is not None else ["LOGIN", "PLAIN"],
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(connection)
        return connection

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.username is None:
            return AuthResult(success=False, handled=False)
        assert self._password is not None
        ok = hmac.compare_digest(auth_data.login, self.username.encode()) and hmac.compare_digest(
            auth_data.password, self._password.encode()
        )
        return AuthResult(success=ok, auth_data=self.username if ok else None, handled=False)

    async def record(self, envelope: Envelope, session: Session) -> CaughtMessage:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        parsed = message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        path = None
        if self.outbox is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            path = self.outbox / "email" / f"{stamp}-{len(self.messages) + 1}.eml"
            await asyncio.to_thread(_write_atomically, path, data)
        caught = CaughtMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message=parsed,
            tls=self.implicit_tls or session.ssl is not None,
            user=session.auth_data if session.authenticated else None,
            path=path,
        )
        self.messages.append(caught)
        return caught


def _task(connection: SMTP) -> asyncio.Task[None] | None:
    """The task serving one connection (aiosmtpd keeps it only in a private field)."""
    task: asyncio.Task[None] | None = getattr(connection, "_handler_coroutine", None)
    return task


def _ended(connection: SMTP) -> bool:
    task = _task(connection)
    return task is not None and task.done()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a whole file or nothing, so a reader never sees half a message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)
