"""One night's pull for N projects through the real chain on the embedded default.

`claritycast simulate` serves N projects in its own process; `claritycast up`
runs Tansu, SecantusDB and a worker with every built stage. The projects are
written to MongoDB (as `connect` would, without its first pull) and the clock
starts; the tick finds all of them missing yesterday and requests 7 groups
each, which go through the quota check, the fetch stage and the store. The
clock stops when MongoDB holds all 7 x N snapshots.

    .venv/bin/python -m bench.ingest [projects ...]      (default: 100 1000)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.embedded import Up, memory_kib
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.store.core import Store
from models import catalogue
from models.documents import Organisation, Project, ProjectStatus

SNAPSHOTS_PER_PROJECT = 7


def start_simulator(
    count: int, data_dir: Path
) -> tuple[subprocess.Popen[str], str, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env["CLARITYCAST_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "claritycast", "simulate", "--projects", str(count)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().split(" at ", 1)[1].strip()
    process.stdout.readline()
    tokens = json.loads((data_dir / "simulator" / "tokens.json").read_text())
    return process, url, tokens


async def night(count: int) -> None:
    simulator_dir = Path(tempfile.mkdtemp(prefix="claritycast-bench-sim-"))
    simulator, url, tokens = start_simulator(count, simulator_dir)
    up = Up(clarity_api_url=url, tick_interval_s="2", partitions="8")
    try:
        up.wait_ready()
        state = up.state()
        children = state["children"]
        assert isinstance(children, dict)
        broker_before = memory_kib(children["tansu"])
        # Sealed with the key `up` made in its data folder, as `connect` would seal them.
        keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())
        store = Store.connect(str(state["mongodb_url"]), "claritycast", keyring=keyring)
        now = datetime.now(UTC)
        await store.add_organisation(Organisation("bench", "bench", "UTC", now))
        metric_ids = [metric.id for metric in catalogue.METRICS]
        for project_id, token in tokens.items():
            sealed = store.seal_token(token, project_id)
            paused = Project(project_id, project_id, "bench", sealed, status=ProjectStatus.PAUSED)
            await store.add_project(paused, metric_ids)
        began = time.monotonic()  # all due at once: the tick sees them from now on
        await store.db.projects.update_many({}, {"$set": {"status": ProjectStatus.ACTIVE}})
        expected = count * SNAPSHOTS_PER_PROJECT
        stored = 0
        while stored < expected:
            await asyncio.sleep(0.25)
            stored = await store.count_snapshots()
            if time.monotonic() - began > 1800:
                raise SystemExit(f"only {stored} of {expected} snapshots after 30 minutes")
        elapsed = time.monotonic() - began
        calls = await store.db.calls.count_documents({})
        await store.close()
        print(f"-- {count} projects, one night ({expected} Clarity requests)")
        rates = (count / elapsed, calls / elapsed, expected / elapsed)
        print("  {:.1f} s: {:.1f} projects/s, {:.1f} requests/s, {:.1f} snapshots/s".format(
            elapsed, *rates))  # fmt: skip
        peak_mib = memory_kib(children["worker"], "VmHWM") / 1024
        broker_mib = (broker_before / 1024, memory_kib(children["tansu"]) / 1024)
        print(f"  worker peak memory {peak_mib:.0f} MiB; broker {broker_mib[0]:.0f} -> "
              f"{broker_mib[1]:.0f} MiB")  # fmt: skip
        assert calls == expected, f"{calls} requests for {expected} snapshots"
        up.stop()
    finally:
        up.kill()
        os.killpg(simulator.pid, signal.SIGTERM)
        simulator.wait(30)


def main(counts: list[int]) -> None:
    for count in counts:
        asyncio.run(night(count))


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100, 1000])
