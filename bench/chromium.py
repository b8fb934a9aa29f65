"""Headless Chromium screenshots of a chart's SVG: what a browser-based reporting tool pays.

Used by ``bench.render``: the SVG, wrapped in an HTML page, screenshotted at
the chart's size and scale by a fresh browser process per image, and by a
browser kept running and driven over the DevTools protocol. CPU is summed
over every process of the browser's session, sampled from ``/proc``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from claritycast.reports import charts

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


@dataclass(frozen=True)
class Cost:
    """Per image: wall-clock seconds, and CPU seconds of every process involved."""

    wall_s: float
    cpu_s: float


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
