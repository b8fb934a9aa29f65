"""A steady-state database for a benchmark night: days of history, as the chain keeps it.

`bench.ingest` starts from an empty database unless told otherwise; a real
installation runs each night on top of what earlier nights stored. Per project
and earlier day, as the chain would have written them:

- the 7 groups' snapshots, and the day's pull record (`Store.save_snapshots`);
- the 7 calls of the durable call log (done, 200), at the day's local 00:05;
- for the last 7 days, the 7 answers' blocks (the claim check; a week before
  they expire): the snapshot's blocks with one more naming the project and
  day, so each answer is unique (blocks are stored by their digest), as real ones are.

Snapshots are drawn once per (day, group) by the simulator's numbers
(`history_snapshot`) and given to every project: the content does not change
what a write costs, and drawing 10,000 x 7 x days of them would take longer than
the night. Everything is written with the store's own batch writes.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from claritycast.localtime import local_midnight
from claritycast.standins.history import history_snapshot
from claritycast.store.core import Store
from models.clarity import GROUPS
from models.documents import Call, Snapshot

BATCH = 1000
BLOCKS_KEPT_DAYS = 7  # an answer's blocks expire a week after it was fetched


def _days(last: date, days: int) -> Iterator[date]:
    """``days`` dates ending with ``last``, oldest first."""
    for back in range(days - 1, -1, -1):
        yield last - timedelta(days=back)


def _answer(template: list[dict[str, Any]], project_id: str, day: date) -> list[dict[str, Any]]:
    """The day's answer made unique to the project (blocks are stored by their digest)."""
    return [{"metric": "bench", "rows": [{"project": project_id, "day": str(day)}]}, *template]


async def _flush_snapshots(store: Store, batch: list[Snapshot]) -> int:
    await store.save_snapshots(batch)
    written = len(batch)
    batch.clear()
    return written


async def store_history(
    store: Store, projects: list[str], timezone: str, last: date, days: int
) -> dict[str, Any]:
    """``days`` of history for every project, the newest day ``last``; what was written.

    Returns the counts per collection and the seconds taken, for the benchmark
    to print beside its figures.
    """
    began = time.monotonic()
    counts = {"snapshots": 0, "calls": 0, "blocks": 0}
    names = [group.name for group in GROUPS]
    batch: list[Snapshot] = []
    calls: list[Call] = []
    now = datetime.now(UTC)
    for day in _days(last, days):
        end = local_midnight(day + timedelta(days=1), timezone)
        templates = {name: history_snapshot("template", day, name, timezone) for name in names}
        fetched_at = end + timedelta(minutes=5)
        for project_id in projects:
            for name in names:
                batch.append(dataclasses.replace(templates[name], project_id=project_id))
                calls.append(Call(uuid.uuid4().hex, project_id, day.isoformat(), name, "daily",
                                  fetched_at, outcome="ok", status=200))  # fmt: skip
            if len(batch) >= BATCH:
                counts["snapshots"] += await _flush_snapshots(store, batch)
            if len(calls) >= BATCH:
                await store.log_calls(calls)
                counts["calls"] += len(calls)
                calls.clear()
        if (last - day).days < BLOCKS_KEPT_DAYS:
            answers: list[list[dict[str, Any]]] = []
            for project_id in projects:
                answers.extend(_answer(templates[name].blocks, project_id, day) for name in names)
                if len(answers) >= BATCH // 10:  # answers are bigger than snapshots
                    counts["blocks"] += len(await store.put_blocks_many(answers, now))
                    answers.clear()
            if answers:
                counts["blocks"] += len(await store.put_blocks_many(answers, now))
    if batch:
        counts["snapshots"] += await _flush_snapshots(store, batch)
    if calls:
        await store.log_calls(calls)
        counts["calls"] += len(calls)
    return {**counts, "seconds": time.monotonic() - began}
