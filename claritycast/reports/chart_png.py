"""One of our SVGs → the PNG people see: cairosvg draws the shapes, Pango the text.

Where the time went, per chart, before (``bench.render``, about 52 ms for the
PNG on one core), and what replaced it:

- **The stylesheet**, a third: pygal writes 4 KB of CSS into every SVG, and
  cairosvg parsed it and compiled its 80 selectors for every PNG.
  ``chart_css.inline_stylesheet`` compiles each distinct stylesheet once and
  writes the declarations onto the elements as presentation attributes, so
  cairosvg has no CSS left to read (``style`` attributes included).
- **Elements**: cairosvg's walk costs about as much per element as per
  shape. pygal's JavaScript tooltip data (dropped in ``charts``) and the
  groups that only carried a class (``chart_css.flatten_plain_groups``) were over two
  thirds of a line chart's 220 elements.
- **Text**, most of the drawing: cairosvg set each letter alone with cairo's
  toy font API, twice. ``ChartSurface`` lays out each string once with
  Pango, which also brings fallback fonts, Arabic joining and right-to-left
  order (``chart_text``).
- **Compression**, a third: cairo writes PNG through libpng at zlib level 6
  with adaptive row filters. A chart is mostly flat colour, where unfiltered
  rows compress as well; ``encode_png`` packs them with zlib-ng.

Then (issue 15, ``bench.render`` again, about 19 ms for the whole chart):

- **Memory**, a quarter: the rows were packed whole (8.6 MB with Pillow's
  pieces), which the kernel faulted in and zeroed for every chart, and
  freeing them let the heap shrink so the next surface faulted in too:
  3,500 page faults and 6 ms of system time a chart. ``encode_png`` packs
  a band of rows at a time, straight from the surface, into the deflater.
- **cairosvg's per-node step**: for every shape it parses transforms,
  masks, clips, filters, dashes and markers and sets text options.
  ``ChartSurface`` draws a shape that has none of them with the same cairo
  calls, less those steps.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from collections.abc import Iterator

import cairocffi
import zlib_ng.zlib_ng as zlib
from cairosvg.helpers import PointError, normalize, paint, size, transform
from cairosvg.parser import Node, Tree
from cairosvg.surface import SHAPE_ANTIALIAS, TAGS, PNGSurface
from PIL import Image

from claritycast.reports import chart_text

SCALE = chart_text.SCALE
PNG_LEVEL = 2  # zlib-ng: level 2 is as small as cairo's PNG at a tenth of the time

_SHAPES = frozenset({"circle", "ellipse", "line", "path", "polygon", "polyline", "rect"})
# Attributes that need cairosvg's whole drawing step (inherited ones included).
_NEEDS_CAIROSVG = frozenset(
    {
        "transform", "clip", "clip-path", "mask", "filter", "font",
        "marker", "marker-start", "marker-mid", "marker-end",
    }
)  # fmt: skip
_LINE_CAPS = {"round": cairocffi.LINE_CAP_ROUND, "square": cairocffi.LINE_CAP_SQUARE}
_LINE_JOINS = {"round": cairocffi.LINE_JOIN_ROUND, "bevel": cairocffi.LINE_JOIN_BEVEL}


def _plain_shape(node: Node) -> bool:
    """A shape with no children, transform, clip, mask, filter, dash, marker or paint server."""
    if node.children or not _NEEDS_CAIROSVG.isdisjoint(node):
        return False
    if normalize(node.get("stroke-dasharray", "")).strip() not in {"", "none"}:
        return False
    return not any("url(" in str(node.get(name, "")) for name in ("fill", "stroke"))


class ChartSurface(PNGSurface):
    """cairosvg's PNG surface, with ``<text>`` drawn by Pango (see ``chart_text``).

    Supported on text: x, y, font-size, font-weight, font-family,
    text-anchor, fill (a colour), fill-opacity, opacity, transform, display,
    visibility. A ``<tspan>``'s text joins its parent's, in its style.
    """

    def draw(self, node: Node) -> None:
        if node.tag == "text":
            self._draw_text(node)
        elif node.tag in _SHAPES and self.stroke_and_fill and _plain_shape(node):
            self._draw_shape(node)
        else:
            super().draw(node)

    def _draw_shape(self, node: Node) -> None:
        """A shape as cairosvg draws it, without the steps that do nothing for a plain one.

        The same cairo calls in the same order as ``Surface.draw``, less
        what only a transform, clip, mask, filter, dash, marker, gradient
        or child needs (``_plain_shape`` sends any of those to cairosvg),
        and less the font options it sets for text on every node. A fill
        or stroke of no colour is not painted: painting nothing over the
        surface leaves every pixel as it was.
        """
        if ("width" in node and size(self, node["width"]) == 0) or (
            "height" in node and size(self, node["height"]) == 0
        ):
            return
        old_parent_node, old_font_size = self.parent_node, self.font_size
        self.parent_node = node
        self.font_size = size(self, node.get("font-size", "12pt"))
        context = self.context
        context.save()
        context.move_to(size(self, node.get("x"), "x"), size(self, node.get("y"), "y"))
        line_cap = node.get("stroke-linecap")
        if line_cap in _LINE_CAPS:
            context.set_line_cap(_LINE_CAPS[line_cap])
        line_join = node.get("stroke-linejoin")
        if line_join in _LINE_JOINS:
            context.set_line_join(_LINE_JOINS[line_join])
        context.set_miter_limit(float(node.get("stroke-miterlimit", 4)))
        with contextlib.suppress(PointError):  # as cairosvg: a malformed shape draws nothing
            TAGS[node.tag](self, node)
        opacity = float(node.get("opacity", 1))
        stroke_opacity = float(node.get("stroke-opacity", 1)) * min(opacity, 1)
        fill_opacity = float(node.get("fill-opacity", 1)) * min(opacity, 1)
        context.set_antialias(
            SHAPE_ANTIALIAS.get(node.get("shape-rendering"), cairocffi.ANTIALIAS_DEFAULT)
        )
        if node.get("display", "inline") != "none" and node.get("visibility") != "hidden":
            fill = self.map_color(paint(node.get("fill", "black"))[1], fill_opacity)
            if fill[3] > 0:
                context.save()
                if node.get("fill-rule") == "evenodd":
                    context.set_fill_rule(cairocffi.FILL_RULE_EVEN_ODD)
                context.set_source_rgba(*fill)
                context.fill_preserve()
                context.restore()
            stroke = self.map_color(paint(node.get("stroke"))[1], stroke_opacity)
            if stroke[3] > 0:
                context.save()
                context.set_line_width(size(self, node.get("stroke-width", "1")))
                context.set_source_rgba(*stroke)
                context.stroke()
                context.restore()
        context.new_path()
        context.restore()
        self.parent_node, self.font_size = old_parent_node, old_font_size

    def _draw_text(self, node: Node) -> None:
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


BAND_ROWS = 16  # rows packed at a time: 77 KB, reused by malloc (under its 128 KiB mmap threshold)


def _bands(surface: cairocffi.ImageSurface) -> Iterator[bytes]:
    """The surface's pixels as 8-bit RGB rows, each followed by one zero byte, a band at a time.

    A row stride one byte longer than the pixels leaves a zero after each
    row: the next row's PNG filter byte ("none"). On a little-endian
    machine cairo's ARGB32 bytes are B, G, R, X; mapped (not copied) as
    Pillow's RGBX and packed as "BGR", they come out R, G, B. A band at a
    time, because packing the whole image at once took 8.6 MB (Pillow's
    pieces, then their join) that the kernel faulted in afresh for every
    chart: 2,000 page faults, more time than the packing.
    """
    width, height, stride = surface.get_width(), surface.get_height(), surface.get_stride()
    data = memoryview(surface.get_data())
    little = sys.byteorder == "little"
    for top in range(0, height, BAND_ROWS):
        rows = min(BAND_ROWS, height - top)
        pixels = data[top * stride : (top + rows) * stride]
        if little:
            band = Image.frombuffer("RGBX", (width, rows), pixels, "raw", "RGBX", stride, 1)
            yield band.tobytes("raw", "BGR", 3 * width + 1)
        else:  # cairo's bytes are X, R, G, B
            band = Image.frombuffer("RGB", (width, rows), pixels, "raw", "XRGB", stride, 1)
            yield band.tobytes("raw", "RGB", 3 * width + 1)


def encode_png(surface: cairocffi.ImageSurface) -> bytes:
    """An opaque ARGB32 surface as an 8-bit RGB PNG: unfiltered rows, deflated by zlib-ng.

    Written here because neither cairo (libpng, level 6, adaptive filters)
    nor Pillow (adaptive filters always) can be told to skip filtering;
    the container is the PNG specification's three chunks.
    """
    surface.flush()
    deflate = zlib.compressobj(PNG_LEVEL)
    parts = [deflate.compress(b"\0")]  # the first row's filter byte; each row brings the next's
    previous = None
    for band in _bands(surface):
        if previous is not None:
            parts.append(deflate.compress(previous))
        previous = band
    if previous is not None:
        parts.append(deflate.compress(memoryview(previous)[:-1]))  # the last row has no next
    parts.append(deflate.flush())
    idat = b"".join(parts)

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    width, height = surface.get_width(), surface.get_height()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", idat),
            chunk(b"IEND", b""),
        )
    )


def svg_to_png(svg: bytes) -> bytes:
    """An SVG as a PNG at ``SCALE`` times its CSS size, on white, text in the house fonts."""
    chart_text.use_shipped_fonts()
    surface = ChartSurface(Tree(bytestring=svg), None, 96, scale=SCALE, background_color="white")
    return encode_png(surface.cairo)
