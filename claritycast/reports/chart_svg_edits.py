"""Edits to the SVG pygal draws, before the heading is added and the stylesheet inlined.

pygal draws for a browser with its JavaScript: values in the middle of bars,
a line at the first day, axes from 0 to 1 on an empty chart, tooltip data
as hidden elements. These edits make the drawing a report's: values where a
reader looks, no decoration a PNG cannot use, and (for the pages' inline
SVG) a plain ``<title>`` per point that any browser shows on hover.
"""

from __future__ import annotations

from typing import Any

from pygal.etree import etree

from claritycast.reports.chart_text import text_width

INK = "#1f2933"
VALUE_PX = 13


def classes(element: Any) -> list[str]:
    return str(element.get("class", "")).split()


def place_bar_values(root: Any) -> None:
    """Print each value just past its bar, or inside the bar's end when there is no room."""
    plot = next(g for g in root.iter("g") if classes(g) == ["plot"])
    plot_width = next(float(r.get("width")) for r in plot if classes(r) == ["background"])
    bars = [rect for rect in root.iter("rect") if "reactive" in classes(rect)]
    texts = [text for text in root.iter("text") if "value" in classes(text)]
    for rect, text in zip(bars, texts, strict=True):
        end = float(rect.get("x")) + float(rect.get("width"))
        room = plot_width - end - 6
        if text_width(text.text or "", VALUE_PX) <= room:
            text.set("x", f"{end + 6:.1f}")
            text.set("text-anchor", "start")
            text.set("style", f"fill:{INK}")
        else:
            text.set("x", f"{end - 6:.1f}")
            text.set("text-anchor", "end")
            text.set("style", "fill:#ffffff")


def drop_day_lines(root: Any) -> None:
    """Line charts have no vertical lines (pygal draws one at the first day, if labelled)."""
    for axis in list(root.iter("g")):
        if {"axis", "x"} <= set(classes(axis)):
            for parent in list(axis.iter()):
                for path in [child for child in parent if child.tag == "path"]:
                    parent.remove(path)


def drop_axes(root: Any) -> None:
    """An empty chart shows its message alone, not an axis from 0 to 1."""
    for parent in list(root.iter("g")):
        for axis in [child for child in parent if "axis" in classes(child)]:
            parent.remove(axis)


def drop_interactive_parts(root: Any) -> None:
    """Comments, scripts and what pygal writes for its JavaScript tooltips: nobody hovers a PNG.

    The tooltip data (``<desc>`` and ``<title>`` inside the plot) made more
    than half of a line chart's elements, and the hidden tooltip group cost
    a full-size transparent layer; the chart's own title and description
    stay.
    """
    for parent in list(root.iter()):
        for child in list(parent):
            tag = str(child.tag).rpartition("}")[2]
            if (
                child.tag is etree.Comment
                or tag == "script"
                or (tag == "desc" and parent is not root)
                or (tag == "title" and parent is not root and "reactive" not in classes(parent))
                or "tooltip-overlay" in classes(child)
            ):
                parent.remove(child)


def title_points(root: Any) -> None:
    """Give each point or bar a ``<title>`` ("Nov 12: 1,234") from pygal's tooltip data."""
    for group in list(root.iter("g")):
        found = {" ".join(classes(c)): c.text or "" for c in group if str(c.tag).endswith("desc")}
        shape = next((c for c in group if "reactive" in classes(c)), None)
        if shape is not None and "value" in found:
            label = found.get("x_label", "")
            etree.SubElement(shape, "title").text = (
                f"{label}: {found['value']}" if label else found["value"]
            )
