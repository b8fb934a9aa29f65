"""One of our SVGs → the PNG people see: cairosvg draws the shapes, Pango the text.

Where the time went, per chart, before (``bench.render``, about 52 ms for the
PNG on one core), and what replaced it:

- **The stylesheet**, a third: pygal writes 4 KB of CSS into every SVG, and
  cairosvg parsed it and compiled its 80 selectors for every PNG.
  ``inline_stylesheet`` compiles each distinct stylesheet once and writes the
  declarations onto the elements as presentation attributes, so cairosvg
  has no CSS left to read (``style`` attributes included).
- **Elements**: cairosvg's walk costs about as much per element as per
  shape. pygal's JavaScript tooltip data (dropped in ``charts``) and the
  groups that only carried a class (``flatten_plain_groups``) were over two
  thirds of a line chart's 220 elements.
- **Text**, most of the drawing: cairosvg set each letter alone with cairo's
  toy font API, twice. ``ChartSurface`` lays out each string once with
  Pango, which also brings fallback fonts, Arabic joining and right-to-left
  order (``chart_text``).
- **Compression**, a third: cairo writes PNG through libpng at zlib level 6
  with adaptive row filters. A chart is mostly flat colour, where unfiltered
  rows compress as well; ``encode_png`` packs them with zlib-ng.
"""

from __future__ import annotations

import functools
import struct
import sys
from typing import Any

import cairocffi
import cssselect2
import tinycss2
import zlib_ng.zlib_ng as zlib
from cairosvg.helpers import size, transform
from cairosvg.parser import Node, Tree
from cairosvg.surface import PNGSurface
from PIL import Image

from claritycast.reports import chart_text

SCALE = chart_text.SCALE
PNG_LEVEL = 2  # zlib-ng: level 2 is as small as cairo's PNG at a tenth of the time
_ROOT_ID = "chart"
_BGRX = "BGRX" if sys.byteorder == "little" else "XRGB"  # cairo's ARGB32 is native-endian


Declaration = tuple[str, str, bool]  # name, value, !important


def _declarations(tokens: Any) -> list[Declaration]:
    """What cairosvg would take from a rule's or a ``style`` attribute's declarations."""
    return [
        (item.lower_name, tinycss2.serialize(item.value).strip(), item.important)
        for item in tinycss2.parse_declaration_list(
            tokens, skip_comments=True, skip_whitespace=True
        )
        if item.type == "declaration" and not item.name.startswith("-")  # no vendor properties
    ]


@functools.lru_cache(maxsize=256)
def _style_attribute(style: str) -> tuple[tuple[Declaration, ...], tuple[Declaration, ...]]:
    """A ``style`` attribute's normal and ``!important`` declarations (charts repeat a few)."""
    declarations = _declarations(style)
    return tuple(d for d in declarations if not d[2]), tuple(d for d in declarations if d[2])


@functools.lru_cache(maxsize=8)
def _compiled(stylesheet: str) -> tuple[cssselect2.Matcher, cssselect2.Matcher]:
    """Matchers of the normal and the ``!important`` declarations of a stylesheet."""
    normal, important = cssselect2.Matcher(), cssselect2.Matcher()
    for rule in tinycss2.parse_stylesheet(stylesheet, skip_comments=True, skip_whitespace=True):
        if rule.type != "qualified-rule":
            continue
        declarations = _declarations(rule.content)
        try:
            selectors = cssselect2.compile_selector_list(rule.prelude)
        except cssselect2.SelectorError:
            continue
        for selector in selectors:
            if selector.pseudo_element is None and not selector.never_matches:
                for matcher, forced in ((normal, False), (important, True)):
                    chosen = [d for d in declarations if d[2] is forced]
                    if chosen:
                        matcher.add_selector(selector, chosen)
    return normal, important


def inline_stylesheet(root: Any) -> None:
    """Turn the SVG's ``<style>`` and ``style`` attributes into presentation attributes.

    The cascade is kept: stylesheet rules (by specificity, then order), the
    ``style`` attribute, ``!important`` rules, then ``!important`` in the
    ``style`` attribute — each overriding the one before. With no CSS left,
    the attributes say the same, and cairosvg has nothing to parse. pygal
    prefixes every selector with the chart's random id; it is set aside
    while matching, so one compiled stylesheet serves every chart.
    """
    styles = [
        (parent, child)
        for parent in root.iter()
        for child in parent
        if str(child.tag).rpartition("}")[2] == "style"
    ]
    chart_id = root.get("id")
    stylesheet = "\n".join(style.text or "" for _, style in styles)
    if chart_id:
        stylesheet = stylesheet.replace(f"#{chart_id}", f"#{_ROOT_ID}")
        root.set("id", _ROOT_ID)
    normal, important = _compiled(stylesheet)
    for element in cssselect2.ElementWrapper.from_xml_root(root).iter_subtree():
        node = element.etree_element
        inline, inline_important = _style_attribute(node.attrib.pop("style", ""))
        layers = [
            *(declarations for *_, declarations in normal.match(element)),
            inline,
            *(declarations for *_, declarations in important.match(element)),
            inline_important,
        ]
        for declarations in layers:
            for name, value, _ in declarations:
                node.set(name, value)
    if chart_id:
        root.set("id", chart_id)
    for parent, style in styles:
        parent.remove(style)


def flatten_plain_groups(element: Any) -> None:
    """Replace every ``<g>`` that carries nothing but a class by its children.

    Once ``inline_stylesheet`` has run, such a group changes nothing drawn,
    and cairosvg spends as long on it as on a shape: pygal wraps every dot
    and bar in one (a third of a chart's elements). A group with an id may
    be referenced, so it stays.
    """
    index = 0
    while index < len(element):
        child = element[index]
        flatten_plain_groups(child)
        if str(child.tag).rpartition("}")[2] == "g" and set(child.attrib) <= {"class"}:
            element.remove(child)
            element[index:index] = list(child)
            index += len(child)
        else:
            index += 1


class ChartSurface(PNGSurface):
    """cairosvg's PNG surface, with ``<text>`` drawn by Pango (see ``chart_text``).

    Supported on text: x, y, font-size, font-weight, font-family,
    text-anchor, fill (a colour), fill-opacity, opacity, transform, display,
    visibility. A ``<tspan>``'s text joins its parent's, in its style.
    """

    def draw(self, node: Node) -> None:
        if node.tag != "text":
            super().draw(node)
            return
        text = "".join([node.text or "", *(child.text or "" for child in node.children)])
        fill = node.get("fill", "black")
        hidden = node.get("display") == "none" or node.get("visibility") == "hidden"
        if hidden or fill == "none" or not text.strip():
            return
        weight = node.get("font-weight", "normal")
        context = self.context
        context.save()
        transform(self, node.get("transform"), transform_origin=node.get("transform-origin"))
        opacity = float(node.get("fill-opacity", 1)) * float(node.get("opacity", 1))
        context.set_source_rgba(*self.map_color(fill, opacity))
        chart_text.draw_text(
            context,
            text,
            size(self, node.get("x"), "x"),
            size(self, node.get("y"), "y"),
            size(self, node.get("font-size", "12pt")),
            bold=weight == "bold" or (weight.isdigit() and int(weight) >= 550),
            anchor=node.get("text-anchor", "start"),
            families=chart_text.pango_families(node.get("font-family")),
        )
        context.restore()


def encode_png(surface: cairocffi.ImageSurface) -> bytes:
    """An opaque ARGB32 surface as an 8-bit RGB PNG: unfiltered rows, deflated by zlib-ng.

    Written here because neither cairo (libpng, level 6, adaptive filters)
    nor Pillow (adaptive filters always) can be told to skip filtering;
    the container is the PNG specification's three chunks.
    """
    surface.flush()
    width, height = surface.get_width(), surface.get_height()
    pixels = Image.frombuffer(
        "RGB", (width, height), surface.get_data(), "raw", _BGRX, surface.get_stride(), 1
    ).tobytes()
    row = 3 * width
    scanlines = b"".join(b"\0" + pixels[at : at + row] for at in range(0, len(pixels), row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(scanlines, PNG_LEVEL)),
            chunk(b"IEND", b""),
        )
    )


def svg_to_png(svg: bytes) -> bytes:
    """An SVG as a PNG at ``SCALE`` times its CSS size, on white, text in the house fonts."""
    chart_text.use_shipped_fonts()
    surface = ChartSurface(Tree(bytestring=svg), None, 96, scale=SCALE, background_color="white")
    return encode_png(surface.cairo)
