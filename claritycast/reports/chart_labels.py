"""The words and numbers on a chart: values with their units, day labels, axis ticks, labels.

Breakdown labels (page URLs, referrers) come from visitors' browsers and are
untrusted: `clean_label` drops control and direction-override characters
(keeping the joiners emoji and some scripts need), and labels are shortened
in the middle so both a URL's host and its end stay readable.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date

from claritycast.reports.chart_text import text_width
from claritycast.reports.figures import format_day, format_duration
from models.catalogue import Unit

LABEL_MAX_CHARS = 46
LABEL_PX = 13


def _trimmed(value: float, decimals: int) -> str:
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(unit: Unit, value: float) -> str:
    """A figure with its unit: ``1,234``, ``1m 05s``, ``45.2%``, ``2.35``."""
    if unit is Unit.SECONDS:
        return format_duration(value)
    if unit is Unit.PERCENT:
        return f"{_trimmed(value, 1)}%"
    if unit is Unit.PAGES:
        return _trimmed(value, 2)
    return f"{value:,.0f}" if abs(value) >= 10 or value == round(value) else _trimmed(value, 1)


def period_label(first: date, last: date) -> str:
    """``30 days to 28 Nov 2026`` (or just the day, for one day)."""
    days = (last - first).days + 1
    end = f"{format_day(last)} {last.year}"
    return end if days == 1 else f"{days} days to {end}"


_WHITESPACE = re.compile(r"\s+")


_DROPPED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
_JOINERS = {"\u200c", "\u200d"}  # zero-width non-joiner and joiner


def clean_label(text: str) -> str:
    """Visitor-supplied text made safe to draw: no control or direction-override characters.

    XML 1.0 cannot carry most control characters at all, and bidi overrides
    could make a label read differently from what it is. The two joiners
    stay: they hold an emoji sequence (👨‍👩‍👧) together and keep Persian
    letters apart, and can reorder nothing.
    """
    kept = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace()
        or char in _JOINERS
        or unicodedata.category(char) not in _DROPPED_CATEGORIES
    )
    return _WHITESPACE.sub(" ", kept).strip() or "(empty)"


def shorten_middle(text: str, max_chars: int = LABEL_MAX_CHARS) -> str:
    """Fit ``text`` in ``max_chars`` by cutting its middle, where labels differ least.

    A URL keeps its scheme and host and as many whole trailing path segments
    as fit: ``https://shop.example/…/checkout/step-2``.
    """
    if len(text) <= max_chars:
        return text
    if max_chars < 3:
        return text[:max_chars]
    match = re.match(r"[a-z][a-z0-9+.-]*://[^/]+/", text, re.IGNORECASE)
    if match and len(match.group()) + 3 <= max_chars:
        head = match.group()
        budget = max_chars - len(head) - 1
        path, mark, query = text[len(head) :].partition("?")
        segments = path.split("/")
        segments[-1] += mark + query
        tail = ""
        for segment in reversed(segments):
            candidate = f"/{segment}{tail}"
            if len(candidate) > budget:
                break
            tail = candidate
        if tail:
            return f"{head}…{tail}"
        return head + _cut_middle(text[len(head) :], max_chars - len(head))
    return _cut_middle(text, max_chars)


def pygal_label_px(chars: int) -> float:
    """The width pygal makes room for, for a label of ``chars`` characters (0.6 em each)."""
    return chars * 0.6 * LABEL_PX


def fit_label(text: str) -> str:
    """A breakdown label in ``LABEL_MAX_CHARS`` and in the width pygal gives that many.

    pygal counts characters; a Japanese or Chinese one is about twice as
    wide as it reckons, so such a label is cut further, in the middle.
    """
    label = shorten_middle(text)
    budget_px = pygal_label_px(LABEL_MAX_CHARS)
    while len(label) > 3 and (width := text_width(label, LABEL_PX)) > budget_px:
        shorter = min(len(label) - 1, int(len(label) * budget_px / width))
        label = shorten_middle(text, max(shorter, 3))
    return label


def _cut_middle(text: str, max_chars: int) -> str:
    keep = max_chars - 1
    front = (keep + 1) // 2
    return f"{text[:front]}…{text[len(text) - (keep - front) :]}"


# --- axes --------------------------------------------------------------------------------------

_SECOND_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def value_ticks(
    peak: float, unit: Unit, *, headroom: float = 1.0, intervals: int = 5
) -> list[float]:
    """Round ticks from zero to just above ``peak`` (times ``headroom``): ``[0, 500, …, 2000]``.

    Percentages stop at 100% when the data does.
    """
    peak = max(peak, 0.0)
    target = peak * headroom
    if target == 0:
        target = 1.0 if unit in {Unit.COUNT, Unit.PAGES} else 10.0
    raw = target / intervals
    if unit is Unit.SECONDS:
        step = float(next((s for s in _SECOND_STEPS if s >= raw), math.ceil(raw / 3600) * 3600))
    else:
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
        if unit is Unit.COUNT:
            step = max(step, 1.0)
    count = math.ceil(target / step - 1e-9)
    ticks = [round(i * step, 10) for i in range(count + 1)]
    if unit is Unit.PERCENT and peak <= 100 and ticks[-1] > 100:
        ticks = [tick for tick in ticks if tick < 100] + [100.0]
    return ticks


def x_majors(days: list[date]) -> list[str]:
    """At most about 8 date labels, counted back from the last day so it is always shown."""
    step = next((s for s in (1, 2, 7, 14, 28, 56, 91) if len(days) / s <= 8), 182)
    return [format_day(day) for day in days[::-1][::step]]
