"""A month of nights: N projects and N daily reports through the real chain on a fast clock.

`claritycast up` runs as a user runs it (Tansu, SecantusDB with fsync on every
commit, one worker with every stage, the web process), its broker bounded by
``--broker-limit-mb``. Its worker reads the time from a file that this
benchmark rewrites (``CLARITYCAST_CLOCK_FILE``), so the clock jumps from one
event to the next while every message crosses the real broker and database.
In this process: the Clarity simulator (on the same clock), the Slack
stand-in and a real SMTP server (aiosmtpd).

N projects (UTC) and N daily connections at 09:00 (the `sessions` chart
over 30 days, every other one to Slack, the rest by email) are written to
MongoDB, with ``--history-days`` (30) of each project's `overall` snapshots
before the first night, as if pulled before: every night's report then reads
and draws a full window, so night 2 and night 30 do the same work. Night by
night, the clock is set to 00:35 (the tick finds every project missing
yesterday; 00:35 rather than 00:00 because each call counts for 24 h and 2
min, and time stands still during a pull) and the pull is timed until MongoDB
holds 7 x N more snapshots; then to 09:00:30 and the reports are timed until
Slack and the SMTP server received N more. Then the clock stands still for
``--quiet-s`` real seconds, the quiet hours in which `up` may restart its
broker, and the benchmark waits until the worker is running again.

Per night: pull time, render and delivery time, the worker's resident memory,
the database's size on disk, the broker's memory, the restarts `up` made
(planned broker restarts, a hung database started again) and the whole
night's real seconds. Progress is counted from the worker's own Prometheus
counter of snapshots stored and the stand-ins' receipts, never with a count
of a whole collection on SecantusDB, whose every count
(`estimated_document_count` too) walks it; only when the worker's count stands
still short of the night (a worker stopped mid-pull stored some after its
count was last read) are the night's snapshots counted, by an index
(`wait_for_pull`; such a night's pull time is marked ``*``). At
the end: every Clarity request made exactly once (the simulator's log),
every report received exactly once.

    .venv/bin/python -m bench.month [--projects 1000] [--nights 30] [--history-days 30]
                                    [--broker-limit-mb 256] [--quiet-s 6]
                                    [--profile DIR [--profile-nights 2,13]]

``--profile DIR`` samples the worker and SecantusDB with py-spy during the
reports of the nights named by ``--profile-nights`` (``DIR/night-<N>/worker.txt``,
``secantusdb.txt``; `bench.profile_top` reads them): what a report costs on
one night against another.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from bench.embedded import Up, memory_kib, stop_on_sigterm
from bench.progress import Profiler
from claritycast.access import create_api_key
from claritycast.clock import ManualClock, write_clock_file
from claritycast.delivery.connections import create_connection
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.history import history_snapshot
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models import catalogue
from models.documents import Organisation, Project, ProjectStatus, Snapshot

GROUPS = 7
STALL_S = 3.0  # the worker's count standing still this long: ask the database
HISTORY_BATCH = 1000
TIMEOUT_S = 3600
CHECK_S = 2  # how often `up` reads the broker's memory here (the default is 60 s)
MIB = 1024 * 1024
ENDED = re.compile(r"broker\.restart(ed|_abandoned)\b")
RESTARTED_DATABASE = "database.restarted"  # `up` found the database hung or gone


@dataclass
class Night:
    number: int
    pull_s: float
    deliver_s: float
    worker_rss_mib: float
    database_mib: float
    broker_mib: float
    broker_peak_mib: float  # since the broker (or the new one) started
    restarts: list[str]
    fresh_worker: bool  # started again since the night before (a planned broker restart)
    pull_from_database: bool  # the pull's end told by the database (`wait_for_pull`)
    cycle_s: float  # the whole night in real seconds, the quiet hours and checks included


def disk_mib(path: Path) -> float:
    """The database's files on disk (blocks allocated), in MiB, its journal left out.

    WiredTiger's journal (``WiredTigerLog.*``) is preallocated in 10 MiB files
    and recycled at each checkpoint: it says nothing about the data's growth.
    """
    return sum(file.stat().st_blocks * 512 for file in path.iterdir() if file.suffix == ".wt") / MIB


async def seed(store: Store, simulator: ClaritySimulator, count: int, now: datetime) -> None:
    """N paused projects (sealed as `connect` seals them) and N daily connections."""
    await store.add_organisation(Organisation("bench", "bench", "UTC", now))
    metric_ids = [metric.id for metric in catalogue.METRICS]
    for i in range(1, count + 1):
        project_id = f"m{i:05d}"
        sealed = store.seal_token(simulator.projects[project_id].token, project_id)
        project = Project(
            project_id, project_id, "bench", sealed, connected_at=now,
            status=ProjectStatus.PAUSED,
        )  # fmt: skip
        await store.add_project(project, metric_ids)
        slack = {"slack_channel": f"#month-{i:05d}"}
        where = slack if i % 2 else {"emails": f"{project_id}@example.com"}
        await create_connection(
            store, project=project_id, metric="sessions", now=now, at="09:00", timezone="UTC",
            name=f"month-{i:05d}", **where,
        )  # fmt: skip


async def seed_history(store: Store, count: int, first: date, days: int) -> float:
    """``days`` of each project's `overall` group before ``first``; seconds taken.

    Stored by the store's own batch write (`Store.save_snapshots`, pull records
    with them), 1,000 snapshots at a time.
    """
    began = time.monotonic()
    batch: list[Snapshot] = []
    for back in range(days, 0, -1):
        day = first - timedelta(days=back)
        for i in range(1, count + 1):
            batch.append(history_snapshot(f"m{i:05d}", day, "overall", "UTC"))
            if len(batch) == HISTORY_BATCH:
                await store.save_snapshots(batch)
                batch.clear()
    if batch:
        await store.save_snapshots(batch)
    return time.monotonic() - began


async def wait_for_pull(
    stored: StoredCounter, store: Store, target: int, tonight: int, night: int, pulled_at: datetime
) -> tuple[float, bool]:
    """Seconds until the night's snapshots are stored, and whether the database told it.

    The worker's counter tells it as a rule. A worker stopped in the middle of a
    pull (a drained broker restart) may store some after its count was last
    read, and then the total never reaches ``target``: once the count has stood
    still for `STALL_S`, the night's snapshots are counted in the database, by
    the index on ``fetched_at`` (the worker's clock stands still at
    ``pulled_at`` during the pull, so the range holds this night's only). Such a
    night's time is an upper bound by up to `STALL_S`, and marked.
    """
    began = time.monotonic()
    last, still_since = -1, began
    while (value := await stored()) < target:
        now = time.monotonic()
        if now - began > TIMEOUT_S:
            raise SystemExit(f"night {night}: snapshots: {value} of {target} after {TIMEOUT_S} s")
        if value != last:
            last, still_since = value, now
        elif now - still_since > STALL_S:
            found = await store.db.snapshots.count_documents({"fetched_at": {"$gte": pulled_at}})
            if found >= tonight:
                stored.rebase(target)
                return time.monotonic() - began, True
            still_since = now
        await asyncio.sleep(0.2)
    return time.monotonic() - began, False


async def wait_until(probe: object, target: int, what: str) -> float:
    """Seconds until ``await probe()`` reaches ``target``."""
    began = time.monotonic()
    while (value := await probe()) < target:  # type: ignore[operator]
        if time.monotonic() - began > TIMEOUT_S:
            raise SystemExit(f"{what}: {value} of {target} after {TIMEOUT_S} s")
        await asyncio.sleep(0.2)
    return time.monotonic() - began


async def worker_running(up: Up, store: Store) -> int:
    """The worker's pid, once the worker named in the state file has reported in."""
    while True:
        pid = int(up.state()["children"]["worker"])  # type: ignore[index]
        if pid in {beat.pid for beat in await store.live_workers(within_s=10)}:
            return pid
        await asyncio.sleep(0.2)


class StoredCounter:
    """Snapshots stored, from the workers' own counter (``claritycast_snapshots_stored``).

    Read from the worker's ``/metrics`` as Prometheus would, with an API key:
    its cost does not grow with the data, unlike any count on SecantusDB
    (`estimated_document_count` too walks every document there). A worker
    started again by a planned broker restart counts from 0; the restart comes
    at a quiet moment, after the old worker's last count was read.
    """

    def __init__(self, up: Up, store: Store, key: str) -> None:
        self.up = up
        self.store = store
        self.headers = {"Authorization": f"Bearer {key}"}
        self.pid = 0
        self.url: str | None = None
        self.before = 0.0  # counted by workers that have stopped
        self.last = 0.0

    def rebase(self, total: int) -> None:
        """Make the count ``total`` now (the database says so; see `wait_for_pull`)."""
        self.before = total - self.last

    async def __call__(self) -> int:
        pid = int(self.up.state()["children"]["worker"])  # type: ignore[index]
        if pid != self.pid:
            beats = {beat.pid: beat for beat in await self.store.live_workers(within_s=30)}
            if pid not in beats or beats[pid].metrics_url is None:
                return int(self.before + self.last)  # not reported in yet
            self.pid, self.url = pid, beats[pid].metrics_url
            self.before, self.last = self.before + self.last, 0.0
        assert self.url is not None
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(self.url, headers=self.headers)).text
        except httpx.HTTPError:  # stopping for a planned restart
            return int(self.before + self.last)
        for line in text.splitlines():
            if line.startswith("claritycast_snapshots_stored_total "):
                self.last = float(line.split()[1])
        return int(self.before + self.last)


def row(night: Night) -> str:
    restarts = "; ".join(night.restarts) or "-"
    return (
        f"| {night.number} | {night.pull_s:.1f}{' *' if night.pull_from_database else ''} "
        f"| {night.deliver_s:.1f} "
        f"| {night.worker_rss_mib:.0f}{' (new)' if night.fresh_worker else ''} "
        f"| {night.database_mib:.1f} | {night.broker_mib:.0f} / {night.broker_peak_mib:.0f} "
        f"| {restarts} | {night.cycle_s:.0f} |"
    )


async def restart_done(up: Up) -> None:
    """Wait while a planned broker restart that has begun has not ended."""
    while True:
        kept = list(up.kept)
        begun = sum("broker.restart_begins" in line for line in kept)
        if begun == sum(bool(ENDED.search(line)) for line in kept):
            return
        await asyncio.sleep(0.2)


def restart_summary(line: str) -> str:
    """A `broker.restarted` line as 'before -> after MiB in s', a `database.restarted` one too."""
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    if RESTARTED_DATABASE in line:
        return f"database restarted ({fields.get('why')}) in {fields.get('took_s')} s"
    if "broker.restart_abandoned" in line:
        return "restart abandoned (work in flight after the stop)"
    drained = fields.get("drained_s", "None")
    return (
        f"restart {fields.get('rss_before_mib')} -> {fields.get('rss_after_mib')} MiB "
        f"in {fields.get('took_s')} s"
        + ("" if drained == "None" else f" after draining the chain for {drained} s")
    )


@dataclass(frozen=True)
class Profiling:
    """Where py-spy's samples go, and of which nights' reports."""

    out_dir: Path
    nights: frozenset[int]

    def of(self, night: int) -> Path | None:
        return self.out_dir / f"night-{night}" if night in self.nights else None


async def month(
    count: int,
    nights: int,
    history: int,
    limit_mb: int,
    quiet_s: float,
    profiling: Profiling | None = None,
) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="claritycast-bench-month-"))
    clock_file = scratch / "clock"
    first = datetime.now(UTC).date() - timedelta(days=nights + 1)
    clock = ManualClock(datetime(first.year, first.month, first.day, 23, 0, tzinfo=UTC))
    write_clock_file(clock_file, clock.now())
    simulator = ClaritySimulator(clock)
    for i in range(1, count + 1):
        simulator.add_project(f"m{i:05d}")
    slack = SlackStandin()
    for i in range(1, count + 1, 2):
        slack.add_channel(f"month-{i:05d}")
    await simulator.start()
    async with SmtpCatcher() as smtp, slack as slack_url:
        up = Up(
            clock_file=str(clock_file), clarity_api_url=simulator.export_url,
            tick_interval_s="1",
            broker_memory_limit_mb=str(limit_mb), broker_memory_check_s=str(CHECK_S),
            slack_token=slack.token, slack_api_url=slack_url,
            smtp_host="127.0.0.1", smtp_port=str(smtp.port), smtp_security="none",
        )  # fmt: skip
        try:
            up.wait_ready()
            state = up.state()
            keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())
            store = Store.connect(str(state["mongodb_url"]), "claritycast", keyring=keyring)
            try:
                await seed(store, simulator, count, clock.now())
                seeded_s = await seed_history(store, count, first, history)
                print(f"-- {count} projects, {count} daily reports, {nights} nights; broker "
                      f"limit {limit_mb} MiB; data in {up.data_dir}", flush=True)  # fmt: skip
                print(
                    f"-- {history} days of history stored first in {seeded_s:.0f} s: "
                    f"database {disk_mib(up.data_dir / 'mongodb'):.1f} MiB",
                    flush=True,
                )
                print("| night | pull s | reports s | worker RSS MiB | database MiB | broker MiB "
                      "now / peak | restarts (broker, database) | night s |")  # fmt: skip
                print("|---|---|---|---|---|---|---|---|", flush=True)
                results = await run_nights(up, store, clock, clock_file, count, nights, quiet_s,
                                           smtp, slack, profiling)  # fmt: skip
            finally:
                await store.close()
            up.stop()
        finally:
            up.kill()
            await simulator.stop()
            shutil.rmtree(scratch, ignore_errors=True)
        check_once(simulator, slack, smtp, count, nights)
    summary(results, count)


async def run_nights(
    up: Up,
    store: Store,
    clock: ManualClock,
    clock_file: Path,
    count: int,
    nights: int,
    quiet_s: float,
    smtp: SmtpCatcher,
    slack: SlackStandin,
    profiling: Profiling | None = None,
) -> list[Night]:
    results: list[Night] = []
    day = clock.now().date() + timedelta(days=1)
    last_pid = await worker_running(up, store)
    key, _ = await create_api_key(store, "bench-month", "viewer", clock.now(), "bench")
    stored = StoredCounter(up, store, key)

    async def received() -> int:
        return len(slack.messages) + len(smtp.messages)

    for number in range(1, nights + 1):
        kept = len(up.kept)
        night_began = time.monotonic()
        # Each call counts for 24 h and 2 min and time stands still during a pull:
        # each night's pull is 3 minutes later than the last (00:35 to 02:02 in 30).
        pull_at = timedelta(minutes=35 + 3 * (number - 1))
        clock.set(datetime(day.year, day.month, day.day, tzinfo=UTC) + pull_at)
        write_clock_file(clock_file, clock.now())
        if number == 1:  # everything due at once, from this moment
            await store.db.projects.update_many({}, {"$set": {"status": ProjectStatus.ACTIVE}})
        pull_s, counted = await wait_for_pull(
            stored, store, GROUPS * count * number, GROUPS * count, number, clock.now()
        )
        clock.set(datetime(day.year, day.month, day.day, 9, 0, 30, tzinfo=UTC))
        write_clock_file(clock_file, clock.now())
        spied = {"worker": last_pid, "secantusdb": int(up.state()["children"]["secantusdb"])}  # type: ignore[index]
        with Profiler(profiling.of(number) if profiling else None, spied):
            deliver_s = await wait_until(received, count * number, f"night {number}: reports")
        await asyncio.sleep(quiet_s)  # the quiet hours: `up` may restart its broker now
        await restart_done(up)
        pid = await worker_running(up, store)
        state = up.state()
        broker = int(state["children"]["tansu"])  # type: ignore[index]
        night = Night(
            number, pull_s, deliver_s, memory_kib(pid) / 1024, disk_mib(up.data_dir / "mongodb"),
            memory_kib(broker) / 1024, memory_kib(broker, "VmHWM") / 1024,
            [
                restart_summary(line)
                for line in up.kept[kept:]
                if ENDED.search(line) or RESTARTED_DATABASE in line
            ],
            pid != last_pid, counted, time.monotonic() - night_began,
        )  # fmt: skip
        last_pid = pid
        print(row(night), flush=True)
        results.append(night)
        day += timedelta(days=1)
    return results


def check_once(
    simulator: ClaritySimulator, slack: SlackStandin, smtp: SmtpCatcher, count: int, nights: int
) -> None:
    """Every Clarity request exactly once per group and night; every report exactly once."""
    requests = Counter(request.project_id for request in simulator.log)
    assert requests == Counter({p: GROUPS * nights for p in simulator.projects}), "requests"
    assert all(request.status == 200 for request in simulator.log)
    by_channel = Counter(message.channel_name for message in slack.messages)
    assert set(by_channel.values()) == {nights}, "Slack: a report missing or doubled"
    assert len(by_channel) == (count + 1) // 2, "Slack: a channel without reports"
    by_rcpt = Counter(rcpt for message in smtp.messages for rcpt in message.rcpt_tos)
    assert set(by_rcpt.values()) <= {nights}, "email: a report doubled"
    assert len(by_rcpt) == count // 2, "email: an address without reports"
    print(f"checked: {len(simulator.log)} Clarity requests, {GROUPS} per project and night; "
          f"{len(slack.messages)} Slack messages and {len(smtp.messages)} emails, one per "
          "connection and night")  # fmt: skip


def summary(results: list[Night], count: int) -> None:
    if len(results) < 2:
        return
    second, last = results[1], results[-1]

    def change(a: float, b: float) -> str:
        return f"{(b - a) / a * 100:+.0f} %"

    fresh = any(night.fresh_worker for night in results[2:])
    print(f"night {last.number} against night 2: pull {change(second.pull_s, last.pull_s)}, "
          f"reports {change(second.deliver_s, last.deliver_s)}, worker RSS "
          f"{change(second.worker_rss_mib, last.worker_rss_mib)}"
          + (" (the worker was started again in between)" if fresh else ""))  # fmt: skip
    nights = [night.number for night in results]
    sizes = [night.database_mib for night in results]
    slope = statistics.linear_regression(nights, sizes).slope
    try:
        fit = f"r = {statistics.correlation(nights, sizes):.3f}"
    except statistics.StatisticsError:  # the same size every night (too few nights to grow)
        fit = "constant"
    print(f"database: {slope:.2f} MiB per night ({fit}), "
          f"{slope * 30 / count * 1024:.0f} KiB per project per month")  # fmt: skip
    restarts = sum(len(night.restarts) for night in results)
    print(f"broker: at most {max(n.broker_peak_mib for n in results):.0f} MiB; "
          f"{restarts} planned restart(s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1000)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--broker-limit-mb", type=int, default=256)
    parser.add_argument("--quiet-s", type=float, default=6.0)
    parser.add_argument("--profile", type=Path, help="py-spy the reports of some nights into DIR")
    parser.add_argument("--profile-nights", default="2,13", help="which nights --profile samples")
    args = parser.parse_args()
    profiling = (
        Profiling(args.profile, frozenset(int(n) for n in args.profile_nights.split(",")))
        if args.profile
        else None
    )
    stop_on_sigterm()
    try:
        sized = (args.projects, args.nights, args.history_days)
        asyncio.run(month(*sized, args.broker_limit_mb, args.quiet_s, profiling))
    except KeyboardInterrupt:
        raise SystemExit("interrupted: claritycast up and the stand-ins stopped") from None


if __name__ == "__main__":
    main()
