"""The ingestion chain end to end: tick → quota → fetch → store, on real servers.

The worker runs in the test's process with a manual clock shared with the
Clarity simulator, so days pass in milliseconds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from claritycast.clarity.parse import parse_body
from claritycast.clock import ManualClock
from claritycast.errors import ClarityTokenInvalid, InputError
from claritycast.ingest.connect import add_organisation, connect_project
from claritycast.runtime.app import ClarityCastApp
from claritycast.standins.clarity import ClaritySimulator, build_response
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES, GROUPS_BY_NAME
from models.documents import ProjectStatus
from tests.helpers import make_token, sender

NOW = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
CHAIN_STAGES = ("quota", "fetch", "store")
START = NOW


async def test_connect_stores_yesterday_in_all_seven_groups(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """connect checks the token, stores the project, and 7 requests store 7 snapshots."""
    sim_project = simulator.add_project("shop")
    result = await connect_project(
        store, sender(chain), clock, token=sim_project.token, label="Shop", wait_s=60
    )
    assert result.complete, result.groups
    assert [report.group for report in result.groups] == list(GROUP_NAMES)
    assert result.local_date == "2026-11-23"
    assert sorted(await store.metric_sources(result.project.project_id)) == sorted(
        metric.id for metric in catalogue.METRICS
    )
    requests = simulator.requests_for("shop")
    assert len(requests) == 7
    assert sorted(r.params.get("dimension1", "") for r in requests) == sorted(
        ["", "URL", "Browser", "Device", "Country/Region", "OS", "Source"]
    )
    snapshots = await store.snapshots_for(result.project.project_id, "2026-11-23", "2026-11-23")
    assert len(snapshots) == 7
    assert all(s.late for s in snapshots), "a 14:30 call does not cover local midnight to midnight"
    assert all(
        s.window_end == NOW and s.window_start == NOW - timedelta(hours=24) for s in snapshots
    )
    calls = await store.calls_since(result.project.project_id, NOW - timedelta(hours=1))
    assert [c.outcome for c in calls] == ["ok"] * 7
    for snapshot in snapshots:
        dimensions = GROUPS_BY_NAME[snapshot.group].dimensions
        served = build_response(
            sim_project.profile, snapshot.window_start, snapshot.window_end, list(dimensions)
        )
        expected = parse_body(json.dumps(served).encode(), dimensions).to_json()
        assert snapshot.blocks == expected, f"{snapshot.group} differs from what was served"


async def test_bad_token_is_refused_and_nothing_stored(
    chain: ClarityCastApp, store: Store, clock: ManualClock
) -> None:
    """An expired token never reaches Clarity and leaves no project behind."""
    with pytest.raises(ClarityTokenInvalid, match="expired"):
        await connect_project(
            store, sender(chain), clock, token=make_token(exp=NOW.timestamp() - 60), label="Old"
        )
    assert await store.projects() == []


async def test_duplicate_label_and_unknown_org_are_input_errors(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """The same label twice in one organisation, or an unknown organisation, is refused."""
    token = simulator.add_project("dup").token
    with pytest.raises(InputError, match="no organisation 'Nowhere'"):
        await connect_project(
            store, sender(chain), clock, token=token, label="X", org_name="Nowhere"
        )
    with pytest.raises(InputError, match="unknown timezone"):
        await add_organisation(store, "Mars", "Mars/Olympus", NOW)
    await connect_project(store, sender(chain), clock, token=token, label="Dup", wait_s=30)
    with pytest.raises(InputError, match="exists already"):
        await connect_project(store, sender(chain), clock, token=token, label="Dup")


@pytest.mark.parametrize(
    ("fault", "outcome", "status"),
    [
        ("unauthorized", "token invalid", ProjectStatus.TOKEN_INVALID),
        ("forbidden", "forbidden", ProjectStatus.TOKEN_INVALID),
        ("server-error", "server error", ProjectStatus.ACTIVE),
        ("empty-200", "garbled response", ProjectStatus.ACTIVE),
        ("wrong-shape-200", "malformed response", ProjectStatus.ACTIVE),
        ("quota", "quota exhausted", ProjectStatus.ACTIVE),
    ],
)
async def test_each_clarity_failure_ends_in_its_state(
    chain: ClarityCastApp,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
    fault: str,
    outcome: str,
    status: str,
) -> None:
    """401/403 mark the token invalid; 429 exhausts until local midnight; others are logged."""
    sim_project = simulator.add_project(f"f-{fault}")
    simulator.set_fault(sim_project.project_id, fault)
    result = await connect_project(
        store, sender(chain), clock, token=sim_project.token, label=fault, wait_s=60
    )
    outcomes = {report.outcome for report in result.groups}
    assert outcome in outcomes, result.groups
    project = await store.get_project(result.project.project_id)
    assert project is not None
    assert project.status == status
    if fault == "quota":
        assert project.exhausted_until == datetime(2026, 11, 25, tzinfo=UTC)
    if status == ProjectStatus.TOKEN_INVALID:
        assert outcomes <= {outcome, "skipped", "refused"}, "after a 401, no request is made"
        assert len(simulator.requests_for(sim_project.project_id)) < 7 or outcomes == {outcome}
