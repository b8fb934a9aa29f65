"""What the render stage hands to a destination: one chart with its words.

Destinations (Slack, email) take a `Report` and know nothing of metrics,
snapshots or schedules, so each can be tested with a report built by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """A rendered chart, ready to send.

    ``png`` is the chart at 2x for sharp screens, or empty for a notice (words
    only, such as "the Clarity token was refused"); ``note`` is shown prominently
    when set (e.g. that some data is missing); ``local_date`` is the delivery's
    period in the organisation's timezone, as an ISO date.
    """

    title: str
    period_label: str
    summary: str
    alt_text: str
    png: bytes
    local_date: str
    note: str | None = None

    @property
    def has_chart(self) -> bool:
        return bool(self.png)

    @property
    def filename(self) -> str:
        """A file name for the chart image, safe on every destination."""
        stem = "".join(c if c.isalnum() else "-" for c in self.title.lower())
        stem = "-".join(part for part in stem.split("-") if part) or "chart"
        return f"{stem}-{self.local_date}.png"
