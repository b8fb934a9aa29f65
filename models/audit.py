"""The audit trail's vocabulary: who acted (`Actor`), what they did (`Action`), the record.

Every change an operator makes is one `AuditEvent`: when, who, what, on which
object, and the outcome, never a secret. The same record is kept in MongoDB
(the ``audit`` collection, insert-only) and published on the ``audit`` topic,
so other services can follow what operators do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import faust


class ActorKind:
    """What kind of someone acted; the name's meaning follows from it."""

    CLI = "cli"  # an operator at a terminal: the OS user and host (``alice@ops-1``)
    USER = "user"  # a person signed in to the web app: the account name
    API_KEY = "api-key"  # another service with an API key: the key's name, never the key
    WORKER = "worker"  # claritycast itself, on its own account: ``host:pid``
    ALL = frozenset({CLI, USER, API_KEY, WORKER})


@dataclass(frozen=True)
class Actor:
    """Who did something, as data: the CLI, the HTTP layer and workers each make their own."""

    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in ActorKind.ALL:
            raise ValueError(f"unknown actor kind {self.kind!r}; one of {sorted(ActorKind.ALL)}")
        if not self.name.strip():
            raise ValueError("an actor needs a name")

    def describe(self) -> str:
        return f"{self.kind}:{self.name}"


class Action:
    """Every action the trail knows, as ``<object kind>.<verb>``; a face adds its own here."""

    PROJECT_CONNECT = "project.connect"
    PROJECT_SET_TOKEN = "project.set-token"  # noqa: S105 - an action's name, not a secret
    PROJECT_REFRESH = "project.refresh"
    PROJECT_ENCRYPT_TOKEN = "project.encrypt-token"  # noqa: S105 - an action's name
    PROJECT_PAUSE = "project.pause"
    PROJECT_RESUME = "project.resume"
    PROJECT_REMOVE = "project.remove"
    ORGANISATION_ADD = "organisation.add"
    ORGANISATION_CHANGE = "organisation.change"
    CONNECTION_ADD = "connection.add"
    CONNECTION_CHANGE = "connection.change"
    CONNECTION_PAUSE = "connection.pause"
    CONNECTION_RESUME = "connection.resume"
    CONNECTION_REMOVE = "connection.remove"
    DELIVERY_SEND_NOW = "delivery.send-now"
    DEAD_LETTERS_REPLAY = "dead-letters.replay"
    KEYS_ROTATE = "keys.rotate"
    # People and API keys (the web app and `claritycast users|api-keys`).
    USER_ADD = "user.add"
    USER_CHANGE = "user.change"  # a new role or a new password
    USER_REMOVE = "user.remove"
    API_KEY_CREATE = "api-key.create"
    API_KEY_REVOKE = "api-key.revoke"
    # The web app's: a sign-in, refused or not (the outcome says which), a sign-out.
    ACCOUNT_SIGN_IN = "account.sign-in"
    ACCOUNT_SIGN_OUT = "account.sign-out"

    ALL = frozenset(
        {
            PROJECT_CONNECT,
            PROJECT_SET_TOKEN,
            PROJECT_REFRESH,
            PROJECT_ENCRYPT_TOKEN,
            PROJECT_PAUSE,
            PROJECT_RESUME,
            PROJECT_REMOVE,
            ORGANISATION_ADD,
            ORGANISATION_CHANGE,
            CONNECTION_ADD,
            CONNECTION_CHANGE,
            CONNECTION_PAUSE,
            CONNECTION_RESUME,
            CONNECTION_REMOVE,
            DELIVERY_SEND_NOW,
            DEAD_LETTERS_REPLAY,
            KEYS_ROTATE,
            USER_ADD,
            USER_CHANGE,
            USER_REMOVE,
            API_KEY_CREATE,
            API_KEY_REVOKE,
            ACCOUNT_SIGN_IN,
            ACCOUNT_SIGN_OUT,
        }
    )


class AuditEvent(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.AuditEvent",
):
    """One operator action: when, who, what, on which object, and how it ended.

    ``actor_kind`` is ``cli`` (``actor_name`` is the OS user and host),
    ``user`` (a web account), ``api-key`` (the key's name) or ``worker``
    (claritycast itself). ``action`` is ``<object kind>.<verb>``, e.g.
    ``project.set-token``; ``object`` names what it acted on, e.g.
    ``project:shop-1a2b3c`` or ``connection:shop-sessions-slack``.
    ``outcome`` is ``ok``, ``refused: <why>`` (bad input, nothing changed) or
    ``failed: <why>``. No field ever holds a token, key or password.
    """

    audit_id: str
    at: datetime
    actor_kind: str
    actor_name: str
    action: str
    object: str
    outcome: str
    detail: str | None = None
    schema_version: int = 1

    @property
    def actor(self) -> Actor:
        return Actor(self.actor_kind, self.actor_name)
