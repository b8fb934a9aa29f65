"""Page titles in every script reach the PNG as letters, never as missing-glyph boxes.

Pango draws a character that no font has as a box with its code point in
hex. Three checks, from the renderer's word to the pixels:
- Pango found a glyph for every character of the text (its own count of
  unknown glyphs is zero);
- each character drawn alone is not the box Pango draws for it when its
  font lacks it (fallback turned off);
- the label in the chart's PNG is, pixel for pixel, that same rendering.
"""

from __future__ import annotations

import io
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cairocffi
import pangocffi
import pytest
from PIL import Image, ImageChops

from claritycast.reports import chart_text, charts
from claritycast.reports.chart_text import PANGO_FAMILIES
from models import catalogue
from tests.test_chart_pixels import compare

JAPANESE_TITLE = "トップページ｜商品一覧"  # noqa: RUF001 - the full-width bar is the point
PAGE_TITLES = {
    "latin": "Über uns · Café · Straße",
    "cyrillic": "Главная страница — Магазин",
    "greek": "Αρχική σελίδα | Κατάστημα",
    "arabic": "الصفحة الرئيسية - المتجر",
    "hebrew": "דף הבית - החנות",
    "japanese": JAPANESE_TITLE,
    "chinese": "首页 | 商店",
    "korean": "홈페이지 | 쇼핑몰",
    "emoji": "🛒 Sale 🎉 ❤️ 👨‍👩‍👧",
}
SIZE_PX = 13
CELL = (96, 64)  # device px around one character drawn alone


def unknown_glyphs(laid: pangocffi.Layout) -> int:
    return int(pangocffi.pango.pango_layout_get_unknown_glyphs_count(laid.pointer))


def canvas(size: tuple[int, int]) -> tuple[cairocffi.ImageSurface, cairocffi.Context]:
    """A white surface at the charts' scale, black ink."""
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, *size)
    context = cairocffi.Context(surface)
    context.set_source_rgb(1, 1, 1)
    context.paint()
    context.scale(chart_text.SCALE, chart_text.SCALE)
    context.set_source_rgb(0, 0, 0)
    return surface, context


def png_of(surface: cairocffi.ImageSurface) -> bytes:
    output = io.BytesIO()
    surface.write_to_png(output)
    return output.getvalue()


def drawn_alone(char: str, *, fallback: bool) -> tuple[bytes, int]:
    """One character as a chart draws it (or with fallback off), and Pango's unknown count."""
    surface, context = canvas(CELL)
    laid = chart_text.layout(context, char, SIZE_PX)
    if not fallback:
        no_fallback = pangocffi.Attribute.from_fallback(False, end_index=chart_text.WHOLE_TEXT)
        laid.attributes = chart_text.attribute_list(no_fallback)
    context.move_to(8, 4)
    chart_text.pangocairocffi.show_layout(context, laid)
    return png_of(surface), unknown_glyphs(laid)


def has_ink(png: bytes) -> bool:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("L").getextrema()[0] < 128


def drawable(text: str) -> list[str]:
    """Characters that draw something alone: not spaces, joiners or variation selectors."""
    return [c for c in text if not c.isspace() and unicodedata.category(c) not in {"Cf", "Mn"}]


@pytest.mark.parametrize("script", PAGE_TITLES)
def test_every_script_has_a_font(script: str) -> None:
    """Pango finds a glyph for every character of a page title in each script."""
    text = PAGE_TITLES[script]
    for bold in (False, True):
        laid = chart_text.layout(chart_text._measuring_context(), text, SIZE_PX, bold=bold)
        assert unknown_glyphs(laid) == 0, (script, bold)


@pytest.mark.parametrize("script", PAGE_TITLES)
def test_no_character_is_drawn_as_a_box(script: str) -> None:
    """Each character alone has ink, and is not the box drawn when its font lacks it."""
    boxes_seen = 0
    for char in drawable(PAGE_TITLES[script]):
        drawn, unknown = drawn_alone(char, fallback=True)
        assert unknown == 0 and has_ink(drawn), char
        box, box_unknown = drawn_alone(char, fallback=False)
        if box_unknown:  # the first font (DejaVu Sans) lacks it: this is its box
            boxes_seen += 1
            assert has_ink(box)
            assert not compare(box, drawn).same_picture, f"{char} (U+{ord(char):04X}) is a box"
        else:  # DejaVu Sans has it, and draws it itself
            assert compare(box, drawn).same_picture, char
    assert boxes_seen or script not in {"japanese", "chinese", "korean", "emoji"}


@dataclass(frozen=True)
class Placed:
    """A ``<text>`` of the SVG: where it is in CSS px of the whole chart, and how it is drawn."""

    x: float
    y: float
    anchor: str
    fill: str  # inherited, as SVG does
    families: str


def placed_texts(svg: bytes) -> dict[str, Placed]:
    """Each ``<text>``'s content → where and how it is drawn (pygal only translates groups)."""
    root = ET.fromstring(svg)  # noqa: S314 - our own SVG
    found: dict[str, Placed] = {}

    def walk(element: ET.Element, dx: float, dy: float, fill: str) -> None:
        move = re.fullmatch(r"translate\(([-\d.]+)[ ,]+([-\d.]+)\)", element.get("transform", ""))
        if move:
            dx, dy = dx + float(move.group(1)), dy + float(move.group(2))
        fill = element.get("fill", fill)
        if element.tag.endswith("}text") and element.text:
            found[element.text] = Placed(
                dx + float(element.get("x", 0)),
                dy + float(element.get("y", 0)),
                element.get("text-anchor", "start"),
                fill,
                chart_text.pango_families(element.get("font-family")),
            )
        for child in element:
            walk(child, dx, dy, fill)

    walk(root, 0.0, 0.0, "#000000")
    return found


def test_a_japanese_page_title_in_a_breakdown_is_drawn_in_letters() -> None:
    """The label's pixels in the chart PNG are the rendering checked above, with no box in it."""
    pages = catalogue.get("top_pages_by_sessions")
    chart = charts.bar_chart(pages, [(JAPANESE_TITLE, 1800.0), ("https://shop.example/", 900.0)])
    label = placed_texts(chart.svg)[JAPANESE_TITLE]
    assert (label.anchor, label.families) == ("end", PANGO_FAMILIES)
    x, y = label.x, label.y

    surface, context = canvas((2 * charts.WIDTH, 2 * charts.HEIGHT))
    context.set_source_rgb(*(int(label.fill[i : i + 2], 16) / 255 for i in (1, 3, 5)))
    chart_text.draw_text(context, JAPANESE_TITLE, x, y, SIZE_PX, anchor="end")
    laid = chart_text.layout(context, JAPANESE_TITLE, SIZE_PX)
    assert unknown_glyphs(laid) == 0
    ink = laid.get_extents()[0]
    width, height = (pangocffi.units_to_double(v) for v in (ink.width, ink.height))
    top = y - pangocffi.units_to_double(laid.get_baseline()) + pangocffi.units_to_double(ink.y)
    box = tuple(round(2 * v) for v in (x - width - 2, top - 2, x + 1, top + height + 2))

    with (
        Image.open(io.BytesIO(chart.png)) as in_chart,
        Image.open(io.BytesIO(png_of(surface))) as alone,
    ):
        label_in_chart, label_alone = (
            in_chart.convert("RGB").crop(box),
            alone.convert("RGB").crop(box),
        )
    assert box[0] > 0  # on the canvas, not cut at its left edge
    assert label_in_chart.convert("L").getextrema()[0] < 160  # the label is there
    assert ImageChops.difference(label_in_chart, label_alone).getbbox() is None


def test_a_long_japanese_title_is_cut_in_the_middle_and_stays_on_the_canvas() -> None:
    """pygal reckons 0.6 em a character; a CJK label is cut to its width and given room."""
    title = "【公式】株式会社サンプル商事オンラインストア｜キッチン用品・調理器具・食器の通販サイト"  # noqa: RUF001
    label = charts.fit_label(title)
    assert "…" in label and label.startswith("【公式】") and label.endswith("通販サイト")
    assert chart_text.text_width(label, SIZE_PX) <= 0.6 * SIZE_PX * charts.LABEL_MAX_CHARS
    chart = charts.bar_chart(catalogue.get("top_pages_by_sessions"), [(title, 10.0), ("/", 5.0)])
    left = placed_texts(chart.svg)[label].x - chart_text.text_width(label, SIZE_PX)
    assert left >= charts.MARGIN - 1


@pytest.mark.parametrize("script", ["arabic", "hebrew"])
def test_right_to_left_titles_read_right_to_left(script: str) -> None:
    """The first letter is drawn rightmost, and Arabic letters are joined, not set apart."""
    text = PAGE_TITLES[script]
    laid = chart_text.layout(chart_text._measuring_context(), text, SIZE_PX)
    first, last = pangocffi.Rectangle(), pangocffi.Rectangle()
    pangocffi.pango.pango_layout_index_to_pos(laid.pointer, 0, first.pointer)
    last_index = len(text.encode()) - len(text[-1].encode())
    pangocffi.pango.pango_layout_index_to_pos(laid.pointer, last_index, last.pointer)
    assert first.x > last.x
    if script == "arabic":
        word = text.split()[0]
        apart = sum(chart_text.text_width(letter, SIZE_PX) for letter in word)
        assert chart_text.text_width(word, SIZE_PX) != apart


def test_joiners_survive_cleaning_and_direction_overrides_do_not() -> None:
    """An emoji family stays one picture; a right-to-left override is still removed."""
    family = "👨\u200d👩\u200d👧"
    assert charts.clean_label(f"Team {family}") == f"Team {family}"
    assert charts.clean_label("abc\u202edef\u2066") == "abcdef"
    together = chart_text.text_width(family, SIZE_PX)
    assert together < chart_text.text_width(family.replace("\u200d", ""), SIZE_PX)
