"""Snapshots as nightly pulls would have stored them, from the Clarity simulator's numbers.

For tests and benchmarks that need a history without pulling it night by night:
each snapshot is exactly what a pull at the local midnight after its day would
have stored (same window, same parse), so charts and summaries drawn from it
match what the chain would produce.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from claritycast.clarity.parse import parse_blocks
from claritycast.localtime import local_midnight
from claritycast.standins.clarity import build_response
from claritycast.standins.clarity_data import Profile
from claritycast.store.core import Store
from models.clarity import GROUPS_BY_NAME
from models.documents import Snapshot


def history_snapshot(
    project_id: str, day: date, group: str, timezone: str, sessions_per_day: int = 1500
) -> Snapshot:
    """The snapshot a pull at the local midnight after ``day`` would have stored."""
    end = local_midnight(day + timedelta(days=1), timezone)
    start = end - timedelta(hours=24)
    dimensions = list(GROUPS_BY_NAME[group].dimensions)
    raw = build_response(Profile(project_id, sessions_per_day), start, end, dimensions)
    blocks = parse_blocks(raw, dimensions).to_json()
    return Snapshot(project_id, day.isoformat(), group, start, end, end, blocks)


async def seed_history(
    store: Store,
    project_id: str,
    timezone: str,
    first: date,
    last: date,
    groups: Iterable[str],
    skip: Iterable[tuple[date, str]] = (),
) -> None:
    """Store a project's snapshots for ``first``..``last`` as if pulled night by night."""
    missing = set(skip)
    groups = list(groups)
    day = first
    while day <= last:
        for group in groups:
            if (day, group) not in missing:
                await store.save_snapshot(history_snapshot(project_id, day, group, timezone))
        day += timedelta(days=1)
