"""Operator commands: where the Clarity quota stands."""

from __future__ import annotations

from datetime import timedelta

import click

from claritycast.cli.common import run, store_for
from claritycast.clock import SystemClock
from claritycast.ingest.quota_report import quota_report, report_lines
from claritycast.settings import Settings


@click.command()
@click.argument("project_ref", metavar="[PROJECT]", required=False)
@click.pass_obj
def quota(settings: Settings, project_ref: str | None) -> None:
    """Clarity requests per project: used in 24 h, reserved for the pull, left, next reset.

    Counted from the durable call log, which the quota check itself trusts.
    """

    async def go() -> None:
        async with store_for(settings) as store:
            rows = await quota_report(
                store,
                SystemClock().now(),
                project_ref,
                default_timezone=settings.default_timezone,
                lease=timedelta(seconds=settings.fetch_lease_s),
            )
        for line in report_lines(rows):
            click.echo(line)

    run(go())
