"""Charts from stored snapshots: every metric renders, gaps stay gaps, labels stay text."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from PIL import Image

from claritycast.clarity.parse import parse_blocks
from claritycast.reports import chart_text, charts
from claritycast.reports.charts import (
    Chart,
    bar_chart,
    format_value,
    line_chart,
    render_chart,
    shorten_middle,
    value_ticks,
)
from claritycast.reports.figures import format_duration
from claritycast.reports.series import Point, breakdown, daily_series
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile
from models import catalogue
from models.catalogue import Unit
from models.clarity import GROUPS_BY_NAME, ClarityResponse

SVG = "{http://www.w3.org/2000/svg}"
LAST = date(2026, 11, 28)
FIRST = LAST - timedelta(days=29)
MISSING = {FIRST + timedelta(days=offset) for offset in (3, 4, 17)}
HOSTILE = [
    ("<script>alert('x')</script>", 900.0),
    ('Tom & "Jerry" \'s <b>page</b>', 500.0),
    ("tab\there\x00nul\x1besc\u202eevil", 300.0),
    ("https://shop.example/" + "deep/" * 12 + "checkout/step-2", 200.0),
    ("", 100.0),
]


def stored_days(group: str, days: set[date]) -> dict[date, ClarityResponse]:
    """What the store holds for a group: the simulator's answer, parsed, per local day."""
    dimensions = GROUPS_BY_NAME[group].dimensions
    by_day = {}
    for day in days:
        end = datetime.combine(day + timedelta(days=1), time(), UTC)
        raw = build_response(Profile("shop"), end - timedelta(hours=24), end, list(dimensions))
        by_day[day] = parse_blocks(raw, dimensions)
    return by_day


@pytest.fixture(scope="module")
def history() -> dict[str, dict[date, ClarityResponse]]:
    """30 days of every fetch group, with three days never stored."""
    days = {FIRST + timedelta(days=offset) for offset in range(30)} - MISSING
    return {group: stored_days(group, days) for group in GROUPS_BY_NAME}


@pytest.fixture(scope="module")
def rendered(history: dict[str, dict[date, ClarityResponse]]) -> dict[str, Chart]:
    return {
        metric.id: render_chart(metric, history[metric.group], FIRST, LAST, project_label="Shop")
        for metric in catalogue.METRICS
    }


def parse(svg: bytes) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output, parsed to check it


def svg_texts(svg: bytes) -> list[str]:
    """The text a reader sees, element by element, after XML parsing (so unescaped)."""
    return ["".join(node.itertext()) for node in parse(svg).iter(f"{SVG}text")]


def line_paths(svg: bytes) -> list[str]:
    return [
        node.get("d", "")
        for node in parse(svg).iter(f"{SVG}path")
        if "line" in node.get("class", "").split() and "reactive" in node.get("class", "")
    ]


@pytest.mark.parametrize("metric", catalogue.METRICS, ids=lambda metric: metric.id)
def test_every_metric_renders_from_stored_snapshots(
    metric: catalogue.Metric,
    rendered: dict[str, Chart],
    history: dict[str, dict[date, ClarityResponse]],
) -> None:
    """A 2x PNG, and an SVG carrying the title, period, gaps note and unit-formatted axis."""
    chart = rendered[metric.id]
    with Image.open(io.BytesIO(chart.png)) as image:
        assert image.format == "PNG"
        assert image.size == (2 * chart.width, 2 * chart.height) == (1600, 900)
    texts = svg_texts(chart.svg)
    assert chart.title == f"{metric.title} · Shop"
    assert chart.title in texts
    assert "30 days to 28 Nov 2026 · 27 of 30 days collected" in texts
    assert chart.alt_text.startswith(("Line chart: ", "Bar chart: "))
    assert f"{metric.title} · Shop, 30 days to 28 Nov 2026, 27 of 30 days collected." in (
        chart.alt_text
    )
    if metric.is_breakdown:
        ranked = breakdown(metric, history[metric.group].values())
        peak = ranked[0][1]
        for label, value in ranked[:3]:
            assert shorten_middle(label) in texts
            assert format_value(metric.unit, value) in texts
        ticks = value_ticks(peak, metric.unit, headroom=1.12)
    else:
        points = daily_series(metric, history[metric.group], FIRST, LAST)
        peak = max(point.value for point in points if point.value is not None)
        ticks = value_ticks(peak, metric.unit)
        assert len(line_paths(chart.svg)) == 3  # days 4-5 and 18 missing: three segments
    axis = [format_value(metric.unit, tick) for tick in ticks]
    assert set(axis) <= set(texts)
    marks = {Unit.SECONDS: "s", Unit.PERCENT: "%"}
    if metric.unit in marks:
        assert all(label.endswith(marks[metric.unit]) for label in axis)


def test_units_on_the_value_axis(rendered: dict[str, Chart]) -> None:
    """Thousands separators on counts, minutes and seconds, and a % sign."""
    assert {"0", "1,000", "2,000"} <= set(svg_texts(rendered["sessions"].svg))
    assert {"0s", "30s", "1m 00s"} <= set(svg_texts(rendered["active_time"].svg))
    assert {"0%", "20%", "40%", "60%"} <= set(svg_texts(rendered["scroll_depth"].svg))


def test_a_missing_day_is_a_gap_not_a_zero() -> None:
    """None breaks the line: one path per run of days, one dot per known day, no dot at 0."""
    values = [None, 40.0, None, 50.0, 55.0, None, 60.0, 61.0]
    points = [Point(date(2026, 11, 1) + timedelta(days=i), v) for i, v in enumerate(values)]
    chart = line_chart(catalogue.get("scroll_depth"), points)
    paths = line_paths(chart.svg)
    assert len(paths) == 2  # 4-5 Nov and 7-8 Nov; 2 Nov stands alone as a dot
    assert all(path.count("L") == 1 for path in paths)
    dots = [c for c in parse(chart.svg).iter(f"{SVG}circle") if "dot" in c.get("class", "")]
    assert len(dots) == 5
    assert "Latest 61% on 8 Nov; lowest 40% on 2 Nov, highest 61% on 8 Nov." in chart.alt_text


def test_a_history_filling_in_says_so(history: dict[str, dict[date, ClarityResponse]]) -> None:
    """Twelve stored days out of thirty are counted in the subtitle; a full one says nothing."""
    recent = {day: r for day, r in history["overall"].items() if day > LAST - timedelta(days=12)}
    sessions = catalogue.get("sessions")
    chart = render_chart(sessions, recent, FIRST, LAST, project_label="Shop")
    assert chart.subtitle == "30 days to 28 Nov 2026 · 12 of 30 days collected"
    assert chart.subtitle in svg_texts(chart.svg)
    week = render_chart(sessions, recent, LAST - timedelta(days=6), LAST, project_label="Shop")
    assert week.subtitle == "7 days to 28 Nov 2026"


def test_no_data_at_all_still_renders() -> None:
    """An empty state with its message, no axis, and an alt text that says so."""
    for metric_id in ("sessions", "top_pages_by_sessions"):
        chart = render_chart(catalogue.get(metric_id), {}, FIRST, LAST, project_label="Shop")
        with Image.open(io.BytesIO(chart.png)) as image:
            assert image.size == (1600, 900)
        texts = svg_texts(chart.svg)
        assert "No data stored yet for this period" in texts
        assert not {"0", "1"} & set(texts)
        assert chart.alt_text.endswith("No data stored yet for this period.")


def test_hostile_labels_are_text(tmp_path: Path) -> None:
    """Markup, ampersands, quotes and control characters in labels never become SVG."""
    chart = bar_chart(
        catalogue.get("top_pages_by_sessions"),
        HOSTILE,
        title='Pages · <Acme & "Co">\x00',
        subtitle="30 days to 28 Nov 2026\ud800",
        note="<b>Data incomplete</b> & more",
    )
    root = parse(chart.svg)
    assert not [node for node in root.iter() if node.tag in {f"{SVG}script", f"{SVG}b", "b"}]
    texts = svg_texts(chart.svg)
    assert "<script>alert('x')</script>" in texts
    assert 'Tom & "Jerry" \'s <b>page</b>' in texts
    assert "tab herenulescevil" in texts
    assert "https://shop.example/…/deep/checkout/step-2" in texts
    assert "(empty)" in texts
    assert 'Pages · <Acme & "Co">' in texts
    assert "30 days to 28 Nov 2026" in texts
    assert "<b>Data incomplete</b> & more" in texts
    assert "1. <script>alert('x')</script> 900; 2. Tom & " in chart.alt_text
    with Image.open(io.BytesIO(chart.png)) as image:
        assert image.size == (1600, 900)


def test_a_long_title_is_cut_to_fit_but_kept_whole_for_screen_readers() -> None:
    """The drawn title ends in an ellipsis within the width; the SVG <title> is whole."""
    title = "Sessions · " + " and ".join(["A project with a remarkably long name"] * 3)
    chart = line_chart(catalogue.get("sessions"), [Point(LAST, 5.0)], title=title)
    drawn = next(text for text in svg_texts(chart.svg) if text.startswith("Sessions · "))
    assert drawn.endswith("…")
    width = chart_text.text_width(drawn, charts.TITLE_PX, bold=True)
    assert width <= charts.WIDTH - 2 * charts.MARGIN
    assert parse(chart.svg).find(f"{SVG}title").text == title


def test_ninety_days_keep_date_labels_apart() -> None:
    """At most 8 dates under the axis, and the last day always among them."""
    points = [Point(LAST - timedelta(days=89 - i), float(i)) for i in range(90)]
    chart = line_chart(catalogue.get("sessions"), points)
    dates = [
        t for t in svg_texts(chart.svg) if t[:1].isdigit() and t.endswith(("Sep", "Oct", "Nov"))
    ]
    assert "28 Nov" in dates
    assert 4 <= len(dates) <= 8


@pytest.mark.parametrize(
    ("text", "max_chars", "expected"),
    [
        (
            "https://shop.example/a/b/c/checkout/step-2",
            42,
            "https://shop.example/a/b/c/checkout/step-2",
        ),
        (
            "https://shop.example/a/b/c/d/e/checkout/step-2",
            38,
            "https://shop.example/…/checkout/step-2",
        ),
        (
            "https://shop.example.com/search?q=<script>alert(1)</script>",
            46,
            "https://shop.example.com/search?q=<…)</script>",
        ),
        (
            "https://shop.example.com/cart/a/very/long-last-segment-here",
            36,
            "https://shop.example.com/cart/…-here",
        ),
        ("Samsung Internet for Android Beta Channel", 20, "Samsung In…a Channel"),
        ("short", 20, "short"),
    ],
)
def test_long_labels_are_shortened_in_the_middle(text: str, max_chars: int, expected: str) -> None:
    """URLs keep their host and last segments; other text keeps both ends."""
    shortened = shorten_middle(text, max_chars)
    assert shortened == expected
    assert len(shortened) <= max_chars


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        (Unit.COUNT, 1234567, "1,234,567"),
        (Unit.COUNT, 7, "7"),
        (Unit.COUNT, 2.5, "2.5"),
        (Unit.SECONDS, 45, "45s"),
        (Unit.SECONDS, 65, "1m 05s"),
        (Unit.SECONDS, 59.6, "1m 00s"),
        (Unit.SECONDS, 3725, "1h 02m"),
        (Unit.PERCENT, 45.25, "45.2%"),
        (Unit.PERCENT, 40.0, "40%"),
        (Unit.PAGES, 2.3417, "2.34"),
        (Unit.PAGES, 3.0, "3"),
    ],
)
def test_values_are_formatted_with_their_unit(unit: Unit, value: float, expected: str) -> None:
    """Counts with separators, durations in minutes and seconds, percentages with %."""
    assert format_value(unit, value) == expected


def test_value_axis_starts_at_zero_on_round_steps() -> None:
    """Zero baseline, round steps (minutes for durations), never past 100%."""
    assert value_ticks(2142, Unit.COUNT) == [0, 500, 1000, 1500, 2000, 2500]
    assert value_ticks(4, Unit.COUNT) == [0, 1, 2, 3, 4]
    assert value_ticks(85, Unit.SECONDS) == [0, 30, 60, 90]
    assert value_ticks(96, Unit.PERCENT, headroom=1.12) == [0, 25, 50, 75, 100]
    assert value_ticks(0, Unit.COUNT) == [0, 1]
    assert format_duration(90) == "1m 30s"


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    """A programmer error, said plainly."""
    with pytest.raises(ValueError, match="ends"):
        render_chart(catalogue.get("sessions"), {}, LAST, FIRST, project_label="Shop")


_MEASURE = """
import json, os, sys
from claritycast.reports import chart_text
used = chart_text.use_shipped_fonts()
sizes = [chart_text.text_width("Sessions · Shop", 100, bold=bold) for bold in (False, True)]
print(json.dumps({"used": used, "env": os.environ.get("FONTCONFIG_FILE"), "sizes": sizes}))
"""


def measure_in_a_fresh_process(tmp_path: Path, fontconfig_file: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FONTCONFIG_FILE"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    if fontconfig_file:
        env["FONTCONFIG_FILE"] = fontconfig_file
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE], env=env, capture_output=True, check=True, timeout=60
    )
    return json.loads(done.stdout)


def test_the_shipped_font_is_the_one_drawn(tmp_path: Path) -> None:
    """With no system font at all, text is still measured (and drawn) in DejaVu Sans.

    Fontconfig reads its configuration once per process, so each case runs in
    its own. "No fonts" proves the measurement tells fonts apart.
    """
    only_shipped = tmp_path / "only-shipped.conf"
    only_shipped.write_text(
        f"<fontconfig><dir>{chart_text.FONTS_DIR.resolve()}</dir>"
        f"<cachedir>{tmp_path / 'fc'}</cachedir></fontconfig>"
    )
    no_fonts = tmp_path / "no-fonts.conf"
    no_fonts.write_text(f"<fontconfig><cachedir>{tmp_path / 'fc'}</cachedir></fontconfig>")

    here = [chart_text.text_width("Sessions · Shop", 100, bold=bold) for bold in (False, True)]
    shipped = measure_in_a_fresh_process(tmp_path, str(only_shipped))
    missing = measure_in_a_fresh_process(tmp_path, str(no_fonts))
    assert shipped["used"] is None  # the user's FONTCONFIG_FILE is respected
    assert shipped["sizes"] == here
    assert here[1] > here[0]  # a real bold face
    assert missing["sizes"] != here


def test_fonts_are_added_to_the_system_configuration(tmp_path: Path) -> None:
    """Unless the user set FONTCONFIG_FILE, a config including the system's is written and used."""
    result = measure_in_a_fresh_process(tmp_path, None)
    written = Path(result["used"])
    assert result["env"] == result["used"]
    assert written.parent == tmp_path / "cache" / "claritycast"
    text = written.read_text()
    assert f"<dir>{chart_text.FONTS_DIR.resolve()}</dir>" in text
    assert '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>' in text
    assert result["sizes"] == [
        chart_text.text_width("Sessions · Shop", 100, bold=bold) for bold in (False, True)
    ]


def test_a_long_note_wraps_onto_two_lines() -> None:
    """A note about many missing days stays readable: two lines within the width, then cut."""
    days = ", ".join(f"2026-11-{day:02d}" for day in range(1, 29))
    note = f"Data incomplete: {days} not yet received from Clarity; the chart shows what is stored."
    chart = line_chart(catalogue.get("sessions"), [Point(LAST, 5.0)], note=note)
    drawn = [text for text in svg_texts(chart.svg) if "2026-11-" in text]
    assert len(drawn) == 2
    assert drawn[0].startswith("Data incomplete: 2026-11-01")
    assert drawn[1].endswith("…")
    for line in drawn:
        assert chart_text.text_width(line, charts.NOTE_PX) <= charts.WIDTH - 2 * charts.MARGIN
    assert note in chart.alt_text
