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

from claritycast.errors import Conflict, InputError, NotFound
from claritycast.localtime import valid_timezone
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
