"""The PNG a person sees: each chart against a reference drawn before the rendering changed.

The references in ``tests/samples/charts/`` were drawn by the pipeline as it
was before the PNG path was sped up (commit 23b84d6: cairosvg drawing every
letter and writing the PNG itself). A new rendering passes when a person
would take it for the same picture: same size, a small mean difference, and
no pixel that a shift of two device pixels cannot explain — which catches a
changed word, a missing bar or a dropped day, and tolerates anti-aliasing.

To draw new references after a deliberate change of look, run
``.venv/bin/python -m tests.test_chart_pixels`` and look at every image
before committing it.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from claritycast.clarity.parse import parse_blocks
from claritycast.reports import charts
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile
from models import catalogue
from models.clarity import GROUPS_BY_NAME, ClarityResponse

REFERENCES = Path(__file__).with_name("samples") / "charts"
LAST = date(2026, 11, 28)
FIRST = LAST - timedelta(days=29)
MISSING = {FIRST + timedelta(days=offset) for offset in (3, 4, 17)}
FEW_LABELS = [
    ("https://shop.example/", 900.0),
    ("<script>alert('x')</script>", 880.0),
    ('Tom & "Jerry" \'s <b>page</b>', 500.0),
    ("https://shop.example/" + "deep/" * 12 + "checkout/step-2", 200.0),
]
NOTE = "Data incomplete: 2026-11-27 and 2026-11-28 not yet received from Clarity."

SHIFT_PX = 2  # device pixels a glyph edge may move (hinting, rounding)
TOLERANCE = 64  # of 255, per channel, beyond the neighbourhood's range
MAX_MEAN_DIFFERENCE = 2.0  # of 255, per channel, over the whole image
MAX_UNEXPLAINED_PX = 24


def stored(group: str) -> dict[date, ClarityResponse]:
    """What the store holds for a group: the simulator's days, three never pulled."""
    dimensions = GROUPS_BY_NAME[group].dimensions
    by_day = {}
    for offset in range(30):
        day = FIRST + timedelta(days=offset)
        if day not in MISSING:
            end = datetime.combine(day + timedelta(days=1), time(), UTC)
            raw = build_response(Profile("shop"), end - timedelta(hours=24), end, list(dimensions))
            by_day[day] = parse_blocks(raw, dimensions)
    return by_day


def line_with_gaps(label: str = "Shop") -> charts.Chart:
    sessions = catalogue.get("sessions")
    return charts.render_chart(sessions, stored("overall"), FIRST, LAST, project_label=label)


def breakdown_bars() -> charts.Chart:
    pages = catalogue.get("top_pages_by_sessions")
    return charts.render_chart(pages, stored("url"), FIRST, LAST, project_label="Shop")


def no_data() -> charts.Chart:
    return charts.render_chart(catalogue.get("sessions"), {}, FIRST, LAST, project_label="Shop")


def few_bars_with_a_note(labels: list[tuple[str, float]] = FEW_LABELS) -> charts.Chart:
    pages = catalogue.get("top_pages_by_sessions")
    return charts.bar_chart(pages, labels, title="Top pages · Shop", subtitle="7 days", note=NOTE)


CASES: dict[str, Callable[[], charts.Chart]] = {
    "line_gaps": line_with_gaps,
    "bars": breakdown_bars,
    "empty": no_data,
    "bars_note": few_bars_with_a_note,
}


@dataclass(frozen=True)
class Difference:
    """How far one rendering is from another, as a person comparing them would judge."""

    mean: float
    unexplained_px: int

    @property
    def same_picture(self) -> bool:
        return self.mean <= MAX_MEAN_DIFFERENCE and self.unexplained_px <= MAX_UNEXPLAINED_PX


def _unexplained(expected: Image.Image, actual: Image.Image) -> Image.Image:
    """Pixels of ``actual`` outside the range ``expected`` has within ``SHIFT_PX`` of them."""
    window = 2 * SHIFT_PX + 1
    low = expected.filter(ImageFilter.MinFilter(window))
    high = expected.filter(ImageFilter.MaxFilter(window))
    beyond = ImageChops.lighter(ImageChops.subtract(low, actual), ImageChops.subtract(actual, high))
    red, green, blue = beyond.split()
    worst = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return worst.point(lambda value: 255 if value > TOLERANCE else 0)


def compare(expected_png: bytes, actual_png: bytes) -> Difference:
    """Both ways round, so a mark that appeared and a mark that vanished both count."""
    with Image.open(io.BytesIO(expected_png)) as before, Image.open(io.BytesIO(actual_png)) as now:
        assert now.size == before.size
        expected, actual = before.convert("RGB"), now.convert("RGB")
    mean = sum(ImageStat.Stat(ImageChops.difference(expected, actual)).mean) / 3
    both = ImageChops.lighter(_unexplained(expected, actual), _unexplained(actual, expected))
    return Difference(round(mean, 3), both.histogram()[255])


@pytest.mark.parametrize("name", CASES)
def test_the_chart_looks_as_it_did(name: str) -> None:
    """Same size, same picture: every title, label, bar, dot and gap where it was."""
    chart = CASES[name]()
    with Image.open(io.BytesIO(chart.png)) as image:
        assert image.format == "PNG"
        assert image.size == (charts.SCALE * chart.width, charts.SCALE * chart.height)
    difference = compare((REFERENCES / f"{name}.png").read_bytes(), chart.png)
    assert difference.same_picture, difference


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("line_gaps", lambda: line_with_gaps(label="Shoe")),
        ("bars_note", lambda: few_bars_with_a_note(FEW_LABELS[:-1])),
        ("line_gaps", no_data),
    ],
    ids=["one-letter-of-the-title", "one-bar-missing", "the-series-missing"],
)
def test_the_comparison_sees_a_changed_chart(
    name: str, changed: Callable[[], charts.Chart]
) -> None:
    """The comparison is not blind: a changed title, a missing bar or series all fail it."""
    difference = compare((REFERENCES / f"{name}.png").read_bytes(), changed().png)
    assert not difference.same_picture, difference


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
