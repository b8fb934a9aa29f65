"""Text in charts: the fonts that draw every script, and Pango to measure and draw it.

Page titles, URLs and referrers come from visitors in any script. Each
string is laid out by Pango, which takes every character from the first
font in ``FONT_FAMILIES`` that has it, joins Arabic letters, and orders
right-to-left runs — none of which cairo's toy text API (what cairosvg
uses) does: it draws a box for a character its one font lacks, and Arabic
and Hebrew letters one by one, left to right.

- DejaVu Sans (Latin, Greek, Cyrillic, Arabic, Hebrew) is shipped in
  ``claritycast/fonts``, so a machine without fonts draws the same chart.
- Noto Sans CJK (Japanese, Chinese, Korean) and Noto Color Emoji come from
  the system: Debian's ``fonts-noto-cjk`` and ``fonts-noto-color-emoji``,
  which ``deploy/Dockerfile`` and ``.ci/run`` install. Without them those
  characters are boxes, and the chart still renders.
- Noto Color Emoji is deliberately not in the list: Pango finds it for
  emoji by itself, and listed, it took the digits (keycap bases in its
  character map) from every number in the chart.

Kerning is off: letters keep the advances cairosvg gave them, so the charts
look as they did (``tests/test_chart_pixels.py``). Measuring and drawing
share one layout function, so a title cut to fit is cut where it is drawn.

cairo and Pango find fonts through fontconfig, which reads
``FONTCONFIG_FILE`` once, at its first use: unless the user set it, we
point it at a configuration that adds our fonts to the system's.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import escape

import cairocffi
import pangocairocffi
import pangocairocffi.ffi_build
import pangocffi

FONTS_DIR = Path(__file__).with_name("fonts")
FONT_FAMILIES = ("DejaVu Sans", "Noto Sans CJK JP")
CSS_FONT_STACK = ", ".join([*(f"'{family}'" for family in FONT_FAMILIES), "sans-serif"])
SCALE = 2  # device pixels per CSS px: text is measured as it will be drawn

Anchor = Literal["start", "middle", "end"]

# pangocairocffi 0.7 reads its C declarations from two files it leaves open;
# closed here, they no longer warn (ResourceWarning) when the process exits.
for _name in ("c_definitions_cairo_file", "c_definitions_pangocairo_file"):
    _declarations = getattr(pangocairocffi.ffi_build, _name, None)
    if _declarations is not None:
        _declarations.close()

_FONTS_CONF = """<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <include ignore_missing="yes">/usr/local/etc/fonts/fonts.conf</include>
  <include ignore_missing="yes">/opt/homebrew/etc/fonts/fonts.conf</include>
  <dir>{fonts_dir}</dir>
  <cachedir prefix="xdg">fontconfig</cachedir>
</fontconfig>
"""


def fontconfig_text(fonts_dir: Path = FONTS_DIR) -> str:
    """A fontconfig file: the system's configuration plus the shipped fonts."""
    return _FONTS_CONF.format(fonts_dir=escape(str(fonts_dir.resolve())))


def _write_fontconfig(text: str) -> Path:
    """Write the file once per user (its name is its content's hash), or per process."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    try:
        cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = cache_home / "claritycast" / f"fonts-{digest}.conf"
        if path.is_file() and path.read_text() == text:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_suffix(f".{os.getpid()}.tmp")
        draft.write_text(text)
        draft.replace(path)
        return path
    except (OSError, RuntimeError):  # no home, or a read-only one
        handle, name = tempfile.mkstemp(prefix="claritycast-fonts-", suffix=".conf")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        return Path(name)


@functools.cache
def use_shipped_fonts() -> str | None:
    """Point fontconfig at the shipped fonts, unless the user configured it.

    Must run before cairo or Pango first looks for a font in this process
    (fontconfig reads its configuration once); every measure and render
    calls it first. Returns the configuration file in use, or None when the
    user's own is kept.
    """
    if "FONTCONFIG_FILE" in os.environ:
        return None
    path = _write_fontconfig(fontconfig_text())
    os.environ["FONTCONFIG_FILE"] = str(path)
    return str(path)


def pango_families(css_font_family: str | None) -> str:
    """A CSS ``font-family`` value as Pango's comma-separated family list."""
    families = [name.strip().strip("'\"") for name in (css_font_family or "").split(",")]
    return ",".join(name for name in families if name) or "sans-serif"


PANGO_FAMILIES = pango_families(CSS_FONT_STACK)


WHOLE_TEXT = pangocffi.pango.PANGO_ATTR_INDEX_TO_TEXT_END


def attribute_list(*attributes: pangocffi.Attribute) -> pangocffi.AttrList:
    """A new attribute list that owns ``attributes``, freed with the last layout using it.

    Filled through Pango's own call: pangocffi 0.14's ``AttrList.insert``
    adds a reference each time, so a list it fills is never freed (about
    5 KB a chart, measured).
    """
    listed = pangocffi.AttrList()
    for attribute in attributes:
        pangocffi.pango.pango_attr_list_insert(listed.pointer, attribute.pointer)
    return listed


@functools.lru_cache(maxsize=64)
def _font(families: str, size_px: float, bold: bool) -> pangocffi.FontDescription:
    """Shared read-only: Pango copies a description into each layout that uses it."""
    description = pangocffi.FontDescription()
    description.family = families
    description.set_absolute_size(size_px * pangocffi.units_from_double(1))
    description.weight = pangocffi.Weight.BOLD if bold else pangocffi.Weight.NORMAL
    return description


def layout(
    context: cairocffi.Context,
    text: str,
    size_px: float,
    *,
    bold: bool = False,
    families: str = PANGO_FAMILIES,
) -> pangocffi.Layout:
    """One line of ``text`` laid out for ``context``, in user units of ``size_px``.

    The text is set as plain text, never parsed as Pango markup.
    """
    use_shipped_fonts()
    laid = pangocairocffi.create_layout(context)
    laid.font_description = _font(families, size_px, bold)
    laid.attributes = attribute_list(
        pangocffi.Attribute.from_font_features("kern 0", end_index=WHOLE_TEXT)
    )
    laid.text = text
    return laid


def logical_width(laid: pangocffi.Layout) -> float:
    """The advance of a laid-out line, in the user units it was laid out in."""
    return pangocffi.units_to_double(laid.get_extents()[1].width)


def draw_text(
    context: cairocffi.Context,
    text: str,
    x: float,
    y: float,
    size_px: float,
    *,
    bold: bool = False,
    anchor: Anchor | str = "start",
    families: str = PANGO_FAMILIES,
) -> None:
    """Draw ``text`` with its baseline at ``y``, anchored at ``x`` as SVG's ``text-anchor`` says.

    In the context's current source (colour). ``start`` puts the text's
    origin at ``x``; ``middle`` and ``end`` align the middle or right edge
    of its ink, as cairosvg did, so right-aligned labels stay where they
    were. ``start`` is the left end whatever the script: a chart's text runs
    left to right, as a browser draws an SVG whose ``direction`` is not set.
    """
    laid = layout(context, text, size_px, bold=bold, families=families)
    if anchor in {"middle", "end"}:
        ink = laid.get_extents()[0]
        share = 0.5 if anchor == "middle" else 1.0
        x -= pangocffi.units_to_double(ink.x) + share * pangocffi.units_to_double(ink.width)
    context.move_to(x, y - pangocffi.units_to_double(laid.get_baseline()))
    pangocairocffi.show_layout(context, laid)


_measuring = threading.local()


def _measuring_context() -> cairocffi.Context:
    """One per thread (cairo contexts are not shared), at the scale charts are drawn."""
    context = getattr(_measuring, "context", None)
    if context is None:
        context = cairocffi.Context(cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, 1, 1))
        context.scale(SCALE, SCALE)
        _measuring.context = context
    return context


def text_width(text: str, size_px: float, *, bold: bool = False) -> float:
    """The width ``text`` is drawn at in the house fonts, in CSS px."""
    return logical_width(layout(_measuring_context(), text, size_px, bold=bold))


def fit_text(text: str, size_px: float, width_px: float, *, bold: bool = False) -> str:
    """``text``, cut at the end with an ellipsis if it is wider than ``width_px``."""
    if text_width(text, size_px, bold=bold) <= width_px:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(text[:middle].rstrip() + "…", size_px, bold=bold) <= width_px:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…"


def wrap_text(text: str, size_px: float, width_px: float, *, max_lines: int) -> list[str]:
    """``text`` broken between words into at most ``max_lines`` lines, the last one cut to fit."""
    lines: list[str] = []
    rest = text.split()
    while rest and len(lines) < max_lines - 1:
        count = 1
        while count < len(rest) and text_width(" ".join(rest[: count + 1]), size_px) <= width_px:
            count += 1
        lines.append(fit_text(" ".join(rest[:count]), size_px, width_px))
        rest = rest[count:]
    if rest:
        lines.append(fit_text(" ".join(rest), size_px, width_px))
    return lines
