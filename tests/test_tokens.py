"""Clarity tokens at rest: sealed in the store, unreadable ones never fetched, set-token.

The chain runs in the test's process on a manual clock shared with the
Clarity simulator, against the session's real broker and database.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest
from structlog.testing import capture_logs

from claritycast.clock import ManualClock
from claritycast.errors import ClarityTokenInvalid, InputError
from claritycast.ingest.connect import connect_project
from claritycast.ingest.keys import encrypt_plain_tokens, rotate_keys
from claritycast.ingest.quota import LEASE
from claritycast.ingest.refresh import refresh
from claritycast.ingest.tokens import set_token
from claritycast.keyring import is_sealed, new_key, parse_keys
from claritycast.runtime.app import ClarityCastApp
from claritycast.settings import Settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models import catalogue
from models.audit import Action, ActorKind
from models.documents import Organisation, Project, ProjectStatus
from tests.conftest import DEFAULT_START, StartChain
from tests.helpers import history_snapshot, make_token, run_cli, sender, wait_for
from tests.leaks import dump_database, leaks

pytestmark = pytest.mark.slow

YESTERDAY = "2026-11-23"  # the default START is 2026-11-24 14:30 UTC
# Long enough for several ticks (every 0.2 s): time for what must not happen.
TICKS_S = 1.5


async def add_project(store: Store, project_id: str, sealed: str | None) -> Project:
    if await store.get_organisation("acme") is None:
        await store.add_organisation(Organisation("acme", "Acme", "UTC"))
    project = Project(project_id, project_id.title(), "acme", sealed)
    await store.add_project(project, [metric.id for metric in catalogue.METRICS])
    return project


async def status_of(store: Store, project_id: str) -> tuple[str, str | None]:
    project = await store.get_project(project_id)
    assert project is not None
    return project.status, project.status_reason


async def test_a_connected_projects_document_holds_no_token(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """connect stores the token sealed, with its expiry beside it; the pull still works."""
    token = simulator.add_project("shop").token
    result = await connect_project(store, sender(chain), clock, token=token, label="Shop")
    assert result.complete, result.groups
    document = await store.db.projects.find_one({"_id": result.project.project_id})
    assert document is not None
    assert "token" not in document
    assert is_sealed(document["sealed_token"])
    assert document["token_expires_at"] is not None
    assert leaks(await dump_database(store.db), {"the Clarity token": token}) == []
    project = await store.get_project(result.project.project_id)
    assert project is not None
    assert store.open_token(project) == token


async def test_unreadable_tokens_are_named_and_never_fetched(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """Tampered, moved to another project, or sealed with a key not held: each is "token
    unreadable" with its reason and what to do, and Clarity is never asked."""
    for name in ("good", "tampered", "lost"):
        simulator.add_project(name)
    good = store.seal_token(simulator.projects["good"].token, "good")
    head, body = store.seal_token(simulator.projects["tampered"].token, "tampered").rsplit(":", 1)
    tampered = f"{head}:{body[:20]}{'B' if body[20] == 'A' else 'A'}{body[21:]}"
    elsewhere = parse_keys(new_key())
    lost = elsewhere.seal(simulator.projects["lost"].token, "lost")
    with capture_logs() as logged:
        await add_project(store, "good", good)
        await add_project(store, "tampered", tampered)
        await add_project(store, "moved", good)  # good's sealed token, copied to another project
        await add_project(store, "lost", lost)

        async def pulled_and_marked() -> bool:
            stored = len(await store.groups_stored("good", YESTERDAY)) == 7
            statuses = [(await status_of(store, p))[0] for p in ("tampered", "moved", "lost")]
            return stored and statuses == [ProjectStatus.TOKEN_UNREADABLE] * 3

        await wait_for(pulled_and_marked, timeout_s=60)
        await asyncio.sleep(TICKS_S)

    reasons = {p: (await status_of(store, p))[1] or "" for p in ("tampered", "moved", "lost")}
    assert reasons["tampered"].startswith("tampered: it fails its authenticity check")
    assert reasons["moved"].startswith("another project's: sealed for another project")
    assert reasons["lost"].startswith(f"key missing: sealed with key {elsewhere.writer.key_id}")
    assert "keys rotate" in reasons["lost"]
    assert all("claritycast projects set-token" in reason for reason in reasons.values())
    assert len(simulator.requests_for("good")) == 7, "good's token, copied to 'moved', is not used"
    assert simulator.requests_for("tampered") == simulator.requests_for("lost") == []
    for project_id in ("tampered", "moved", "lost"):
        calls = await store.calls_since(project_id, clock.now() - timedelta(days=1))
        assert {call.outcome for call in calls} <= {"skipped"}, "no request was made"
        assert await store.groups_stored(project_id, YESTERDAY) == set()
    marked = [e["project"] for e in logged if e["event"] == "project.token_unreadable"]
    assert sorted(marked) == ["lost", "moved", "tampered"], "each is told once"

    clock.advance(LEASE + timedelta(minutes=1))  # the tick would ask again: it must not
    await asyncio.sleep(TICKS_S)
    assert simulator.requests_for("tampered") == simulator.requests_for("lost") == []
    assert len(simulator.requests_for("good")) == 7
    with pytest.raises(InputError, match="is token unreadable"):
        await refresh(store, sender(chain), "lost", [], clock.now(), wait_s=0)


async def test_set_token_reactivates_keeps_history_and_the_next_tick_pulls(
    chain: ClarityCastApp, simulator: ClaritySimulator, store: Store, clock: ManualClock
) -> None:
    """A refused token replaced: active again, every snapshot kept, yesterday pulled next."""
    simulator.add_project("shop")
    old = make_token("revoked")
    await add_project(store, "shop", store.seal_token(old, "shop"))
    await store.set_project_status("shop", ProjectStatus.TOKEN_INVALID, "token invalid (401)")
    for days_ago in (2, 3):
        day = date.fromisoformat(YESTERDAY) - timedelta(days=days_ago - 1)
        await store.save_snapshot(history_snapshot("shop", day, "overall", "UTC"))
    await asyncio.sleep(TICKS_S)
    assert simulator.requests_for("shop") == [], "nothing is asked of an invalid token"

    with pytest.raises(ClarityTokenInvalid, match="not a JWT"):
        await set_token(store, "shop", "not-a-jwt", clock)
    with pytest.raises(InputError, match="no project 'nowhere'"):
        await set_token(store, "nowhere", simulator.projects["shop"].token, clock)
    assert await status_of(store, "shop") == (ProjectStatus.TOKEN_INVALID, "token invalid (401)")

    result = await set_token(store, "Shop", f"Bearer {simulator.projects['shop'].token} ", clock)
    assert result.reactivated
    assert result.previous_status == ProjectStatus.TOKEN_INVALID
    assert result.project.status == ProjectStatus.ACTIVE
    assert result.project.status_reason is None
    assert result.expires_at == result.project.token_expires_at
    assert store.open_token(result.project) == simulator.projects["shop"].token

    async def pulled() -> bool:
        return len(await store.groups_stored("shop", YESTERDAY)) == 7

    await wait_for(pulled, timeout_s=60)
    assert await store.count_snapshots("shop") == 9, "the history is kept"
    assert len(simulator.requests_for("shop")) == 7


async def test_set_token_leaves_a_paused_project_paused(
    store: Store, simulator: ClaritySimulator, clock: ManualClock
) -> None:
    """Only invalid and unreadable tokens are reactivated; a pause is the operator's."""
    await add_project(store, "resting", store.seal_token(make_token("old"), "resting"))
    await store.set_project_status("resting", ProjectStatus.PAUSED, "paused by an operator")
    result = await set_token(store, "resting", make_token("new"), clock)
    assert not result.reactivated
    assert result.project.status == ProjectStatus.PAUSED
    assert store.open_token(result.project) == make_token("new")


async def test_plain_tokens_of_an_older_version_are_encrypted_once_by_racing_workers(
    store: Store, settings: Settings
) -> None:
    """Three processes' stores encrypt at once: each token is sealed by exactly one of them."""
    tokens = {f"old-{i}": make_token(f"old-{i}") for i in range(6)}
    await store.add_organisation(Organisation("acme", "Acme", "UTC"))
    for project_id, token in tokens.items():  # as a version before sealing stored them
        document = Project(project_id, project_id, "acme").to_document()
        del document["sealed_token"], document["token_expires_at"]
        await store.db.projects.insert_one(document | {"token": token})
    assert settings.mongodb_url is not None
    racers = [
        Store.connect(settings.mongodb_url, settings.mongodb_database, keyring=store.keyring)
        for _ in range(3)
    ]
    try:
        sealed = await asyncio.gather(*(encrypt_plain_tokens(s, DEFAULT_START) for s in racers))
    finally:
        for racer in racers:
            await racer.close()
    done = [project_id for each in sealed for project_id in each]
    assert sorted(done) == sorted(tokens), "every token sealed, none twice"
    assert await encrypt_plain_tokens(store, DEFAULT_START) == [], "once"
    for project_id, token in tokens.items():
        document = await store.db.projects.find_one({"_id": project_id})
        assert document is not None and "token" not in document
        project = Project.from_document(document)
        assert project.token_expires_at is not None
        assert store.open_token(project) == token
    assert leaks(await dump_database(store.db), tokens) == []


async def test_a_worker_starting_on_an_older_database_seals_its_tokens_then_pulls(
    start_chain: StartChain,
    chain_settings: Settings,
    simulator: ClaritySimulator,
    store: Store,
    clock: ManualClock,
) -> None:
    """A plain token left by an older version is sealed before any agent runs, on the audit
    trail as the worker's doing; the project is then pulled as usual."""
    token = simulator.add_project("legacy").token
    await store.add_organisation(Organisation("acme", "Acme", "UTC"))
    document = Project("legacy", "Legacy", "acme").to_document()
    del document["sealed_token"], document["token_expires_at"]
    await store.db.projects.insert_one(document | {"token": token})
    await store.add_project(Project("other", "Other", "acme"), [])  # nothing to seal here

    await start_chain(clock, ("all",), settings=chain_settings)
    document = await store.db.projects.find_one({"_id": "legacy"})
    assert document is not None and "token" not in document and is_sealed(document["sealed_token"])
    (event,) = await store.audit_events(object_name="project:legacy")
    assert (event.action, event.actor_kind, event.outcome) == (
        Action.PROJECT_ENCRYPT_TOKEN, ActorKind.WORKER, "ok",
    )  # fmt: skip

    async def pulled() -> bool:
        return len(await store.groups_stored("legacy", YESTERDAY)) == 7

    await wait_for(pulled, timeout_s=60)
    assert leaks(await dump_database(store.db), {"the legacy token": token}) == []


async def test_set_token_command_reads_stdin_and_prints_no_token(
    settings_env: dict[str, str], store: Store, simulator: ClaritySimulator
) -> None:
    """`projects set-token P --token -`: one line on what changed, a refusal in one line."""
    token = simulator.add_project("shop").token
    await add_project(store, "shop", store.seal_token(make_token("old"), "shop"))
    await store.set_project_status("shop", ProjectStatus.TOKEN_UNREADABLE, "key missing: …")

    code, out, err = await run_cli(
        settings_env, "projects", "set-token", "shop", "--token", "-", stdin=token
    )
    assert code == 0, err
    assert out.startswith("Shop (shop): new token stored; it expires ")
    assert "it was token unreadable; it is active again" in out
    assert await status_of(store, "shop") == (ProjectStatus.ACTIVE, None)

    code, out, err = await run_cli(
        settings_env, "projects", "set-token", "shop", "--token", "-", stdin="eyJnot.a.jwt"
    )
    assert code == 1
    assert err.startswith("claritycast: token is not a JWT") and len(err.splitlines()) == 1
    project = await store.get_project("shop")
    assert project is not None and store.open_token(project) == token, "the refusal changed nothing"
    secrets = {"the token": token, "the refused text": "eyJnot.a.jwt"}
    assert leaks(out + err, secrets) == []


async def test_a_rotation_resumes_races_safely_reactivates_and_says_what_it_left(
    store: Store, settings: Settings
) -> None:
    """Half done before (an interruption): the rest is re-sealed. Two at once: each token
    once. A project unreadable for a missing key that is back: active again. A token whose
    key nobody holds: left, and said."""
    old_key, new_text = new_key(), new_key()
    old, new = parse_keys(old_key), parse_keys(f"{new_text},{old_key}")
    tokens = {f"p{i}": make_token(f"p{i}") for i in range(8)}
    for i, (project_id, token) in enumerate(tokens.items()):
        keyring = new if i < 3 else old  # p0-p2: an earlier, interrupted rotation got to them
        await add_project(store, project_id, keyring.seal(token, project_id))
    await store.set_project_status("p7", ProjectStatus.TOKEN_UNREADABLE, "key missing: …")
    orphan = parse_keys(new_key()).seal(make_token("orphan"), "orphan")
    await add_project(store, "orphan", orphan)

    assert settings.mongodb_url is not None
    rotators = [
        Store.connect(settings.mongodb_url, settings.mongodb_database, keyring=new)
        for _ in range(2)
    ]
    try:
        first, second = await asyncio.gather(*(rotate_keys(r, DEFAULT_START) for r in rotators))
        again = await rotate_keys(rotators[0], DEFAULT_START)
    finally:
        for rotator in rotators:
            await rotator.close()

    resealed = sorted(first.resealed + second.resealed)
    assert resealed == [f"p{i}" for i in range(3, 8)], "each token re-sealed once, in all"
    assert set(first.current) >= {"p0", "p1", "p2"}
    assert sorted(first.reactivated + second.reactivated) == ["p7"]
    for rotation in (first, second, again):
        assert [project_id for project_id, _ in rotation.left] == ["orphan"]
        assert rotation.left[0][1].startswith("key missing: sealed with key ")
        assert not rotation.complete
    assert again.resealed == () and again.reactivated == ()
    assert "1 left on an older key: orphan (key missing" in again.describe()
    only_new = parse_keys(new_text)
    for project_id, token in tokens.items():
        project = await store.get_project(project_id)
        assert project is not None and project.status == ProjectStatus.ACTIVE
        assert project.sealed_token is not None and only_new.is_current(project.sealed_token)
        assert only_new.open(project.sealed_token, project_id) == token


async def test_keys_rotate_exits_1_while_a_token_is_left_on_a_key_not_held(
    settings_env: dict[str, str], store: Store
) -> None:
    """The operator is told which token stops the old key being dropped, and why."""
    await add_project(store, "kept", store.seal_token(make_token("kept"), "kept"))
    lost = parse_keys(new_key())
    await add_project(store, "lost", lost.seal(make_token("lost"), "lost"))
    code, out, err = await run_cli(settings_env, "keys", "rotate")
    assert code == 1, err
    assert f"1 left on an older key: lost (key missing: sealed with key {lost.writer.key_id}" in out
    assert out.rstrip().endswith(
        "keep the older keys until every token above is readable or replaced"
    )
