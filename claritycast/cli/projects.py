"""`claritycast projects`: a connected project's life: pause, resume, remove, set-token."""

from __future__ import annotations

import click

from claritycast.cli.common import audited_command, run, store_for
from claritycast.cli.ingest import read_token
from claritycast.clock import SystemClock
from claritycast.ingest.projects import pause_project, remove_project, resume_project
from claritycast.settings import Settings
from claritycast.store.core import Store
from models.audit import Action


@click.group()
def projects() -> None:
    """Connected Clarity projects (list them with `claritycast sources`)."""


async def _target(store: Store, project_ref: str) -> str:
    """The audit trail's name for a project: its id when it exists, else what was typed."""
    found = await store.find_project(project_ref)
    return f"project:{found.project_id if found else project_ref}"


@projects.command("pause")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def projects_pause(settings: Settings, project_ref: str) -> None:
    """Stop fetching a project; its history and connections stay."""

    async def go() -> None:
        async with store_for(settings) as store:
            target = await _target(store, project_ref)
            async with audited_command(settings, store, Action.PROJECT_PAUSE, target):
                project = await pause_project(store, project_ref)
        click.echo(f"{project.label} ({project.project_id}) is paused")

    run(go())


@projects.command("resume")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def projects_resume(settings: Settings, project_ref: str) -> None:
    """Fetch a paused project again from the next tick (yesterday: Clarity keeps no more)."""

    async def go() -> None:
        async with store_for(settings) as store:
            target = await _target(store, project_ref)
            async with audited_command(settings, store, Action.PROJECT_RESUME, target):
                project = await resume_project(store, project_ref)
        click.echo(f"{project.label} ({project.project_id}) is active")

    run(go())


@projects.command("remove")
@click.argument("project_ref", metavar="PROJECT")
@click.option("--with-snapshots", is_flag=True, help="Also delete its stored history.")
@click.confirmation_option(prompt="Remove the project and its connections?")
@click.pass_obj
def projects_remove(settings: Settings, project_ref: str, with_snapshots: bool) -> None:
    """Remove a project and its connections; its snapshots only with --with-snapshots."""

    async def go() -> None:
        async with store_for(settings) as store:
            target = await _target(store, project_ref)
            async with audited_command(settings, store, Action.PROJECT_REMOVE, target) as note:
                removed = await remove_project(store, project_ref, with_snapshots=with_snapshots)
                note.detail = (
                    f"{len(removed.connections)} connection(s), {removed.snapshots} snapshot(s)"
                )
        click.echo(
            f"removed {removed.project.label} ({removed.project.project_id}), "
            f"{len(removed.connections)} connection(s), {removed.snapshots} snapshot(s)"
        )

    run(go())


@projects.command("set-token")
@click.argument("project_ref", metavar="PROJECT")
@click.option("--token", help="The new Data Export token; '-' reads it from stdin.")
@click.pass_obj
def set_token_command(settings: Settings, project_ref: str, token: str | None) -> None:
    """Replace a project's token: checked locally first, stored encrypted.

    A project that was "token invalid" or "token unreadable" is active again;
    its history stays, and the next tick pulls what yesterday is missing.
    """
    from claritycast.ingest.tokens import set_token

    secret = read_token(token)

    async def go() -> None:
        async with store_for(settings, keys=True) as store:
            target = await _target(store, project_ref)
            async with audited_command(settings, store, Action.PROJECT_SET_TOKEN, target) as note:
                result = await set_token(store, project_ref, secret, SystemClock())
                note.detail = f"was {result.previous_status}, now {result.project.status}"
        project = result.project
        expiry = f"; it expires {result.expires_at:%Y-%m-%d %H:%M} UTC" if result.expires_at else ""
        click.echo(f"{project.label} ({project.project_id}): new token stored{expiry}")
        if result.reactivated:
            click.echo(
                f"it was {result.previous_status}; it is active again, and the next tick "
                "pulls what yesterday is missing"
            )
        else:
            click.echo(f"status: {project.status}")

    run(go())
