"""The PNG path's parts: CSS turned into attributes, groups, the encoder, text without leaks."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import cairocffi
import pytest
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
