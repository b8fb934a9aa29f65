"""Report emails reach a real SMTP server over verified TLS, or fail with the right kind."""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme
from PIL import Image

from claritycast.delivery.email import EmailSender, translate_error
from claritycast.delivery.email_message import (
    build_message,
    display_size,
    make_message_id,
    parse_addresses,
)
from claritycast.errors import (
    ConfigError,
    DeliveryError,
    DeliveryPermanent,
    DeliveryRetryable,
    InputError,
)
from claritycast.runtime.ports import LOOPBACK, free_port
from claritycast.settings import load_settings
from claritycast.standins.smtp import CaughtMessage, SmtpCatcher
from models.report import Report

USER = "reports"
PASSWORD = "correct-Horse-battery-9"  # made up for the tests
WRONG_PASSWORD = "Wrong-pony-staple-4"
SENDER = "claritycast <reports@example.org>"
TO = ["ops@example.org"]


def _png(width: int = 1000, height: int = 500) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (250, 250, 250)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def png() -> bytes:
    return _png()


@pytest.fixture
def report(png: bytes) -> Report:
    return Report(
        title="Sessions · Shop",
        period_label="30 days to 28 Nov 2026",
        summary="Sessions rose 12% on the previous 30 days.\nMobile led the rise.",
        alt_text="Line chart of daily sessions, rising from 1,200 to 1,450",
        png=png,
        local_date="2026-11-28",
        note="Data incomplete: 2026-11-28 not yet stored",
    )


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The catcher's side of TLS: a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK, "localhost").configure_cert(context)
    return context


@pytest.fixture
async def starttls_catcher(server_tls: ssl.SSLContext) -> AsyncIterator[SmtpCatcher]:
    """A catcher that insists on STARTTLS and a login, as a real submission port does."""
    async with SmtpCatcher(
        tls_context=server_tls, require_starttls=True, username=USER, password=PASSWORD
    ) as catcher:
        yield catcher


def sender_for(port: int, **overrides: Any) -> EmailSender:
    values: dict[str, Any] = {
        "host": LOOPBACK,
        "port": port,
        "security": "starttls",
        "username": USER,
        "password": PASSWORD,
        "verify_certs": True,
        "ca_file": None,
        "timeout_s": 5.0,
        "sender": SENDER,
        "deadline_s": 5.0,
        "backoff_s": 0.05,
    }
    values.update(overrides)
    return EmailSender(**values)


def related_parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    """The HTML part and the image beside it in their multipart/related."""
    assert message.get_content_type() == "multipart/alternative"
    related = next(p for p in message.iter_parts() if p.get_content_type() == "multipart/related")
    assert isinstance(related, EmailMessage)
    parts = list(related.iter_parts())
    html = next(p for p in parts if p.get_content_type() == "text/html")
    image = next(p for p in parts if p.get_content_type() == "image/png")
    assert isinstance(html, EmailMessage)
    assert isinstance(image, EmailMessage)
    return html, image


def assert_report_email(caught: CaughtMessage, report: Report) -> None:
    message = caught.message
    html, image = related_parts(message)
    content_id = image["Content-ID"].strip("<>")
    body = html.get_content()
    assert f'src="cid:{content_id}"' in body
    assert image.get_content() == report.png
    assert image.get_content_disposition() == "inline"
    assert f'alt="{report.alt_text}"' in body
    assert 'width="500" height="250"' in body  # a 1000 x 500 PNG shown at 2x
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    assert report.title in text
    assert report.period_label in text
    assert report.note is not None and report.note in text
    assert "HTML version" in text
    assert message["Subject"] == "Sessions · Shop — 28 Nov 2026"
    assert message["Date"] is not None
    assert message["Message-ID"] is not None
    raw = caught.data.lower()
    assert b"data:" not in raw
    assert b"svg" not in raw


async def test_starttls_with_verified_certificate_delivers_the_report(
    starttls_catcher: SmtpCatcher, report: Report, ca_file: Path
) -> None:
    """Over STARTTLS with certificate checks on, the report arrives with its PNG by cid."""
    sender = sender_for(starttls_catcher.port, ca_file=ca_file)
    message_id = sender.message_id_for("conn-1/2026-11-28")

    receipt = await sender.send(TO, report, message_id=message_id)

    assert receipt.message_id == message_id
    assert receipt.recipients == tuple(TO)
    assert receipt.response.startswith("250 ")
    assert receipt.refused == ()
    [caught] = starttls_catcher.messages
    assert caught.tls
    assert caught.user == USER
    assert caught.rcpt_tos == tuple(TO)
    assert caught.mail_from == "reports@example.org"
    assert caught.message["Message-ID"] == message_id
    assert_report_email(caught, report)


async def test_implicit_tls_delivers_the_report(
    server_tls: ssl.SSLContext, report: Report, ca_file: Path
) -> None:
    """Implicit TLS (port 465 style) with certificate checks on works too."""
    async with SmtpCatcher(
        tls_context=server_tls, implicit_tls=True, username=USER, password=PASSWORD
    ) as catcher:
        sender = sender_for(catcher.port, security="tls", ca_file=ca_file)
        await sender.send(TO, report, message_id=make_message_id("k", "example.org"))
    [caught] = catcher.messages
    assert caught.tls
    assert caught.user == USER
    assert_report_email(caught, report)


@pytest.mark.parametrize(("security", "implicit"), [("starttls", False), ("tls", True)])
async def test_untrusted_certificate_is_a_permanent_configuration_error(
    server_tls: ssl.SSLContext, report: Report, security: str, implicit: bool
) -> None:
    """Checks on and the CA unknown: permanent ``tls_certificate``, nothing sent."""
    async with SmtpCatcher(tls_context=server_tls, implicit_tls=implicit) as catcher:
        sender = sender_for(catcher.port, security=security, username=None, password=None)
        with pytest.raises(DeliveryPermanent) as caught:
            await sender.send(TO, report, message_id="<a@example.org>")
    assert caught.value.reason == "tls_certificate"
    assert "CLARITYCAST_SMTP_CA_FILE" in str(caught.value)
    assert "configuration" in str(caught.value)
    assert catcher.messages == []


async def test_unchecked_certificate_only_when_configured(
    server_tls: ssl.SSLContext, report: Report
) -> None:
    """``verify_certs=False`` accepts the untrusted certificate (and only then)."""
    async with SmtpCatcher(tls_context=server_tls) as catcher:
        sender = sender_for(catcher.port, verify_certs=False, username=None, password=None)
        await sender.send(TO, report, message_id="<b@example.org>")
    assert len(catcher.messages) == 1
    assert catcher.messages[0].tls


async def test_server_without_starttls_is_refused_not_sent_in_the_clear(
    report: Report, ca_file: Path
) -> None:
    """security=starttls against a server that does not offer it: an error, no plain send."""
    async with SmtpCatcher() as catcher:
        sender = sender_for(catcher.port, ca_file=ca_file, username=None, password=None)
        with pytest.raises(DeliveryPermanent) as caught:
            await sender.send(TO, report, message_id="<c@example.org>")
    assert caught.value.reason == "starttls_unsupported"
    assert catcher.messages == []


async def test_plain_smtp_to_a_local_catcher(report: Report, tmp_path: Path) -> None:
    """security=none reaches a local catcher, which writes the message to its outbox."""
    async with SmtpCatcher(outbox=tmp_path / "outbox") as catcher:
        sender = sender_for(catcher.port, security="none", username=None, password=None)
        await sender.send(TO, report, message_id="<d@example.org>")
    [caught] = catcher.messages
    assert not caught.tls
    assert caught.path is not None
    assert caught.path.parent == tmp_path / "outbox" / "email"
    assert caught.path.suffix == ".eml"
    assert caught.path.read_bytes() == caught.data
    assert list(caught.path.parent.iterdir()) == [caught.path]


async def test_wrong_password_is_permanent_and_never_shown(
    starttls_catcher: SmtpCatcher,
    report: Report,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A refused login: permanent ``smtp_auth_failed``; the password is in no message or log."""
    caplog.set_level(logging.DEBUG)
    sender = sender_for(starttls_catcher.port, ca_file=ca_file, password=WRONG_PASSWORD)
    with pytest.raises(DeliveryPermanent) as caught:
        await sender.send(TO, report, message_id="<e@example.org>")
    assert caught.value.reason == "smtp_auth_failed"
    assert caught.value.__cause__ is None
    assert starttls_catcher.messages == []
    captured = capsys.readouterr()
    for text in (str(caught.value), repr(caught.value), caplog.text, captured.out, captured.err):
        assert WRONG_PASSWORD not in text
        assert PASSWORD not in text


async def test_unreachable_server_is_retryable_within_the_deadline(report: Report) -> None:
    """A closed port: retried with backoff, then ``DeliveryRetryable`` once the deadline passes."""
    sender = sender_for(free_port(), deadline_s=1.0, username=None, password=None)
    started = time.monotonic()
    with pytest.raises(DeliveryRetryable) as caught:
        await sender.send(TO, report, message_id="<f@example.org>")
    assert caught.value.reason == "unreachable"
    assert time.monotonic() - started < 2.0


async def test_silent_server_is_retryable_within_the_deadline(report: Report) -> None:
    """A server that accepts the connection but never greets: retryable, on time."""

    handlers: list[asyncio.Task[None]] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        writers.append(writer)
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(silent, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    sender = sender_for(port, timeout_s=0.2, deadline_s=0.7, username=None, password=None)
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryRetryable) as caught:
            await sender.send(TO, report, message_id="<l@example.org>")
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    assert caught.value.reason in ("unreachable", "timeout")
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("code", [451, 421])
async def test_transient_reply_to_data_is_retried(
    starttls_catcher: SmtpCatcher, report: Report, ca_file: Path, code: int
) -> None:
    """451 (or 421 and a hang-up) once, then success: sent once, same Message-ID."""
    starttls_catcher.fail_next_data(1, code)
    sender = sender_for(starttls_catcher.port, ca_file=ca_file)
    message_id = make_message_id("conn-2/2026-11-28", "example.org")

    receipt = await sender.send(TO, report, message_id=message_id)

    assert starttls_catcher.data_refused == 1
    [caught] = starttls_catcher.messages
    assert caught.message["Message-ID"] == receipt.message_id == message_id


async def test_transient_replies_past_the_deadline_are_retryable(
    starttls_catcher: SmtpCatcher, report: Report, ca_file: Path
) -> None:
    """A server that keeps answering 451: ``DeliveryRetryable`` after several attempts."""
    starttls_catcher.fail_next_data(1000, 451)
    sender = sender_for(starttls_catcher.port, ca_file=ca_file, deadline_s=0.8)
    with pytest.raises(DeliveryRetryable) as caught:
        await sender.send(TO, report, message_id="<g@example.org>")
    assert caught.value.reason == "smtp_temporary"
    assert "451" in str(caught.value)
    assert starttls_catcher.data_refused > 1
    assert starttls_catcher.messages == []


async def test_all_recipients_refused_is_permanent(
    starttls_catcher: SmtpCatcher, report: Report, ca_file: Path
) -> None:
    """Every RCPT refused with 5xx: permanent ``recipients_refused``, naming them."""
    starttls_catcher.refuse_recipients(r"@example\.org$")
    sender = sender_for(starttls_catcher.port, ca_file=ca_file)
    with pytest.raises(DeliveryPermanent) as caught:
        await sender.send(["a@example.org", "b@example.org"], report, message_id="<h@x.org>")
    assert caught.value.reason == "recipients_refused"
    assert "a@example.org" in str(caught.value)
    assert "b@example.org" in str(caught.value)
    assert starttls_catcher.messages == []


async def test_some_recipients_refused_is_sent_and_listed(
    starttls_catcher: SmtpCatcher, report: Report, ca_file: Path
) -> None:
    """Some refused, others accepted: the report is sent, the refused are in the receipt."""
    starttls_catcher.refuse_recipients(r"^nobody@")
    sender = sender_for(starttls_catcher.port, ca_file=ca_file)
    receipt = await sender.send(
        ["ops@example.org", "nobody@example.org"], report, message_id="<i@example.org>"
    )
    assert receipt.recipients == ("ops@example.org",)
    [(address, reply)] = receipt.refused
    assert address == "nobody@example.org"
    assert reply.startswith("550")
    [caught] = starttls_catcher.messages
    assert caught.rcpt_tos == ("ops@example.org",)


def test_hostile_text_is_escaped_in_html(png: bytes) -> None:
    """Titles, summaries and notes are text: ``<script>`` and ``&`` arrive escaped."""
    report = Report(
        title='<script>alert("t")</script> & Co',
        period_label="7 days <b>",
        summary="<img src=x onerror=alert(1)> & more\n<script>s</script>",
        alt_text='chart "quoted" <x>',
        png=png,
        local_date="2026-02-03",
        note="<i>note</i> & co",
    )
    message = build_message(report, sender=SENDER, recipients=TO, message_id="<j@example.org>")
    html, _ = related_parts(message)
    body = html.get_content()
    assert "<script" not in body
    assert "<img src=x" not in body
    assert "<i>note" not in body
    assert "<b>" not in body
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt; &amp; Co" in body
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in body
    assert 'alt="chart &quot;quoted&quot; &lt;x&gt;"' in body
    assert message["Subject"] == '<script>alert("t")</script> & Co — 3 Feb 2026'


def test_subject_never_spans_lines(png: bytes) -> None:
    """A title with new lines cannot inject a header."""
    report = Report("A\r\nBcc: x@evil.org", "p", "s", "alt", png, "2026-11-28")
    message = build_message(report, sender=SENDER, recipients=TO, message_id="<k@example.org>")
    assert message["Subject"] == "A Bcc: x@evil.org — 28 Nov 2026"
    assert message["Bcc"] is None


def test_image_is_shown_at_half_its_pixels_and_fits_the_layout() -> None:
    """The 2x PNG is displayed at half size, narrowed to the 600 px layout when wider."""
    assert display_size(_png(1000, 500)) == (500, 250)
    assert display_size(_png(1600, 900)) == (552, 310)
    with pytest.raises(ValueError, match="not a PNG"):
        display_size(b"<svg/>")


def test_parse_addresses_accepts_good_lists() -> None:
    """Commas, semicolons and new lines separate; spaces and duplicates are dropped."""
    assert parse_addresses("a@x.org, b@y.com") == ["a@x.org", "b@y.com"]
    assert parse_addresses(" a.b+tag@sub.x.org;\nops@localhost, A.B+tag@SUB.x.org ,") == [
        "a.b+tag@sub.x.org",
        "ops@localhost",
    ]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("a@x.org, not-an-address", "not-an-address"),
        ("Jane <jane@x.org>", "Jane <jane@x.org>"),
        ("a@@x.org", "a@@x.org"),
        ("a@x..org", "a@x..org"),
        (".a@x.org", ".a@x.org"),
        ("a@-x.org", "a@-x.org"),
        ("é@x.org", "é@x.org"),
    ],
)
def test_parse_addresses_refuses_malformed_with_one_line(text: str, bad: str) -> None:
    """The first malformed address is named in one line."""
    with pytest.raises(InputError) as caught:
        parse_addresses(text)
    message = str(caught.value)
    assert message.startswith(f"malformed address {bad!r}")
    assert "\n" not in message


def test_parse_addresses_refuses_an_empty_list() -> None:
    """Nothing but separators is an error, not an empty destination."""
    with pytest.raises(InputError, match="no email address"):
        parse_addresses(" , ;")


def test_message_id_is_stable_per_delivery() -> None:
    """The same delivery always gets the same Message-ID; another delivery another one."""
    first = make_message_id("conn-1/2026-11-28", "example.org")
    assert first == make_message_id("conn-1/2026-11-28", "example.org")
    assert first != make_message_id("conn-1/2026-11-29", "example.org")
    assert first.startswith("<") and first.endswith("@example.org>")
    sender = sender_for(25, security="none", username=None, password=None)
    assert sender.message_id_for("conn-1/2026-11-28") == first
    with pytest.raises(ValueError, match="domain"):
        make_message_id("k", "bad domain")


def test_from_settings_needs_a_host() -> None:
    """No SMTP host: a `ConfigError` naming CLARITYCAST_SMTP_HOST."""
    with pytest.raises(ConfigError) as caught:
        EmailSender.from_settings(load_settings())
    assert caught.value.setting == "CLARITYCAST_SMTP_HOST"


def test_from_settings_reads_the_smtp_settings(ca_file: Path) -> None:
    """Every smtp_* setting and the delivery deadline reach the sender."""
    settings = load_settings(
        smtp_host="mail.example.org",
        smtp_port=465,
        smtp_security="tls",
        smtp_username=USER,
        smtp_password=PASSWORD,
        smtp_ca_file=ca_file,
        smtp_timeout_s=7,
        smtp_from=SENDER,
        delivery_deadline_s=42,
    )
    sender = EmailSender.from_settings(settings)
    assert (sender.host, sender.port, sender.security) == ("mail.example.org", 465, "tls")
    assert (sender.username, sender.timeout_s, sender.deadline_s) == (USER, 7, 42)
    assert sender.envelope_sender == "reports@example.org"


def test_no_password_in_the_clear() -> None:
    """A login is never configured without TLS."""
    with pytest.raises(ConfigError) as caught:
        sender_for(25, security="none")
    assert caught.value.setting == "CLARITYCAST_SMTP_SECURITY"


def test_unreadable_ca_file_names_the_setting(tmp_path: Path) -> None:
    """A CA file that cannot be loaded is a `ConfigError` on CLARITYCAST_SMTP_CA_FILE."""
    with pytest.raises(ConfigError) as caught:
        sender_for(25, ca_file=tmp_path / "missing.pem")
    assert caught.value.setting == "CLARITYCAST_SMTP_CA_FILE"


def _library_error(kind: type[Exception]) -> Exception:
    if issubclass(kind, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPRecipientRefused):
        return kind(550, "no", "a@example.org")
    if issubclass(kind, aiosmtplib.SMTPRecipientsRefused):
        return kind([aiosmtplib.SMTPRecipientRefused(550, "no", "a@example.org")])
    if issubclass(kind, aiosmtplib.SMTPResponseException):
        return kind(554, "no")
    return kind("failed")


@pytest.mark.parametrize("name", aiosmtplib.errors.__all__)
def test_every_library_error_is_translated(name: str) -> None:
    """Each exception aiosmtplib defines maps into the delivery error tree."""
    error = translate_error(_library_error(getattr(aiosmtplib, name)), "mail.example.org:587")
    assert isinstance(error, DeliveryError)
    assert error.reason
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (aiosmtplib.SMTPDataError(451, "later"), DeliveryRetryable, "smtp_temporary"),
        (aiosmtplib.SMTPDataError(554, "spam"), DeliveryPermanent, "smtp_rejected"),
        (aiosmtplib.SMTPSenderRefused(553, "no", "x@y.org"), DeliveryPermanent, "smtp_rejected"),
        (aiosmtplib.SMTPAuthenticationError(535, "bad"), DeliveryPermanent, "smtp_auth_failed"),
        (aiosmtplib.SMTPAuthenticationError(454, "later"), DeliveryRetryable, "smtp_temporary"),
        (aiosmtplib.SMTPServerDisconnected("gone"), DeliveryRetryable, "disconnected"),
        (aiosmtplib.SMTPConnectTimeoutError("slow"), DeliveryRetryable, "unreachable"),
        (aiosmtplib.SMTPReadTimeoutError("slow"), DeliveryRetryable, "timeout"),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "busy", "a@b")]),
            DeliveryRetryable,
            "recipients_deferred",
        ),
    ],
)
def test_translation_by_reply_code(exc: Exception, kind: type[DeliveryError], reason: str) -> None:
    """4xx replies and lost connections are retryable; 5xx and bad logins are permanent."""
    error = translate_error(exc, "mail.example.org:587", "reports")
    assert type(error) is kind
    assert error.reason == reason
