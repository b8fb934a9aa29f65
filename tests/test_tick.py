"""The nightly pull: a simulated week across a DST change and at UTC+13, on real servers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
import structlog

from agents.tick import DUE_LIST_FOR, Ticker
from claritycast.clock import ManualClock
from claritycast.localtime import local_yesterday
from claritycast.runtime.app import ClarityCastApp
from claritycast.settings import Settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models import catalogue
from models.documents import Organisation, Project, ProjectStatus
from tests.conftest import StartChain
from tests.helpers import wait_for
from topics import FETCH_REQUESTED

pytestmark = pytest.mark.slow

START = datetime(2026, 10, 21, 12, 0, tzinfo=UTC)  # Berlin's clocks go back on 25 October
ZONES = {"berlin": "Europe/Berlin", "tonga": "Pacific/Tongatapu"}


@pytest.fixture
async def projects(store: Store, simulator: ClaritySimulator) -> dict[str, Project]:
    """One already-connected project per organisation."""
    made = {}
    for name, zone in ZONES.items():
        await store.add_organisation(Organisation(name, name.title(), zone, START))
        token = simulator.add_project(name, 800).token
        sealed = store.seal_token(token, name)
        project = Project(name, name.title(), name, sealed, connected_at=START)
        await store.add_project(project, [m.id for m in catalogue.METRICS])
        made[name] = project
    return made


@pytest.fixture
async def manual_chain(
    start_chain: StartChain, chain_settings: Settings, clock: ManualClock
) -> ClarityCastApp:
    """The chain without the timer: the test ticks by hand, and nothing else does."""
    return await start_chain(clock, ("quota", "fetch", "store"), settings=chain_settings)


async def pulled(store: Store, clock: ManualClock) -> bool:
    """Every project has all 7 groups of its local yesterday."""
    for name, zone in ZONES.items():
        day = local_yesterday(zone, clock.now()).isoformat()
        if len(await store.groups_stored(name, day)) < 7:
            return False
    return True


async def settled(store: Store, clock: ManualClock) -> bool:
    """Nothing in flight, and every project has yesterday stored or waits for its quota.

    In flight: a call granted or being made, or made (``ok``) with its snapshot
    not stored yet (the store stage takes its messages in batches). The chain
    runs while this reads, so it reads in the reverse of the order the chain
    writes: the project (deferred after its calls are logged), then the calls
    (made before their snapshots are stored), then the snapshots.
    """
    for name, zone in ZONES.items():
        project = await store.get_project(name)
        recent = await store.calls_since(name, clock.now() - timedelta(days=2))
        if any(call.outcome in ("granted", "calling") for call in recent):
            return False
        for day in {call.local_date for call in recent if call.outcome == "ok"}:
            stored = await store.groups_stored(name, day)
            made = {
                call.group for call in recent if call.outcome == "ok" and call.local_date == day
            }
            if not made <= set(stored):
                return False
        day = local_yesterday(zone, clock.now()).isoformat()
        if len(await store.groups_stored(name, day)) == 7:
            continue
        waiting = project.waiting_until() if project else None
        if waiting is None or waiting <= clock.now():
            return False
    return True


def max_in_24h(times: list[datetime]) -> int:
    times = sorted(times)
    return max(
        (
            sum(1 for t in times[i:] if t < start + timedelta(hours=24))
            for i, start in enumerate(times)
        ),
        default=0,
    )


@pytest.mark.timeout(300)
async def test_a_week_of_nightly_pulls_across_dst_and_utc_plus_13(
    chain: ClarityCastApp,
    projects: dict[str, Project],
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
) -> None:
    """Twenty minutes at a time for 7 days: every local day stored once, 7 groups, in quota.

    Berlin's first pull happens at 14:00 local (the project is new), which uses
    tonight's quota: its pulls are late for a few nights and then back on local
    midnight for good, the DST night included. Tonga starts on time.
    """
    await wait_for(lambda: settled(store, clock), timeout_s=60)
    for _ in range(7 * 24 * 3):
        clock.advance(timedelta(minutes=20))
        await wait_for(lambda: settled(store, clock), timeout_s=60)
    for _ in range(3 * 24):  # end where every yesterday is complete (some may wait on quota)
        if await pulled(store, clock):
            break
        clock.advance(timedelta(minutes=20))
        await wait_for(lambda: settled(store, clock), timeout_s=60)

    for name, zone in ZONES.items():
        first = local_yesterday(zone, START)
        last = local_yesterday(zone, clock.now())
        days = (last - first).days + 1
        snapshots = await store.snapshots_for(name, first.isoformat(), last.isoformat())
        by_day: dict[str, list[bool]] = {}
        for snapshot in snapshots:
            by_day.setdefault(snapshot.local_date, []).append(snapshot.late)
        assert sorted(by_day) == [(first + timedelta(days=i)).isoformat() for i in range(days)]
        assert all(len(flags) == 7 for flags in by_day.values()), name
        requests = simulator.requests_for(name)
        assert len(requests) == len(snapshots), "nothing fetched twice"
        assert all(r.status == 200 for r in requests)
        assert max_in_24h([r.at for r in requests]) <= 10
        late_days = [day for day, flags in sorted(by_day.items()) if any(flags)]
        assert not any(day > (first + timedelta(days=3)).isoformat() for day in late_days), (
            f"{name}: pulls never came back to local midnight: {late_days}"
        )
    berlin_dst = await store.snapshots_for("berlin", "2026-10-25", "2026-10-25", group="overall")
    assert berlin_dst[0].window_end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC), "00:00 CET"
    tonga = await store.snapshots_for("tonga", "2026-10-24", "2026-10-24", group="overall")
    assert tonga[0].window_end == datetime(2026, 10, 24, 11, 0, tzinfo=UTC), "00:00 at UTC+13"


async def test_doubled_ticks_and_a_second_pull_spend_nothing(
    manual_chain: ClarityCastApp,
    projects: dict[str, Project],
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
) -> None:
    """Extra ticks while a pull is in flight, and after it is stored, make no request."""
    ticker = Ticker(manual_chain.deps, manual_chain.declared[FETCH_REQUESTED])
    for _ in range(3):
        await ticker.tick()
    await wait_for(lambda: pulled(store, clock), timeout_s=60)
    assert await ticker.tick() == 0, "nothing is missing any more"
    for name in ZONES:
        assert len(simulator.requests_for(name)) == 7
        assert await store.count_snapshots(name) == 7


async def test_after_downtime_only_yesterday_is_caught_up(
    manual_chain: ClarityCastApp,
    projects: dict[str, Project],
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
) -> None:
    """Three days without a worker: yesterday is pulled, and the gap is logged once."""
    ticker = Ticker(manual_chain.deps, manual_chain.declared[FETCH_REQUESTED])
    await ticker.tick()
    await wait_for(lambda: pulled(store, clock), timeout_s=60)
    with structlog.testing.capture_logs() as logs:
        clock.advance(timedelta(days=3))
        await ticker.tick()
        await ticker.tick()
    gaps = [entry for entry in logs if entry["event"] == "tick.gap"]
    assert {entry["project"] for entry in gaps} == set(ZONES)
    assert len(gaps) == len(ZONES), "each gap is reported once"
    assert "cannot be fetched" in gaps[0]["note"]
    await wait_for(lambda: pulled(store, clock), timeout_s=60)
    for name, zone in ZONES.items():
        stored_days = {
            s.local_date for s in await store.snapshots_for(name, "2026-01-01", "2027-01-01")
        }
        yesterday = local_yesterday(zone, clock.now())
        assert yesterday.isoformat() in stored_days
        assert (yesterday - timedelta(days=1)).isoformat() not in stored_days
        assert date.fromisoformat(min(stored_days)) == local_yesterday(zone, START)


async def test_a_night_bigger_than_the_bound_is_asked_for_in_waves(
    start_chain: StartChain,
    chain_settings: Settings,
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
) -> None:
    """Room for 14 groups in flight, 6 projects due: asked for as the chain stores them.

    After every tick, what was asked for and is not stored is within the bound
    (stored only grows, so this reads it at its worst); every group is asked
    for and made exactly once, in more than one wave.
    """
    app = await start_chain(
        clock, ("quota", "fetch", "store"), settings=chain_settings, pull_in_flight=14
    )
    await store.add_organisation(Organisation("org", "Org", "UTC", START))
    for i in range(6):
        token = simulator.add_project(f"p{i}", 100).token
        sealed = store.seal_token(token, f"p{i}")
        project = Project(f"p{i}", f"P{i}", "org", sealed, connected_at=START)
        await store.add_project(project, [m.id for m in catalogue.METRICS])
    ticker = Ticker(app.deps, app.declared[FETCH_REQUESTED])
    asked = await ticker.tick()
    assert asked == 14 and ticker.behind, "two projects' 7 groups, the rest wait"
    waves = 1
    while asked < 42:
        more = await ticker.wave()
        if more:
            waves += 1
        asked += more
        assert asked - await store.count_snapshots() <= 14, "more in flight than the bound"
        await asyncio.sleep(0.05)
    assert waves >= 3
    await wait_for(lambda: _stored(store, 42), timeout_s=60)
    assert await ticker.wave() == 0 and not ticker.behind
    for i in range(6):
        requests = simulator.requests_for(f"p{i}")
        assert len(requests) == 7 and all(r.status == 200 for r in requests)


async def test_a_nights_due_projects_are_read_once_and_each_wave_reads_its_own_by_id(
    start_chain: StartChain,
    chain_settings: Settings,
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The waves of a night share one read of what is due; what changed since is respected.

    SecantusDB reads every document a range matches before it applies a
    limit, so the due projects are read once for the night's waves and each
    wave reads its own by id. A project paused after that read is not asked
    for; one connected after it is asked for once the list is `DUE_LIST_FOR` old.
    """
    app = await start_chain(
        clock, ("quota", "fetch", "store"), settings=chain_settings, pull_in_flight=14
    )
    await store.add_organisation(Organisation("org", "Org", "UTC", START))

    async def connect(name: str) -> None:
        token = simulator.add_project(name, 100).token
        sealed = store.seal_token(token, name)
        project = Project(name, name.upper(), "org", sealed, connected_at=START)
        await store.add_project(project, [m.id for m in catalogue.METRICS])

    for i in range(6):
        await connect(f"p{i}")
    reads = 0
    read_ids = app.deps.store.due_project_ids

    async def counted(now: datetime) -> list[str]:
        nonlocal reads
        reads += 1
        return await read_ids(now)

    monkeypatch.setattr(app.deps.store, "due_project_ids", counted)
    ticker = Ticker(app.deps, app.declared[FETCH_REQUESTED])
    assert await ticker.tick() == 14 and ticker.behind
    await store.set_project_status("p5", ProjectStatus.PAUSED, "paused mid-night")
    await connect("late")
    asked = 14
    while ticker.behind:
        asked += await ticker.wave()
        await asyncio.sleep(0.05)
    assert asked == 28 + 7, "p0 to p4, not the paused p5 nor the late project yet"
    assert reads == 1, "one read of the due projects for every wave of the night"
    assert simulator.requests_for("late") == [] and simulator.requests_for("p5") == []
    clock.advance(DUE_LIST_FOR + timedelta(seconds=1))
    await wait_for(lambda: _stored(store, 35), timeout_s=60)
    assert await ticker.tick() == 7 and reads == 2, "the list is read again: the late one"
    await wait_for(lambda: _stored(store, 42), timeout_s=60)
    assert len(simulator.requests_for("late")) == 7
    assert simulator.requests_for("p5") == [], "paused after the list was read"


async def _stored(store: Store, count: int) -> bool:
    return await store.count_snapshots() == count


async def test_a_drain_asks_for_nothing_until_it_ends(
    manual_chain: ClarityCastApp,
    projects: dict[str, Project],
    store: Store,
    simulator: ClaritySimulator,
    clock: ManualClock,
) -> None:
    """While `up` drains the chain the tick asks for nothing; once it ends, the wave goes on.

    A drain's end is wall-clock time, whatever the chain's clock says (here a
    manual one, stopped in October): one that `up` never ended ends by itself.
    """
    ticker = Ticker(manual_chain.deps, manual_chain.declared[FETCH_REQUESTED])
    await store.begin_drain(datetime.now(UTC) + timedelta(minutes=5), reason="test")
    with structlog.testing.capture_logs() as logs:
        assert await ticker.tick() == 0
        assert await ticker.wave() == 0
    assert ticker.draining and ticker.behind, "the wave timer looks again every second"
    assert [entry["event"] for entry in logs] == ["tick.draining"], "said once"
    assert simulator.log == []
    await store.end_drain()
    assert await ticker.wave() == 14, "both projects' 7 groups, at the next wave"
    assert not ticker.draining
    await wait_for(lambda: pulled(store, clock), timeout_s=60)

    await store.begin_drain(datetime.now(UTC) - timedelta(seconds=1), reason="up was killed")
    assert await store.draining_until() is None
    clock.advance(timedelta(days=1))
    assert await ticker.tick() == 14, "an ended drain holds nothing back"
