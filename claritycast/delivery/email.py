"""Report emails: built with the standard library, sent with aiosmtplib.

A report is ``multipart/alternative``: a plain-text part, and an HTML part
inside ``multipart/related`` whose ``<img src="cid:…">`` points at the PNG
attached beside it. Mail clients block ``data:`` URIs and most cannot draw
SVG, so the chart is always that attached PNG, shown at half its pixel size
(it is drawn at 2x for sharp screens).

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
import email.policy
import hashlib
import html
import random
import re
import ssl
import struct
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Literal

import aiosmtplib

from claritycast.errors import (
    ConfigError,
    DeliveryError,
    DeliveryPermanent,
    DeliveryRetryable,
    InputError,
)
from claritycast.logs import get_logger
from claritycast.redact import redact, register_secret
from claritycast.reports.figures import format_day
from claritycast.settings import Settings
from models.report import Report

log = get_logger(__name__)

Security = Literal["starttls", "tls", "none"]

MAX_IMAGE_WIDTH_PX = 552  # the 600 px layout less its 24 px side padding
MAX_BACKOFF_S = 30.0
QUIT_TIMEOUT_S = 5.0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# RFC 5321/5322 dot-atom addresses, ASCII only (no SMTPUTF8), one-label domains
# allowed for local catchers (``ops@localhost``).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


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


# --- Addresses and identifiers ---------------------------------------------------------------


def is_address(text: str) -> bool:
    """True for a plain ASCII address such as ``ops@example.org``."""
    local, _, domain = text.rpartition("@")
    return (
        _ADDRESS.fullmatch(text) is not None
        and len(text) <= 254
        and len(local) <= 64
        and len(domain) <= 253
    )


def parse_addresses(text: str) -> list[str]:
    """Split ``"a@x.org, b@y.com"`` (commas, semicolons or new lines) into addresses.

    Duplicates (ignoring case) are dropped, order is kept. Raises `InputError`
    naming the first malformed address, so the CLI can print one clear line.
    """
    addresses: list[str] = []
    seen: set[str] = set()
    for item in re.split(r"[,;\r\n]", text):
        candidate = item.strip()
        if not candidate:
            continue
        if not is_address(candidate):
            raise InputError(f"malformed address {candidate!r} (expected name@example.org)")
        if candidate.lower() not in seen:
            seen.add(candidate.lower())
            addresses.append(candidate)
    if not addresses:
        raise InputError("no email address given (expected name@example.org, …)")
    return addresses


def make_message_id(delivery_key: str, domain: str) -> str:
    """A Message-ID derived from the delivery, so a retried send carries the same one.

    Receiving systems (and people) can then recognise a duplicate that a lost
    reply to DATA made us send twice.
    """
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    digest = hashlib.sha256(delivery_key.encode()).hexdigest()[:32]
    return f"<{digest}.claritycast@{domain.lower()}>"


def address_domain(sender: str) -> str:
    """The domain of a From value (``"claritycast <c@example.org>"`` → ``example.org``)."""
    return parseaddr(sender)[1].rpartition("@")[2] or "localhost"


# --- The message -----------------------------------------------------------------------------


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header (no image library)."""
    if len(png) < 24 or not png.startswith(_PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("the report's image is not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def display_size(png: bytes) -> tuple[int, int]:
    """Half the pixel size (the chart is 2x), narrowed to fit the layout."""
    width, height = png_size(png)
    shown_w, shown_h = max(1, width // 2), max(1, height // 2)
    if shown_w > MAX_IMAGE_WIDTH_PX:
        shown_h = max(1, round(shown_h * MAX_IMAGE_WIDTH_PX / shown_w))
        shown_w = MAX_IMAGE_WIDTH_PX
    return shown_w, shown_h


def subject_date(local_date: str) -> str:
    """``2026-11-28`` → ``28 Nov 2026``, the same in every locale."""
    day = date.fromisoformat(local_date)
    return f"{format_day(day)} {day.year}"


def _one_line(text: str) -> str:
    """Collapse white space, new lines included, so no header can be split."""
    return " ".join(text.split())


def build_message(
    report: Report,
    *,
    sender: str,
    recipients: list[str],
    message_id: str,
    now: datetime | None = None,
) -> EmailMessage:
    """The report as an email, ready to send: text, HTML and the PNG by Content-ID."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = f"{_one_line(report.title)} — {subject_date(report.local_date)}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    message["X-Auto-Response-Suppress"] = "All"

    local, _, domain = message_id.strip("<>").partition("@")
    content_id = f"<chart.{local}@{domain or 'localhost'}>"
    message.set_content(_text_body(report), cte="quoted-printable")
    message.add_alternative(
        _html_body(report, content_id.strip("<>")), subtype="html", cte="quoted-printable"
    )
    if not report.has_chart:  # a notice: words only
        return message
    html_part = message.get_payload()[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(
        report.png,
        maintype="image",
        subtype="png",
        cid=content_id,
        disposition="inline",
        filename=report.filename,
    )
    return message


def _text_body(report: Report) -> str:
    lines = [report.title, report.period_label, ""]
    if report.note:
        lines += [f"Note: {report.note}", ""]
    if report.summary.strip():
        lines += [report.summary.strip(), ""]
    if report.has_chart:
        lines += [
            f"Chart: {report.alt_text}",
            "The chart is in the HTML version of this email.",
            "",
        ]
    lines += [
        "-- ",
        "Sent by claritycast.",
    ]
    return "\n".join(lines) + "\n"


_FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif"


def _paragraphs(text: str) -> str:
    """Plain text as escaped paragraphs; single new lines become ``<br>``."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    style = "margin:0 0 12px 0;font-size:15px;line-height:22px;"
    return "".join(
        f'<p style="{style}">'
        + "<br>".join(html.escape(line.strip()) for line in block.splitlines())
        + "</p>"
        for block in blocks
    )


def _html_body(report: Report, content_id: str) -> str:
    e = html.escape
    chart = ""
    if report.has_chart:
        width, height = display_size(report.png)
        chart = (
            f'<tr><td style="padding:0 24px;">\n<img src="cid:{e(content_id)}" width="{width}" '
            f'height="{height}" alt="{e(report.alt_text)}" style="display:block;width:100%;'
            f'max-width:{width}px;height:auto;border:0;">\n</td></tr>'
        )
    note = ""
    if report.note:
        note = (
            '<tr><td style="padding:0 24px 16px 24px;">'
            '<div style="background:#fff8c5;border:1px solid #d4a72c;border-radius:4px;'
            'padding:10px 12px;font-size:14px;line-height:20px;color:#4d2d00;">'
            f"<strong>Note:</strong> {e(report.note)}</div></td></tr>"
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(report.title)}</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f7;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" \
style="background:#f4f5f7;">
<tr><td align="center" style="padding:24px 8px;">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" \
style="width:100%;max-width:600px;background:#ffffff;border:1px solid #d0d7de;\
border-radius:6px;font-family:{_FONT};color:#1f2328;">
<tr><td style="padding:24px 24px 4px 24px;">
<h1 style="margin:0;font-size:20px;line-height:26px;font-weight:600;">{e(report.title)}</h1>
</td></tr>
<tr><td style="padding:0 24px 16px 24px;font-size:14px;line-height:20px;color:#57606a;">\
{e(report.period_label)}</td></tr>
{note}
{chart}
<tr><td style="padding:16px 24px 12px 24px;">{_paragraphs(report.summary)}</td></tr>
</table>
<p style="margin:12px 0 0 0;font-family:{_FONT};font-size:12px;line-height:16px;\
color:#6e7781;">Sent by claritycast.</p>
</td></tr>
</table>
</body>
</html>
"""


# --- Sending ---------------------------------------------------------------------------------


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
    return redact(_one_line(f"{code} {message}"))


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
