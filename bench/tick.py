"""The tick's cost with N projects and N connections, of which none or a few are due.

SecantusDB runs as `claritycast up` runs it (fsync on every commit). N
projects are written in two organisations: most in UTC, ``due`` of them in
Asia/Tokyo; each has a daily connection (the UTC ones at 09:00 UTC, the Tokyo
ones at 00:00 Tokyo). Yesterday's pull of every project is complete and
today's reports are sent. At 14:00 UTC nothing is due; at 15:00:30 UTC
(00:00:30 in Tokyo) a new day has begun for the Tokyo projects and their
connections: ``due`` projects miss 7 groups each and ``due`` reports are due.

Each row runs the leader's whole tick as the worker does (`Ticker.tick`, then
`due_deliveries`) against the real database, and counts the commands it sent
(a PyMongo command listener). The fetch requests go to a stand-in topic that
only counts them: what is measured is the tick's reading, deciding and
writing, not Kafka. The first tick after the data is written looks at every
project and connection once (they have no next moment yet), as after an
upgrade; the rows after it are the steady state.

    .venv/bin/python -m bench.tick [projects] [due]      (default: 10000 100)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time as timer
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pymongo import monitoring

from agents.tick import Ticker
from bench.progress import cpu_s
from claritycast.clock import ManualClock
from claritycast.delivery.log import due_deliveries
from claritycast.runtime.embedded import embedded_mongodb_url, secantusdb
from claritycast.runtime.ports import free_port
from claritycast.settings import load_settings
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.delivery import Connection, Destination, DestinationKind, Frequency, Schedule

QUIET = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
TOKYO_MIDNIGHT = datetime(2026, 12, 1, 15, 0, 30, tzinfo=UTC)  # 00:00:30 on 2 Dec in Tokyo
BATCH = 1000


class Commands(monitoring.CommandListener):
    """Counts the commands sent to the database, by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ismaster", "endSessions"):
            self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class CountingTopic:
    """Stands in for ``fetch.requested``: counts what the tick asks for."""

    def __init__(self) -> None:
        self.sent = 0

    def get_topic_name(self) -> str:
        return "fetch.requested"

    async def send(self, *, key: str, value: Any) -> None:
        self.sent += 1


async def seed(store: Store, count: int, due: int) -> None:
    """The projects, pulls, connections and sent deliveries of the scenario."""
    created = QUIET - timedelta(days=30)
    await store.db.organisations.insert_many(
        [
            {"_id": "utc", "name": "UTC", "timezone": "UTC", "created_at": created},
            {"_id": "tokyo", "name": "Tokyo", "timezone": "Asia/Tokyo", "created_at": created},
        ]
    )
    for start in range(0, count, BATCH):
        projects, pulls, connections, deliveries = [], [], [], []
        for i in range(start, min(start + BATCH, count)):
            tokyo = i < due
            project_id = f"p{i:05d}"
            projects.append({
                "_id": project_id, "label": project_id, "org_id": "tokyo" if tokyo else "utc",
                "token": "t", "status": "active", "status_reason": None, "connected_at": created,
                "exhausted_until": None, "deferred_until": None,
            })  # fmt: skip
            yesterday = "2026-11-30"
            pulls.append({"_id": f"{project_id}/{yesterday}", "project_id": project_id,
                          "local_date": yesterday, "groups": list(GROUP_NAMES)})  # fmt: skip
            connection = Connection(
                name=f"{project_id}-sessions",
                project_id=project_id,
                metric_id="sessions",
                destination=Destination(DestinationKind.SLACK, f"#c{i}"),
                schedule=Schedule(Frequency.DAILY, time(0, 0) if tokyo else time(9, 0)),
                timezone="Asia/Tokyo" if tokyo else "UTC",
                created_at=created,
            )
            connections.append(connection.to_document())
            period, at = ("2026-12-01", datetime(2026, 11, 30, 15, 0, tzinfo=UTC)) if tokyo else (
                "2026-12-01", datetime(2026, 12, 1, 9, 0, tzinfo=UTC))  # fmt: skip
            deliveries.append({
                "_id": f"{connection.name}/{period}", "connection": connection.name,
                "period": period, "reason": "schedule", "scheduled_at": at, "state": "sent",
                "created_at": at, "next_check_at": None, "attempts": [],
            })  # fmt: skip
        await store.db.projects.insert_many(projects)
        await store.db.pulls.insert_many(pulls)
        await store.db.connections.insert_many(connections)
        await store.db.deliveries.insert_many(deliveries)


async def one_tick(
    ticker: Ticker, store: Store, clock: ManualClock, at: datetime, commands: Commands, pid: int
) -> tuple[float, float, int, int, Counter[str]]:
    """(wall s, database CPU s, fetches asked, reports due, commands) of one tick at ``at``."""
    clock.set(at)
    commands.counts.clear()
    cpu = cpu_s(pid)
    began = timer.perf_counter()
    asked = await ticker.tick()
    reports = len(await due_deliveries(store, at))
    wall = timer.perf_counter() - began
    return wall, cpu_s(pid) - cpu, asked, reports, Counter(commands.counts)


async def run(count: int, due: int) -> None:
    commands = Commands()
    monitoring.register(commands)
    root = Path(tempfile.mkdtemp(prefix="claritycast-bench-tick-"))
    database = secantusdb(free_port(), root / "mongodb", root / "log", sync_on_commit=True)
    await database.start()
    assert database.pid is not None
    store = Store.connect(embedded_mongodb_url(database.port), "claritycast")
    try:
        await store.ensure_indexes()
        began = timer.perf_counter()
        await seed(store, count, due)
        print(f"-- {count} projects and connections, {due} of them in Tokyo "
              f"(written in {timer.perf_counter() - began:.0f} s)")  # fmt: skip
        clock = ManualClock(QUIET)
        deps = SimpleNamespace(store=store, clock=clock, settings=load_settings())
        ticker = Ticker(deps, CountingTopic())  # type: ignore[arg-type]

        async def at(moment: datetime) -> tuple[float, float, int, int, Counter[str]]:
            return await one_tick(ticker, store, clock, moment, commands, database.pid)

        async def caught_up() -> tuple[int, tuple[float, float, int, int, Counter[str]]]:
            """The first ticks, until every project has a moment: the bound on groups in
            flight has the tick read the due projects a wave at a time."""
            waves = [await at(QUIET)]
            while ticker.behind:
                waves.append(await at(QUIET))
            counts: Counter[str] = Counter()
            for wave in waves:
                counts.update(wave[4])
            return len(waves), (sum(w[0] for w in waves), sum(w[1] for w in waves),
                                sum(w[2] for w in waves), waves[-1][3], counts)  # fmt: skip

        waves, first = await caught_up()
        rows = [
            (f"first ticks (every moment unset): {waves} waves, all of them", [first]),
            ("nothing due (5 ticks)",
             [await at(QUIET + timedelta(seconds=30 * n)) for n in range(1, 6)]),
            (f"{due} projects and {due} reports due", [await at(TOKYO_MIDNIGHT)]),
            ("the tick after that (nothing due)",
             [await at(TOKYO_MIDNIGHT + timedelta(seconds=30))]),
        ]  # fmt: skip
        print("| tick | wall (median) | database CPU | fetches asked | reports due | commands |")
        print("|---|---|---|---|---|---|")
        for name, ticks in rows:
            wall = statistics.median(t[0] for t in ticks)
            cpu = statistics.median(t[1] for t in ticks)
            asked, reports, counts = ticks[-1][2], ticks[-1][3], ticks[-1][4]
            listed = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
            print(f"| {name} | {1000 * wall:.1f} ms | {1000 * cpu:.0f} ms | {asked} | {reports} "
                  f"| {sum(counts.values())}: {listed} |")  # fmt: skip
    finally:
        await store.close()
        await database.stop()


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 10_000
    due = int(argv[1]) if len(argv) > 1 else 100
    asyncio.run(run(count, due))


if __name__ == "__main__":
    main(sys.argv[1:])
