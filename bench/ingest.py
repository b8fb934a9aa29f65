"""One night's pull for N projects through the real chain on the embedded default.

`claritycast simulate` serves N projects in its own process; `claritycast up`
runs Tansu, SecantusDB and a worker with every built stage. The projects are
written to MongoDB paused (as `connect` would, without its first pull), then
made active at once and the clock starts; the tick finds all of them missing
yesterday and requests 7 groups each, which go through the quota check, the
fetch stage and the store. The clock stops when 7 x N snapshots are stored.

Progress is counted from the ``snapshots.stored`` events (`bench.progress`),
not by counting documents: a count on SecantusDB decodes every snapshot, and
polling it was most of the database's work. The database is counted exactly
once, at the end, with the Clarity requests: exactly one per snapshot. Then
the simulator's own request log is read: every project asked exactly once for
each of its 7 groups, and every request answered 200 (a 429 would mean a
request over the quota).

    .venv/bin/python -m bench.ingest [projects ...] [--history-days D] [--profile DIR] [--ops]
                                     (default: 100 1000; no history)

``--history-days D`` runs the night on top of D earlier nights' data (`bench.history`:
each project's snapshots, pull records and call log, and the last week's blocks, as
the chain keeps them), the database a real installation has; stored before the clock
starts, and said how long it took.

``--profile DIR`` samples the worker and SecantusDB with py-spy for the whole
pull (``DIR/<N>/worker.txt``, ``secantusdb.txt``; `bench.profile_top` reads them);
with ``BENCH_PROFILE_GIL=1`` only samples holding the GIL (CPU in Python) count.
``BENCH_PARTITIONS=N`` runs `up` with N partitions per topic (unset: the default of
``CLARITYCAST_PARTITIONS``, 32); ``BENCH_UP="name=value ..."`` any other setting, named
as in `claritycast.settings` (e.g. ``broker_fetch_wait_ms=1000``). ``--ops`` lists every
database operation by shape, per Clarity request, with its plan (`bench.round_trips`);
the profiler it needs slows the run down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import httpx
from aiokafka.errors import KafkaError
from pymongo.asynchronous.database import AsyncDatabase

from bench import round_trips
from bench.broker_batches import count_batches
from bench.embedded import Up, memory_kib, stop_on_sigterm
from bench.history import store_history
from bench.progress import CpuByRole, EventCounter, Profiler, cpu_s, created
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.localtime import local_yesterday
from claritycast.runtime.publisher import bootstrap_servers
from claritycast.standins.clarity import EXPORT_PATH
from claritycast.store import claim_check
from claritycast.store.core import Store
from models import catalogue
from models.documents import Organisation, Project, ProjectStatus

SNAPSHOTS_PER_PROJECT = 7
TOPIC_PREFIX = "claritycast."  # `up`'s default
STORED_TOPIC = f"{TOPIC_PREFIX}snapshots.stored"
IDLE_S = 5.0


def simulator_log_check(url: str, count: int) -> str:
    """What Clarity saw, from the simulator's own request log: each request once, none refused.

    Every project must have been asked exactly once for each of its 7 groups
    (no request made twice, none missing) and Clarity must have answered every
    one (no 429: never over quota; no other error). Raises with the first
    project at fault; returns the line the benchmark prints.
    """
    base = url.removesuffix(EXPORT_PATH)
    entries = httpx.get(f"{base}/_simulator/log", timeout=300).raise_for_status().json()
    by_project: dict[str, list[tuple[str, ...]]] = {}
    statuses: Counter[int] = Counter()
    for entry in entries:
        statuses[entry["status"]] += 1
        params = tuple(sorted(f"{k}={v}" for k, v in entry["params"].items()))
        by_project.setdefault(str(entry["project_id"]), []).append(params)
    assert len(by_project) == count, f"{len(by_project)} projects asked, {count} expected"
    for project_id, asked in by_project.items():
        assert len(asked) == SNAPSHOTS_PER_PROJECT == len(set(asked)), (
            f"{project_id}: {len(asked)} requests for {len(set(asked))} groups"
        )
    assert set(statuses) == {200}, f"Clarity answered {dict(statuses)}"
    return (f"  Clarity saw {len(entries)} requests: each of the {count} projects asked once "
            f"for each of its {SNAPSHOTS_PER_PROJECT} groups, every one answered 200 "
            f"(no 429: none over quota)")  # fmt: skip


async def document_sizes(db: AsyncDatabase[dict[str, Any]], sample: int = 300) -> str:
    """Mean BSON size of the documents a night writes, from the first ``sample`` of each.

    For sizing MongoDB (``docs/scaling.md``); one small read per collection.
    """
    sizes = []
    for name in ("projects", "calls", "pulls", "snapshots", claim_check.COLLECTION):
        docs = [doc async for doc in db[name].find().limit(sample)]
        if docs:
            mean = sum(len(bson.encode(doc)) for doc in docs) / len(docs)
            sizes.append(f"{name} {mean / 1024:.1f} KiB")
    return "  mean document size: " + ", ".join(sizes)


async def idle_cpu(pid: int, seconds: float = IDLE_S) -> float:
    """A process's CPU over ``seconds`` of waiting, as a share of one core.

    For the broker: the workers' consumers poll it all the time, and what one
    poll costs it may grow with what it holds.
    """
    before = cpu_s(pid)
    await asyncio.sleep(seconds)
    return (cpu_s(pid) - before) / seconds


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


def zone_at_noon(now: datetime) -> str:
    """A fixed-offset IANA zone where it is about noon now: its midnight is hours away.

    A night that ran across the organisation's midnight would have the tick ask
    for the next day too (rightly), mixing two nights in one figure.
    """
    offset = (12 - now.hour + 12) % 24 - 12  # hours east of UTC, -12 to +11
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{'+' if offset < 0 else '-'}{abs(offset)}"  # POSIX signs are inverted


async def add_paused_projects(
    store: Store, tokens: dict[str, str], timezone: str, org: str = "bench"
) -> None:
    """The projects as `connect` stores them (sealed tokens), paused: none due before the clock."""
    await store.add_organisation(Organisation(org, org, timezone, datetime.now(UTC)))
    metric_ids = [metric.id for metric in catalogue.METRICS]
    for project_id, token in tokens.items():
        sealed = store.seal_token(token, project_id)
        paused = Project(project_id, project_id, org, sealed, status=ProjectStatus.PAUSED)
        await store.add_project(paused, metric_ids)


def tried_settings() -> dict[str, str]:
    """Settings to try, from ``BENCH_UP="broker_fetch_wait_ms=1000 pull_in_flight=3000"``.

    `up` otherwise runs on its defaults (every ``CLARITYCAST_`` variable of the
    caller's environment is left out), so a figure is always the default's unless
    the command line says otherwise.
    """
    pairs = [pair.split("=", 1) for pair in os.environ.get("BENCH_UP", "").split()]
    return {name: value for name, value in pairs}


async def night(count: int, profile_dir: Path | None, ops: bool, history_days: int = 0) -> None:
    simulator_dir = Path(tempfile.mkdtemp(prefix="claritycast-bench-sim-"))
    simulator, url, tokens = start_simulator(count, simulator_dir)
    partitions = os.environ.get("BENCH_PARTITIONS")
    chosen = {"partitions": partitions} if partitions else {}
    up = Up(clarity_api_url=url, tick_interval_s="2", **chosen, **tried_settings())
    try:
        up.wait_ready()
        state = up.state()
        children = state["children"]
        assert isinstance(children, dict)
        broker_before = memory_kib(children["tansu"])
        # Sealed with the key `up` made in its data folder, as `connect` would seal them.
        keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())
        store = Store.connect(str(state["mongodb_url"]), "claritycast", keyring=keyring)
        timezone = zone_at_noon(datetime.now(UTC))
        yesterday = local_yesterday(timezone, datetime.now(UTC)).isoformat()
        await add_paused_projects(store, tokens, timezone)
        if history_days:
            before = date.fromisoformat(yesterday) - timedelta(days=1)
            kept = await store_history(store, sorted(tokens), timezone, before, history_days)
            print(f"-- {history_days} days of history stored first in {kept['seconds']:.0f} s: "
                  f"{kept['snapshots']} snapshots, {kept['calls']} calls, "
                  f"{kept['blocks']} answers' blocks", flush=True)  # fmt: skip
        if ops:
            await round_trips.start(store.db)
        expected = count * SNAPSHOTS_PER_PROJECT

        def of_the_night(value: dict[str, Any]) -> bool:
            return created(value) and value.get("local_date") == yesterday

        async with EventCounter(str(state["kafka_url"]), STORED_TOPIC, of_the_night) as stored:
            idle_before = await idle_cpu(children["tansu"])
            load_before = os.getloadavg()[0]
            spied = {name: children[name] for name in ("worker", "secantusdb")}
            gil = os.environ.get("BENCH_PROFILE_GIL") == "1"

            def roles() -> dict[str, int]:  # `up` may restart the worker and the broker
                now = up.children()
                return {"worker": now["worker"], "secantusdb": now["secantusdb"],
                        "tansu": now["tansu"], "simulator": simulator.pid,
                        "up": up.process.pid}  # fmt: skip

            profiled = Profiler(profile_dir / str(count) if profile_dir else None, spied, gil=gil)
            async with CpuByRole(roles) as meter:
                with profiled:
                    began = time.monotonic()  # all due at once: the tick sees them from now on
                    await store.db.projects.update_many(
                        {}, {"$set": {"status": ProjectStatus.ACTIVE}}
                    )
                    await stored.wait_for(expected, timeout_s=3600)
                    elapsed = time.monotonic() - began
            # Read at once: once the night is stored, `up` may restart a broker past its
            # memory limit (CLARITYCAST_BROKER_MEMORY_LIMIT_MB), and the worker with it.
            cpu = meter.seconds()
            workers = meter.processes("worker")
            now = up.children()
            peak_mib = memory_kib(now["worker"], "VmHWM") / 1024
            broker_mib = (broker_before / 1024, memory_kib(now["tansu"]) / 1024)
            try:
                idle_after = f"{await idle_cpu(now['tansu']):.0%} holding it"
            except FileNotFoundError:
                idle_after = "not measured after it (restarted)"
        batching = await batches_line(str(state["kafka_url"]))
        if ops:
            print("\n".join(await round_trips.report(store.db, expected, "request")))
        tonight = {"local_date": yesterday}  # the night's alone, once the clock has stopped
        snapshots = await store.db.snapshots.count_documents(tonight)
        calls = await store.db.calls.count_documents(tonight)
        sizes = await document_sizes(store.db)
        await store.close()
        print(f"-- {count} projects, one night ({expected} Clarity requests; {yesterday} in "
              f"{timezone}); load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")  # fmt: skip
        rates = (count / elapsed, calls / elapsed, expected / elapsed)
        print("  {:.1f} s: {:.1f} projects/s, {:.1f} requests/s, {:.1f} snapshots/s".format(
            elapsed, *rates))  # fmt: skip
        print(f"  {1000 * elapsed / count:.1f} ms per project; CPU seconds: " + ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in cpu.items()))  # fmt: skip
        print(f"  worker peak memory {peak_mib:.0f} MiB (the last of {workers} workers); "
              f"broker {broker_mib[0]:.0f} -> {broker_mib[1]:.0f} MiB")  # fmt: skip
        print(f"  broker CPU with nothing to do: {idle_before:.0%} of a core before the night, "
              f"{idle_after}")  # fmt: skip
        print(batching)
        for line in up.kept:
            print(f"  up: {line.strip()}")
        assert snapshots == expected, f"{snapshots} snapshots stored, {expected} expected"
        assert calls == expected, f"{calls} requests for {expected} snapshots"
        print(simulator_log_check(url, count))
        print(sizes)
        up.stop()
    finally:
        up.kill()
        os.killpg(simulator.pid, signal.SIGTERM)
        simulator.wait(30)
        shutil.rmtree(simulator_dir, ignore_errors=True)


async def batches_line(kafka_url: str) -> str:
    """Records per producer batch on the broker, by topic (`bench.broker_batches`)."""
    try:
        counts = await count_batches(bootstrap_servers(kafka_url), TOPIC_PREFIX)
    except KafkaError as exc:  # restarting at the limit just now
        return f"  broker batches not counted: {exc}"
    return "  records per producer batch on the broker (since it last started): " + ", ".join(
        f"{topic.removeprefix(TOPIC_PREFIX)} {n.per_batch:.1f}"
        for topic, n in counts.items()
        if n.records
    )


def main(argv: list[str]) -> None:
    ops = "--ops" in argv
    argv = [arg for arg in argv if arg != "--ops"]
    profile_dir = None
    history_days = 0
    if "--history-days" in argv:
        at = argv.index("--history-days")
        history_days = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    if "--profile" in argv:
        at = argv.index("--profile")
        profile_dir = Path(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    stop_on_sigterm()
    try:
        for count in [int(arg) for arg in argv] or [100, 1000]:
            asyncio.run(night(count, profile_dir, ops, history_days))
    except KeyboardInterrupt:
        raise SystemExit("interrupted: claritycast up and the simulator stopped") from None


if __name__ == "__main__":
    main(sys.argv[1:])
