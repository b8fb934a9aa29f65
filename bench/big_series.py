"""A big shop's breakdowns: 30 days of 20,000-row URL answers, read by `series` and a report.

One project's URL group is stored for 30 days on the embedded default, each
day a 20,000-page answer (about 35 MB of JSON) put through the claim check and
the store stage's own function, as the chain stores it. Then, timed:

- storing one such day (claim check write + read, cut down, snapshot);
- ``claritycast series --metric top_pages_by_sessions --days 30`` as a user
  runs it (a whole process, median of 5);
- the report a connection would send (chart and summary), in process;
- for comparison, the same top 10 from the 30 complete answers, which is
  what every chart would cost if snapshots kept every row.

    .venv/bin/python -m bench.big_series [pages] [days]     (default: 20000 30)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from agents.store import store_snapshot
from bench.embedded import Up
from claritycast.clarity.parse import parse_blocks
from claritycast.delivery.schedule import parse_schedule
from claritycast.localtime import local_midnight
from claritycast.reports.builder import build_report
from claritycast.reports.series import breakdown
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile, long_tail_pages
from claritycast.store.claim_check import fetched_record
from claritycast.store.core import Store
from models import catalogue
from models.clarity import ClarityResponse
from models.delivery import Connection, Destination, DestinationKind
from models.documents import Organisation, Project, ProjectStatus

PROJECT = "big-shop"
LAST = datetime.now(UTC).date() - timedelta(days=1)  # yesterday, as `series` reads it


async def seed(store: Store, pages: int, days: int) -> list[float]:
    """Store ``days`` URL snapshots of ``pages`` extra pages; seconds per stored day."""
    now = datetime.now(UTC)
    await store.add_organisation(Organisation("bench", "bench", "UTC", now))
    project = Project(PROJECT, "Big shop", "bench", status=ProjectStatus.PAUSED)
    await store.add_project(project, [metric.id for metric in catalogue.METRICS])
    profile = Profile(PROJECT, 200_000)
    tail = long_tail_pages(pages)
    costs = []
    for offset in range(days):
        day = LAST - timedelta(days=offset)
        end = local_midnight(day + timedelta(days=1), "UTC")
        raw = build_response(
            profile, end - timedelta(days=1), end, ["URL"], pages=tail, max_rows=pages + 100
        )
        blocks = parse_blocks(raw, ["URL"]).to_json()
        began = time.perf_counter()
        ref = await store.put_blocks(blocks, end)
        record = fetched_record(PROJECT, day.isoformat(), "url", end, ref)
        await store_snapshot(record, store)
        costs.append(time.perf_counter() - began)
        if offset == 0:
            print(f"  one day: {ref.size_bytes / 1e6:.1f} MB of blocks, "
                  f"{ref.stored_bytes / 1e6:.2f} MB compressed, {ref.rows['Traffic']:,} rows "
                  "per block")  # fmt: skip
    return costs


def time_series_command(data_dir: str, runs: int = 5) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env["CLARITYCAST_DATA_DIR"] = data_dir
    argv = [sys.executable, "-m", "claritycast", "series", "--project", PROJECT,
            "--metric", "top_pages_by_sessions", "--days", "30"]  # fmt: skip
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
    print("  " + "\n  ".join(done.stdout.strip().splitlines()[-4:]))
    return times


async def time_report(store: Store, runs: int = 5) -> list[float]:
    connection = Connection(
        name="big-pages", project_id=PROJECT, metric_id="top_pages_by_sessions",
        destination=Destination(DestinationKind.EMAIL, addresses=("a@example.com",)),
        schedule=parse_schedule("daily", "09:00"), timezone="UTC", window_days=30,
        ai_summary=False, created_at=datetime.now(UTC),
    )  # fmt: skip
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        await build_report(store, connection, LAST + timedelta(days=1), missing=[])
        times.append(time.perf_counter() - began)
    return times


async def time_complete_answers(store: Store, days: int) -> float:
    began = time.perf_counter()
    first = (LAST - timedelta(days=days - 1)).isoformat()
    snapshots = await store.snapshots_for(PROJECT, first, LAST.isoformat(), group="url")
    responses = [
        ClarityResponse.from_json(await store.get_blocks(s.blocks_ref or "")) for s in snapshots
    ]
    breakdown(catalogue.get("top_pages_by_sessions"), responses)
    return time.perf_counter() - began


async def run(up: Up, pages: int, days: int) -> None:
    state = up.state()
    store = Store.connect(str(state["mongodb_url"]), "claritycast")
    try:
        print(f"-- {days} days of a {pages:,}-page URL breakdown")
        costs = await seed(store, pages, days)
        print(f"  storing a day (claim check, cut down, snapshot): median "
              f"{statistics.median(costs):.2f} s")  # fmt: skip
        series_s = time_series_command(str(up.data_dir))
        print(f"  `claritycast series` (whole process): median {statistics.median(series_s):.2f} s,"
              f" max {max(series_s):.2f} s")  # fmt: skip
        report_s = await time_report(store)
        print(f"  a 30-day report (chart and summary): median "
              f"{statistics.median(report_s):.2f} s")  # fmt: skip
        complete_s = await time_complete_answers(store, days)
        print(f"  the same top 10 from the complete answers: {complete_s:.2f} s")
    finally:
        await store.close()


def main(pages: int, days: int) -> None:
    up = Up(partitions="2")
    try:
        up.wait_ready()
        asyncio.run(run(up, pages, days))
        up.stop()
    finally:
        up.kill()


if __name__ == "__main__":
    arguments = [int(arg) for arg in sys.argv[1:]]
    main(*(arguments + [20_000, 30][len(arguments) :]))
