"""A report as Slack shows it: Block Kit blocks and the plain fallback text.

Text we did not write (titles, summaries, notes, page names from Clarity) is
escaped the way Slack wants (``&``, ``<``, ``>``), so it can neither mention
``<!channel>`` nor hide a link, and is cut to Block Kit's limits without
splitting an ``&…;`` entity or losing a word of a long summary.
"""

from __future__ import annotations

from typing import Any

from models.report import Report

# Block Kit limits (characters).
HEADER_MAX = 150
SECTION_MAX = 3000
ALT_TEXT_MAX = 2000


def escape(text: str) -> str:
    """Slack's escaping: ``&``, ``<`` and ``>`` only, so untrusted text cannot
    mention ``<!channel>`` or hide a link behind ``<https://…|label>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """Shorten to ``limit`` characters without splitting an ``&…;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _split_line(line: str, limit: int) -> list[str]:
    """Cut one over-long line at spaces (or hard), never inside an ``&…;`` entity."""
    parts: list[str] = []
    while len(line) > limit:
        cut = line.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
            amp = line.rfind("&", 0, cut)
            if amp != -1 and ";" not in line[amp:cut]:
                cut = amp or limit
        parts.append(line[:cut])
        line = line[cut:].lstrip(" ")
    return [*parts, line] if line else parts


def _chunks(text: str, limit: int) -> list[str]:
    """Split escaped text into pieces of at most ``limit`` characters, at line ends."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines():
        for part in _split_line(line, limit) or [""]:
            candidate = f"{current}\n{part}" if current else part
            if len(candidate) <= limit:
                current = candidate
            else:
                pieces.append(current)
                current = part
    if current.strip():
        pieces.append(current)
    return [piece for piece in pieces if piece.strip()]


def build_blocks(report: Report, file_id: str) -> list[dict[str, Any]]:
    """The message: title, period, the note (if any), the summary, then the chart."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(escape(report.title or "Chart"), HEADER_MAX),
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(report.period_label)}]},
    ]
    if report.note:
        note = _cut(f":warning: {escape(report.note)}", SECTION_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": note}})
    # verbatim: no auto-linking of URLs or names in text we did not write.
    blocks.extend(
        {"type": "section", "text": {"type": "mrkdwn", "text": piece, "verbatim": True}}
        for piece in _chunks(escape(report.summary), SECTION_MAX)
    )
    if file_id:
        blocks.append(
            {
                "type": "image",
                "slack_file": {"id": file_id},
                "alt_text": _cut(report.alt_text or report.title or "chart", ALT_TEXT_MAX),
            }
        )
    return blocks


def fallback_text(report: Report) -> str:
    """The plain text of notifications and clients that cannot show blocks."""
    lines = [f"{report.title} · {report.period_label}"]
    if report.note:
        lines.append(f"⚠ {report.note}")
    if report.summary.strip():
        lines.append(report.summary.strip())
    return escape("\n".join(lines))
