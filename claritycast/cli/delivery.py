"""Commands for the delivery half: connections, send-now, preview, the delivery log, the demo."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from claritycast.cli.common import audited_command, publisher_for, run, store_for
from claritycast.clock import SystemClock
from claritycast.delivery import connections as conns
from claritycast.delivery.schedule import next_due
from claritycast.errors import InputError
from claritycast.settings import Settings
from claritycast.web import schemas, views
from models.audit import Action
from models.delivery import WINDOWS, ConnectionStatus, Delivery
from topics import DELIVERIES_DUE


@click.group()
def connections() -> None:
    """Connections: which metric goes where, on which schedule."""


@connections.command("add")
@click.option("--project", required=True, help="Project label or id.")
@click.option("--metric", required=True, help="A catalogue metric id (see `claritycast sources`).")
@click.option("--slack", "slack_channel", help="Slack channel: #name or its id.")
@click.option("--email", "emails", help="Email addresses, comma-separated.")
@click.option(
    "--schedule",
    default="daily",
    show_default=True,
    help="daily, weekly:<weekday>, monthly:<1-28> or monthly:last.",
)
@click.option("--at", default="09:00", show_default=True, help="Local time, HH:MM.")
@click.option("--timezone", help="IANA timezone (default: the project's organisation's).")
@click.option(
    "--window",
    "window_days",
    default="30",
    show_default=True,
    type=click.Choice([str(w) for w in WINDOWS]),
    help="Days the chart shows.",
)
@click.option("--ai/--no-ai", "ai_summary", default=False, show_default=True, help="AI summary.")
@click.option("--name", help="Connection name (default: project-metric-destination).")
@click.pass_obj
def connections_add(
    settings: Settings,
    project: str,
    metric: str,
    slack_channel: str | None,
    emails: str | None,
    schedule: str,
    at: str,
    timezone: str | None,
    window_days: str,
    ai_summary: bool,
    name: str | None,
) -> None:
    """Send a metric's chart to Slack or email on a schedule."""

    async def go() -> None:
        now = SystemClock().now()
        target = f"connection:{name or f'{project}/{metric}'}"
        async with (
            store_for(settings) as store,
            audited_command(settings, store, Action.CONNECTION_ADD, target) as note,
        ):
            connection = await conns.create_connection(
                store, project=project, metric=metric, now=now, slack_channel=slack_channel,
                emails=emails, schedule=schedule, at=at, timezone=timezone,
                window_days=int(window_days), ai_summary=ai_summary, name=name,
            )  # fmt: skip
            note.object = f"connection:{connection.name}"
            note.detail = (
                f"{connection.metric_id} of {connection.project_id} to "
                f"{connection.destination.describe()}, {connection.schedule.describe()}"
            )
        _, first = next_due(connection.schedule, connection.timezone, now)
        local = first.astimezone(ZoneInfo(connection.timezone))
        click.echo(
            f"added {connection.name}: {connection.metric_id} to "
            f"{connection.destination.describe()}, {connection.schedule.describe()} "
            f"({connection.timezone}); first on {local:%a %d %b %Y %H:%M %Z}"
        )

    run(go())


@connections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def connections_list(settings: Settings, as_json: bool) -> None:
    """List connections with their schedule, destination and status."""

    async def go() -> None:
        async with store_for(settings) as store:
            found = await store.connections()
        if as_json:
            now = SystemClock().now()
            items = [views.connection(c, now) for c in found]
            page = schemas.Page[schemas.Connection](items=items, next_cursor=None)
            click.echo(json.dumps(views.dump(page), indent=2))
            return
        if not found:
            click.echo("no connections: `claritycast connections add --project … --metric …`")
            return
        click.echo(f"{'name':32} {'metric':26} {'schedule':40} {'status':8} destination")
        for c in found:
            extra = f", {c.window_days} days" + (", AI" if c.ai_summary else "")
            click.echo(
                f"{c.name[:32]:32} {c.metric_id:26} {(c.schedule.describe() + extra)[:40]:40} "
                f"{c.status.value:8} {c.destination.describe()}"
            )
            if c.status is ConnectionStatus.PAUSED and c.status_reason:
                click.echo(f"{'':32} paused: {c.status_reason}")

    run(go())


AUDITED_CHANGES = {
    "pause": Action.CONNECTION_PAUSE,
    "resume": Action.CONNECTION_RESUME,
    "remove": Action.CONNECTION_REMOVE,
}


def _change(settings: Settings, name: str, action: str) -> None:
    async def go() -> None:
        async with (
            store_for(settings) as store,
            audited_command(settings, store, AUDITED_CHANGES[action], f"connection:{name}"),
        ):
            if action == "pause":
                await conns.pause(store, name)
            elif action == "resume":
                await conns.resume(store, name)
            else:
                await conns.remove(store, name)
        click.echo(f"{name}: {action}d")

    run(go())


@connections.command("pause")
@click.argument("name")
@click.pass_obj
def connections_pause(settings: Settings, name: str) -> None:
    """Stop sending until resumed."""
    _change(settings, name, "pause")


@connections.command("resume")
@click.argument("name")
@click.pass_obj
def connections_resume(settings: Settings, name: str) -> None:
    """Send again (also after a destination refused and paused it)."""
    _change(settings, name, "resume")


@connections.command("remove")
@click.argument("name")
@click.pass_obj
def connections_remove(settings: Settings, name: str) -> None:
    """Delete a connection; its delivery log stays."""
    _change(settings, name, "remove")


@click.command("send-now")
@click.argument("name")
@click.option("--wait", "wait_s", default=120.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def send_now(settings: Settings, name: str, wait_s: float) -> None:
    """Render and send a connection's report now, through the running workers."""

    async def go() -> int:
        async with store_for(settings) as store, publisher_for(settings) as publisher:
            async with audited_command(
                settings, store, Action.DELIVERY_SEND_NOW, f"connection:{name}", publisher.send
            ) as note:
                due = await conns.send_now(store, name, SystemClock().now())
                await publisher.send(DELIVERIES_DUE, due.connection, due)
                note.detail = f"delivery {due.delivery_key}"
            delivery = await conns.wait_for_delivery(store, due.delivery_key, wait_s)
        if delivery is None or not delivery.state.final:
            click.echo(f"{due.delivery_key}: not sent within {wait_s:.0f} s; is a worker running?")
            return 1
        click.echo(_describe(delivery))
        return 0 if delivery.state.value == "sent" else 1

    sys.exit(run(go()))


@click.command()
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--date", "period", help="The report's date (default: today, local).")
@click.pass_obj
def preview(settings: Settings, name: str, out: Path, period: str | None) -> None:
    """Render a connection's report to a PNG file and print its summary; sends nothing."""
    from claritycast.delivery.preview import preview_report
    from models.report import Report

    async def go() -> tuple[Report, str]:
        async with store_for(settings) as store:
            connection = await conns.get_connection(store, name)
            day = _period(period, connection.timezone)
            return await preview_report(store, connection, day, settings)

    report, source = run(go())
    out.write_bytes(report.png)
    click.echo(f"{report.title} — {report.period_label}")
    if report.note:
        click.echo(f"note: {report.note}")
    click.echo(f"summary ({source}): {report.summary}")
    click.echo(f"chart written to {out} ({len(report.png):,} bytes)")


def _period(text: str | None, timezone: str) -> date:
    if text is None:
        return SystemClock().now().astimezone(ZoneInfo(timezone)).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"invalid date {text!r}: use YYYY-MM-DD") from None


@click.command()
@click.option("--connection", help="Only this connection's deliveries.")
@click.option("--limit", default=30, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def deliveries(settings: Settings, connection: str | None, limit: int, as_json: bool) -> None:
    """The delivery log: each delivery, its attempts and the destination's receipt."""

    async def go() -> None:
        async with store_for(settings) as store:
            found = await store.deliveries(connection, limit)
        if as_json:
            items = [views.delivery(d) for d in found]
            page = schemas.Page[schemas.Delivery](items=items, next_cursor=None)
            click.echo(json.dumps(views.dump(page), indent=2))
            return
        if not found:
            click.echo("no deliveries yet")
        for delivery in found:
            click.echo(_describe(delivery))
            for attempt in delivery.attempts:
                detail = f": {attempt.detail}" if attempt.detail else ""
                click.echo(f"    {attempt.at:%Y-%m-%d %H:%M:%S}Z {attempt.outcome}{detail}")

    run(go())


def _describe(delivery: Delivery) -> str:
    receipt = ""
    if delivery.receipt:
        receipt = " " + " ".join(
            f"{k}={','.join(v) if isinstance(v, list) else v}"
            for k, v in delivery.receipt.items()
            if k != "response"
        )
    incomplete = " (data incomplete)" if delivery.incomplete else ""
    return f"{delivery.key:48} {delivery.state.value:9}{incomplete}{receipt}"
