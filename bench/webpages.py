"""The pages in Chromium with 1,000 sources: first contentful paint and load, median of 20.

`claritycast up` runs on a scratch data folder, filled as `bench.web` fills it
(1,000 sources with 30 days of history each, their connections and
deliveries); the measured source also gets the other six fetch groups for its
30 days, so its page draws all 21 charts with data. A person signs in in
Debian's Chromium, then each page is loaded 20 times (a new navigation each
time, cache and connection warm as a person's would be), and the browser's own
Paint Timing and Navigation Timing say when the first text was painted and
when the load event ended. The HTML's size and the server's time (the
response's first byte after the request was sent) are printed beside them,
and the very first load of each page, when the web process has drawn
nothing yet (it keeps what it drew, by the days it drew it from).

    .venv/bin/python -m bench.webpages [loads] [sources]     (default: 20 1000)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from playwright.async_api import Page, async_playwright

from bench.embedded import Up
from bench.web import DAYS, SOURCES, seed
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.localtime import local_yesterday
from claritycast.standins.history import history_snapshot
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-password-12"  # noqa: S105 - a scratch installation's
GOAL_MS = 500.0
# The load event can fire before the first frame is painted: wait for both (5 s at most).
TIMING = """async () => {
  for (let tries = 0; tries < 500; tries++) {
    const nav = performance.getEntriesByType("navigation")[0];
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    if (paint && nav.loadEventEnd > 0) {
      return {fcp: paint.startTime, load: nav.loadEventEnd,
              ttfb: nav.responseStart - nav.requestStart, bytes: nav.transferSize};
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return {fcp: null, load: null, ttfb: null, bytes: null};
}"""


async def seed_groups(store: Store, project_id: str) -> None:
    """The measured source's other six groups, for its 30 days."""
    last = local_yesterday("UTC", datetime.now(UTC))
    for back in range(DAYS):
        day = last - timedelta(days=back)
        for group in GROUP_NAMES:
            if group != "overall":
                snapshot = history_snapshot(project_id, day, group, "UTC")
                await store.save_snapshot(snapshot)


async def measure(page: Page, path: str, loads: int) -> tuple[dict[str, float], dict[str, float]]:
    """The first load (nothing drawn yet in the web process) and the median of ``loads`` more."""
    await page.goto(path, wait_until="load")
    first = await page.evaluate(TIMING)
    samples: list[dict[str, float]] = []
    for _ in range(loads):
        await page.goto(path, wait_until="load")
        samples.append(await page.evaluate(TIMING))
    missing = sum(sample["fcp"] is None for sample in samples)
    if missing:
        print(f"   ({missing} of {loads} loads reported no first contentful paint)")
    return first, {
        key: statistics.median(sample[key] for sample in samples if sample[key] is not None)
        for key in ("fcp", "load", "ttfb", "bytes")
    }


async def run(up: Up, loads: int, sources: int) -> None:
    state = up.state()
    keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())  # as bench.web seals
    store = Store.connect(str(state["mongodb_url"]), "claritycast", keyring=keyring)
    began = time.monotonic()
    source = await seed(store, sources)
    await seed_groups(store, source)
    await store.close()
    print(f"-- {sources:,} sources, {DAYS} days each; seeded in {time.monotonic() - began:.0f} s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env["CLARITYCAST_DATA_DIR"] = str(up.data_dir)
    added = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claritycast", "users", "add", "bench@example.com", "--role",
        "admin", "--password-stdin", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await added.communicate((PASSWORD + "\n").encode())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--disable-gpu", "--disable-quic"]
        )
        context = await browser.new_context(
            base_url=str(state["web_url"]), viewport={"width": 1440, "height": 900}
        )
        page = await context.new_page()
        await page.goto("/sign-in")
        await page.get_by_label("Email").fill("bench@example.com")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/sources")
        pages = {
            "sources (first 50 of 1,000)": "/sources",
            "one source, 21 charts of 30 days": f"/sources/{source}",
            "one source, 21 charts of 90 days": f"/sources/{source}?days=90",
        }
        print(f"| page | first contentful paint | load | server (first byte) | HTML | "
              f"goal {GOAL_MS:.0f} ms | first load: paint, load |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for name, path in pages.items():
            first, median = await measure(page, path, loads)
            met = "met" if max(median["fcp"], median["load"]) < GOAL_MS else "missed"
            print(
                f"| {name} | {median['fcp']:.0f} ms | {median['load']:.0f} ms | "
                f"{median['ttfb']:.0f} ms | {median['bytes'] / 1024:.0f} KiB | {met} | "
                f"{first['fcp']:.0f} ms, {first['load']:.0f} ms |",
                flush=True,
            )
        await browser.close()


def main(loads: int, sources: int) -> None:
    # Seeding is not what is measured: no fsync, and no tick pulling 1,000 fake projects.
    up = Up(partitions="2", web_port="0", mongodb_sync_on_commit="false", tick_interval_s="3600")
    try:
        up.wait_ready(120)
        asyncio.run(run(up, loads, sources))
        up.stop()
    finally:
        up.kill()


if __name__ == "__main__":
    arguments = [int(arg) for arg in sys.argv[1:]]
    main(arguments[0] if arguments else 20, arguments[1] if len(arguments) > 1 else SOURCES)
