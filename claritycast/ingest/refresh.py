"""Manual refreshes: fetch what yesterday's pull is missing, now, from the quota's headroom.

A refresh goes through the same quota check as the nightly pull (reason
``refresh``): at most 3 in any 24 hours, never eating into the 7 the next
pull needs, and each one is refused with when the next is possible. Groups
already stored are not fetched again: Clarity's window is the last 24 hours,
so a second copy of a stored day would be a different day's numbers. A
project Clarity answered 429 for is refused at once, with when it resets,
and nothing is sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from claritycast.errors import InputError, NotFound, QuotaRefused
from claritycast.ingest.connect import GroupReport, Pull, SendFn, send_pull, wait_for_outcomes
from claritycast.ingest.quota import COUNTED_FOR, QuotaState, decide, refreshes_left
from claritycast.localtime import local_yesterday
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.documents import ProjectStatus
from models.records import FetchRequested


async def refresh_requests(
    store: Store, project_ref: str, groups: list[str], now: datetime, default_timezone: str
) -> list[FetchRequested]:
    """The requests a refresh of ``groups`` (all when empty) would send; checks first."""
    project = await store.find_project(project_ref)
    if project is None:
        raise NotFound(f"no project {project_ref!r}; see `claritycast sources`")
    if project.status != ProjectStatus.ACTIVE:
        raise InputError(
            f"project {project.label!r} is {project.status}"
            + (f" ({project.status_reason})" if project.status_reason else "")
            + ": nothing can be fetched for it"
        )
    if project.exhausted_until is not None and project.exhausted_until > now:
        raise QuotaRefused(
            f"{project.label}: Clarity answered 429, its daily quota is spent (perhaps by "
            "another tool reading the same project); nothing is asked before "
            f"{project.exhausted_until:%Y-%m-%d %H:%M} UTC",
            next_possible_at=project.exhausted_until,
        )
    unknown = [group for group in groups if group not in GROUP_NAMES]
    if unknown:
        raise InputError(
            f"unknown group {unknown[0]!r}; one of: {', '.join(GROUP_NAMES)}", field="groups"
        )
    await _check_headroom(store, project.project_id, project.label, now)
    org = await store.get_organisation(project.org_id)
    timezone = org.timezone if org else default_timezone
    yesterday = local_yesterday(timezone, now).isoformat()
    stored = await store.groups_stored(project.project_id, yesterday)
    wanted = [g for g in (groups or GROUP_NAMES) if g not in stored]
    if not wanted:
        raise InputError(
            f"{project.label}: {', '.join(groups) if groups else 'every group'} of {yesterday} "
            "is stored already; nothing to refresh"
        )
    return [
        FetchRequested(
            request_id=uuid.uuid4().hex,
            project_id=project.project_id,
            local_date=yesterday,
            group=group,
            reason="refresh",
            timezone=timezone,
            requested_at=now,
        )
        for group in wanted
    ]


async def _check_headroom(store: Store, project_id: str, label: str, now: datetime) -> None:
    """Refuse at once, with when the next is possible, when the quota has no refresh left.

    The quota check decides each request anyway (this reads the same call log);
    refusing here only spares a round trip that could not succeed.
    """
    state = QuotaState.from_calls(await store.calls_since(project_id, now - COUNTED_FOR), now)
    if refreshes_left(state, now) > 0:
        return
    decision = decide(state, reason="refresh", local_date="", group="", now=now)
    when = decision.next_possible_at
    raise QuotaRefused(
        f"{label}: {decision.reason}"
        + (f"; the next refresh is possible at {when:%Y-%m-%d %H:%M} UTC" if when else ""),
        next_possible_at=when,
        refreshes_left=0,
    )


async def start_refresh(
    store: Store,
    send: SendFn,
    project_ref: str,
    groups: list[str],
    now: datetime,
    *,
    default_timezone: str = "UTC",
) -> Pull:
    """Send a refresh through the quota check, recorded as a pull; don't wait."""
    requests = await refresh_requests(store, project_ref, groups, now, default_timezone)
    return await send_pull(store, send, "refresh", requests, now)


async def refresh(
    store: Store,
    send: SendFn,
    project_ref: str,
    groups: list[str],
    now: datetime,
    *,
    default_timezone: str = "UTC",
    wait_s: float = 60.0,
) -> tuple[GroupReport, ...]:
    """Send a refresh through the quota check and report each group's end."""
    pull = await start_refresh(
        store, send, project_ref, groups, now, default_timezone=default_timezone
    )
    return await wait_for_outcomes(store, pull.requests, wait_s)
