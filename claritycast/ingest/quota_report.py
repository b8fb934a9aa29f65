"""Where each project stands with Clarity's 10 requests a day, for `claritycast quota`.

Counted from the durable call log, the authority the quota table is rebuilt
from (`QuotaState.from_calls`), so the answer is the quota check's own even
while no worker runs or after a broker that kept nothing. Times are shown in
UTC and in the organisation's local time, because "midnight" is local.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from claritycast.errors import NotFound
from claritycast.ingest.quota import (
    COUNTED_FOR,
    DAILY_LIMIT,
    LEASE,
    QuotaState,
    in_flight,
    refreshes_left,
)
from claritycast.localtime import local_yesterday
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.documents import Call, Project, ProjectStatus

# A token expiring sooner than this is flagged, so it can be replaced in time.
TOKEN_WARNING = timedelta(days=14)
UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu"})
NOTHING_CONNECTED = "no project connected: `claritycast connect --label NAME --token -`"


@dataclass(frozen=True)
class ProjectQuota:
    """One project's quota at one moment; every time is UTC."""

    project_id: str
    label: str
    timezone: str
    local_date: str  # the nightly pull's day: yesterday in the organisation's timezone
    used: int
    reserved: int
    left: int
    refreshes_left: int
    token: str
    next_reset_at: datetime | None
    exhausted_until: datetime | None
    deferred_until: datetime | None


async def quota_report(
    store: Store,
    now: datetime,
    project_ref: str | None = None,
    *,
    default_timezone: str = "UTC",
    lease: timedelta = LEASE,
) -> list[ProjectQuota]:
    """Every project's quota (or the one named by label or id), by label."""
    if project_ref is not None:
        project = await store.find_project(project_ref)
        if project is None:
            raise NotFound(f"no project {project_ref!r}; see `claritycast sources`")
        projects = [project]
    else:
        projects = await store.projects()
    timezones = {org.org_id: org.timezone for org in await store.organisations()}
    return [
        await project_quota(
            store, project, timezones.get(project.org_id, default_timezone), now, lease
        )
        for project in projects
    ]


async def project_quota(
    store: Store, project: Project, timezone: str, now: datetime, lease: timedelta = LEASE
) -> ProjectQuota:
    calls = await store.calls_since(project.project_id, now - COUNTED_FOR)
    yesterday = local_yesterday(timezone, now).isoformat()
    stored = await store.groups_stored(project.project_id, yesterday)
    return quota_of(project, timezone, calls, stored, now, lease)


def quota_of(
    project: Project,
    timezone: str,
    calls: list[Call],
    stored_yesterday: set[str],
    now: datetime,
    lease: timedelta = LEASE,
) -> ProjectQuota:
    """A project's quota from its calls of the last 24 h and its groups stored for yesterday.

    Pure, so a page of many projects is computed from a few batched reads.
    """
    state = QuotaState.from_calls(calls, now)
    used = state.used(now)
    yesterday = local_yesterday(timezone, now).isoformat()
    reserved = 0
    if project.status == ProjectStatus.ACTIVE:
        under_way = {
            call.group
            for call in calls
            if call.local_date == yesterday and in_flight(call, now, lease)
        }
        reserved = sum(1 for group in GROUP_NAMES if group not in stored_yesterday | under_way)
    return ProjectQuota(
        project_id=project.project_id,
        label=project.label,
        timezone=timezone,
        local_date=yesterday,
        used=used,
        reserved=reserved,
        left=max(0, DAILY_LIMIT - used),
        refreshes_left=refreshes_left(state, now),
        token=token_status(project, now),
        next_reset_at=min(at for at, _ in state.calls) + COUNTED_FOR if state.calls else None,
        exhausted_until=_future(project.exhausted_until, now),
        deferred_until=_future(project.deferred_until, now),
    )


def _future(moment: datetime | None, now: datetime) -> datetime | None:
    return moment if moment is not None and moment > now else None


def token_status(project: Project, now: datetime) -> str:
    """What the token is worth, from its status and its expiry claim; never the token.

    Nothing is decrypted for this: the expiry was kept beside the sealed token.
    """
    if project.status == ProjectStatus.TOKEN_INVALID:
        return project.status_reason or "invalid"  # e.g. "token invalid (401)"
    if project.status == ProjectStatus.TOKEN_UNREADABLE:
        return f"unreadable: {project.status_reason or 'its key is missing'}"
    expires_at = project.token_expires_at
    status = "ok"
    if expires_at is not None and expires_at <= now:
        status = f"unusable: token expired at {expires_at:%Y-%m-%d %H:%M} UTC"
    elif expires_at is not None and expires_at - now < TOKEN_WARNING:
        status = f"ok, expires {expires_at:%Y-%m-%d %H:%M} UTC"
    return status + (", project paused" if project.status == ProjectStatus.PAUSED else "")


def both_times(moment: datetime | None, timezone: str) -> str:
    """``2026-11-25 14:32 UTC (15:32 CET)``; the local date only when it differs."""
    if moment is None:
        return "-"
    utc = f"{moment:%Y-%m-%d %H:%M} UTC"
    if timezone in UTC_NAMES:
        return utc
    local = moment.astimezone(ZoneInfo(timezone))
    shape = "%H:%M %Z" if local.date() == moment.date() else "%Y-%m-%d %H:%M %Z"
    return f"{utc} ({local.strftime(shape)})"


def report_lines(rows: list[ProjectQuota]) -> list[str]:
    """A header and one line per project, or one line saying nothing is connected."""
    if not rows:
        return [NOTHING_CONNECTED]
    lines = [
        f"{'project':32} {'used':>5} {'left':>4} {'reserved':>8} {'refreshes':>9}  "
        f"{'next reset':40} {'token':24} waiting"
    ]
    for row in rows:
        waits = [
            f"{what} until {both_times(moment, row.timezone)}"
            for what, moment in (
                ("exhausted", row.exhausted_until),
                ("deferred", row.deferred_until),
            )
            if moment is not None
        ]
        name = f"{row.label} ({row.project_id})"
        lines.append(
            f"{name[:32]:32} {f'{row.used}/{DAILY_LIMIT}':>5} {row.left:>4} {row.reserved:>8} "
            f"{row.refreshes_left:>9}  {both_times(row.next_reset_at, row.timezone):40} "
            f"{row.token:24} {'; '.join(waits) or '-'}"
        )
    return lines
