"""The PNG path's parts: CSS turned into attributes, groups, the encoder, text without leaks."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import cairocffi
import pytest
from cairosvg.parser import Tree
from cairosvg.surface import PNGSurface
from PIL import Image, ImageChops

from claritycast.reports import chart_css, chart_png, chart_text

SVG_NS = "http://www.w3.org/2000/svg"


def svg(body: str, style: str = "") -> ET.Element:
    return ET.fromstring(  # noqa: S314 - our own test SVG
        f'<svg xmlns="{SVG_NS}" id="chart-1" width="10" height="10">'
        f"<defs><style>{style}</style></defs>{body}</svg>"
    )


def by_id(root: ET.Element, element_id: str) -> ET.Element:
    found = root.find(f".//*[@id='{element_id}']")
    assert found is not None
    return found


def test_the_cascade_is_kept_when_the_stylesheet_becomes_attributes() -> None:
    """Specificity, then the style attribute, then !important: as a browser would draw it."""
    root = svg(
        '<g class="graph"><rect id="plain" class="bar"/>'
        '<rect id="styled" class="bar" style="fill:blue"/>'
        '<rect id="forced" class="bar wide" style="fill:blue"/>'
        '<rect id="attribute" class="other" fill="green"/></g>',
        "#chart-1 .graph .bar{fill:red} .bar{fill:black;stroke:gray}"
        " .wide{fill:orange !important} .other{fill:purple}",
    )
    chart_css.inline_stylesheet(root)
    assert by_id(root, "plain").get("fill") == "red"  # the more specific rule, id included
    assert by_id(root, "plain").get("stroke") == "gray"
    assert by_id(root, "styled").get("fill") == "blue"
    assert by_id(root, "forced").get("fill") == "orange"
    assert by_id(root, "attribute").get("fill") == "purple"  # CSS beats presentation attributes
    assert root.get("id") == "chart-1"
    assert not [e for e in root.iter() if e.tag.endswith("style") or e.get("style")]


def test_only_groups_that_carry_nothing_but_a_class_are_flattened() -> None:
    """Their children move up in order; a group with a transform or an id stays."""
    root = svg(
        '<g class="a"><rect id="r1"/><g class="b"><rect id="r2"/></g><rect id="r3"/></g>'
        '<g id="kept"><rect id="r4"/></g><g transform="translate(1 1)"><rect id="r5"/></g>'
    )
    chart_css.flatten_plain_groups(root)
    assert [child.get("id") for child in root][1:4] == ["r1", "r2", "r3"]
    assert by_id(root, "kept")[0].get("id") == "r4"
    assert root[-1].get("transform") == "translate(1 1)"


@pytest.mark.parametrize(
    "size",
    [(300, 200), (7, 1), (5, chart_png.BAND_ROWS), (5, chart_png.BAND_ROWS + 1)],
    ids=["bands-and-a-part", "one-row", "one-band", "a-band-and-a-row"],
)
def test_the_png_holds_exactly_the_surface(size: tuple[int, int]) -> None:
    """Lossless: the same pixels as cairo's own PNG writer, in a file no bigger."""
    width, height = size
    surface = cairocffi.ImageSurface(cairocffi.FORMAT_ARGB32, width, height)
    context = cairocffi.Context(surface)
    context.set_source_rgb(1, 1, 1)
    context.paint()
    context.set_source_rgb(0.18, 0.4, 0.56)
    context.arc(width / 2, height / 2, min(width, height) / 3 + 1, 0, 6.3)
    context.fill()
    context.set_source_rgb(0.9, 0.1, 0.2)
    context.rectangle(0, height - 1, width / 2, 1)  # the last row, which has no next
    context.fill()
    ours = chart_png.encode_png(surface)
    theirs = io.BytesIO()
    surface.write_to_png(theirs)
    with Image.open(io.BytesIO(ours)) as mine, Image.open(theirs) as cairos:
        mine.load()
        assert (mine.format, mine.mode, mine.size) == ("PNG", "RGB", size)
        assert ImageChops.difference(mine, cairos.convert("RGB")).getbbox() is None
    with Image.open(io.BytesIO(ours)) as checked:
        checked.verify()  # chunk checksums
    assert len(ours) <= len(theirs.getvalue()) * 1.2


def resident_kib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_laying_out_text_leaks_nothing() -> None:
    """20,000 layouts leave the process no bigger (pangocffi's AttrList.insert leaked each)."""
    for _ in range(2_000):
        chart_text.text_width("Sessions · Shop", 13)
    before = resident_kib()
    for _ in range(20_000):
        chart_text.text_width("Sessions · Shop", 13)
    assert resident_kib() - before < 1024


SHAPES = (
    '<rect x="2.5" y="3.25" width="40.3" height="20.7" fill="#2f6690" fill-opacity="0.9"'
    ' stroke-width="0"/>'
    '<circle cx="60.4" cy="14.2" r="3" fill="#2f6690" stroke="#2f6690" stroke-width="1px"/>'
    '<circle cx="70.4" cy="14.2" r="4" fill="red" opacity="0.5"/>'
    '<path d="M5 40 L20 55 35 42 h10 v8" fill="none" stroke="#1f2933" stroke-width="2.5"'
    ' stroke-linejoin="round" stroke-linecap="round"/>'
    '<path d="M50 40 h30 v15 h-30 z M55 44 h10 v5 h-10 z" fill="green" fill-rule="evenodd"/>'
    '<polygon points="85,5 95,25 75,25" fill="orange" stroke="black" stroke-linejoin="bevel"/>'
    '<polyline points="5,65 15,75 25,62" fill="none" stroke="blue" stroke-dasharray="3 2"/>'
    '<line x1="30" y1="62" x2="60" y2="78" stroke="purple" stroke-linecap="square"/>'
    '<ellipse cx="80" cy="70" rx="10" ry="5" fill="teal" stroke="none"/>'
    '<rect x="40" y="60" width="8" height="8" transform="rotate(20 44 64)" fill="brown"/>'
    '<rect x="0" y="0" width="0" height="5" fill="black"/>'
    '<circle cx="50" cy="50" r="2" fill="black" visibility="hidden"/>'
)


def test_plain_shapes_are_drawn_as_cairosvg_draws_them() -> None:
    """Fills, strokes, joins, caps, opacity, even-odd, a dash and a transform: the same pixels.

    Shapes with a dash or a transform go to cairosvg whole; the others take
    the short way (``ChartSurface._draw_shape``), which must not show.
    """
    source = (
        f'<svg xmlns="{SVG_NS}" width="100" height="80" viewBox="0 0 100 80">'
        f'<g stroke="gray">{SHAPES}</g></svg>'
    ).encode()
    ours = chart_png.ChartSurface(
        Tree(bytestring=source), None, 96, scale=2, background_color="white"
    )
    theirs = PNGSurface(Tree(bytestring=source), None, 96, scale=2, background_color="white")
    with (
        Image.open(io.BytesIO(chart_png.encode_png(ours.cairo))) as mine,
        Image.open(io.BytesIO(chart_png.encode_png(theirs.cairo))) as cairosvgs,
    ):
        assert mine.size == (200, 160)
        assert len(mine.getcolors(maxcolors=100_000) or []) > 20  # the shapes were drawn
        assert ImageChops.difference(mine, cairosvgs).getbbox() is None
