"""`claritycast projects`: a connected project's life: pause, resume, remove."""

from __future__ import annotations

import click

from claritycast.cli.common import run, store_for
from claritycast.ingest.projects import pause_project, remove_project, resume_project
from claritycast.settings import Settings


@click.group()
def projects() -> None:
    """Connected Clarity projects: pause, resume, remove."""


@projects.command("pause")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def projects_pause(settings: Settings, project_ref: str) -> None:
    """Stop fetching a project; its history and connections stay."""

    async def go() -> None:
        async with store_for(settings) as store:
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
            removed = await remove_project(store, project_ref, with_snapshots=with_snapshots)
        click.echo(
            f"removed {removed.project.label} ({removed.project.project_id}), "
            f"{len(removed.connections)} connection(s), {removed.snapshots} snapshot(s)"
        )

    run(go())
