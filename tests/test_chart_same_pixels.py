"""The PNG path's speed-ups change no pixel: each chart against the one drawn before them.

The references in ``tests/samples/charts/before-speedup/`` were drawn by
the PNG path of commit 9164b9f, before the changes measured by
``bench.render`` (the PNG's rows packed a band at a time, pygal's
attribute look-up, plain shapes drawn without cairosvg's per-node steps). Unlike
``test_chart_pixels``, which accepts another renderer's anti-aliasing, this
asks for the same pixels: a speed-up should change none.

The tolerance is for what a person cannot see: a pixel may differ by up to
``TOLERANCE`` of 255 in a channel (about 3 %, under the step between two
neighbouring anti-aliasing shades of a glyph edge being noticed), and at
most ``MAX_CHANGED_PX`` pixels may differ by more (a stray edge pixel from a
rounding change in cairo). Measured when the references were drawn: the
changed code drew all four charts with a difference of 0 (no pixel at all).
The smallest visible changes measured (``test_a_visible_change_fails``: one
letter of the title, one bar 5 % shorter, one emoji fewer) change 350 to
3,300 pixels beyond the tolerance, so the bound is far below anything a
person would notice, and above nothing.

To draw the references again, after a deliberate change of look, run
``.venv/bin/python -m tests.test_chart_same_pixels`` and look at every
image before committing it.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pygal
import pytest
from PIL import Image, ImageChops

from claritycast.reports import charts
from models import catalogue
from tests.test_chart_pixels import FIRST, LAST, NOTE, stored

REFERENCES = Path(__file__).with_name("samples") / "charts" / "before-speedup"
TOLERANCE = 8  # of 255, per channel: invisible
MAX_CHANGED_PX = 16  # of 1,440,000, beyond the tolerance

CJK_LABELS = [
    ("トップページ｜春の新作コレクション特集・送料無料キャンペーン実施中", 1840.0),  # noqa: RUF001
    ("商品一覧 | 女装 | 连衣裙 | 夏季新款 | 全场包邮 | 限时折扣 | 立即购买", 1210.0),
    ("홈페이지 | 쇼핑몰 | 여름 신상품 컬렉션 | 무료 배송 이벤트 진행 중", 960.0),
    ("https://shop.example/ja/商品/カテゴリー/レディース/ワンピース/詳細", 420.0),
    ("よくある質問", 75.0),
]
SCRIPT_LABELS = [
    ("Über uns · Café · Straße", 900.0),
    ("Главная страница — Магазин", 610.0),
    ("Αρχική σελίδα | Κατάστημα", 480.0),
    ("الصفحة الرئيسية - المتجر", 330.0),
    ("דף הבית - החנות", 210.0),
    ("🛒 Sale 🎉 ❤️ 👨‍👩‍👧", 95.0),
]


def line_with_gaps(label: str = "Shop") -> charts.Chart:
    """30 days from stored snapshots, three of them never pulled: a line in three pieces."""
    sessions = catalogue.get("sessions")
    return charts.render_chart(sessions, stored("overall"), FIRST, LAST, project_label=label)


def url_bars() -> charts.Chart:
    pages = catalogue.get("top_pages_by_sessions")
    return charts.render_chart(pages, stored("url"), FIRST, LAST, project_label="Shop")


def cjk_bars(labels: list[tuple[str, float]] = CJK_LABELS) -> charts.Chart:
    """Long Japanese, Chinese and Korean page titles: cut to fit, a wider left margin."""
    titles = catalogue.get("top_pages_by_sessions")
    return charts.bar_chart(titles, labels, title="ページ · 商店", subtitle="7 days", note=NOTE)


def script_bars(labels: list[tuple[str, float]] = SCRIPT_LABELS) -> charts.Chart:
    """Latin, Cyrillic, Greek, Arabic and Hebrew (right to left) and emoji."""
    titles = catalogue.get("top_pages_by_sessions")
    return charts.bar_chart(titles, labels, title="Top pages · Shop", subtitle="7 days")


CASES: dict[str, Callable[[], charts.Chart]] = {
    "line_gaps": line_with_gaps,
    "bars_urls": url_bars,
    "bars_cjk": cjk_bars,
    "bars_scripts": script_bars,
}


@dataclass(frozen=True)
class Difference:
    """Pixels beyond ``TOLERANCE`` in any channel, and the largest channel difference."""

    changed_px: int
    largest: int

    @property
    def same_pixels(self) -> bool:
        return self.changed_px <= MAX_CHANGED_PX


def difference(expected_png: bytes, actual_png: bytes) -> Difference:
    with Image.open(io.BytesIO(expected_png)) as before, Image.open(io.BytesIO(actual_png)) as now:
        assert now.size == before.size
        red, green, blue = ImageChops.difference(before.convert("RGB"), now.convert("RGB")).split()
    worst = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    histogram = worst.histogram()
    largest = max((value for value, count in enumerate(histogram) if count), default=0)
    return Difference(sum(histogram[TOLERANCE + 1 :]), largest)


def reference(name: str) -> bytes:
    return (REFERENCES / f"{name}.png").read_bytes()


@pytest.mark.parametrize("name", CASES)
def test_the_chart_has_the_pixels_it_had(name: str) -> None:
    """Same size, and every pixel as it was (within what an eye cannot tell apart)."""
    chart = CASES[name]()
    with Image.open(io.BytesIO(chart.png)) as image:
        assert image.format == "PNG"
        assert image.size == (charts.SCALE * chart.width, charts.SCALE * chart.height)
    found = difference(reference(name), chart.png)
    assert found.same_pixels, found


def _one_bar_shorter() -> charts.Chart:
    """The last bar 5 % shorter: a few device pixels at its end, and its value (71, not 75)."""
    labels = [*CJK_LABELS[:-1], (CJK_LABELS[-1][0], CJK_LABELS[-1][1] * 0.95)]
    return cjk_bars(labels)


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("line_gaps", lambda: line_with_gaps(label="Shoe")),
        ("bars_cjk", _one_bar_shorter),
        ("bars_scripts", lambda: script_bars([*SCRIPT_LABELS[:-1], ("🛒 Sale 🎉 ❤️", 95.0)])),
        ("bars_urls", cjk_bars),
    ],
    ids=["one-letter-of-the-title", "one-bar-shorter", "one-emoji-fewer", "another-chart"],
)
def test_a_visible_change_fails(name: str, changed: Callable[[], charts.Chart]) -> None:
    """The comparison is not blind: a letter, a bar's length or one emoji all fail it."""
    found = difference(reference(name), changed().png)
    assert not found.same_pixels, found


def _without_id(svg: bytes) -> bytes:
    """pygal gives every chart a random id; nothing else in the SVG is random."""
    return re.sub(rb"chart-[0-9a-f-]{36}", b"chart", svg)


def test_pygal_s_own_classes_draw_the_same_svg(monkeypatch: pytest.MonkeyPatch) -> None:
    """The faster attribute look-up (``charts.Line``, ``charts.HorizontalBar``) changes no byte."""
    ours = {name: _without_id(draw().svg) for name, draw in CASES.items()}
    monkeypatch.setattr(charts, "Line", pygal.Line)
    monkeypatch.setattr(charts, "HorizontalBar", pygal.HorizontalBar)
    assert {name: _without_id(draw().svg) for name, draw in CASES.items()} == ours


def write_references() -> None:
    """Draw every reference with the current code (only after a deliberate change of look)."""
    REFERENCES.mkdir(parents=True, exist_ok=True)
    for name, draw in CASES.items():
        with Image.open(io.BytesIO(draw().png)) as image:
            image.convert("RGB").save(REFERENCES / f"{name}.png", optimize=True)
        print(REFERENCES / f"{name}.png")


if __name__ == "__main__":
    write_references()
    sys.exit(0)
