"""The Clarity simulator, read through the real client over real HTTP."""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from claritycast.clarity.client import ClarityClient
from claritycast.clock import ManualClock
from claritycast.errors import (
    ClarityBadRequest,
    ClarityError,
    ClarityForbidden,
    ClarityGarbled,
    ClarityMalformed,
    ClarityQuotaExhausted,
    ClarityServerError,
    ClarityTokenInvalid,
    ClarityUnreachable,
)
from claritycast.standins.clarity import ClaritySimulator, build_response
from claritycast.standins.clarity_data import Profile
from models.clarity import ALL_BLOCKS, DIMENSIONED_BLOCKS, GROUPS, GROUPS_BY_NAME, ClarityResponse

START = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)  # a Tuesday, just after midnight


@pytest.fixture
async def simulator() -> AsyncIterator[ClaritySimulator]:
    sim = ClaritySimulator(ManualClock(START))
    sim.add_project("alpha", 2000)
    sim.add_project("beta", 300)
    async with sim:
        yield sim


@pytest.fixture
async def client(simulator: ClaritySimulator) -> AsyncIterator[ClarityClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as http:
        yield ClarityClient(http, simulator.export_url)


def sessions(response: ClarityResponse, *, aggregate: bool = False) -> float:
    traffic = response.block("Traffic")
    assert traffic is not None
    rows = [r for r in traffic.rows if r.is_aggregate == aggregate]
    return sum(row.values["totalSessionCount"] for row in rows)


async def test_all_seven_groups_have_the_documented_shape(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """Overall has 16 blocks; every dimensioned group has the 9, in Clarity's order."""
    token = simulator.projects["alpha"].token
    for group in GROUPS:
        response = await client.fetch(token, group)
        expected = ALL_BLOCKS if group.name == "overall" else DIMENSIONED_BLOCKS
        assert tuple(b.metric for b in response.blocks) == expected, group.name
        assert response.notes == ()


async def test_breakdowns_sum_to_the_totals(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """At one moment, every group's sessions, and the URL aggregate row, equal the overall total."""
    token = simulator.projects["alpha"].token
    overall = await client.fetch(token, GROUPS_BY_NAME["overall"])
    total = sessions(overall)
    assert total > 0
    for group in GROUPS[1:]:
        response = await client.fetch(token, group)
        assert sessions(response) == total, group.name
    url = await client.fetch(token, GROUPS_BY_NAME["url"])
    assert sessions(url, aggregate=True) == total
    rage_total = overall.block("RageClickCount").rows[0].values["subTotal"]
    rows = [r for r in url.block("RageClickCount").rows if not r.is_aggregate]
    assert sum(r.values["subTotal"] for r in rows) == rage_total
    browser = await client.fetch(token, GROUPS_BY_NAME["browser"])
    by_name = {r.label: r.values["sessionsCount"] for r in overall.block("Browser").rows}
    assert by_name == {
        r.dims["Browser"]: r.values["totalSessionCount"] for r in browser.block("Traffic").rows
    }


async def test_numbers_are_deterministic_per_project_and_window(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """Same project and moment, same answer; another project or an hour later, another."""
    alpha, beta = simulator.projects["alpha"].token, simulator.projects["beta"].token
    overall = GROUPS_BY_NAME["overall"]
    first = await client.fetch(alpha, overall)
    assert await client.fetch(alpha, overall) == first
    assert sessions(await client.fetch(beta, overall)) < sessions(first)
    assert isinstance(simulator.clock, ManualClock)
    simulator.clock.advance(timedelta(hours=1))
    assert await client.fetch(alpha, overall) != first


def test_weekly_rhythm_and_noise() -> None:
    """Over eight weeks, weekdays are busier than weekends, and no two days are equal."""
    profile = Profile("alpha", 2000)
    daily = {}
    for day in range(56):
        end = START + timedelta(days=day)
        daily[end] = profile.window_sessions(end - timedelta(hours=24), end)
    weekday = [n for end, n in daily.items() if (end - timedelta(hours=1)).weekday() < 5]
    weekend = [n for end, n in daily.items() if (end - timedelta(hours=1)).weekday() >= 5]
    assert statistics.mean(weekday) > 1.15 * statistics.mean(weekend)
    assert len(set(daily.values())) > 50


def test_hostile_text_is_served() -> None:
    """Page URLs, titles and sources carry markup and prompt-like text, as the web does."""
    body = repr(build_response(Profile("alpha"), START - timedelta(days=1), START, []))
    assert "<script>alert(1)</script>" in body
    assert "Ignore previous instructions" in body


async def test_ten_requests_a_day_then_429(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """The 11th request of a UTC day is refused; the next day it works again."""
    token = simulator.projects["beta"].token
    for _ in range(10):
        await client.fetch(token, GROUPS_BY_NAME["os"])
    with pytest.raises(ClarityQuotaExhausted):
        await client.fetch(token, GROUPS_BY_NAME["os"])
    assert [e.status for e in simulator.requests_for("beta")] == [200] * 10 + [429]
    assert isinstance(simulator.clock, ManualClock)
    simulator.clock.advance(timedelta(days=1))
    await client.fetch(token, GROUPS_BY_NAME["os"])


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("server-error", ClarityServerError),
        ("empty-200", ClarityGarbled),
        ("html-200", ClarityGarbled),
        ("truncated-200", ClarityGarbled),
        ("garbage-200", ClarityMalformed),
        ("wrong-shape-200", ClarityMalformed),
        ("bad-request", ClarityBadRequest),
        ("unauthorized", ClarityTokenInvalid),
        ("forbidden", ClarityForbidden),
        ("quota", ClarityQuotaExhausted),
    ],
)
async def test_each_fault_reaches_the_client_as_its_kind(
    simulator: ClaritySimulator, client: ClarityClient, fault: str, kind: type[ClarityError]
) -> None:
    """Every switchable fault is a distinct, named failure at the client."""
    simulator.set_fault("alpha", fault)
    with pytest.raises(kind):
        await client.fetch(simulator.projects["alpha"].token, GROUPS_BY_NAME["overall"])


async def test_unknown_token_and_unknown_dimension(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """A token of no project is 401; an unknown dimension is an empty 200."""
    with pytest.raises(ClarityTokenInvalid):
        await client.fetch("eyJ.not.known", GROUPS_BY_NAME["overall"])
    bogus = GROUPS_BY_NAME["overall"].__class__("bogus", ("Planet",))
    with pytest.raises(ClarityGarbled, match="empty body"):
        await client.fetch(simulator.projects["alpha"].token, bogus)
    assert simulator.log[0].project_id is None and simulator.log[0].status == 401


async def test_documented_spelling_reads_the_same(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """Switching a project to the documented spelling changes nothing after parsing."""
    token = simulator.projects["alpha"].token
    live = await client.fetch(token, GROUPS_BY_NAME["overall"])
    simulator.projects["alpha"].spelling = "documented"
    assert await client.fetch(token, GROUPS_BY_NAME["overall"]) == live


async def test_latency_beyond_the_timeout_is_unreachable(simulator: ClaritySimulator) -> None:
    """A slow Clarity becomes a retryable ClarityUnreachable at the client's timeout."""
    simulator.projects["alpha"].latency_s = 1.0
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.2)) as http:
        client = ClarityClient(http, simulator.export_url)
        with pytest.raises(ClarityUnreachable, match="timed out"):
            await client.fetch(simulator.projects["alpha"].token, GROUPS_BY_NAME["overall"])


class ImportSearches:
    """A finder first on ``sys.meta_path`` that only notes which modules were searched for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, *args: object) -> None:
        self.names.append(name)


async def test_a_request_searches_for_no_module(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """Once warm, a Clarity request imports nothing: no search of sys.path per request.

    httpcore asks sniffio for the event loop on every lock it sets up; with sniffio
    missing (anyio no longer brings it) that was a failed import, searched for on
    disk each time: 5 % of the worker's CPU in a night of 10,000 projects.
    """
    token = simulator.projects["alpha"].token
    await client.fetch(token, GROUPS[0])  # the first request may import what it needs
    searches = ImportSearches()
    sys.meta_path.insert(0, searches)
    try:
        for group in GROUPS[1:4]:
            await client.fetch(token, group)
    finally:
        sys.meta_path.remove(searches)
    assert searches.names == []


async def test_a_held_project_answers_only_when_released(
    simulator: ClaritySimulator, client: ClarityClient
) -> None:
    """`hold` keeps the answer back (counted, not logged, not received) until `release`."""
    simulator.hold("alpha")
    pending = asyncio.create_task(client.fetch(simulator.projects["alpha"].token, GROUPS[0]))
    await client.fetch(simulator.projects["beta"].token, GROUPS[0])  # others are not held
    assert not pending.done()
    assert simulator.used_today("alpha") == 1 and simulator.requests_for("alpha") == []
    simulator.release("alpha")
    assert (await asyncio.wait_for(pending, 2)).block("Traffic") is not None
    assert [r.status for r in simulator.requests_for("alpha")] == [200]
    await client.fetch(simulator.projects["alpha"].token, GROUPS[1])  # released for good


async def test_admin_api_adds_projects_faults_and_reads_the_log(
    simulator: ClaritySimulator,
) -> None:
    """Another process can drive the simulator over HTTP."""
    async with httpx.AsyncClient(base_url=simulator.base_url) as http:
        created = (await http.post("/_simulator/projects", json={"project_id": "gamma"})).json()
        assert (
            await http.post("/_simulator/faults", json={"project_id": "gamma", "fault": "nope"})
        ).status_code == 400
        await http.post("/_simulator/faults", json={"project_id": "gamma", "fault": "forbidden"})
        client = ClarityClient(http, simulator.export_url)
        with pytest.raises(ClarityForbidden):
            await client.fetch(created["token"], GROUPS_BY_NAME["device"])
        await http.post("/_simulator/clock", json={"now": "2026-12-01T00:00:00+00:00"})
        log = (await http.get("/_simulator/log", params={"project_id": "gamma"})).json()
    assert [(e["status"], e["params"]["dimension1"]) for e in log] == [(403, "Device")]
    assert simulator.clock.now() == datetime(2026, 12, 1, tzinfo=UTC)
    assert created["token"] not in repr(simulator.log)
