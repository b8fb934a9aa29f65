"""Whatever Clarity answers, however big or odd, the pipeline goes on and spends no extra call.

The chain runs in the test's process on a manual clock shared with the
Clarity simulator, which is taught what the real Clarity does and its
documentation does not say: a URL breakdown of 20,000 rows, a gateway's HTML
page or a body cut short instead of an answer, a quota another tool spent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from claritycast.clarity.big_answers import ROWS_KEPT, values_total
from claritycast.clock import ManualClock
from claritycast.errors import QuotaRefused
from claritycast.ingest.connect import connect_project
from claritycast.ingest.fetch_failures import RETRY_BACKOFF
from claritycast.ingest.refresh import refresh
from claritycast.ingest.replay import replay
from claritycast.reports.series import breakdown
from claritycast.runtime.app import ClarityCastApp
from claritycast.runtime.embedded import Endpoints
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES, ClarityResponse
from models.documents import Project
from tests.helpers import record_sizes, sender, wait_for
from topics import MAX_MESSAGE_BYTES, SNAPSHOTS_FETCHED

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 20, 0, 5, tzinfo=UTC)
YESTERDAY = "2026-11-19"
URL_PAGES = 20_000


async def connect(
    app: ClarityCastApp, store: Store, clock: ManualClock, sim: ClaritySimulator, name: str
) -> tuple[Project, dict[str, str]]:
    """Connect a simulated project; its groups' outcomes by group."""
    result = await connect_project(
        store, sender(app), clock, token=sim.projects[name].token, label=name, wait_s=120
    )
    return result.project, {report.group: report.outcome for report in result.groups}


def statuses(sim: ClaritySimulator, name: str, dimension: str | None = None) -> list[int]:
    return [
        r.status
        for r in sim.requests_for(name)
        if dimension is None or r.params.get("dimension1", "overall") == dimension
    ]


def crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Crashed" in r.getMessage()]


async def test_a_20000_row_breakdown_is_stored_whole_and_every_record_stays_small(
    chain: ClarityCastApp,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
    endpoints: Endpoints,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 35 MB answer is stored once with one request; no topic carries more than the bound."""
    caplog.set_level(logging.INFO)
    simulator.add_project("big")
    simulator.make_large("big", URL_PAGES)
    project, outcomes = await connect(chain, store, clock, simulator, "big")
    assert set(outcomes.values()) == {"stored"}, outcomes
    assert statuses(simulator, "big") == [200] * 7, "one request per group, none repeated"

    snapshot = await store.get_snapshot(project.project_id, YESTERDAY, "url")
    assert snapshot is not None and snapshot.cut_down and snapshot.blocks_ref
    assert snapshot.rows_total is not None
    served_rows = URL_PAGES + 8 + 1  # the long tail, the usual 8 pages, the aggregate row
    assert snapshot.rows_total["Traffic"] == served_rows
    kept = {block["metric"]: block["rows"] for block in snapshot.blocks}
    assert len(kept["Traffic"]) == ROWS_KEPT + 1, "the top pages and the aggregate row"
    assert {len(rows) for rows in kept.values()} == {ROWS_KEPT + 1}, "the same pages everywhere"
    complete = await store.get_blocks(snapshot.blocks_ref)
    assert {len(block["rows"]) for block in complete} == {served_rows}, "nothing lost"

    metric = catalogue.get("top_pages_by_sessions")
    top = breakdown(metric, [ClarityResponse.from_json(snapshot.blocks)])
    assert top[0][0] == "https://shop.example.com/"
    assert values_total(metric.block, [snapshot]) == URL_PAGES + 8

    sizes = await record_sizes(endpoints.kafka_url, chain.conf.id)
    assert sizes, "the topics were read"
    everything = [size for topic in sizes.values() for size in topic]
    assert max(everything) <= MAX_MESSAGE_BYTES, {t: max(s) for t, s in sizes.items()}
    fetched = sizes[SNAPSHOTS_FETCHED.full_name(chain.declared.prefix)]
    assert len(fetched) == 7 and max(fetched) < 2048, "a reference, not the blocks"
    assert crashes(caplog) == []


@pytest.mark.parametrize(
    ("fault", "dimension", "group"),
    [("html-200", "Browser", "browser"), ("truncated-200", "OS", "os")],
)
async def test_a_gateway_page_or_a_cut_answer_is_retried_once(
    chain: ClarityCastApp,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
    fault: str,
    dimension: str,
    group: str,
) -> None:
    """A 200 that is an HTML page, or cut short, is an outage: retried inside the quota."""
    simulator.add_project("flaky")
    simulator.set_fault("flaky", fault, only=dimension, times=1)
    project, outcomes = await connect(chain, store, clock, simulator, "flaky")
    assert outcomes[group] == "garbled response", outcomes
    assert list(outcomes.values()).count("stored") == 6
    [call] = [c for c in await store.calls_since(project.project_id, START) if c.group == group]
    assert call.detail is not None and ("HTML page" in call.detail or "cut short" in call.detail)
    clock.advance(RETRY_BACKOFF[0] - timedelta(minutes=1))
    assert statuses(simulator, "flaky", dimension) == [200], "not before the backoff"
    clock.advance(timedelta(minutes=2))

    async def all_stored() -> bool:
        stored = await store.groups_stored(project.project_id, YESTERDAY)
        return stored == set(GROUP_NAMES)

    await wait_for(all_stored, timeout_s=60)
    assert statuses(simulator, "flaky", dimension) == [200, 200]
    assert len(statuses(simulator, "flaky")) == 8, "exactly one extra request"
    assert await store.dead_letters() == []


async def test_a_quota_spent_elsewhere_stops_every_call_until_local_midnight(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """8 of 10 spent by another tool: 2 served, one 429, then nothing until the reset."""
    simulator.add_project("shared")
    simulator.spend("shared", 8)
    project, outcomes = await connect(chain, store, clock, simulator, "shared")
    assert statuses(simulator, "shared") == [200, 200, 429], outcomes
    assert list(outcomes.values()).count("stored") == 2
    assert list(outcomes.values()).count("quota exhausted") == 1
    assert set(outcomes.values()) <= {"stored", "quota exhausted", "skipped", "refused"}
    after = await store.get_project(project.project_id)
    assert after is not None and after.exhausted_until == datetime(2026, 11, 21, tzinfo=UTC)

    with pytest.raises(QuotaRefused, match="2026-11-21 00:00 UTC") as refused:
        await refresh(store, sender(chain), "shared", [], clock.now(), wait_s=5)
    assert refused.value.next_possible_at == after.exhausted_until
    clock.advance(timedelta(hours=3))
    assert len(statuses(simulator, "shared")) == 3, "no call before the reset, tick or refresh"

    clock.set(datetime(2026, 11, 21, 0, 10, tzinfo=UTC))  # past the next local midnight

    async def pulled() -> bool:
        return len(await store.groups_stored(project.project_id, "2026-11-20")) == 7

    await wait_for(pulled, timeout_s=60)
    assert statuses(simulator, "shared")[3:] == [200] * 7, "the missing groups, asked again"


async def test_replay_of_a_fresh_dead_letter_ends_with_the_group_stored(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """A malformed answer's group is replayed at once, not dropped as a duplicate."""
    simulator.add_project("odd")
    simulator.set_fault("odd", "wrong-shape-200", only="Device", times=1)
    project, outcomes = await connect(chain, store, clock, simulator, "odd")
    assert outcomes["device"] == "malformed response"
    [(letter, state)] = await store.dead_letters(stage="fetch")
    assert state == "dead" and letter.reason == "malformed response"

    await store.set_exhausted_until(project.project_id, clock.now() + timedelta(hours=1))
    [held] = await replay(store, sender(chain), clock.now(), project="odd", wait_s=5)
    assert held.outcome == "refused" and "429" in held.detail
    assert statuses(simulator, "odd", "Device") == [200]
    await store.set_exhausted_until(project.project_id, None)

    [result] = await replay(store, sender(chain), clock.now(), project="odd", wait_s=60)
    assert (result.outcome, result.end) == ("sent", "stored"), result
    assert statuses(simulator, "odd", "Device") == [200, 200]
    assert await store.dead_letters() == [], "the letter is replayed"
