"""Rotating the key while a worker pulls: every token still opens, nothing twice, nothing fails.

A real `claritycast worker` process holds the new key first and the old one
after it; `claritycast keys rotate` runs in its own process while the worker
is fetching. Then the old key is dropped, a worker holding only the new one
starts, and projects that were paused all along (so only the rotation touched
their tokens) are pulled with it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from claritycast.keyring import KEY_PREFIX, new_key, parse_keys, sealed_key_id
from claritycast.settings import Settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from models import catalogue
from models.audit import Action
from models.clarity import GROUP_NAMES
from models.documents import Organisation, Project, ProjectStatus
from tests.helpers import WorkerProcess, run_cli, wait_for
from tests.leaks import leaks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

START = None  # worker processes run on the real clock
PULLED_DURING = [f"during-{i}" for i in range(3)]  # pulled while the rotation runs
# Held back until the rotation is done, then pulled by the worker that started before it.
PULLED_NEXT = [f"next-{i}" for i in range(3)]
PULLED_AFTER = [f"after-{i}" for i in range(3)]  # paused until the old key is gone
EVERY = PULLED_DURING + PULLED_NEXT + PULLED_AFTER
LATENCY_S = 0.2  # Clarity's answers take a moment: the rotation lands mid-pull


def yesterday() -> str:
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


async def pulled(store: Store, projects: list[str]) -> bool:
    day = yesterday()
    for project_id in projects:
        if len(await store.groups_stored(project_id, day)) < 7:
            return False
    return True


async def test_rotation_while_a_worker_pulls_then_the_old_key_is_dropped(
    settings: Settings,
    settings_env: dict[str, str],
    store: Store,
    simulator: ClaritySimulator,
) -> None:
    """Two keys, a rotation mid-pull, then the new key alone: all pulled once, none failed.

    The worker holds both keys throughout the rotation, so it opens every token
    whether the rotation has reached it yet or not.
    """
    old_key, new_key_text = new_key(), new_key()
    old, new = parse_keys(old_key), parse_keys(new_key_text)
    assert settings.mongodb_url is not None
    sealer = Store.connect(settings.mongodb_url, settings.mongodb_database, keyring=old)
    long_ago = datetime.now(UTC) - timedelta(days=40)
    tokens: dict[str, str] = {}
    try:
        await sealer.add_organisation(Organisation("acme", "Acme", "UTC", long_ago))
        for project_id in EVERY:
            simulated = simulator.add_project(project_id)
            simulated.latency_s = LATENCY_S
            tokens[project_id] = simulated.token
            status = ProjectStatus.PAUSED if project_id in PULLED_AFTER else ProjectStatus.ACTIVE
            held = datetime.now(UTC) + timedelta(hours=1) if project_id in PULLED_NEXT else None
            project = Project(
                project_id, project_id, "acme", sealer.seal_token(simulated.token, project_id),
                status, connected_at=long_ago, deferred_until=held,
            )  # fmt: skip
            await sealer.add_project(project, [metric.id for metric in catalogue.METRICS])
    finally:
        await sealer.close()

    env = settings_env | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_TICK_INTERVAL_S": "0.5",
    }

    async def pull_started() -> bool:
        return bool(simulator.log)

    both = WorkerProcess(env | {"CLARITYCAST_SECRET_KEYS": f"{new_key_text},{old_key}"})
    await both.start(store)
    try:
        await wait_for(pull_started, timeout_s=60)
        code, out, err = await run_cli(
            env | {"CLARITYCAST_SECRET_KEYS": f"{new_key_text}, {old_key}"}, "keys", "rotate"
        )
        assert code == 0, out + err
        assert out.startswith(f"{len(EVERY)} token(s) re-encrypted with key {new.writer.key_id}")
        assert "older keys can be dropped" in out
        for project_id in PULLED_NEXT:
            await store.set_deferred_until(project_id, None)
        await wait_for(lambda: pulled(store, PULLED_DURING + PULLED_NEXT), timeout_s=90)
    finally:
        assert await both.stop() == 0, await both.output()

    documents = [doc async for doc in store.db.projects.find({}, {"sealed_token": 1})]
    assert {sealed_key_id(doc["sealed_token"]) for doc in documents} == {new.writer.key_id}

    for project_id in PULLED_AFTER:
        await store.set_project_status(project_id, ProjectStatus.ACTIVE, None)
    alone = WorkerProcess(env | {"CLARITYCAST_SECRET_KEYS": new_key_text})
    await alone.start(store)
    try:
        await wait_for(lambda: pulled(store, PULLED_AFTER), timeout_s=90)
    finally:
        assert await alone.stop() == 0, await alone.output()

    asked = Counter((entry.project_id, entry.params.get("dimension1")) for entry in simulator.log)
    assert len(asked) == 7 * len(EVERY), "every group of every project was asked for"
    assert set(asked.values()) == {1}, "and none twice"
    assert {entry.status for entry in simulator.log} == {200}
    since = datetime.now(UTC) - timedelta(hours=1)
    for project_id in tokens:
        project = await store.get_project(project_id)
        assert project is not None and project.status == ProjectStatus.ACTIVE
        assert {c.outcome for c in await store.calls_since(project_id, since)} == {"ok"}
        assert await store.groups_stored(project_id, yesterday()) == set(GROUP_NAMES)
    (event,) = await store.audit_events(object_name="keys")
    assert event.action == Action.KEYS_ROTATE and event.outcome == "ok"

    secrets = {f"{p}'s token": token for p, token in tokens.items()}
    secrets |= {"the old key": old_key.removeprefix(KEY_PREFIX)}
    secrets |= {"the new key": new_key_text.removeprefix(KEY_PREFIX)}
    printed = out + err + await both.output() + await alone.output()
    assert leaks(printed, secrets) == []
