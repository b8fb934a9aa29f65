"""`claritycast connect`, `refresh`, `orgs`, `sources`, `series`: projects and their data."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import click

from claritycast.cli.common import audited_command, publisher_for, run, store_for
from claritycast.clock import SystemClock
from claritycast.errors import InputError
from claritycast.settings import Settings
from models.audit import Action


def read_token(token: str | None) -> str:
    """From the option, from stdin (``-``), or typed without echo."""
    if token == "-":  # noqa: S105 - the stdin marker, not a secret
        return sys.stdin.readline().strip()
    if token is None:
        return click.prompt("Clarity Data Export token", hide_input=True).strip()
    return token.strip()


@click.command()
@click.option("--token", help="The project's Data Export token; '-' reads it from stdin.")
@click.option("--label", required=True, help="A name for the project, unique in its organisation.")
@click.option("--org", "org_name", help="Organisation name (default: 'default', in UTC).")
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def connect(
    settings: Settings, token: str | None, label: str, org_name: str | None, wait_s: float
) -> None:
    """Connect a Clarity project and pull yesterday at once, group by group."""
    from claritycast.ingest.connect import connect_project

    secret = read_token(token)

    async def go() -> int:
        async with (
            store_for(settings, keys=True) as store,
            publisher_for(settings) as publisher,
            audited_command(
                settings, store, Action.PROJECT_CONNECT, f"project:{label}", publisher.send
            ) as note,
        ):
            result = await connect_project(
                store, publisher.send, SystemClock(), token=secret, label=label,
                org_name=org_name, default_timezone=settings.default_timezone, wait_s=wait_s,
            )  # fmt: skip
            note.object = f"project:{result.project.project_id}"
            stored = sum(1 for report in result.groups if report.outcome == "stored")
            note.detail = f"label {label!r}; pulling {result.local_date}: {stored}/7 stored"
        click.echo(f"connected {result.project.label} as {result.project.project_id}")
        click.echo(f"pulling {result.local_date} (yesterday in its organisation's timezone):")
        for report in result.groups:
            detail = f"  {report.detail}" if report.detail else ""
            click.echo(f"  {report.group:8} {report.outcome}{detail}")
        return 0 if result.complete else 1

    sys.exit(run(go()))


@click.command()
@click.argument("project_ref", metavar="PROJECT")
@click.option("--group", "groups", multiple=True, help="Only this fetch group (repeatable).")
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def refresh(settings: Settings, project_ref: str, groups: tuple[str, ...], wait_s: float) -> None:
    """Fetch yesterday's missing groups now, within the quota's headroom (3 a day)."""
    from claritycast.ingest.refresh import refresh as refresh_project

    async def go() -> int:
        async with store_for(settings) as store, publisher_for(settings) as publisher:
            found = await store.find_project(project_ref)
            target = f"project:{found.project_id if found else project_ref}"
            async with audited_command(
                settings, store, Action.PROJECT_REFRESH, target, publisher.send
            ) as note:
                reports = await refresh_project(
                    store, publisher.send, project_ref, list(groups), SystemClock().now(),
                    default_timezone=settings.default_timezone, wait_s=wait_s,
                )  # fmt: skip
                note.detail = ", ".join(f"{r.group} {r.outcome}" for r in reports)
        for report in reports:
            detail = f"  {report.detail}" if report.detail else ""
            click.echo(f"  {report.group:8} {report.outcome}{detail}")
        return 0 if all(report.outcome == "stored" for report in reports) else 1

    sys.exit(run(go()))


@click.group()
def orgs() -> None:
    """Organisations: who owns projects, and in which timezone their day runs."""


@orgs.command("add")
@click.argument("name")
@click.option(
    "--timezone", default=None, help="IANA timezone (default: CLARITYCAST_DEFAULT_TIMEZONE)."
)
@click.pass_obj
def orgs_add(settings: Settings, name: str, timezone: str | None) -> None:
    """Add an organisation."""
    from claritycast.ingest.connect import add_organisation

    async def go() -> None:
        async with (
            store_for(settings) as store,
            audited_command(
                settings, store, Action.ORGANISATION_ADD, f"organisation:{name}"
            ) as note,
        ):
            org = await add_organisation(
                store, name, timezone or settings.default_timezone, SystemClock().now()
            )
            note.object = f"organisation:{org.org_id}"
            note.detail = f"name {org.name!r}, timezone {org.timezone}"
        click.echo(f"added {org.name} ({org.org_id}), timezone {org.timezone}")

    run(go())


@orgs.command("list")
@click.pass_obj
def orgs_list(settings: Settings) -> None:
    """List organisations."""

    async def go() -> None:
        async with store_for(settings) as store:
            organisations = await store.organisations()
        if not organisations:
            click.echo("no organisations yet: `claritycast orgs add NAME --timezone ZONE`")
        for org in organisations:
            click.echo(f"{org.org_id:20} {org.name:30} {org.timezone}")

    run(go())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def sources(settings: Settings, as_json: bool) -> None:
    """Connected projects: status, last day stored, days collected, Clarity requests used."""
    from claritycast.ingest.quota import DAILY_LIMIT
    from claritycast.web import schemas, views

    async def go() -> None:
        now = SystemClock().now()
        async with store_for(settings) as store:
            found = await views.sources(
                store, await store.projects(), now, settings.default_timezone,
                timedelta(seconds=settings.fetch_lease_s),
            )  # fmt: skip
        if as_json:
            page = schemas.Page[schemas.Source](items=found, next_cursor=None)
            click.echo(json.dumps(views.dump(page), indent=2))
            return
        if not found:
            click.echo("no project connected: `claritycast connect --label NAME --token -`")
            return
        click.echo(
            f"{'label':24} {'project':24} {'org':12} {'status':28} {'last day':10} "
            f"{'collected':>9}  used 24 h"
        )
        for source in found:
            quota = source.quota
            waiting = quota.exhausted_until or quota.deferred_until
            note = f", waits until {waiting:%Y-%m-%d %H:%M}Z" if waiting else ""
            reason = f" ({source.status_reason})" if source.status_reason else ""
            last = source.last_day_stored.isoformat() if source.last_day_stored else "-"
            click.echo(
                f"{source.label[:24]:24} {source.id:24} {source.organisation[:12]:12} "
                f"{(source.status + reason)[:28]:28} {last:10} "
                f"{f'{source.days_collected}/30':>9}  {quota.used}/{DAILY_LIMIT}{note}"
            )

    run(go())


@click.command()
@click.option("--project", "project_ref", required=True, help="Project label or id.")
@click.option("--metric", "metric_id", required=True, help="A catalogue metric id.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def series(settings: Settings, project_ref: str, metric_id: str, days: int, as_json: bool) -> None:
    """Show a metric's stored daily series (or top values, for a breakdown)."""
    from claritycast.ingest.projects import get_project
    from claritycast.localtime import local_yesterday
    from claritycast.web import views
    from models import catalogue
    from models.catalogue import Unit

    try:
        metric = catalogue.get(metric_id)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None

    async def go() -> None:
        async with store_for(settings) as store:
            project = await get_project(store, project_ref)
            org = await store.get_organisation(project.org_id)
            timezone = org.timezone if org else settings.default_timezone
            last = local_yesterday(timezone, SystemClock().now())
            first = last - timedelta(days=days - 1)
            data = await views.metric_data(store, project, metric, first, last)
        if as_json:
            click.echo(json.dumps(views.dump(data), indent=2))
            return
        click.echo(f"{metric.title} ({metric.unit}) for {project.label}, {first} to {last}")
        shape = ",.0f" if metric.unit == Unit.COUNT else ",.2f"
        if data.top is not None:
            for ranked in data.top:
                label = click.unstyle(ranked.label)[:100]
                click.echo(f"  {format(ranked.value, shape):>12}  {label}")
            more = (data.values_total or 0) - len(data.top)
            if more > 0:
                click.echo(f"  … and {more:,} more")
        for point in data.points or []:
            shown = "-" if point.value is None else format(point.value, shape)
            click.echo(f"  {point.day}  {shown:>12}")
        click.echo(f"{data.days_collected} of {days} days collected")

    run(go())
