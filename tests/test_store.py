"""The MongoDB layer against a real SecantusDB server."""

from __future__ import annotations

import asyncio
import inspect
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from unittest.mock import patch

import pymongo.errors
import pytest
from bson import Binary

from claritycast.errors import StoreError, StoreUnavailable
from claritycast.runtime.ports import free_port
from claritycast.store import claim_check
from claritycast.store.claim_check import BlocksCorrupt, BlocksMissing
from claritycast.store.core import INDEXES, Store, translated
from models.clarity import GROUPS
from models.documents import Call, Snapshot, WorkerBeat


def snapshot(blocks: list[dict[str, object]] | None = None) -> Snapshot:
    end = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    return Snapshot(
        project_id="p1",
        local_date="2026-03-29",
        group="url",
        window_start=end - timedelta(hours=24),
        window_end=end,
        fetched_at=end,
        blocks=blocks or [{"metric": "Traffic", "rows": []}],
    )


async def test_indexes_are_created_idempotently(store: Store) -> None:
    """Creating the indexes again, even from several workers at once, changes nothing."""
    await asyncio.gather(*(store.ensure_indexes() for _ in range(3)))
    for collection, models in INDEXES.items():
        names = set((await store.db[collection].index_information()).keys())
        assert {model.document["name"] for model in models} <= names


async def test_first_snapshot_wins(store: Store) -> None:
    """A second copy of the same (project, date, group) neither duplicates nor overwrites."""
    assert await store.save_snapshot(snapshot()) is True
    assert await store.save_snapshot(snapshot([{"metric": "Other", "rows": []}])) is False
    stored = await store.get_snapshot("p1", "2026-03-29", "url")
    assert stored is not None
    assert stored.blocks == [{"metric": "Traffic", "rows": []}]
    assert stored.window_start.tzinfo is not None
    assert await store.count_snapshots("p1") == 1


async def test_a_snapshot_keeps_its_blocks_packed_and_reads_only_those_asked_for(
    store: Store,
) -> None:
    """Blocks are stored compressed, one by one; a reader may decode only what it needs."""
    rows = [
        {"values": {"totalSessionCount": float(i)}, "dims": {"URL": f"/p/{i}"}} for i in range(3)
    ]
    blocks = [{"metric": "Traffic", "rows": rows}, {"metric": "ScrollDepth", "rows": rows[:1]}]
    await store.save_snapshot(snapshot(blocks))
    document = await store.db.snapshots.find_one({"_id": "p1/2026-03-29/url"})
    assert document is not None
    assert [(b["metric"], b["count"]) for b in document["blocks"]] == [
        ("Traffic", 3), ("ScrollDepth", 1),
    ]  # fmt: skip
    assert all(isinstance(b["rows_z"], bytes) for b in document["blocks"])
    [whole] = await store.snapshots_for("p1", "2026-03-29", "2026-03-29")
    assert whole.blocks == blocks
    [part] = await store.snapshots_for("p1", "2026-03-29", "2026-03-29", metrics={"ScrollDepth"})
    assert part.blocks == blocks[1:]


async def test_snapshots_for_includes_both_ends(store: Store) -> None:
    """A date range includes its first and last day, for every group of each day."""
    for day in ("2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"):
        for group in ("overall", "url"):
            await store.save_snapshot(replace(snapshot(), local_date=day, group=group))
    found = await store.snapshots_for("p1", "2026-03-29", "2026-03-30")
    assert [(s.local_date, s.group) for s in found] == [
        ("2026-03-29", "overall"),
        ("2026-03-29", "url"),
        ("2026-03-30", "overall"),
        ("2026-03-30", "url"),
    ]
    assert len(await store.snapshots_for("p1", "2026-03-31", "2026-03-31", group="url")) == 1


async def test_one_groups_window_reads_only_its_own_documents(store: Store) -> None:
    """A report's read costs the same however many other groups each day holds.

    60 days of all 7 groups stored, plus an unrelated project; a 30-day window
    of one group comes back in date order, missing days simply absent, and the
    server (explaining each read its profiler saw) examined no document of
    another group or day; a window too long to name by id still answers right.
    """
    start = date(2026, 1, 1)
    days = [(start + timedelta(days=n)).isoformat() for n in range(60)]
    groups = [group.name for group in GROUPS]
    await store.save_snapshots([
        replace(snapshot(), project_id=project, local_date=day, group=group)
        for project in ("p1", "p2") for day in days for group in groups
        if not (project == "p1" and group == "overall" and day == days[40])
    ])  # fmt: skip
    await store.db.command("profile", 2)
    try:
        found = await store.snapshots_for("p1", days[30], days[59], group="overall")
    finally:
        await store.db.command("profile", 0)
    assert [s.local_date for s in found] == [d for d in days[30:] if d != days[40]]
    assert {(s.project_id, s.group) for s in found} == {("p1", "overall")}
    sent = [entry["command"]["filter"] async for entry in store.db["system.profile"].find({})
            if entry["command"].get("find") == "snapshots"]  # fmt: skip
    assert sent, "the profiler saw no read of snapshots"
    examined = 0
    for filter_ in sent:  # the server's own count of what each read examined
        plan = await store.db.command(
            "explain", {"find": "snapshots", "filter": filter_}, verbosity="executionStats"
        )
        examined += plan["executionStats"]["totalDocsExamined"]
    assert examined == 29, sent

    many = await store.snapshots_for_many(["p1", "p2"], days[0], days[59], "url")
    assert [len(many[p]) for p in ("p1", "p2")] == [60, 60]
    assert [s.local_date for s in many["p2"]] == days
    with patch("claritycast.store.snapshots.BY_ID_AT_MOST", 10):  # read by the index range
        assert await store.snapshots_for_many(["p1", "p2"], days[0], days[59], "url") == many
        assert await store.snapshots_for("p1", days[30], days[59], group="overall") == found


async def test_concurrent_saves_create_exactly_one(store: Store) -> None:
    """Ten workers saving the same snapshot at once create it exactly once."""
    results = await asyncio.gather(*(store.save_snapshot(snapshot()) for _ in range(10)))
    assert results.count(True) == 1
    assert await store.count_snapshots("p1") == 1


async def test_live_workers_sees_only_recent_beats(store: Store) -> None:
    """A worker that stopped beating drops out of the live list."""
    now = datetime.now(UTC)
    for worker_id, seen in (("fresh", now), ("stale", now - timedelta(minutes=5))):
        await store.beat(WorkerBeat(worker_id, "app", ("store",), "host", 1, now, seen))
    assert [w.worker_id for w in await store.live_workers(within_s=30)] == ["fresh"]
    await store.forget_worker("fresh")
    assert await store.live_workers(within_s=30) == []


async def test_unreachable_server_is_store_unavailable() -> None:
    """Nothing listening: a retryable StoreUnavailable naming the operation."""
    store = Store.connect(f"mongodb://127.0.0.1:{free_port()}", "x", timeout_ms=300)
    try:
        with pytest.raises(StoreUnavailable, match="during ping"):
            await store.ping()
    finally:
        await store.close()


def _pymongo_exceptions() -> list[type[pymongo.errors.PyMongoError]]:
    return [
        cls
        for _, cls in inspect.getmembers(pymongo.errors, inspect.isclass)
        if issubclass(cls, pymongo.errors.PyMongoError)
    ]


@pytest.mark.parametrize("exc_type", _pymongo_exceptions(), ids=lambda cls: cls.__name__)
def test_every_pymongo_error_is_translated(exc_type: type[pymongo.errors.PyMongoError]) -> None:
    """Each exception PyMongo defines becomes a StoreError; connection trouble is retryable."""
    try:
        error = exc_type("boom mongodb://user:hunter2@db:27017")
    except (TypeError, AttributeError):  # constructors with required structured arguments
        error = exc_type.__new__(exc_type)
        Exception.__init__(error, "boom mongodb://user:hunter2@db:27017")
    with pytest.raises(StoreError) as caught, translated("testing"):
        raise error
    retryable = issubclass(
        exc_type,
        (
            pymongo.errors.ConnectionFailure,
            pymongo.errors.ExecutionTimeout,
            pymongo.errors.WaitQueueTimeoutError,
            pymongo.errors.WTimeoutError,
        ),
    )
    assert isinstance(caught.value, StoreUnavailable) is retryable
    assert "hunter2" not in str(caught.value)


BLOCKS = [
    {"metric": "Traffic", "rows": [{"values": {"totalSessionCount": 120.0}, "dims": {"URL": "/"}}]},
    {"metric": "ScrollDepth", "rows": []},
]


async def test_blocks_go_aside_by_content_and_come_back_checked(store: Store) -> None:
    """The claim check: the same answer is one document; what comes back is what went in."""
    now = datetime(2026, 11, 20, tzinfo=UTC)
    first = await store.put_blocks(BLOCKS, now)
    again = await store.put_blocks(BLOCKS, now + timedelta(hours=1))
    assert first == again and first.ref == f"sha256:{first.sha256}"
    assert first.rows == {"Traffic": 1, "ScrollDepth": 0}
    assert first.size_bytes == len(claim_check.encode_blocks(BLOCKS))
    assert await store.db[claim_check.COLLECTION].count_documents({}) == 1
    assert await store.get_blocks(first.ref) == BLOCKS
    with pytest.raises(BlocksMissing):
        await store.get_blocks("sha256:" + "0" * 64)


async def test_tampered_blocks_are_refused(store: Store) -> None:
    """Blocks that do not match their digest are never handed out."""
    ref = await store.put_blocks(BLOCKS, datetime(2026, 11, 20, tzinfo=UTC))
    other = zlib.compress(claim_check.encode_blocks([{"metric": "Traffic", "rows": []}]))
    await store.db[claim_check.COLLECTION].update_one(
        {"_id": ref.ref}, {"$set": {"data": Binary(other)}}
    )
    with pytest.raises(BlocksCorrupt, match="do not match their digest"):
        await store.get_blocks(ref.ref)


async def test_blocks_over_a_document_go_to_gridfs(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks too big for one MongoDB document are stored in GridFS, and read back the same."""
    monkeypatch.setattr(claim_check, "DOCUMENT_LIMIT_BYTES", 64)
    rows = [
        {"values": {"totalSessionCount": float(i)}, "dims": {"URL": f"/p/{i}"}} for i in range(500)
    ]
    blocks = [{"metric": "Traffic", "rows": rows}]
    now = datetime(2026, 11, 20, tzinfo=UTC)
    ref = await store.put_blocks(blocks, now)
    assert await store.put_blocks(blocks, now) == ref
    document = await store.db[claim_check.COLLECTION].find_one({"_id": ref.ref})
    assert document is not None and document["gridfs"] is True and "data" not in document
    assert await store.db[f"{claim_check.BUCKET}.files"].count_documents({}) == 1
    assert await store.get_blocks(ref.ref) == blocks
    await store.pin_blocks(ref.ref)
    pinned = await store.db[claim_check.COLLECTION].find_one({"_id": ref.ref})
    assert pinned is not None and pinned["expires_at"] is None


async def test_answers_stored_together_are_one_document_each_and_read_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`put_blocks_many`: a wave's answers in one write, the same answer once, a huge one in GridFS.

    The references are those `put_blocks` gives one by one, in the order of the answers.
    """
    monkeypatch.setattr(claim_check, "DOCUMENT_LIMIT_BYTES", 1024)  # the 500 rows: 2.5 KiB
    now = datetime(2026, 11, 20, tzinfo=UTC)
    rows = [
        {"values": {"totalSessionCount": float(i)}, "dims": {"URL": f"/p/{i}"}} for i in range(500)
    ]
    huge = [{"metric": "Traffic", "rows": rows}]
    small = [{"metric": "ScrollDepth", "rows": []}]
    refs = await store.put_blocks_many([BLOCKS, huge, BLOCKS, small], now)
    assert refs[0] == refs[2] == await store.put_blocks(BLOCKS, now)
    assert refs[1] == await store.put_blocks(huge, now) and refs[3] != refs[0]
    assert await store.db[claim_check.COLLECTION].count_documents({}) == 3
    assert await store.get_blocks_many([ref.ref for ref in refs]) == {
        refs[0].ref: BLOCKS,
        refs[1].ref: huge,
        refs[3].ref: small,
    }
    gridfs = await store.db[claim_check.COLLECTION].find_one({"_id": refs[1].ref})
    assert gridfs is not None and gridfs["gridfs"] is True and "data" not in gridfs


async def test_calls_started_together_are_each_started_by_exactly_one_caller(
    store: Store,
) -> None:
    """`start_calls` from two workers at once over the same grants: every call started once.

    Only ``granted`` calls start; one already made or expired is nobody's; a
    retry with the same claim (after an outage) gives back what it started.
    """
    at = datetime(2026, 3, 30, 0, 5, tzinfo=UTC)
    calls = [Call(f"r{i}", f"p{i % 7}", "2026-03-29", "url", "daily", at) for i in range(60)]
    calls.append(Call("made", "p1", "2026-03-29", "device", "daily", at, outcome="ok"))
    calls.append(Call("old", "p2", "2026-03-29", "device", "daily", at, outcome="expired"))
    await store.log_calls(calls)
    ids = [call.request_id for call in calls]
    first, second = await asyncio.gather(
        store.start_calls(ids, "claim-a"), store.start_calls(list(reversed(ids)), "claim-b")
    )
    assert not first & second
    assert first | second == {f"r{i}" for i in range(60)}
    assert await store.start_calls(ids, "claim-a") == first
    assert await store.start_calls(ids, "claim-c") == set()
    outcomes = {call.request_id: call.outcome async for call in _calls(store)}
    assert outcomes["made"] == "ok" and outcomes["old"] == "expired"
    assert {outcomes[f"r{i}"] for i in range(60)} == {"calling"}
    await store.finish_calls_ok([("r1", None), ("r2", "a note")])
    r2 = await store.get_call("r2")
    assert r2 is not None and (r2.outcome, r2.status, r2.detail) == ("ok", 200, "a note")


async def _calls(store: Store) -> AsyncIterator[Call]:
    async for doc in store.db.calls.find():
        yield Call.from_document(doc)


async def test_snapshots_saved_together_are_created_once_and_mark_their_pulls(
    store: Store,
) -> None:
    """A batch stores each new snapshot once, leaves stored ones as they are, fills the pulls.

    The same snapshot twice in one batch, or again in a later batch (a
    redelivery), is created exactly once; the pull of its day lists each group.
    """
    first = snapshot()
    other = replace(snapshot(), group="device")
    created = await store.save_snapshots([first, other, first])
    assert created == {first.id, other.id}
    again = replace(snapshot([{"metric": "Other", "rows": []}]))
    assert await store.save_snapshots([again, replace(snapshot(), group="country")]) == {
        replace(snapshot(), group="country").id
    }
    stored = await store.get_snapshot("p1", "2026-03-29", "url")
    assert stored is not None and stored.blocks == [{"metric": "Traffic", "rows": []}]
    assert await store.count_snapshots("p1") == 3
    progress = await store.pull_progress("p1", "2026-03-29")
    assert set(progress.stored) == {"url", "device", "country"}


async def test_a_batch_of_many_pulls_marks_each_with_its_own_groups(store: Store) -> None:
    """Several projects and days in one batch: each pull lists its groups, and only those.

    A pull recorded before (a group held for a retry) keeps what it held and
    gains the groups; the others are created; a group stored again is listed once.
    """
    until = datetime(2026, 3, 30, 1, 0, tzinfo=UTC)
    await store.hold_group("p2", "2026-03-29", "browser", until)
    batch = [
        replace(snapshot(), project_id=project, local_date=day, group=group)
        for project, day, groups in [
            ("p1", "2026-03-29", ("url", "device")),
            ("p2", "2026-03-29", ("url", "device")),
            ("p2", "2026-03-28", ("country",)),
            ("p3", "2026-03-29", ("url", "device", "country", "browser")),
        ]
        for group in groups
    ]
    assert len(await store.save_snapshots(batch)) == len(batch)
    await store.save_snapshots([replace(snapshot(), project_id="p3", group="url")])
    expected = {
        ("p1", "2026-03-29"): {"url", "device"},
        ("p2", "2026-03-29"): {"url", "device"},
        ("p2", "2026-03-28"): {"country"},
        ("p3", "2026-03-29"): {"url", "device", "country", "browser"},
    }
    for (project, day), groups in expected.items():
        progress = await store.pull_progress(project, day)
        assert sorted(progress.stored) == sorted(groups), (project, day)
    held = await store.pull_progress("p2", "2026-03-29")
    assert held.retry_at == {"browser": until}
    assert await store.db.pulls.count_documents({}) == len(expected)


async def test_calls_logged_together_keep_the_first_copy(store: Store) -> None:
    """A batch's calls go in one write; a call logged already (a redelivery) stays as it was."""
    at = datetime(2026, 3, 30, 0, 1, tzinfo=UTC)
    made = Call("r1", "p1", "2026-03-29", "url", "daily", at, outcome="ok")
    assert await store.log_call(made)
    await store.log_calls([Call("r1", "p1", "2026-03-29", "url", "daily", at),
                           Call("r2", "p1", "2026-03-29", "device", "daily", at)])  # fmt: skip
    logged = {call.request_id: call for call in await store.calls_since("p1", at)}
    assert set(logged) == {"r1", "r2"}
    assert logged["r1"].outcome == "ok"
    assert logged["r2"].outcome == "granted"


async def test_the_delivery_log_pages_newest_first_across_its_windows(store: Store) -> None:
    """Pages are exact however old the deliveries: from minutes to a year, ties included.

    A page is read from a recent window that widens while too few are found;
    paging on must neither skip nor repeat one, even among deliveries created
    at the same instant.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    ages = [timedelta(minutes=5)] * 3 + [timedelta(hours=3), timedelta(days=2),
            timedelta(days=20), timedelta(days=20), timedelta(days=200)]  # fmt: skip
    for n, age in enumerate(ages):
        created = now - age
        await store.open_delivery(
            f"d{n}", connection="c1", period="2026-01-01", reason="schedule",
            scheduled_at=created, now=created, next_check_at=created,
        )  # fmt: skip
    expected = sorted(
        ((now - age, f"d{n}") for n, age in enumerate(ages)), key=lambda pair: pair, reverse=True
    )
    seen: list[str] = []
    before: tuple[datetime, str] | None = None
    while page := await store.deliveries(limit=3, before=before):
        seen += [d.key for d in page]
        before = (page[-1].created_at, page[-1].key)
    assert seen == [key for _, key in expected]
    assert [d.key for d in await store.deliveries(limit=100)] == seen
    assert [d.key for d in await store.deliveries("c1", limit=4)] == seen[:4]
