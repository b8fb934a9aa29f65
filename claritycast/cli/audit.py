"""`claritycast audit`: what operators did, who, to what, and how it ended."""

from __future__ import annotations

import click

from claritycast.cli.common import parse_since, run, store_for
from claritycast.settings import Settings


@click.command("audit")
@click.option("--since", help="Since: a date, a UTC time, or 36h / 7d.")
@click.option(
    "--object", "object_name", help="Only this object's, e.g. project:shop-1a2b3c or keys."
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_obj
def audit(settings: Settings, since: str | None, object_name: str | None, limit: int) -> None:
    """The audit trail, oldest first: one line per operator action (never a secret)."""
    moment = parse_since(since)

    async def go() -> None:
        async with store_for(settings) as store:
            events = await store.audit_events(since=moment, object_name=object_name, limit=limit)
        if not events:
            click.echo("no audit records" + (" for that choice" if since or object_name else ""))
        for event in events:
            detail = f"  {event.detail}" if event.detail else ""
            click.echo(
                f"{event.at:%Y-%m-%d %H:%M:%S}Z  {event.actor.describe():32} {event.action:22} "
                f"{event.object:36} {event.outcome}{detail}"
            )

    run(go())
