"""The audit trail: every operator action leaves exactly one record, with its actor, no secret.

Each command runs as its own `claritycast` process, as an operator runs it, against
the chain running in the test's process (on the real clock, as the commands are).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from claritycast.cli.common import cli_actor
from claritycast.errors import InputError
from claritycast.ingest.audit import audited, record
from claritycast.keyring import KEY_PREFIX
from claritycast.runtime.app import ClarityCastApp
from claritycast.runtime.ports import free_port
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings, load_settings
from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.store.core import Store
from models.audit import Action, Actor, ActorKind, AuditEvent
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import read_topic, run_cli
from tests.leaks import leaks

pytestmark = pytest.mark.slow

START = None  # the commands run on the real clock: so does the chain
# No tick: connect's own pull is what the test follows (a tick would race it to the groups).
CHAIN_STAGES = ("quota", "fetch", "store", "render", "deliver")


@pytest.fixture
def chain_settings(
    settings_values: dict[str, Any], simulator: ClaritySimulator, slack: SlackStandin
) -> Settings:
    return load_settings(
        **settings_values, clarity_api_url=simulator.export_url, tick_interval_s=0.2,
        slack_token=slack.token, slack_api_url=slack.base_url,
    )  # fmt: skip


class Trail:
    """Runs a command and returns the audit records it added."""

    def __init__(self, store: Store, env: dict[str, str]) -> None:
        self.store = store
        self.env = env
        self.seen: set[str] = set()
        self.printed: list[str] = []

    async def run(self, *args: str, stdin: str = "") -> tuple[int, str, list[AuditEvent]]:
        code, out, err = await run_cli(self.env, *args, stdin=stdin)
        self.printed.append(out + err)
        events = await self.store.audit_events(limit=1000)
        new = [event for event in events if event.audit_id not in self.seen]
        self.seen.update(event.audit_id for event in new)
        return code, out + err, new


async def test_each_operator_action_leaves_one_record_with_its_actor(
    chain: ClarityCastApp,
    store: Store,
    simulator: ClaritySimulator,
    slack: SlackStandin,
    settings_env: dict[str, str],
    settings: Settings,
) -> None:
    """orgs add, connect, set-token, refresh, projects pause/resume/remove, connections
    add/pause/resume/remove, send-now, users, api-keys, replay and keys rotate: one record
    each, by the OS user at this host; refusals too."""
    token = simulator.add_project("shop").token
    trail = Trail(store, settings_env)
    me = cli_actor()
    steps: list[tuple[tuple[str, ...], str, str, str, str]] = []

    async def step(*args: str, stdin: str = "", action: str, object: str, outcome: str) -> None:
        code, printed, new = await trail.run(*args, stdin=stdin)
        assert len(new) == 1, f"{args}: {len(new)} records\n{printed}"
        (event,) = new
        assert (event.actor_kind, event.actor_name) == (ActorKind.CLI, me.name)
        assert (event.action, event.object) == (action, object), printed
        assert event.outcome.startswith(outcome), (event.outcome, printed)
        assert code == (0 if outcome == "ok" else 1), printed
        steps.append((args, action, object, event.outcome, event.detail or ""))

    await step("orgs", "add", "Acme", "--timezone", "Europe/Paris",
               action=Action.ORGANISATION_ADD, object="organisation:acme",
               outcome="ok")  # fmt: skip
    code, printed, new = await trail.run(
        "connect", "--label", "Shop", "--org", "Acme", "--token", "-", stdin=token
    )
    assert code == 0, printed
    project_id = re.search(r"connected Shop as (\S+)", printed)[1]  # type: ignore[index]
    (connected,) = new
    assert (connected.action, connected.object, connected.outcome) == (
        Action.PROJECT_CONNECT, f"project:{project_id}", "ok",
    )  # fmt: skip
    assert connected.actor == me
    assert "7/7 stored" in (connected.detail or "")
    target = f"project:{project_id}"

    await step("projects", "set-token", project_id, "--token", "-", stdin=token,
               action=Action.PROJECT_SET_TOKEN, object=target, outcome="ok")  # fmt: skip
    await step("projects", "set-token", project_id, "--token", "-", stdin="not-a-jwt",
               action=Action.PROJECT_SET_TOKEN, object=target,
               outcome="refused: token is not a JWT")  # fmt: skip
    await step("refresh", project_id, action=Action.PROJECT_REFRESH, object=target,
               outcome="refused: Shop: every group of")  # fmt: skip
    name = "shop-sessions-slack"
    connection = f"connection:{name}"
    await step("connections", "add", "--project", "Shop", "--metric", "sessions",
               "--slack", "#web", action=Action.CONNECTION_ADD, object=connection,
               outcome="ok")  # fmt: skip
    await step("connections", "pause", name, action=Action.CONNECTION_PAUSE, object=connection,
               outcome="ok")  # fmt: skip
    await step("connections", "resume", name, action=Action.CONNECTION_RESUME,
               object=connection, outcome="ok")  # fmt: skip
    await step("send-now", name, action=Action.DELIVERY_SEND_NOW, object=connection,
               outcome="ok")  # fmt: skip
    assert len(slack.messages) == 1
    await step("projects", "pause", "Shop", action=Action.PROJECT_PAUSE, object=target,
               outcome="ok")  # fmt: skip
    await step("projects", "resume", "Shop", action=Action.PROJECT_RESUME, object=target,
               outcome="ok")  # fmt: skip
    password = "a long enough password"
    person = "user:ops@example.com"
    await step("users", "add", "Ops@Example.com", "--role", "admin", "--password-stdin",
               stdin=password + "\n", action=Action.USER_ADD, object=person,
               outcome="ok")  # fmt: skip
    await step("users", "set-password", "ops@example.com", "--password-stdin",
               stdin="short\n", action=Action.USER_CHANGE, object=person,
               outcome="refused: ")  # fmt: skip
    await step("users", "remove", "ops@example.com", action=Action.USER_REMOVE, object=person,
               outcome="ok")  # fmt: skip
    code, printed, new = await trail.run("api-keys", "create", "reporting")
    assert code == 0, printed
    key_id = re.search(r"API key (\S+) ", printed)[1]  # type: ignore[index]
    api_key = printed.strip().splitlines()[-1]
    assert [(e.action, e.object, e.outcome, e.detail) for e in new] == [
        (Action.API_KEY_CREATE, f"api-key-id:{key_id}", "ok", "reporting (viewer)")
    ]
    steps.append((("api-keys", "create"), Action.API_KEY_CREATE, f"api-key-id:{key_id}", "ok", ""))
    await step("api-keys", "revoke", key_id, action=Action.API_KEY_REVOKE,
               object=f"api-key-id:{key_id}", outcome="ok")  # fmt: skip
    await step("replay", action=Action.DEAD_LETTERS_REPLAY, object="dead-letters",
               outcome="ok")  # fmt: skip
    await step("keys", "rotate", action=Action.KEYS_ROTATE, object="keys", outcome="ok")
    await step("connections", "remove", name, action=Action.CONNECTION_REMOVE,
               object=connection, outcome="ok")  # fmt: skip
    await step("connections", "pause", "nope", action=Action.CONNECTION_PAUSE,
               object="connection:nope", outcome="refused: no connection 'nope'")  # fmt: skip
    await step("projects", "remove", "Shop", "--yes", action=Action.PROJECT_REMOVE,
               object=target, outcome="ok")  # fmt: skip

    details: dict[str, str] = {}
    for _, action, _, _, detail in steps:
        details.setdefault(action, detail)  # the first of each action
    assert details[Action.DEAD_LETTERS_REPLAY] == "all: nothing to replay"
    assert details[Action.KEYS_ROTATE].startswith("0 token(s) re-encrypted with key ")
    assert details[Action.PROJECT_SET_TOKEN] == "was active, now active"

    events = await store.audit_events(limit=1000)
    assert len(events) == len(steps) + 1
    published = await read_topic(settings.kafka_url or "", f"{settings.topic_prefix}audit",
                                 len(events))  # fmt: skip
    assert sorted(value["audit_id"] for value in published) == sorted(e.audit_id for e in events)
    assert {value["schema_version"] for value in published} == {1}

    code, printed, _ = await trail.run("audit", "--object", target)
    assert code == 0, printed
    lines = printed.splitlines()
    assert [line.split()[3] for line in lines] == [
        Action.PROJECT_CONNECT, Action.PROJECT_SET_TOKEN, Action.PROJECT_SET_TOKEN,
        Action.PROJECT_REFRESH, Action.PROJECT_PAUSE, Action.PROJECT_RESUME,
        Action.PROJECT_REMOVE,
    ]  # fmt: skip
    assert all(me.describe() in line for line in lines)
    code, printed, _ = await trail.run("audit", "--since", "1h", "--limit", "3")
    assert [line.split()[3] for line in printed.splitlines()] == [
        Action.CONNECTION_REMOVE, Action.CONNECTION_PAUSE, Action.PROJECT_REMOVE,
    ]  # fmt: skip

    secrets = {
        "the Clarity token": token,
        "the Slack token": slack.token,
        "the secret key": TEST_SECRET_KEY.removeprefix(KEY_PREFIX),
        "the password": password,
    }
    records = json.dumps(published) + "".join(e.dumps(serializer="json").decode() for e in events)
    assert leaks(records, secrets | {"the API key": api_key[len("cc_") + 13 :]}) == []  # not its id
    assert leaks("\n".join(trail.printed), secrets) == []
    assert "\n".join(trail.printed).count(api_key) == 1, "shown once, by the command making it"


async def test_record_takes_actors_as_data_and_refuses_unknown_actions(store: Store) -> None:
    """A sign-in as the web app records it; an unknown action or outcome shape is a bug."""
    sent: list[tuple[str, AuditEvent]] = []

    async def send(spec: Any, key: str, value: Any) -> None:
        sent.append((spec.name, value))

    refused = await record(
        store, send, actor=Actor(ActorKind.USER, "alice"), action=Action.ACCOUNT_SIGN_IN,
        object="account:alice", outcome="refused: wrong password",
    )  # fmt: skip
    assert sent == [("audit", refused)]
    (stored,) = await store.audit_events(object_name="account:alice")
    assert stored == refused
    assert stored.actor == Actor("user", "alice")
    with pytest.raises(ValueError, match="unknown audit action"):
        await record(store, send, actor=refused.actor, action="account.wave", object="x")
    with pytest.raises(ValueError, match="an outcome is 'ok'"):
        await record(store, send, actor=refused.actor, action=Action.ACCOUNT_SIGN_IN,
                     object="account:alice", outcome="maybe")  # fmt: skip
    with pytest.raises(ValueError, match="unknown actor kind"):
        Actor("robot", "r2")
    assert len(await store.audit_events()) == 1


async def test_audited_records_how_a_block_ended_and_never_swallows(store: Store) -> None:
    """ok, refused: for bad input (the error goes on), failed: for a bug, without its message."""
    sent: list[AuditEvent] = []

    async def send(spec: Any, key: str, value: AuditEvent) -> None:
        sent.append(value)

    api = Actor(ActorKind.API_KEY, "reporting-service")
    async with audited(store, send, api, Action.CONNECTION_ADD, "connection:x") as note:
        note.detail = "sessions to #web"
    with pytest.raises(InputError):
        async with audited(store, send, api, Action.CONNECTION_PAUSE, "connection:y"):
            raise InputError("no connection 'y'")
    with pytest.raises(KeyError):
        async with audited(store, send, api, Action.CONNECTION_REMOVE, "connection:z"):
            raise KeyError("secret-looking internals")
    assert [(e.action, e.outcome, e.detail) for e in sent] == [
        (Action.CONNECTION_ADD, "ok", "sessions to #web"),
        (Action.CONNECTION_PAUSE, "refused: no connection 'y'", None),
        (Action.CONNECTION_REMOVE, "failed: KeyError", None),
    ]
    # Stored, each once; three records of one millisecond (BSON's precision) come back in
    # any order among themselves, so the order is checked by time only.
    stored = await store.audit_events()
    assert sorted(e.audit_id for e in stored) == sorted(e.audit_id for e in sent)
    assert [e.at for e in stored] == sorted(e.at for e in stored)


async def test_a_broker_that_cannot_take_the_record_loses_nothing(store: Store) -> None:
    """Kafka unreachable: the record is in MongoDB, a warning says it was not published."""
    publisher = Publisher(f"kafka://127.0.0.1:{free_port()}", "nowhere.", 1)

    async def send(spec: Any, key: str, value: Any) -> None:
        async with publisher:
            await publisher.send(spec, key, value)

    with capture_logs() as logged:
        event = await record(
            store, send, actor=cli_actor(), action=Action.KEYS_ROTATE, object="keys",
            at=datetime.now(UTC) - timedelta(minutes=1),
        )  # fmt: skip
    assert await store.audit_events() == [event]
    (warning,) = [entry for entry in logged if entry["event"] == "audit.unpublished"]
    assert warning["action"] == Action.KEYS_ROTATE


async def test_a_record_never_holds_a_secret(store: Store) -> None:
    """Whatever a face puts in the object or the detail, token-shaped text is masked."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2lnbmF0dXJlLXZhbHVl"
    sent: list[AuditEvent] = []

    async def send(spec: Any, key: str, value: AuditEvent) -> None:
        sent.append(value)

    await record(store, send, actor=Actor(ActorKind.USER, "alice"),
                 action=Action.PROJECT_SET_TOKEN, object=f"project:{token}",
                 outcome=f"refused: {token} is expired", detail=f"token={token}")  # fmt: skip
    (stored,) = await store.audit_events()
    text = stored.dumps(serializer="json").decode() + sent[0].dumps(serializer="json").decode()
    assert leaks(text, {"the token": token}) == []
