"""A connected project's life after connect: pause, resume, remove; an organisation's timezone.

Plain async functions over the store, used by the CLI and the HTTP API alike.
A paused project is neither fetched nor asked for by the tick; resuming it
lets the next tick pull what is missing (only yesterday: Clarity keeps no
history). Removing a project removes its connections too (nothing could be
drawn for them); its snapshots are deleted only when asked, so a project
connected again under the same label keeps nothing of the old one unless
they were kept on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from claritycast.errors import Conflict, InputError, NotFound
from claritycast.localtime import local_yesterday, next_local_midnight, valid_timezone
from claritycast.store.core import Store
from models.documents import Organisation, Project, ProjectStatus


async def get_project(store: Store, ref: str) -> Project:
    """The project of a label or id, or `NotFound`."""
    project = await store.find_project(ref)
    if project is None:
        raise NotFound(f"no project {ref!r}; see `claritycast sources`")
    return project


async def pause_project(store: Store, ref: str, reason: str = "paused by an operator") -> Project:
    """Stop fetching a project until it is resumed; its history and connections stay."""
    project = await get_project(store, ref)
    if project.status == ProjectStatus.PAUSED:
        return project
    if not await store.change_project_status(
        project.project_id, ProjectStatus.ACTIVE, ProjectStatus.PAUSED, reason
    ):
        raise Conflict(
            f"project {project.label!r} is {project.status} ({project.status_reason}): "
            "only an active project can be paused"
        )
    return await get_project(store, project.project_id)


async def resume_project(store: Store, ref: str) -> Project:
    """Let a paused project be fetched again from the next tick."""
    project = await get_project(store, ref)
    if project.status == ProjectStatus.ACTIVE:
        return project
    if project.status != ProjectStatus.PAUSED or not await store.change_project_status(
        project.project_id, ProjectStatus.PAUSED, ProjectStatus.ACTIVE, None
    ):
        raise Conflict(
            f"project {project.label!r} is {project.status} ({project.status_reason}): "
            "replace its token to make it active again"
        )
    return await get_project(store, project.project_id)


@dataclass(frozen=True)
class Removed:
    """What removing a project deleted."""

    project: Project
    connections: tuple[str, ...]
    snapshots: int


async def remove_project(store: Store, ref: str, *, with_snapshots: bool = False) -> Removed:
    """Delete a project and its connections; its snapshots too only when asked."""
    project = await get_project(store, ref)
    connections = await store.connections(project_id=project.project_id)
    for connection in connections:
        await store.skip_open_deliveries(connection.name)
        await store.remove_connection(connection.name)
    snapshots = await store.remove_snapshots(project.project_id) if with_snapshots else 0
    await store.remove_project(project.project_id)
    return Removed(project, tuple(c.name for c in connections), snapshots)


async def get_organisation(store: Store, ref: str) -> Organisation:
    """The organisation of an id or a name, or `NotFound`."""
    found = await store.get_organisation(ref)
    if found is None:
        found = next((org for org in await store.organisations() if org.name == ref), None)
    if found is None:
        raise NotFound(f"no organisation {ref!r}; see `claritycast orgs list`")
    return found


async def set_timezone(store: Store, ref: str, timezone: str) -> Organisation:
    """Change an organisation's timezone: from the next tick, its "yesterday" is the new one."""
    org = await get_organisation(store, ref)
    if not valid_timezone(timezone):
        raise InputError(
            f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris",
            field="timezone",
        )
    await store.set_organisation_timezone(org.org_id, timezone)
    return await get_organisation(store, org.org_id)


async def rename_organisation(store: Store, ref: str, name: str) -> Organisation:
    """Change an organisation's name (its id, used in URLs and the CLI, stays)."""
    org = await get_organisation(store, ref)
    if not name.strip():
        raise InputError("an organisation needs a name", field="name")
    if name.strip() == org.name:
        return org
    if any(other.name == name.strip() for other in await store.organisations()):
        raise Conflict(f"an organisation named {name!r} exists already", field="name")
    await store.set_organisation_name(org.org_id, name.strip())
    return await get_organisation(store, org.org_id)


def timezone_change(old: str, new: str, now: datetime) -> list[str]:
    """What moving an organisation from ``old`` to ``new`` does to its pulls, in sentences.

    Said before the change is saved: the tick works out "yesterday" in the
    organisation's timezone at every run, so the change takes effect at once.
    """
    if not valid_timezone(new):
        raise InputError(
            f"unknown timezone {new!r}: use an IANA name such as Europe/Paris", field="timezone"
        )
    if new == old:
        return [f"The timezone stays {old}: nothing changes."]

    def at(moment: datetime, timezone: str) -> str:
        local = moment.astimezone(ZoneInfo(timezone))
        return f"{moment:%Y-%m-%d %H:%M} UTC ({local:%H:%M} in {timezone})"

    old_day, new_day = local_yesterday(old, now), local_yesterday(new, now)
    old_pull, new_pull = next_local_midnight(now, old), next_local_midnight(now, new)
    old_next, new_next = local_yesterday(old, old_pull), local_yesterday(new, new_pull)
    said = [
        f"Now: the nightly pull of {old_next:%Y-%m-%d} starts at {at(old_pull, old)}.",
        f"After saving: the nightly pull of {new_next:%Y-%m-%d} starts at {at(new_pull, new)}.",
    ]
    if new_day > old_day:
        said.append(
            f"It is already past midnight in {new}: {new_day:%Y-%m-%d} is yesterday there, so "
            "its missing groups are asked for at the next tick, within a minute of saving; "
            "requests beyond 10 in 24 hours wait until the earlier ones are 24 hours old."
        )
    if new_next <= old_day:
        said.append(
            f"{new_next:%Y-%m-%d} is yesterday already: if it is stored, that pull asks Clarity "
            f"for nothing, and the next new day waits for the following midnight in {new}."
        )
    said.append("Connections keep the timezone they were made with; change theirs to follow.")
    return said
