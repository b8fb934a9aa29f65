"""Connect a Clarity project: check the token, store it, pull yesterday at once.

A plain async function (`connect_project`), used by ``claritycast connect``
and later by the HTTP API. The first pull goes through the normal chain (quota
check → fetch → store), so it is counted, logged and idempotent like any other;
the function waits for the chain and reports group by group.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import faust

from claritycast.clarity.token import check_token, plain_token
from claritycast.clock import Clock
from claritycast.errors import InputError
from claritycast.localtime import local_yesterday, valid_timezone
from claritycast.naming import slug
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES
from models.documents import Organisation, Project
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
        raise InputError("an organisation needs a name")
    if not valid_timezone(timezone):
        raise InputError(f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris")
    org = Organisation(slug(name), name.strip(), timezone, now)
    if not await store.add_organisation(org):
        raise InputError(f"an organisation named {name!r} exists already")
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
    raise InputError(f"no organisation {name!r}; add it with `claritycast orgs add`")


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
    """Store a project and pull yesterday in all 7 groups; report each group.

    A hopeless token is refused before anything is stored or spent
    (`ClarityTokenInvalid`); a duplicate label is an `InputError`. The token
    reaches the store sealed (`claritycast.keyring`), never plain.
    """
    now = clock.now()
    claims = check_token(token, now)
    if not label.strip():
        raise InputError("a project needs a label")
    org = await _organisation(store, org_name, default_timezone, now)
    project_id = f"{slug(label)}-{uuid.uuid4().hex[:6]}"
    project = Project(
        project_id=project_id,
        label=label.strip(),
        org_id=org.org_id,
        sealed_token=store.seal_token(plain_token(token), project_id),
        connected_at=now,
        token_expires_at=claims.expires_at,
    )
    if not await store.add_project(project, [metric.id for metric in catalogue.METRICS]):
        raise InputError(f"a project labelled {label!r} exists already in {org.name}")
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
    for request in requests:
        await send(FETCH_REQUESTED, project.project_id, request)
    reports = await wait_for_outcomes(store, requests, wait_s)
    return ConnectResult(project, yesterday, reports)


async def wait_for_outcomes(
    store: Store, requests: list[FetchRequested], wait_s: float
) -> tuple[GroupReport, ...]:
    """Poll the call log, refusals and snapshots until every request has an end."""
    deadline = time.monotonic() + wait_s
    done: dict[str, GroupReport] = {}
    while True:
        pending = [r for r in requests if r.request_id not in done]
        ids = [r.request_id for r in pending]
        calls = {call.request_id: call for call in await store.calls_by_id(ids)}
        refusals = await store.refusals_by_id(ids)
        for request in pending:
            call = calls.get(request.request_id)
            if request.request_id in refusals:
                kind, why, next_at = refusals[request.request_id]
                when = f"; next possible at {next_at:%Y-%m-%d %H:%M} UTC" if next_at else ""
                done[request.request_id] = GroupReport(request.group, kind, why + when)
            elif call is not None and call.outcome not in ("granted", "calling", "ok"):
                done[request.request_id] = GroupReport(request.group, call.outcome, call.detail)
            elif call is not None and call.outcome == "ok":
                snapshot = await store.get_snapshot(
                    request.project_id, request.local_date, request.group
                )
                if snapshot is not None:
                    done[request.request_id] = GroupReport(request.group, "stored", call.detail)
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
