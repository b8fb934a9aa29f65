"""Report emails sent with aiosmtplib (the message is built in `email_message`).

Every aiosmtplib and ssl exception is translated here (`translate_error`)
into `DeliveryRetryable` or `DeliveryPermanent`. Transient failures are
retried with backoff inside ``deadline_s`` before `DeliveryRetryable` is
raised. The password is registered with the redactor, server text is
redacted, and no message or log line carries the password.

Operator notes: a ``tls_certificate`` pause means the server's certificate
cannot be verified: set ``CLARITYCAST_SMTP_CA_FILE`` to the CA that signed it
(or fix the server); ``starttls_unsupported`` means the server on that port
does not offer STARTTLS (try ``CLARITYCAST_SMTP_SECURITY=tls`` on port 465).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import ssl
import time
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

import aiosmtplib

from claritycast.delivery.email_message import (
    address_domain,
    build_message,
    is_address,
    make_message_id,
    one_line,
)
from claritycast.errors import (
    ConfigError,
    DeliveryError,
    DeliveryPermanent,
    DeliveryRetryable,
)
from claritycast.logs import get_logger
from claritycast.redact import redact, register_secret
from claritycast.settings import Settings
from models.report import Report

log = get_logger(__name__)

Security = Literal["starttls", "tls", "none"]
MAX_BACKOFF_S = 30.0
QUIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class EmailReceipt:
    """What the server said when it took a report.

    ``recipients`` are the addresses the server accepted; ``refused`` pairs
    each address it refused with its reply (``"550 5.1.1 no such user"``),
    when others were accepted and the report was therefore sent.
    """

    message_id: str
    recipients: tuple[str, ...]
    response: str
    refused: tuple[tuple[str, str], ...] = ()


class EmailSender:
    """Send reports through one SMTP server, retrying transient failures.

    Holds no connection between sends: reports are few and a fresh connection
    never finds a server-side timeout.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: str | None,
        verify_certs: bool,
        ca_file: Path | None,
        timeout_s: float,
        sender: str,
        deadline_s: float,
        backoff_s: float = 1.0,
    ) -> None:
        if security not in ("starttls", "tls", "none"):
            raise ConfigError("CLARITYCAST_SMTP_SECURITY", f"unknown value {security!r}")
        if security == "none" and username:
            raise ConfigError(
                "CLARITYCAST_SMTP_SECURITY",
                "a login is never sent without TLS: use starttls or tls",
            )
        if not is_address(parseaddr(sender)[1]):
            raise ConfigError("CLARITYCAST_SMTP_FROM", f"not an address: {sender!r}")
        self.host = host
        self.port = port
        self.security: Security = security
        self.username = username or None
        self._password = password
        self.timeout_s = timeout_s
        self.sender = sender
        self.envelope_sender = parseaddr(sender)[1]
        self.deadline_s = deadline_s
        self.backoff_s = backoff_s
        self._tls = _tls_context(verify_certs, ca_file) if security != "none" else None
        _register_password(username, password)
        if security != "none" and not verify_certs:
            log.warning("smtp_certificates_not_checked", host=host, port=port)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailSender:
        """The sender the settings describe; `ConfigError` when no server is set."""
        if not settings.smtp_host:
            raise ConfigError("CLARITYCAST_SMTP_HOST", "not set: email delivery needs a server")
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password.get_secret_value() if password is not None else None,
            verify_certs=settings.smtp_verify_certs,
            ca_file=settings.smtp_ca_file,
            timeout_s=settings.smtp_timeout_s,
            sender=settings.smtp_from,
            deadline_s=settings.delivery_deadline_s,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def message_id_for(self, delivery_key: str) -> str:
        """`make_message_id` on the From address's domain."""
        return make_message_id(delivery_key, address_domain(self.sender))

    async def send(self, recipients: list[str], report: Report, *, message_id: str) -> EmailReceipt:
        """Send one report; retries transient failures until ``deadline_s`` has passed.

        Raises `DeliveryPermanent` when retrying cannot help and
        `DeliveryRetryable` when the deadline ran out on a transient failure.
        """
        bad = [address for address in recipients if not is_address(address)]
        if not recipients or bad:
            problem = f"malformed address {bad[0]!r}" if bad else "no recipients"
            raise DeliveryPermanent("recipients_invalid", f"cannot send the report: {problem}")
        message = build_message(
            report, sender=self.sender, recipients=recipients, message_id=message_id
        )
        data = message.as_bytes()
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                receipt = await self._attempt(recipients, data, message_id, remaining)
            except DeliveryRetryable as error:
                delay = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                delay *= 0.5 + random.random() / 2  # noqa: S311 (jitter, not security)
                if time.monotonic() + delay >= deadline:
                    raise
                log.warning(
                    "email_retry",
                    server=self.where,
                    reason=error.reason,
                    error=str(error),
                    attempt=attempt,
                    wait_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            log.info(
                "email_sent",
                server=self.where,
                message_id=message_id,
                accepted=len(receipt.recipients),
                refused=len(receipt.refused),
                attempts=attempt,
            )
            return receipt

    async def _attempt(
        self, recipients: list[str], data: bytes, message_id: str, remaining_s: float
    ) -> EmailReceipt:
        """One connection: connect, secure, log in, send; every failure translated."""
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=False,  # done below, only after checking the server offers it
            tls_context=self._tls,
            timeout=max(0.001, min(self.timeout_s, remaining_s)),
        )
        try:
            try:
                async with asyncio.timeout(max(0.0, remaining_s)):
                    try:
                        refused, reply = await self._transaction(smtp, recipients, data)
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        raise translate_error(exc, self.where, self.username) from None
            except TimeoutError:
                raise DeliveryRetryable(
                    "timeout", f"the SMTP server {self.where} did not finish within the deadline"
                ) from None
            # The server has the message: nothing after this may fail the send.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit(timeout=min(self.timeout_s, QUIT_TIMEOUT_S))
        finally:
            if smtp.is_connected:
                smtp.close()
        accepted = tuple(address for address in recipients if address not in refused)
        return EmailReceipt(
            message_id=message_id,
            recipients=accepted,
            response=redact(f"250 {reply}".strip()),
            refused=tuple(
                (address, redact(f"{response.code} {response.message}"))
                for address, response in refused.items()
            ),
        )

    async def _transaction(
        self, smtp: aiosmtplib.SMTP, recipients: list[str], data: bytes
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        await smtp.connect()
        await smtp.ehlo()
        if self.security == "starttls":
            if not smtp.supports_extension("starttls"):
                raise DeliveryPermanent(
                    "starttls_unsupported",
                    f"the SMTP server {self.where} does not offer STARTTLS, so nothing was "
                    "sent in the clear: a configuration problem (CLARITYCAST_SMTP_SECURITY "
                    "and CLARITYCAST_SMTP_PORT)",
                )
            await smtp.starttls(server_hostname=self.host)
            await smtp.ehlo()  # RFC 3207: forget what was offered in the clear
        if self.username is not None:
            if not smtp.supports_extension("auth"):
                raise DeliveryPermanent(
                    "smtp_auth_unsupported",
                    f"the SMTP server {self.where} does not offer login, "
                    "but CLARITYCAST_SMTP_USERNAME is set",
                )
            await smtp.login(self.username, self._password or "")
        return await smtp.sendmail(self.envelope_sender, recipients, data)


def _tls_context(verify_certs: bool, ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; checks off only when explicitly configured."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "CLARITYCAST_SMTP_CA_FILE", f"cannot load {ca_file}: {exc.strerror or exc}"
            ) from None
    if not verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _register_password(username: str | None, password: str | None) -> None:
    """Mask the password, and its AUTH PLAIN/LOGIN encodings, wherever they appear."""
    if not password:
        return
    register_secret(password)
    register_secret(base64.b64encode(password.encode()).decode())
    plain = f"\0{username or ''}\0{password}".encode()
    register_secret(base64.b64encode(plain).decode())


# --- Errors ----------------------------------------------------------------------------------


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind ``exc``, when the failure was the TLS handshake."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reply(code: int, message: str) -> str:
    return redact(one_line(f"{code} {message}"))


def _by_code(code: int, what: str, where: str, reply: str) -> DeliveryError:
    if 400 <= code < 500:
        return DeliveryRetryable("smtp_temporary", f"{what} deferred by {where}: {reply}")
    return DeliveryPermanent("smtp_rejected", f"{what} refused by {where}: {reply}")


def translate_error(exc: BaseException, where: str, username: str | None = None) -> DeliveryError:
    """Map one aiosmtplib, ssl or socket exception to the delivery error tree.

    ``where`` is ``host:port``; messages quote the server's reply, redacted.
    """
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        detail = tls.verify_message or tls.reason or "verification failed"
        return DeliveryPermanent(
            "tls_certificate",
            f"the certificate of the SMTP server {where} could not be verified ({detail}): "
            "a configuration problem: set CLARITYCAST_SMTP_CA_FILE to the CA that signed it, "
            "or fix the server's certificate",
        )
    if tls is not None:
        return DeliveryPermanent(
            "tls_handshake",
            f"TLS with the SMTP server {where} failed ({tls.reason or type(tls).__name__}): "
            "check CLARITYCAST_SMTP_SECURITY matches the port (tls: 465, starttls: 587)",
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [(e.recipient, _reply(e.code, e.message)) for e in exc.recipients]
        listed = "; ".join(f"{address}: {reply}" for address, reply in replies)
        if replies and all(e.code >= 500 for e in exc.recipients):
            return DeliveryPermanent(
                "recipients_refused", f"{where} refused every recipient ({listed})"
            )
        return DeliveryRetryable(
            "recipients_deferred", f"{where} deferred the recipients ({listed})"
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        reply = _reply(exc.code, exc.message)
        if 400 <= exc.code < 500:
            return DeliveryRetryable("smtp_temporary", f"login deferred by {where}: {reply}")
        return DeliveryPermanent(
            "smtp_auth_failed",
            f"the SMTP server {where} refused the user name or password "
            f"for {username or '(none)'!r}: {reply}",
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _by_code(exc.code, f"sender {exc.sender!r}", where, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _by_code(
            exc.code, f"recipient {exc.recipient!r}", where, _reply(exc.code, exc.message)
        )
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _by_code(exc.code, "the message", where, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return _by_code(exc.code, "the connection", where, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return _by_code(exc.code, "EHLO", where, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, "a command", where, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return DeliveryRetryable("unreachable", f"no answer from the SMTP server {where} in time")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return DeliveryRetryable("timeout", f"the SMTP server {where} stopped answering")
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return DeliveryRetryable(
            "unreachable", f"cannot connect to the SMTP server {where}: {redact(exc.message)}"
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return DeliveryRetryable("disconnected", f"the SMTP server {where} closed the connection")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return DeliveryPermanent(
            "smtp_unsupported", f"the SMTP server {where} lacks a feature: {redact(str(exc))}"
        )
    if isinstance(exc, aiosmtplib.SMTPException) and "auth" in exc.message.lower():
        return DeliveryPermanent(
            "smtp_auth_unsupported",
            f"the SMTP server {where} does not offer login, but a user name is configured",
        )
    if isinstance(exc, OSError):
        return DeliveryRetryable(
            "unreachable", f"cannot reach the SMTP server {where} ({type(exc).__name__})"
        )
    return DeliveryRetryable(
        "smtp_error", f"the SMTP exchange with {where} failed: {redact(str(exc))}"
    )
