"""Stored snapshots → a chart: pygal draws the SVG, cairosvg and Pango turn it into a 2x PNG.

One house style for every chart: 800x450 CSS px (readable in Slack and in a
600 px email), a calm palette, the title and period at the top left, units on
the value axis and a zero baseline. A missing day is a gap in the line, never
zero, and a history still filling in says so ("12 of 30 days collected").

Labels of breakdowns (page URLs, referrers) come from visitors' browsers and
are untrusted: they are cleaned of control characters, shortened in the
middle, and only ever reach the SVG through ElementTree, which escapes them.
They come in every script: ``chart_text`` says which fonts draw them and how.

The SVG is trimmed for the one thing it is for, the PNG (``chart_png``):
pygal's tooltip data, its stylesheet once applied and the groups that only
carried a class are dropped; what is drawn does not change. A chart drawn
``interactive`` is for a web page instead: the same drawing, no PNG, and
pygal's tooltip data turned into a ``<title>`` on each point or bar, which a
browser shows on hover without pygal's script.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pygal
from pygal.etree import etree
from pygal.style import Style

from claritycast.reports import chart_svg_edits as svg_edits
from claritycast.reports import chart_text, series
from claritycast.reports.chart_css import flatten_plain_groups, inline_stylesheet
from claritycast.reports.chart_labels import (
    LABEL_MAX_CHARS,
    LABEL_PX,
    clean_label,
    fit_label,
    format_value,
    period_label,
    pygal_label_px,
    shorten_middle,
    value_ticks,
    x_majors,
)
from claritycast.reports.chart_png import svg_to_png
from claritycast.reports.chart_text import CSS_FONT_STACK, fit_text, text_width, wrap_text
from claritycast.reports.figures import format_day
from claritycast.reports.series import Point
from models.catalogue import Metric, Unit
from models.clarity import ClarityResponse

__all__ = [
    "LABEL_MAX_CHARS",
    "Chart", "bar_chart", "clean_label", "fit_label", "format_value", "line_chart",
    "period_label", "render_chart", "shorten_middle", "svg_to_png", "value_ticks",
]  # fmt: skip


WIDTH = 800
HEIGHT = 450
SCALE = chart_text.SCALE  # the PNG has this many pixels per CSS px
TOP_N = series.TOP_N
NO_DATA_TEXT = "No data stored yet for this period"

INK = svg_edits.INK
MUTED = "#616e7c"
GUIDE = "#e4e7eb"
ACCENT = "#2f6690"
WARNING = "#9a5b13"

MARGIN = 24
TITLE_PX = 20
SUBTITLE_PX = 14
NOTE_PX = 13
VALUE_PX = svg_edits.VALUE_PX
BAR_PITCH_MAX = 52
_AXIS_LABELS_PX = 25  # pygal's spacing plus one line of axis labels

HOUSE_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground=MUTED,
    foreground_strong=MUTED,
    foreground_subtle=GUIDE,
    font_family=CSS_FONT_STACK,
    label_font_size=LABEL_PX,
    major_label_font_size=LABEL_PX,
    value_font_size=VALUE_PX,
    title_font_size=TITLE_PX,
    no_data_font_size=18,
    guide_stroke_dasharray="none",
    major_guide_stroke_dasharray="none",
    guide_stroke_color=GUIDE,
    major_guide_stroke_color=GUIDE,
    opacity="0.9",
    opacity_hover="0.9",
    stroke_opacity="1",
    stroke_opacity_hover="1",
    stroke_width="2.5",
    stroke_width_hover="2.5",
    transition="0ms",
    colors=(ACCENT,),
)
BAR_STYLE = Style(**{**vars(HOUSE_STYLE), "stroke_width": "0", "stroke_width_hover": "0"})


class _StateFirst:
    """pygal's attribute look-up (the state's value first), without its cost.

    pygal's ``BaseGraph.__getattribute__`` reads ``self.state`` through
    itself twice for every attribute it returns, thousands a chart: about
    a tenth of drawing the SVG. Same answer, one Python call.
    """

    def __getattribute__(self, name: str) -> Any:
        if name[:2] != "__" and name != "state":
            state = object.__getattribute__(self, "__dict__").get("state")
            if state is not None and name in state.__dict__:
                return state.__dict__[name]
        return object.__getattribute__(self, name)


class Line(_StateFirst, pygal.Line):
    """Named as pygal's: the SVG's classes come from the name (``line-graph``)."""


class HorizontalBar(_StateFirst, pygal.HorizontalBar):
    """Named as pygal's: the SVG's classes come from the name (``horizontalbar-graph``)."""


@dataclass(frozen=True)
class Chart:
    """A rendered chart; ``width``/``height`` are CSS px, the PNG has ``SCALE`` times as many."""

    title: str
    subtitle: str
    alt_text: str
    svg: bytes
    png: bytes
    width: int
    height: int


# --- drawing -----------------------------------------------------------------------------------


def _heading_lines(title: str, subtitle: str, note: str | None) -> list[tuple[str, int, str, str]]:
    """(text, size, weight, colour) of each line at the top of the chart."""
    width = WIDTH - 2 * MARGIN
    lines = [(fit_text(title, TITLE_PX, width, bold=True), TITLE_PX, "bold", INK)]
    if subtitle:
        lines.append((fit_text(subtitle, SUBTITLE_PX, width), SUBTITLE_PX, "normal", MUTED))
    if note:
        for line in wrap_text(clean_label(note), NOTE_PX, width, max_lines=2):
            lines.append((line, NOTE_PX, "normal", WARNING))
    return lines


def _heading_height(lines: list[tuple[str, int, str, str]]) -> int:
    return MARGIN + sum(round(size * 1.45) for _, size, _, _ in lines) + 6


def _finish_svg(
    title: str,
    alt_text: str,
    lines: list[tuple[str, int, str, str]],
    *,
    bars: bool,
    empty: bool,
    interactive: bool = False,
) -> Callable[[Any], Any]:
    """An XML filter: drop scripts and comments, add the heading, title and description."""

    def finish(root: Any) -> Any:
        if empty:
            svg_edits.drop_axes(root)
        elif bars:
            svg_edits.place_bar_values(root)
        else:
            svg_edits.drop_day_lines(root)
        if interactive:
            svg_edits.title_points(root)
            root.set("role", "img")
            root.set("aria-label", alt_text)
        svg_edits.drop_interactive_parts(root)
        for child in root:
            if str(child.tag).endswith("title"):
                child.text = title
                description = etree.Element("desc")
                description.text = alt_text
                root.insert(list(root).index(child) + 1, description)
                break
        heading = etree.SubElement(root, "g", {"class": "heading"})
        baseline = MARGIN
        for text, size, weight, colour in lines:
            baseline += round(size * (1.45 if baseline > MARGIN else 1.0))
            node = etree.SubElement(
                heading,
                "text",
                {
                    "x": str(MARGIN),
                    "y": str(baseline),
                    "style": (
                        f"font-family:{CSS_FONT_STACK};font-size:{size}px;"
                        f"font-weight:{weight};fill:{colour}"
                    ),
                },
            )
            node.text = text
        inline_stylesheet(root)
        flatten_plain_groups(root)
        return root

    return finish


def _config(unit: Unit, ticks: list[float], top_px: int, style: Style) -> dict[str, Any]:
    """Options shared by every chart."""
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "explicit_size": True,
        "style": style,
        "show_legend": False,
        "js": [],
        "margin": MARGIN,
        "margin_top": top_px,
        "spacing": 12,
        "range": (ticks[0], ticks[-1]),
        "y_labels": ticks,
        "value_formatter": functools.partial(format_value, unit),
        "truncate_label": -1,
        "no_data_text": NO_DATA_TEXT,
        "print_zeroes": True,
    }


def _to_chart(
    graph: Any,
    title: str,
    subtitle: str,
    alt_text: str,
    lines: list[tuple[str, int, str, str]],
    *,
    bars: bool,
    empty: bool,
    interactive: bool,
) -> Chart:
    """The chart; an interactive one (for a page) has no PNG."""
    graph.add_xml_filter(
        _finish_svg(title, alt_text, lines, bars=bars, empty=empty, interactive=interactive)
    )
    svg: bytes = graph.render()
    png = b"" if interactive else svg_to_png(svg)
    return Chart(title, subtitle, alt_text, svg, png, WIDTH, HEIGHT)


def _alt_context(title: str, subtitle: str, note: str | None) -> str:
    context = ", ".join(part for part in (title, *subtitle.split(" · ")) if part)
    return f"{context}. {clean_label(note)}." if note else f"{context}."


def line_chart(
    metric: Metric,
    points: list[Point],
    *,
    title: str | None = None,
    subtitle: str = "",
    note: str | None = None,
    interactive: bool = False,
) -> Chart:
    """A daily series as a line; a ``None`` value breaks the line instead of dropping to 0."""
    title, subtitle = clean_label(title or metric.title), subtitle and clean_label(subtitle)
    values = [point.value for point in points]
    known = [(point.day, point.value) for point in points if point.value is not None]
    ticks = value_ticks(max((value for _, value in known), default=0.0), metric.unit)
    lines = _heading_lines(title, subtitle, note)
    graph = Line(
        pygal.Config(**_config(metric.unit, ticks, _heading_height(lines), HOUSE_STYLE)),
        allow_interruptions=True,
        x_labels=[format_day(point.day) for point in points],
        x_labels_major=x_majors([point.day for point in points]),
        show_minor_x_labels=False,
        show_x_guides=False,
        dots_size=3 if len(points) <= 31 else 2,
        stroke_style={"width": 2.5, "linejoin": "round", "linecap": "round"},
    )
    graph.add(metric.title, values)
    fmt = functools.partial(format_value, metric.unit)
    if known:
        latest_day, latest = known[-1]
        low_day, low = min(known, key=lambda item: item[1])
        high_day, high = max(known, key=lambda item: item[1])
        facts = f"Latest {fmt(latest)} on {format_day(latest_day)}"
        if len(known) > 1:
            facts += (
                f"; lowest {fmt(low)} on {format_day(low_day)}, "
                f"highest {fmt(high)} on {format_day(high_day)}"
            )
        facts += "."
    else:
        facts = f"{NO_DATA_TEXT}."
    alt_text = f"Line chart: {_alt_context(title, subtitle, note)} {facts}"
    return _to_chart(graph, title, subtitle, alt_text, lines, bars=False, empty=not known,
                     interactive=interactive)  # fmt: skip


def bar_chart(
    metric: Metric,
    ranked: list[tuple[str, float]],
    *,
    title: str | None = None,
    subtitle: str = "",
    note: str | None = None,
    interactive: bool = False,
) -> Chart:
    """A breakdown as horizontal bars, largest at the top, labels cleaned and shortened."""
    title, subtitle = clean_label(title or metric.title), subtitle and clean_label(subtitle)
    ranked = [(clean_label(label), value) for label, value in ranked[:TOP_N]]
    peak = max((value for _, value in ranked), default=0.0)
    ticks = value_ticks(peak, metric.unit, headroom=1.12)  # room to print the top value
    lines = _heading_lines(title, subtitle, note)
    config = _config(metric.unit, ticks, _heading_height(lines), BAR_STYLE)
    plot_height = HEIGHT - config["margin_top"] - MARGIN - _AXIS_LABELS_PX
    if ranked and len(ranked) * BAR_PITCH_MAX < plot_height:  # a few bars stay slim, at the top
        config["margin_bottom"] = MARGIN + plot_height - len(ranked) * BAR_PITCH_MAX
    labels = [fit_label(label) for label, _ in reversed(ranked)]
    if labels:  # room for labels wider than pygal reckons (CJK), so none runs off the left
        widest_px = max(text_width(label, LABEL_PX) for label in labels)
        reckoned_px = pygal_label_px(max(len(label) for label in labels))
        config["margin_left"] = MARGIN + max(0, math.ceil(widest_px - reckoned_px))
    graph = HorizontalBar(
        pygal.Config(**config),
        x_labels=labels,
        print_values=True,
        print_values_position="center",
        show_y_guides=False,
    )
    graph.add(metric.title, [value for _, value in reversed(ranked)])
    fmt = functools.partial(format_value, metric.unit)
    if ranked:
        top = "; ".join(
            f"{rank}. {shorten_middle(label, 100)} {fmt(value)}"
            for rank, (label, value) in enumerate(ranked[:3], start=1)
        )
        facts = f"Top {min(3, len(ranked))} of {len(ranked)}: {top}."
    else:
        facts = f"{NO_DATA_TEXT}."
    alt_text = f"Bar chart: {_alt_context(title, subtitle, note)} {facts}"
    return _to_chart(graph, title, subtitle, alt_text, lines, bars=True, empty=not ranked,
                     interactive=interactive)  # fmt: skip


def render_chart(
    metric: Metric,
    by_day: Mapping[date, ClarityResponse],
    first: date,
    last: date,
    *,
    project_label: str,
    note: str | None = None,
    values_total: int = 0,
    interactive: bool = False,
) -> Chart:
    """The chart of ``metric`` from ``first`` to ``last`` out of its group's stored days.

    A breakdown draws its top `TOP_N` and says how many values there were in
    all: those in the stored rows, or ``values_total`` when a very large
    answer was cut down for reading (`claritycast.clarity.big_answers`).
    ``interactive``: for a web page (hover titles, no PNG).
    """
    if last < first:
        raise ValueError(f"the period ends ({last}) before it starts ({first})")
    stored = {day: response for day, response in by_day.items() if first <= day <= last}
    days = (last - first).days + 1
    title = f"{metric.title} · {clean_label(project_label)}"
    parts = [period_label(first, last)]
    if metric.is_breakdown:
        everything = series.breakdown(metric, stored.values(), top_n=None)
        ranked = everything[:TOP_N]
        collected = len(stored)
        total = max(len(everything), values_total)
        if total > len(ranked):
            parts.append(f"top {len(ranked)} of {total:,}")
    else:
        points = series.daily_series(metric, stored, first, last)
        collected = sum(point.value is not None for point in points)
    if 0 < collected < days:
        parts.append(f"{collected} of {days} days collected")
    subtitle = " · ".join(parts)
    if metric.is_breakdown:
        return bar_chart(
            metric, ranked, title=title, subtitle=subtitle, note=note, interactive=interactive
        )
    return line_chart(
        metric, points, title=title, subtitle=subtitle, note=note, interactive=interactive
    )
