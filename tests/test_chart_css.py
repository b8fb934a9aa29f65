"""Remembered matches: each kind of element matched once, with the attributes matching gives."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from claritycast.reports import chart_css, charts
from tests.test_chart_pixels import CASES as OLDER_CASES
from tests.test_chart_same_pixels import CASES

SVG_NS = "http://www.w3.org/2000/svg"


def svg(body: str, style: str) -> ET.Element:
    return ET.fromstring(  # noqa: S314 - our own test SVG
        f'<svg xmlns="{SVG_NS}" width="10" height="10"><defs><style>{style}</style></defs>'
        f"{body}</svg>"
    )


def attributes(root: ET.Element) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(element.tag, sorted(element.attrib.items())) for element in root.iter()]


def matched_one_by_one(stylesheet: str) -> chart_css._Stylesheet:
    """The stylesheet, told to match every element afresh, as before matches were remembered."""
    sheet = chart_css._Stylesheet(stylesheet)
    sheet.remembers = False
    return sheet


def chart_roots(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every test chart's SVG as pygal made it, before its stylesheet was inlined."""
    roots: list[Any] = []
    inline = chart_css.inline_stylesheet

    def keep(root: Any) -> None:
        roots.append(copy.deepcopy(root))
        inline(root)

    with monkeypatch.context() as patch:
        patch.setattr(charts, "inline_stylesheet", keep)
        for draw in [*CASES.values(), *OLDER_CASES.values()]:
            draw()
    return roots


def stylesheets(roots: list[Any]) -> set[str]:
    """The charts' stylesheets, as ``inline_stylesheet`` compiles them (the random id set aside)."""
    found = set()
    for root in roots:
        styles = [child for parent in root.iter() for child in parent]
        text = "\n".join(s.text or "" for s in styles if str(s.tag).endswith("style"))
        found.add(text.replace(f"#{root.get('id')}", "#chart"))
    return found


def test_remembered_matches_give_what_matching_every_element_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight charts' every attribute, with the memo cold, then warm, and with no memo at all."""
    roots = chart_roots(monkeypatch)
    chart_css._compiled.cache_clear()
    remembered = []
    for root in [*roots, *roots]:  # cold for the first chart of each kind, then warm
        inlined = copy.deepcopy(root)
        chart_css.inline_stylesheet(inlined)
        remembered.append(attributes(inlined))
    with monkeypatch.context() as patch:
        patch.setattr(chart_css, "_compiled", matched_one_by_one)
        one_by_one = []
        for root in [*roots, *roots]:
            inlined = copy.deepcopy(root)
            chart_css.inline_stylesheet(inlined)
            one_by_one.append(attributes(inlined))
    assert remembered == one_by_one


def test_pygal_s_stylesheets_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """pygal's selectors read only tags, ids, classes, ancestors and ``[transform]``.

    So its charts are matched a kind of element at a time: a few dozen
    kinds for eight charts of hundreds of elements.
    """
    roots = chart_roots(monkeypatch)
    chart_css._compiled.cache_clear()
    for root in roots:
        chart_css.inline_stylesheet(copy.deepcopy(root))
    sheets = [chart_css._compiled(text) for text in stylesheets(roots)]
    assert sheets and all(sheet.remembers for sheet in sheets)
    assert all(sheet.attributes == ("transform",) for sheet in sheets)
    elements = sum(len(list(root.iter())) for root in roots)
    kinds = sum(len(sheet.matched) for sheet in sheets)
    assert 0 < kinds < elements / 3, (kinds, elements)


def test_an_attribute_a_selector_tests_tells_two_elements_apart() -> None:
    """``text[transform]`` styles the label that has one, not its twin without."""
    root = svg(
        '<g class="axis"><text class="major">a</text><text class="major" transform="x">b</text>'
        '<text class="major">c</text></g>',
        ".axis text.major{fill:gray} .axis text[transform]{fill:green}",
    )
    chart_css.inline_stylesheet(root)
    assert [text.get("fill") for text in root.iter(f"{{{SVG_NS}}}text")] == [
        "gray",
        "green",
        "gray",
    ]


def test_an_ancestor_s_class_tells_two_elements_apart() -> None:
    """Two dots alike but for their group's class match different rules."""
    root = svg(
        '<g class="series"><circle class="dot"/></g><g class="overlay"><circle class="dot"/></g>'
        '<g class="series"><circle class="dot"/></g>',
        ".series .dot{fill:blue} .overlay > .dot{fill:red}",
    )
    chart_css.inline_stylesheet(root)
    assert [dot.get("fill") for dot in root.iter(f"{{{SVG_NS}}}circle")] == ["blue", "red", "blue"]


@pytest.mark.parametrize(
    "selector",
    ["rect + rect", "rect ~ rect", "rect:nth-child(3)", "rect:last-child", "rect[class=b]"],
)
def test_siblings_positions_and_values_are_matched_element_by_element(selector: str) -> None:
    """A selector that reads more than the ancestry turns the memo off, and still matches."""
    style = f"rect{{fill:black}} {selector}{{fill:red}}"
    assert not chart_css._Stylesheet(style).remembers
    root = svg('<g><rect class="a"/><rect class="a"/><rect class="b"/></g>', style)
    chart_css.inline_stylesheet(root)
    fills = [rect.get("fill") for rect in root.iter(f"{{{SVG_NS}}}rect")]
    expected = {
        "rect + rect": ["black", "red", "red"],
        "rect ~ rect": ["black", "red", "red"],
        "rect:nth-child(3)": ["black", "black", "red"],
        "rect:last-child": ["black", "black", "red"],
        "rect[class=b]": ["black", "black", "red"],
    }
    assert fills == expected[selector]
