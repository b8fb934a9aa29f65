"""A report as an email: addresses checked, the message built with the standard library.

A report is ``multipart/alternative``: a plain-text part, and an HTML part
inside ``multipart/related`` whose ``<img src="cid:…">`` points at the PNG
attached beside it. Mail clients block ``data:`` URIs and most cannot draw
SVG, so the chart is always that attached PNG, shown at half its pixel size
(it is drawn at 2x for sharp screens). The Message-ID is derived from the
delivery key, so a report sent twice is recognisably the same.
"""

from __future__ import annotations

import email.policy
import hashlib
import html
import re
import struct
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from claritycast.errors import (
    InputError,
)
from claritycast.logs import get_logger
from claritycast.reports.figures import format_day
from models.report import Report

log = get_logger(__name__)


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


def one_line(text: str) -> str:
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
    message["Subject"] = f"{one_line(report.title)} — {subject_date(report.local_date)}"
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
