"""The web process under load: 1,000 sources with 30 days of history, 2,000 connections.

`claritycast up` runs on a scratch data folder; the store is filled directly
(one project's snapshots are drawn by the simulator and copied to the others,
with their pulls, a day's calls, connections and deliveries), then each
endpoint is asked in a loop for a fixed time by 1 and by 20 concurrent
clients over loopback, with an API key. Prints the median and the p99
latency and the request rate of each.

    .venv/bin/python -m bench.web [seconds] [sources]       (default: 30 1000)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.embedded import Up
from claritycast.clarity.token import fingerprint
from claritycast.keyfile import KEY_FILE_NAME
from claritycast.keyring import parse_keys
from claritycast.localtime import local_yesterday
from claritycast.standins.history import history_snapshot
from claritycast.store.core import Store
from models import catalogue

SOURCES = 1000
CONNECTIONS_PER_SOURCE = 2
DELIVERIES_PER_CONNECTION = 10
DAYS = 30
LONG_DAYS = 90  # the one source whose series is asked for over 90 days


async def seed(store: Store, sources: int) -> str:
    """Fill the store; returns the id of the source with 90 days of history."""
    now = datetime.now(UTC)
    last = local_yesterday("UTC", now)
    await store.db.organisations.insert_one(
        {"_id": "bench", "name": "Bench", "timezone": "UTC", "created_at": now}
    )
    template = [
        history_snapshot("p-0000", last - timedelta(days=back), "overall", "UTC").to_document()
        for back in range(LONG_DAYS)
    ]
    metric_ids = [metric.id for metric in catalogue.METRICS]
    batch: dict[str, list[dict[str, Any]]] = {}

    def add(collection: str, *documents: dict[str, Any]) -> None:
        batch.setdefault(collection, []).extend(documents)

    async def flush() -> None:
        for collection, documents in batch.items():
            await store.db[collection].insert_many(documents, ordered=False)
        batch.clear()

    for i in range(sources):
        project_id = f"p-{i:04d}"
        days = template if i == 0 else template[:DAYS]
        add("projects", {
            "_id": project_id, "label": f"Shop {i:04d}", "org_id": "bench",
            "sealed_token": store.seal_token(f"token-{i}", project_id),
            "token_fingerprint": fingerprint(f"token-{i}"),
            "status": "active", "status_reason": None, "connected_at": now - timedelta(days=100),
            "exhausted_until": None, "deferred_until": None,
        })  # fmt: skip
        add("metric_sources", *(
            {"project_id": project_id, "metric_id": m, "created_at": now} for m in metric_ids
        ))  # fmt: skip
        add("snapshots", *(
            doc | {"_id": f"{project_id}/{doc['local_date']}/overall", "project_id": project_id}
            for doc in days
        ))  # fmt: skip
        add("pulls", *(
            {"_id": f"{project_id}/{doc['local_date']}", "project_id": project_id,
             "local_date": doc["local_date"], "groups": ["overall"]}
            for doc in days
        ))  # fmt: skip
        add("calls", *(
            {"_id": f"{project_id}-{g}", "project_id": project_id, "local_date": last.isoformat(),
             "group": g, "reason": "daily", "at": now - timedelta(hours=3), "outcome": "ok",
             "status": 200, "detail": None}
            for g in ("overall", "url", "browser", "device", "country", "os", "source")
        ))  # fmt: skip
        for c in range(CONNECTIONS_PER_SOURCE):
            name = f"shop-{i:04d}-{c}"
            add("connections", {
                "_id": name, "project_id": project_id, "metric_id": "sessions",
                "destination": {"kind": "email", "channel": None, "addresses": ["a@example.com"]},
                "schedule": {"frequency": "daily", "at": "09:00", "weekday": None, "day": None},
                "timezone": "UTC", "window_days": 30, "ai_summary": False, "status": "active",
                "status_reason": None, "created_at": now - timedelta(days=40),
            })  # fmt: skip
            add("deliveries", *(
                {"_id": f"{name}/{(last - timedelta(days=d)).isoformat()}", "connection": name,
                 "period": (last - timedelta(days=d)).isoformat(), "reason": "schedule",
                 "scheduled_at": now - timedelta(days=d), "state": "sent",
                 "created_at": now - timedelta(days=d, minutes=i % 60), "next_check_at": None,
                 "attempts": [{"at": now - timedelta(days=d), "worker": "w", "outcome": "sent",
                               "detail": None}],
                 "receipt": {"message_id": f"<{name}-{d}@bench>"},
                 "sent_at": now - timedelta(days=d)}
                for d in range(DELIVERIES_PER_CONNECTION)
            ))  # fmt: skip
        if i % 50 == 49:
            await flush()
    await flush()
    return "p-0000"


async def load(
    client: httpx.AsyncClient, path: str, clients: int, seconds: float
) -> tuple[list[float], int]:
    """``clients`` loops asking ``path`` for ``seconds``; latencies (s) and errors."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            began = time.perf_counter()
            answer = await client.get(path)
            latencies.append(time.perf_counter() - began)
            if answer.status_code != 200:
                errors += 1

    await asyncio.gather(*(one() for _ in range(clients)))
    return latencies, errors


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run(up: Up, seconds: float, sources: int) -> None:
    state = up.state()
    # Sealed with the key `up` made in its data folder, as `connect` would seal them.
    keyring = parse_keys((up.data_dir / KEY_FILE_NAME).read_text())
    store = Store.connect(str(state["mongodb_url"]), "claritycast", keyring=keyring)
    began = time.monotonic()
    long_source = await seed(store, sources)
    await store.close()
    print(f"-- {sources:,} sources, {DAYS} days each, {sources * CONNECTIONS_PER_SOURCE:,} "
          f"connections, {sources * CONNECTIONS_PER_SOURCE * DELIVERIES_PER_CONNECTION:,} "
          f"deliveries; seeded in {time.monotonic() - began:.0f} s")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env["CLARITYCAST_DATA_DIR"] = str(up.data_dir)
    created = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claritycast", "api-keys", "create", "bench",
        env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await created.communicate()
    key = out.decode().strip().splitlines()[-1]
    first = (local_yesterday("UTC", datetime.now(UTC)) - timedelta(days=LONG_DAYS - 1)).isoformat()
    endpoints = {
        "sources list (first page, 50)": "/api/v1/sources",
        "90-day series of one source": (
            f"/api/v1/sources/{long_source}/metrics/sessions?first={first}"
        ),
        "delivery log (first page, 50)": "/api/v1/deliveries",
        "/metrics": "/metrics",
    }
    base = str(state["web_url"])
    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30, limits=limits
    ) as client:
        check = await client.get(endpoints["90-day series of one source"])
        points = len(check.json()["points"])
        assert points == LONG_DAYS, check.text[:300]
        print("| endpoint | clients | requests/s | median | p99 | errors |")
        print("|---|---|---|---|---|---|")
        for name, path in endpoints.items():
            for clients in (1, 20):
                latencies, errors = await load(client, path, clients, seconds)
                rate = len(latencies) / seconds
                print(f"| {name} | {clients} | {rate:.0f} | "
                      f"{statistics.median(latencies) * 1000:.0f} ms | "
                      f"{p99(latencies) * 1000:.0f} ms | {errors} |", flush=True)  # fmt: skip


def main(seconds: float, sources: int) -> None:
    # Filling the store is not what is measured: no fsync per commit while it fills.
    up = Up(partitions="2", web_port="0", mongodb_sync_on_commit="false")
    try:
        up.wait_ready(120)
        asyncio.run(run(up, seconds, sources))
        up.stop()
    finally:
        up.kill()


if __name__ == "__main__":
    arguments = [float(arg) for arg in sys.argv[1:]]
    main(arguments[0] if arguments else 30.0, int(arguments[1]) if len(arguments) > 1 else SOURCES)
