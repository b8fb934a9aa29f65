"""A chart from stored snapshots, stage by stage, on one core; what each speed-up bought; Chromium.

The same 30-day chart (the simulator's numbers, three days missing) as a line
and as a breakdown's bars, from the blocks the store holds (what
``builder.build_report`` reads) to the PNG, one image at a time, with this
process pinned to one CPU:

- series: the stored blocks read back (``ClarityResponse.from_json``) and
  made into the daily series or the ranked breakdown;
- SVG: pygal draws it, our filter trims it and writes the stylesheet onto
  the elements (``charts``);
- PNG: cairosvg parses the SVG, cairo and Pango draw it, the rows are
  packed and deflated (``chart_png``);
- total: all of it as one call, as the render stage makes it.

Then each speed-up is undone alone on the same charts (the whole chart
again), to show what it bought, and all of them undone is the path as it
was (``cairosvg.svg2png``). Last, the SVG in an HTML page is screenshotted
by headless Chromium (``bench.chromium``), on every CPU, as a browser-based
reporting tool would.

    .venv/bin/python -m bench.render [seconds per measurement] [--no-browser] [--stages-only]

``--stages-only`` prints the first table alone: it runs on the code before
issue 15 too (the undone changes need the current code).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from pathlib import Path
from typing import Any

import aiohttp
import cairosvg
import pygal
import zlib_ng.zlib_ng as zlib
from cairosvg.surface import PNGSurface
from PIL import Image

from bench.chromium import CHROMIUM, Cost, chromium_fresh, chromium_warm, html_page
from claritycast.clarity.parse import parse_blocks
from claritycast.reports import chart_css, chart_png, chart_svg_edits, charts, series
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile
from models import catalogue
from models.catalogue import Metric
from models.clarity import GROUPS_BY_NAME, ClarityResponse

LAST = date(2026, 11, 28)
FIRST = LAST - timedelta(days=29)
MISSING = {FIRST + timedelta(days=offset) for offset in (3, 4, 17)}

StoredBlocks = dict[date, list[dict[str, Any]]]


def stored(group: str) -> dict[date, ClarityResponse]:
    dimensions = GROUPS_BY_NAME[group].dimensions
    by_day = {}
    for offset in range(30):
        day = FIRST + timedelta(days=offset)
        if day in MISSING:
            continue
        end = datetime.combine(day + timedelta(days=1), day_start(), UTC)
        raw = build_response(Profile("shop"), end - timedelta(hours=24), end, list(dimensions))
        by_day[day] = parse_blocks(raw, dimensions)
    return by_day


def stored_blocks(metric: Metric) -> StoredBlocks:
    """What the store returns for a chart: each day's blocks the metric needs, as JSON."""
    needed = series.blocks_needed(metric)
    return {
        day: [block for block in response.to_json() if block["metric"] in needed]
        for day, response in stored(metric.group).items()
    }


def rate(work: Callable[[], object], seconds: float, rounds: int = 5) -> Cost:
    """The cost of one call: the quietest of ``rounds`` rounds over ``seconds`` in all.

    The machine is shared: another process's burst inflates a round's CPU
    time too (caches, memory bandwidth), so the round with the least CPU per
    call is the one nearest the code's own cost (as ``timeit`` advises).
    """
    work()  # warm-up
    best: Cost | None = None
    for _ in range(rounds):
        calls = 0
        began, began_cpu = time.perf_counter(), time.process_time()
        while True:
            work()
            calls += 1
            elapsed = time.perf_counter() - began
            if elapsed >= seconds / rounds:
                break
        cost = Cost(elapsed / calls, (time.process_time() - began_cpu) / calls)
        if best is None or cost.cpu_s < best.cpu_s:
            best = cost
    assert best is not None
    return best


@contextlib.contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    real = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, real)


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """This thread on one CPU (the first it may use), as a worker given one core would be."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned (no sched_setaffinity here)"
        return
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, allowed)


@dataclass(frozen=True)
class Case:
    """One chart: its metric and the stored blocks it is drawn from."""

    name: str
    metric: Metric
    blocks: StoredBlocks

    def responses(self) -> dict[date, ClarityResponse]:
        return {day: ClarityResponse.from_json(blocks) for day, blocks in self.blocks.items()}

    def series(self) -> object:
        by_day = self.responses()
        if self.metric.is_breakdown:
            return series.breakdown(self.metric, by_day.values(), top_n=None)
        return series.daily_series(self.metric, by_day, FIRST, LAST)

    def chart(self) -> charts.Chart:
        """The whole chart from the stored blocks: what the render stage does per report."""
        return charts.render_chart(self.metric, self.responses(), FIRST, LAST, project_label="Shop")


# --- the path as it was, one change at a time ----------------------------------------------------


def keep_scripts_and_comments_only(root: Any) -> None:
    """``drop_interactive_parts`` as it was: pygal's tooltip data stays."""
    for parent in list(root.iter()):
        for child in list(parent):
            if callable(child.tag) or str(child.tag).endswith("script"):
                parent.remove(child)


def encode_png_rows_by_python(surface: Any) -> bytes:
    """``encode_png`` as it was: Pillow copies, Python joins the rows and their filter bytes."""
    surface.flush()
    width, height = surface.get_width(), surface.get_height()
    pixels = Image.frombuffer(
        "RGB", (width, height), surface.get_data(), "raw", "BGRX", surface.get_stride(), 1
    ).tobytes()
    row = 3 * width
    scanlines = b"".join(b"\0" + pixels[at : at + row] for at in range(0, len(pixels), row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(scanlines, chart_png.PNG_LEVEL)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def png_by_cairo(surface: Any) -> bytes:
    output = io.BytesIO()
    surface.write_to_png(output)
    return output.getvalue()


class CairosvgText(chart_png.ChartSurface):
    """Text set by cairosvg, letter by letter with cairo's toy API; the rest as now."""

    def draw(self, node: Any) -> None:
        if node.tag == "text":
            PNGSurface.draw(self, node)
        else:
            super().draw(node)


def png_as_before(svg: bytes) -> bytes:
    png = cairosvg.svg2png(bytestring=svg, scale=charts.SCALE)
    assert isinstance(png, bytes)
    return png


@contextlib.contextmanager
def all_undone() -> Iterator[None]:
    """pygal's SVG whole, its own classes, and ``cairosvg.svg2png``: the path before issue 15."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(charts, "inline_stylesheet", lambda root: None))
        stack.enter_context(patched(charts, "flatten_plain_groups", lambda root: None))
        stack.enter_context(
            patched(chart_svg_edits, "drop_interactive_parts", keep_scripts_and_comments_only)
        )
        stack.enter_context(pygal_classes())
        stack.enter_context(patched(charts, "svg_to_png", png_as_before))
        yield


@functools.lru_cache(maxsize=8)
def matched_one_by_one(stylesheet: str) -> chart_css._Stylesheet:
    """The stylesheet compiled once, as before, but every element matched against it afresh."""
    sheet = chart_css._Stylesheet(stylesheet)
    sheet.remembers = False
    return sheet


def pygal_classes() -> contextlib.ExitStack[None]:
    stack = contextlib.ExitStack()
    stack.enter_context(patched(charts, "Line", pygal.Line))
    stack.enter_context(patched(charts, "HorizontalBar", pygal.HorizontalBar))
    return stack


def undo(owner: object, name: str, value: object) -> Callable[[], Any]:
    return lambda: patched(owner, name, value)


UNDONE: dict[str, Callable[[], Any]] = {
    "PNG rows packed whole, copied and joined (as before)": undo(
        chart_png, "encode_png", encode_png_rows_by_python
    ),
    "plain shapes through cairosvg's whole drawing step": undo(
        chart_png, "_plain_shape", lambda node: False
    ),
    "pygal's own attribute look-up": pygal_classes,
    "every element matched against the stylesheet": undo(
        chart_css, "_compiled", matched_one_by_one
    ),
    "PNG written by cairo (libpng, zlib level 6)": undo(chart_png, "encode_png", png_by_cairo),
    "text by cairosvg, letter by letter": undo(chart_png, "ChartSurface", CairosvgText),
    "pygal's stylesheet left for cairosvg to parse": undo(
        charts, "inline_stylesheet", lambda root: None
    ),
    "pygal's tooltip data kept": undo(
        chart_svg_edits, "drop_interactive_parts", keep_scripts_and_comments_only
    ),
    "groups that only carry a class kept": undo(charts, "flatten_plain_groups", lambda root: None),
    "all of them: pygal's SVG through cairosvg.svg2png": all_undone,
}


# --- measuring -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stages:
    series: Cost
    svg: Cost
    parse: Cost
    draw: Cost
    encode: Cost
    total: Cost
    png_bytes: int
    faults: float
    system_ms: float

    @property
    def png(self) -> Cost:
        parts = (self.parse, self.draw, self.encode)
        return Cost(sum(p.wall_s for p in parts), sum(p.cpu_s for p in parts))


def stages(case: Case, seconds: float) -> Stages:
    chart = case.chart()
    tree = cairosvg.parser.Tree(bytestring=chart.svg)
    surface = chart_png.ChartSurface(tree, None, 96, scale=charts.SCALE, background_color="white")
    by_day = case.responses()

    def svg() -> None:
        charts.render_chart(case.metric, by_day, FIRST, LAST, project_label="Shop")

    with patched(charts, "svg_to_png", lambda svg: b""):
        svg_cost = rate(svg, seconds)
    return Stages(
        series=rate(case.series, seconds),
        svg=svg_cost,
        parse=rate(lambda: cairosvg.parser.Tree(bytestring=chart.svg), seconds),
        draw=rate(
            lambda: chart_png.ChartSurface(
                tree, None, 96, scale=charts.SCALE, background_color="white"
            ),
            seconds,
        ),
        encode=rate(lambda: chart_png.encode_png(surface.cairo), seconds),
        total=rate(case.chart, seconds),
        png_bytes=len(chart.png),
        **faults(case.chart),
    )


def faults(work: Callable[[], object], calls: int = 20) -> dict[str, float]:
    """Page faults and kernel CPU per call: memory the kernel maps and zeroes afresh each time."""
    work()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        work()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "faults": (after.ru_minflt - before.ru_minflt) / calls,
        "system_ms": (after.ru_stime - before.ru_stime) * 1000 / calls,
    }


def ms(cost: Cost) -> str:
    return f"{cost.cpu_s * 1000:6.1f} ({cost.wall_s * 1000:5.1f})"


def print_stages(found: dict[str, Stages]) -> None:
    names = list(found)
    print(f"  {'CPU ms per image (wall ms)':44}" + "".join(f"{name:>17}" for name in names))
    rows: list[tuple[str, Callable[[Stages], Cost]]] = [
        ("series from stored snapshots", lambda s: s.series),
        ("SVG: pygal, trimmed, stylesheet inlined*", lambda s: s.svg),
        ("PNG: cairosvg parses the SVG", lambda s: s.parse),
        ("PNG: cairo and Pango draw", lambda s: s.draw),
        (f"PNG: rows packed, zlib-ng level {chart_png.PNG_LEVEL}", lambda s: s.encode),
        ("PNG, the three together", lambda s: s.png),
        ("total, as one call (render_chart)", lambda s: s.total),
    ]
    for label, pick in rows:
        print(f"  {label:44}" + "".join(f"{ms(pick(found[name])):>17}" for name in names))
    print(
        f"  {'  of which the kernel (page faults per image)':44}"
        + "".join(
            f"{f'{found[name].system_ms:.1f} ({found[name].faults:,.0f})':>17}" for name in names
        )
    )
    sizes = ", ".join(f"{name} {stage.png_bytes / 1024:.0f} KiB" for name, stage in found.items())
    print(f"  PNG sizes: {sizes}")
    print("  * render_chart without the PNG: the series again (a tenth of a ms), pygal, our filter")


def changes(cases: list[Case], seconds: float) -> None:
    """Each change undone alone, on the whole chart: its extra cost is what the change bought.

    The chart as it is now is measured again beside each undone one, so a
    change of load between the two rows does not become a difference.
    """
    print(
        f"  {'undone (CPU ms per image: now -> undone)':52}"
        + "".join(f"{c.name:>22}" for c in cases)
    )
    for label, undone in UNDONE.items():
        cells = []
        for case in cases:
            now = rate(case.chart, seconds)
            with undone():
                cost = rate(case.chart, seconds)
            extra = (cost.cpu_s - now.cpu_s) * 1000
            cells.append(f"{now.cpu_s * 1000:.1f} -> {cost.cpu_s * 1000:.1f} ({extra:+.1f})")
        print(f"  {label:52}" + "".join(f"{cell:>22}" for cell in cells))
    sizes = []
    for case in cases:
        surface = chart_png.ChartSurface(
            cairosvg.parser.Tree(bytestring=case.chart().svg), None, 96, scale=charts.SCALE
        )
        sizes.append(f"{case.name} {len(png_by_cairo(surface.cairo)) / 1024:.0f} KiB")
    print(f"  PNG sizes written by cairo: {', '.join(sizes)}")


def browser(line_chart: charts.Chart, bar_chart: charts.Chart, png: Cost, seconds: float) -> None:
    """Headless Chromium screenshots of the same SVGs, on every CPU, against our PNG step."""
    if not CHROMIUM.exists():
        print(f"  {CHROMIUM} is absent: no browser figures (apt-get install chromium)")
        return
    version = subprocess.run(
        [str(CHROMIUM), "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    print(f"  {version}")
    with tempfile.TemporaryDirectory(prefix="bench-render-") as work:
        folder = Path(work)
        pages = []
        for name, chart in (("line", line_chart), ("bars", bar_chart)):
            page = folder / f"{name}.html"
            page.write_text(html_page(chart))
            pages.append(page)
        chromium_fresh(pages[0], folder / "shot.png")  # warm-up (disk cache, fontconfig)
        runs = max(3, min(20, round(seconds * 3)))
        costs = [chromium_fresh(pages[i % 2], folder / "shot.png") for i in range(runs)]
        fresh = Cost(sum(c.wall_s for c in costs) / runs, sum(c.cpu_s for c in costs) / runs)
        warm_runs = max(10, round(seconds * 20))
        try:
            warm: Cost | None = asyncio.run(chromium_warm(pages, warm_runs))
        except (RuntimeError, OSError, aiohttp.ClientError, AssertionError) as exc:
            print(f"  (a warm browser could not be measured: {exc})")
            warm = None
    print(f"  {'':46} {'wall/image':>11} {'CPU/image':>11}  vs our PNG step: wall, CPU")
    shown = [("our PNG step, from the SVG (one core)", png)]
    shown.append((f"Chromium screenshot, fresh process ({runs} runs)", fresh))
    if warm is not None:
        shown.append((f"Chromium screenshot, warm browser ({warm_runs} runs)*", warm))
    for name, cost in shown:
        print(
            f"  {name:46} {cost.wall_s * 1000:8.1f} ms {cost.cpu_s * 1000:8.1f} ms"
            f"  {cost.wall_s / png.wall_s:6.1f}x {cost.cpu_s / png.cpu_s:6.1f}x"
        )
    if warm is not None:
        print("  * one browser kept running: CDP navigate, load, captureScreenshot")
    print("  Chromium's CPU is summed over all its processes, sampled from /proc")


def main(seconds: float, *, with_browser: bool, with_changes: bool) -> None:
    cases = [
        Case("line", catalogue.get("sessions"), stored_blocks(catalogue.get("sessions"))),
        Case(
            "bars",
            catalogue.get("top_pages_by_sessions"),
            stored_blocks(catalogue.get("top_pages_by_sessions")),
        ),
    ]
    size = f"{charts.WIDTH}x{charts.HEIGHT} CSS px, PNG at {charts.SCALE}x"
    with one_core() as pinned:
        print(f"-- one chart from stored snapshots, {size}, one image at a time, {pinned}")
        print(f"  load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        now = {case.name: stages(case, seconds) for case in cases}
        print_stages(now)
        if with_changes:
            print("-- what each change bought: the whole chart with one change undone")
            changes(cases, seconds)
    if with_browser and with_changes:
        print("-- the same charts screenshotted by headless Chromium (SVG inline in an HTML page)")
        line_chart, bar_chart = (case.chart() for case in cases)
        png = Cost(
            sum(stage.png.wall_s for stage in now.values()) / len(now),
            sum(stage.png.cpu_s for stage in now.values()) / len(now),
        )
        browser(line_chart, bar_chart, png, seconds)
    print(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    arguments = [argument for argument in sys.argv[1:] if not argument.startswith("--")]
    main(
        float(arguments[0]) if arguments else 2.0,
        with_browser="--no-browser" not in sys.argv[1:],
        with_changes="--stages-only" not in sys.argv[1:],
    )
