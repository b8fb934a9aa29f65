"""Charts per second: pygal's SVG and the PNG measured apart, what each speed-up bought, Chromium.

The same 30-day chart (the simulator's numbers, three days missing) is drawn
as a line and as a breakdown's bars, by the current path (``chart_png``).
Then each of its changes is undone alone, on the same chart, to show what it
bought: pygal's stylesheet left for cairosvg to parse, its tooltip data or
its plain groups kept, cairosvg's own letter-by-letter text, cairo's own PNG
writer; and all five undone is the path as it was (``cairosvg.svg2png``). Then the SVG, wrapped in
an HTML page, is screenshotted by headless Chromium at the same size and
scale — what a browser-based reporting tool pays: a fresh browser process
per image, and a browser kept running (DevTools protocol) when it can be
started.

    .venv/bin/python -m bench.render [seconds per measurement]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from pathlib import Path
from typing import Any

import aiohttp
import cairosvg
from cairosvg.parser import Tree
from cairosvg.surface import PNGSurface

from claritycast.clarity.parse import parse_blocks
from claritycast.reports import chart_png, charts, series
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile
from models import catalogue
from models.clarity import GROUPS_BY_NAME, ClarityResponse

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
LAST = date(2026, 11, 28)
FIRST = LAST - timedelta(days=29)
MISSING = {FIRST + timedelta(days=offset) for offset in (3, 4, 17)}


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


@dataclass(frozen=True)
class Cost:
    """Per image: wall-clock seconds, and CPU seconds of every process involved."""

    wall_s: float
    cpu_s: float


def rate(work: Callable[[], object], seconds: float) -> Cost:
    """The cost of one call, over at least ``seconds`` (after one warm-up call)."""
    work()
    calls = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            return Cost(elapsed / calls, (time.process_time() - began_cpu) / calls)


@contextlib.contextmanager
def svg_only() -> Iterator[None]:
    """Skip the PNG step, to time pygal (and our XML filter) alone."""
    real = charts.svg_to_png
    charts.svg_to_png = lambda svg: b""
    try:
        yield
    finally:
        charts.svg_to_png = real


def keep_scripts_and_comments_only(root: Any) -> None:
    """``_drop_interactive_parts`` as it was: pygal's tooltip data stays."""
    for parent in list(root.iter()):
        for child in list(parent):
            if callable(child.tag) or str(child.tag).endswith("script"):
                parent.remove(child)


@contextlib.contextmanager
def svg_as_before(
    *, stylesheet: bool = False, tooltips: bool = False, groups: bool = False
) -> Iterator[None]:
    """Charts drawn with pygal's stylesheet, its tooltip data or its plain groups left in."""
    real = (charts.inline_stylesheet, charts._drop_interactive_parts, charts.flatten_plain_groups)
    if stylesheet:
        charts.inline_stylesheet = lambda root: None
    if tooltips:
        charts._drop_interactive_parts = keep_scripts_and_comments_only
    if groups:
        charts.flatten_plain_groups = lambda root: None
    try:
        yield
    finally:
        charts.inline_stylesheet, charts._drop_interactive_parts, charts.flatten_plain_groups = real


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def html_page(chart: charts.Chart) -> str:
    svg = chart.svg.decode().split("?>", 1)[-1]  # inline: no XML declaration
    return (
        '<!doctype html><html><head><meta charset="utf-8"><style>'
        "html,body{margin:0;background:#fff;overflow:hidden}svg{display:block}"
        f"</style></head><body>{svg}</body></html>"
    )


class SessionCpu:
    """CPU seconds of every process of one session (a browser and its helpers), from /proc.

    A browser's helper processes are not all reaped into our own rusage, so
    they are sampled while they live; a process's last few milliseconds
    before it exits can be missed, so the figure is a slight underestimate.
    """

    def __init__(self, session_id: int, interval_s: float = 0.05) -> None:
        self.session_id = session_id
        self.interval_s = interval_s
        self.last: dict[tuple[int, str], float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def sample(self) -> float:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.session_id:  # fields: state ppid pgrp session …
                key = (int(entry.name), fields[19])  # pid and start time
                self.last[key] = (int(fields[11]) + int(fields[12])) / self.tick
        return sum(self.last.values())

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> SessionCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopped.set()
        self.thread.join()


def start_chromium(*arguments: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_chromium(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser we started, and every helper in its process group."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def chromium_fresh(page: Path, out: Path) -> Cost:
    """One screenshot from a new browser process, as a naive tool takes it."""
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        began = time.perf_counter()
        process = start_chromium(
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={charts.WIDTH},{charts.HEIGHT}",
            f"--force-device-scale-factor={charts.SCALE}",
            page.as_uri(),
        )
        try:
            with SessionCpu(process.pid) as cpu:
                process.wait(60)
                wall_s = time.perf_counter() - began
            used_s = cpu.sample()
        finally:
            stop_chromium(process)
    if process.returncode != 0 or png_size(out.read_bytes()) != (
        2 * charts.WIDTH,
        2 * charts.HEIGHT,
    ):
        raise RuntimeError(f"chromium failed (exit {process.returncode})")
    return Cost(wall_s, used_s)


class WarmChromium:
    """One headless Chromium kept running, driven over the DevTools protocol."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http = http
        self.ws = ws
        self.next_id = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, profile: Path) -> AsyncIterator[tuple[WarmChromium, int]]:
        """The browser, and its session id (for `SessionCpu`)."""
        process = start_chromium(
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        )
        port_file = profile / "DevToolsActivePort"
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            async with aiohttp.ClientSession() as http:
                new_tab = f"http://127.0.0.1:{port}/json/new?about:blank"
                async with http.put(new_tab) as answer:
                    target = await answer.json()
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    browser = cls(http, ws)
                    await browser.call("Page.enable")
                    await browser.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=charts.WIDTH,
                        height=charts.HEIGHT,
                        deviceScaleFactor=charts.SCALE,
                        mobile=False,
                    )
                    yield browser, process.pid
        finally:
            stop_chromium(process)

    async def call(self, method: str, wait_for: str | None = None, **params: Any) -> Any:
        """Send one command; with ``wait_for``, also wait for that event."""
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        result, waited = None, wait_for is None
        while result is None or not waited:
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result = message["result"]
            elif message.get("method") == wait_for:
                waited = True
        return result

    async def screenshot(self, page: Path) -> bytes:
        await self.call("Page.navigate", wait_for="Page.loadEventFired", url=page.as_uri())
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


async def chromium_warm(pages: list[Path], count: int) -> Cost:
    """Per screenshot in a running browser: navigate to the page, wait for load, capture."""
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        async with WarmChromium.start(Path(profile)) as (browser, session_id):
            png = await browser.screenshot(pages[0])  # warm-up
            assert png_size(png) == (2 * charts.WIDTH, 2 * charts.HEIGHT), png_size(png)
            with SessionCpu(session_id) as cpu:
                began_cpu = cpu.sample()
                began = time.perf_counter()
                for i in range(count):
                    await browser.screenshot(pages[i % len(pages)])
                wall_s = time.perf_counter() - began
                used_s = cpu.sample() - began_cpu
    return Cost(wall_s / count, used_s / count)


def row(name: str, cost: Cost, reference: Cost | None = None) -> None:
    ratio = ""
    if reference:
        ratio = f"{cost.wall_s / reference.wall_s:6.1f}x {cost.cpu_s / reference.cpu_s:7.1f}x"
    print(
        f"  {name:46} {cost.wall_s * 1000:8.1f} ms {1 / cost.wall_s:7.1f}/s"
        f" {cost.cpu_s * 1000:8.1f} ms  {ratio}"
    )


@dataclass(frozen=True)
class Pieces:
    """The SVGs of one chart: as drawn now, and with each SVG-side change undone."""

    now: bytes
    with_stylesheet: bytes
    with_tooltips: bytes
    with_groups: bytes
    as_before: bytes


def pieces(draw: Callable[[], charts.Chart]) -> Pieces:
    with svg_as_before(stylesheet=True):
        styled = draw().svg
    with svg_as_before(tooltips=True):
        tooltips = draw().svg
    with svg_as_before(groups=True):
        groups = draw().svg
    with svg_as_before(stylesheet=True, tooltips=True, groups=True):
        before = draw().svg
    return Pieces(draw().svg, styled, tooltips, groups, before)


def png_now(svg: bytes) -> bytes:
    return chart_png.svg_to_png(svg)


def png_with_cairosvg_text(svg: bytes) -> bytes:
    """The current path, but text drawn by cairosvg (cairo's toy API, letter by letter)."""
    surface = PNGSurface(Tree(bytestring=svg), None, 96, scale=charts.SCALE)
    return chart_png.encode_png(surface.cairo)


def png_with_cairo_writer(svg: bytes) -> bytes:
    """The current path, but the PNG written by cairo (libpng, zlib level 6)."""
    tree = Tree(bytestring=svg)
    surface = chart_png.ChartSurface(tree, None, 96, scale=charts.SCALE, background_color="white")
    output = io.BytesIO()
    surface.cairo.write_to_png(output)
    return output.getvalue()


def png_as_before(svg: bytes) -> bytes:
    png = cairosvg.svg2png(bytestring=svg, scale=charts.SCALE)
    assert isinstance(png, bytes)
    return png


def changes(name: str, draw: Callable[[], charts.Chart], seconds: float) -> None:
    """Each change undone alone on the same chart: its cost is what the change bought."""
    svg = pieces(draw)
    now = rate(lambda: png_now(svg.now), seconds)
    with svg_only():
        svg_step = rate(draw, seconds)
        with svg_as_before(stylesheet=True, groups=True):
            svg_step_as_before = rate(draw, seconds)
    undone = {
        "stylesheet parsed by cairosvg": lambda: png_now(svg.with_stylesheet),
        "tooltip data kept": lambda: png_now(svg.with_tooltips),
        "plain groups kept": lambda: png_now(svg.with_groups),
        "text by cairosvg, letter by letter": lambda: png_with_cairosvg_text(svg.now),
        "PNG written by cairo (libpng, level 6)": lambda: png_with_cairo_writer(svg.now),
        "all five: cairosvg.svg2png, as before": lambda: png_as_before(svg.as_before),
    }
    print(f"  {name}: the PNG from its SVG, {now.cpu_s * 1000:.1f} ms now; with one change undone:")
    for label, work in undone.items():
        cost = rate(work, seconds)
        extra, times = (cost.cpu_s - now.cpu_s) * 1000, cost.cpu_s / now.cpu_s
        print(f"    {label:42} {cost.cpu_s * 1000:6.1f} ms  (+{extra:4.1f} ms, {times:.1f}x)")
    applying = (svg_step.cpu_s - svg_step_as_before.cpu_s) * 1000
    print(f"    {'(paid in the SVG step: stylesheet, groups)':42} {applying:6.1f} ms")
    now_kib, cairo_kib = len(png_now(svg.now)) / 1024, len(png_with_cairo_writer(svg.now)) / 1024
    print(f"    PNG size: {now_kib:.0f} KiB now, {cairo_kib:.0f} KiB written by cairo")


def main(seconds: float) -> None:
    line = catalogue.get("sessions")
    bars = catalogue.get("top_pages_by_sessions")
    overall, url = stored("overall"), stored("url")
    points = series.daily_series(line, overall, FIRST, LAST)
    ranked = series.breakdown(bars, url.values())
    subtitle = "30 days to 28 Nov 2026 · 27 of 30 days collected"

    def draw_line() -> charts.Chart:
        return charts.line_chart(line, points, title="Sessions · Shop", subtitle=subtitle)

    def draw_bars() -> charts.Chart:
        return charts.bar_chart(bars, ranked, title="Top pages · Shop", subtitle=subtitle)

    line_chart, bar_chart = draw_line(), draw_bars()
    print(f"-- one chart, {charts.WIDTH}x{charts.HEIGHT} CSS px, PNG at {charts.SCALE}x, one core")
    print(f"  {'':46} {'wall/image':>11} {'rate':>9} {'CPU/image':>11}")
    with svg_only():
        line_svg = rate(draw_line, seconds)
        bar_svg = rate(draw_bars, seconds)
    line_png = rate(lambda: charts.svg_to_png(line_chart.svg), seconds)
    bar_png = rate(lambda: charts.svg_to_png(bar_chart.svg), seconds)
    line_all = rate(draw_line, seconds)
    bar_all = rate(draw_bars, seconds)
    render = rate(
        lambda: charts.render_chart(line, overall, FIRST, LAST, project_label="Shop"), seconds
    )
    render_bars = rate(
        lambda: charts.render_chart(bars, url, FIRST, LAST, project_label="Shop"), seconds
    )
    row("line: SVG (pygal, stylesheet applied)", line_svg)
    row("line: PNG from the SVG (chart_png)", line_png)
    row("line: both (line_chart)", line_all)
    row("line: render_chart from stored snapshots", render)
    row("bars: SVG (pygal, stylesheet applied)", bar_svg)
    row("bars: PNG from the SVG (chart_png)", bar_png)
    row("bars: both (bar_chart)", bar_all)
    row("bars: render_chart from stored snapshots", render_bars)
    sizes = f"line {len(line_chart.png) // 1024} KiB, bars {len(bar_chart.png) // 1024} KiB"
    print(f"  PNG sizes: {sizes}")

    print("-- what each change bought (the PNG step, CPU per image)")
    changes("line", draw_line, seconds)
    changes("bars", draw_bars, seconds)

    print("-- the same charts screenshotted by headless Chromium (SVG inline in an HTML page)")
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
    png = Cost((line_png.wall_s + bar_png.wall_s) / 2, (line_png.cpu_s + bar_png.cpu_s) / 2)
    both = Cost((line_all.wall_s + bar_all.wall_s) / 2, (line_all.cpu_s + bar_all.cpu_s) / 2)
    print(f"  {'':46} {'wall/image':>11} {'rate':>9} {'CPU/image':>11}  vs chart_png: wall, CPU")
    row("PNG via chart_png (from the SVG)", png, png)
    row("pygal + chart_png (SVG and PNG)", both, png)
    row(f"Chromium screenshot, fresh process ({runs} runs)", fresh, png)
    if warm is not None:
        row(f"Chromium screenshot, warm browser ({warm_runs} runs)*", warm, png)
        print("  * one browser kept running: CDP navigate, load, captureScreenshot")
    print("  Chromium's CPU is summed over all its processes, sampled from /proc")
    print(
        f"  PNG via chart_png: {1 / png.wall_s:.1f}/s; Chromium screenshot (fresh process): "
        f"{1 / fresh.wall_s:.2f}/s; ratio {fresh.wall_s / png.wall_s:.0f}x "
        f"(CPU: {fresh.cpu_s / png.cpu_s:.0f}x)"
    )
    print(f"  ({os.cpu_count()} CPUs; one image at a time; ours uses one core, Chromium several)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
