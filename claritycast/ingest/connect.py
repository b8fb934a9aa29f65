"""Connect a Clarity project: check the token, store it, pull yesterday at once.

Plain async functions, used by ``claritycast connect`` and the HTTP API. The
first pull goes through the normal chain (quota check → fetch → store), so it
is counted, logged and idempotent like any other. `start_connect` stores the
project, sends the 7 requests and records them as a *pull* (its id is what an
API client polls or streams); `pull_reports` says where each group stands
now; `connect_project` does both and waits, for the CLI.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import faust

from claritycast.clarity.token import check_token, fingerprint, plain_token
from claritycast.clock import Clock
from claritycast.errors import Conflict, InputError, NotFound
from claritycast.ingest.quota import ON_ITS_WAY, STORED_ALREADY
from claritycast.localtime import local_yesterday, valid_timezone
from claritycast.naming import slug
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES
from models.documents import Organisation, Project, as_utc
from models.records import FetchRequested
from topics import FETCH_REQUESTED, TopicSpec

SendFn = Callable[[TopicSpec, str, faust.Record], Awaitable[None]]
DEFAULT_ORG = "default"
POLL_S = 0.2


@dataclass(frozen=True)
class GroupReport:
    """What happened to one fetch group.

    ``stored``, a failure kind from the call log (``server error``, ``skipped``
    …), ``refused`` (the quota, or Clarity's 429, said no), ``not due`` (stored
    already, or on its way), or ``pending`` (no end within the wait).
    """

    group: str
    outcome: str
    detail: str | None = None


class Asked(Protocol):
    """A request whose end is awaited (a `FetchRequested`, or one read back from a pull)."""

    request_id: str
    project_id: str
    local_date: str
    group: str


@dataclass(frozen=True)
class AskedRequest:
    request_id: str
    project_id: str
    local_date: str
    group: str


@dataclass(frozen=True)
class Pull:
    """Requests sent together (a connect's first pull, a refresh), followed as one."""

    pull_id: str
    kind: str  # connect, refresh
    project_id: str
    local_date: str
    requests: tuple[AskedRequest, ...]
    created_at: datetime

    @classmethod
    def of(cls, kind: str, requests: list[FetchRequested], now: datetime) -> Pull:
        first = requests[0]
        return cls(
            pull_id=uuid.uuid4().hex[:16],
            kind=kind,
            project_id=first.project_id,
            local_date=first.local_date,
            requests=tuple(
                AskedRequest(r.request_id, r.project_id, r.local_date, r.group) for r in requests
            ),
            created_at=now,
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.pull_id,
            "kind": self.kind,
            "project_id": self.project_id,
            "local_date": self.local_date,
            "requests": [{"request_id": r.request_id, "group": r.group} for r in self.requests],
            "created_at": self.created_at,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Pull:
        return cls(
            pull_id=doc["_id"],
            kind=doc["kind"],
            project_id=doc["project_id"],
            local_date=doc["local_date"],
            requests=tuple(
                AskedRequest(r["request_id"], doc["project_id"], doc["local_date"], r["group"])
                for r in doc["requests"]
            ),
            created_at=as_utc(doc["created_at"]),
        )


@dataclass(frozen=True)
class ConnectResult:
    project: Project
    local_date: str
    groups: tuple[GroupReport, ...]

    @property
    def complete(self) -> bool:
        return all(report.outcome == "stored" for report in self.groups)


async def add_organisation(store: Store, name: str, timezone: str, now: datetime) -> Organisation:
    """Create an organisation, refusing an unknown timezone or a taken name."""
    if not name.strip():
        raise InputError("an organisation needs a name", field="name")
    if not valid_timezone(timezone):
        raise InputError(
            f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris",
            field="timezone",
        )
    org = Organisation(slug(name), name.strip(), timezone, now)
    if not await store.add_organisation(org):
        raise Conflict(f"an organisation named {name!r} exists already", field="name")
    return org


async def _organisation(
    store: Store, name: str | None, default_timezone: str, now: datetime
) -> Organisation:
    if name is None:
        existing = await store.get_organisation(DEFAULT_ORG)
        if existing is not None:
            return existing
        await store.add_organisation(Organisation(DEFAULT_ORG, DEFAULT_ORG, default_timezone, now))
        found = await store.get_organisation(DEFAULT_ORG)
        assert found is not None
        return found
    for org in await store.organisations():
        if name in (org.org_id, org.name):
            return org
    raise NotFound(f"no organisation {name!r}; add it with `claritycast orgs add`")


async def start_connect(
    store: Store,
    send: SendFn,
    clock: Clock,
    *,
    token: str,
    label: str,
    org_name: str | None = None,
    default_timezone: str = "UTC",
) -> tuple[Project, Pull]:
    """Store a project and send its first pull (yesterday, all 7 groups); don't wait.

    A hopeless token is refused before anything is stored or spent
    (`ClarityTokenInvalid`); a duplicate label is a `Conflict`. The token
    reaches the store sealed (`claritycast.keyring`), never plain.
    """
    now = clock.now()
    claims = check_token(token, now)
    if not label.strip():
        raise InputError("a project needs a label", field="label")
    org = await _organisation(store, org_name, default_timezone, now)
    project_id = f"{slug(label)}-{uuid.uuid4().hex[:6]}"
    project = Project(
        project_id=project_id,
        label=label.strip(),
        org_id=org.org_id,
        sealed_token=store.seal_token(plain_token(token), project_id),
        connected_at=now,
        token_expires_at=claims.expires_at,
        token_fingerprint=fingerprint(token),
    )
    if not await store.add_project(project, [metric.id for metric in catalogue.METRICS]):
        raise Conflict(f"a project labelled {label!r} exists already in {org.name}", field="label")
    yesterday = local_yesterday(org.timezone, now).isoformat()
    requests = [
        FetchRequested(
            request_id=uuid.uuid4().hex,
            project_id=project.project_id,
            local_date=yesterday,
            group=group,
            reason="connect",
            timezone=org.timezone,
            requested_at=now,
        )
        for group in GROUP_NAMES
    ]
    pull = await send_pull(store, send, "connect", requests, now)
    return project, pull


async def send_pull(
    store: Store, send: SendFn, kind: str, requests: list[FetchRequested], now: datetime
) -> Pull:
    """Record requests as one pull, then send them to the quota check."""
    pull = Pull.of(kind, requests, now)
    await store.record_pull(pull.to_document())
    for request in requests:
        await send(FETCH_REQUESTED, request.project_id, request)
    return pull


async def connect_project(
    store: Store,
    send: SendFn,
    clock: Clock,
    *,
    token: str,
    label: str,
    org_name: str | None = None,
    default_timezone: str = "UTC",
    wait_s: float = 120.0,
) -> ConnectResult:
    """Store a project and pull yesterday in all 7 groups; report each group."""
    project, pull = await start_connect(
        store, send, clock, token=token, label=label, org_name=org_name,
        default_timezone=default_timezone,
    )  # fmt: skip
    reports = await wait_for_outcomes(store, list(pull.requests), wait_s)
    return ConnectResult(project, pull.local_date, reports)


async def outcomes_now(store: Store, requests: Sequence[Asked]) -> dict[str, GroupReport]:
    """The requests that have an end now (by request id): from refusals, calls, snapshots."""
    ids = [r.request_id for r in requests]
    calls = {call.request_id: call for call in await store.calls_by_id(ids)}
    refusals = await store.refusals_by_id(ids)
    ended: dict[str, GroupReport] = {}
    for request in requests:
        call = calls.get(request.request_id)
        if request.request_id in refusals:
            kind, why, next_at = refusals[request.request_id]
            if kind == "not due" and STORED_ALREADY in why:
                # another request (the tick's, usually) stored it first: it is stored
                ended[request.request_id] = GroupReport(request.group, "stored", why)
                continue
            if kind == "not due" and ON_ITS_WAY in why:
                followed = await _follow_the_call_under_way(store, request, why)
                if followed is not None:
                    ended[request.request_id] = followed
                continue
            when = f"; next possible at {next_at:%Y-%m-%d %H:%M} UTC" if next_at else ""
            ended[request.request_id] = GroupReport(request.group, kind, why + when)
        elif call is not None and call.outcome not in ("granted", "calling", "ok"):
            ended[request.request_id] = GroupReport(request.group, call.outcome, call.detail)
        elif (
            call is not None
            and call.outcome == "ok"
            and await store.snapshot_exists(request.project_id, request.local_date, request.group)
        ):
            ended[request.request_id] = GroupReport(request.group, "stored", call.detail)
    return ended


async def _follow_the_call_under_way(store: Store, request: Asked, why: str) -> GroupReport | None:
    """The end of a group another request was already fetching; None while it is under way.

    The tick may ask for a just-connected project's day before connect's own
    requests reach the quota check (or a refresh may meet the nightly pull):
    the quota check then drops ours as not due, and the person waiting should
    see what happens to the group, not "not due".
    """
    if await store.snapshot_exists(request.project_id, request.local_date, request.group):
        return GroupReport(request.group, "stored", "fetched by the request already under way")
    progress = await store.pull_progress(request.project_id, request.local_date)
    if request.group in progress.dead:
        return GroupReport(request.group, "failed", f"{why}; it failed: dead-lettered, replay it")
    return None


async def pull_reports(store: Store, pull: Pull) -> tuple[GroupReport, ...]:
    """Where each group of a pull stands now; ``pending`` for those still under way."""
    ended = await outcomes_now(store, pull.requests)
    return tuple(
        ended.get(r.request_id, GroupReport(r.group, "pending", "under way")) for r in pull.requests
    )


async def wait_for_outcomes(
    store: Store, requests: Sequence[Asked], wait_s: float
) -> tuple[GroupReport, ...]:
    """Poll the call log, refusals and snapshots until every request has an end."""
    deadline = time.monotonic() + wait_s
    done: dict[str, GroupReport] = {}
    while True:
        pending = [r for r in requests if r.request_id not in done]
        done |= await outcomes_now(store, pending)
        if len(done) == len(requests) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_S)
    return tuple(
        done.get(
            r.request_id,
            GroupReport(
                r.group, "pending", f"no answer within {wait_s:.0f} s: is a worker running?"
            ),
        )
        for r in requests
    )
