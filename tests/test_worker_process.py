"""`claritycast worker` as its own process, the way a deployment runs a stage group."""

from __future__ import annotations

import pytest

from claritycast.store.core import Store
from tests.helpers import WorkerProcess, produce, wait_for
from tests.test_smoke import fetched
from topics import SNAPSHOTS_FETCHED

pytestmark = pytest.mark.slow


async def test_worker_subprocess_stores_and_stops_cleanly(
    settings_env: dict[str, str], store: Store, settings_values: dict[str, object]
) -> None:
    """A worker process stores what another process produced, then exits 0 on SIGTERM."""
    worker = WorkerProcess(settings_env, stages="store")
    await worker.start(store)
    try:
        topic = SNAPSHOTS_FETCHED.full_name(str(settings_values["topic_prefix"]))
        record = await fetched(store, "p9", "device")
        await produce(str(settings_values["kafka_url"]), topic, "p9", record)
        await wait_for(lambda: store.get_snapshot("p9", "2026-11-28", "device"))
    finally:
        code = await worker.stop()
    assert code == 0
    assert await store.live_workers(within_s=60) == [], "a stopped worker removes its heartbeat"
