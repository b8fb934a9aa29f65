"""`claritycast projects set-token PROJECT`: give a connected project a new Clarity token."""

from __future__ import annotations

import click

from claritycast.cli.common import audited_command, run, store_for
from claritycast.cli.ingest import read_token
from claritycast.clock import SystemClock
from claritycast.settings import Settings
from models.audit import Action


@click.group()
def projects() -> None:
    """Connected Clarity projects (list them with `claritycast sources`)."""


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
            found = await store.find_project(project_ref)
            target = f"project:{found.project_id if found else project_ref}"
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
