"""Operator commands: where the Clarity quota stands."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from claritycast.cli.common import run, store_for
from claritycast.clock import SystemClock
from claritycast.ingest.quota_report import quota_report, report_lines
from claritycast.settings import Settings
from claritycast.web import views


@click.command()
@click.argument("project_ref", metavar="[PROJECT]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def quota(settings: Settings, project_ref: str | None, as_json: bool) -> None:
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
        if as_json:
            click.echo(json.dumps([views.dump(views.source_quota(row)) for row in rows], indent=2))
            return
        for line in report_lines(rows):
            click.echo(line)

    run(go())
