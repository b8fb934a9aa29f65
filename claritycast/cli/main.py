"""The `claritycast` command.

Every command reads the same settings (environment and optional TOML file),
and every failure ends in one line on stderr: ``claritycast: <what went
wrong>``, exit code 2 for a configuration problem, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import date, timedelta
from typing import NoReturn, TypeVar

import click

import agents
from claritycast import __version__
from claritycast.cli import dead_letters as cli_dead_letters
from claritycast.cli import delivery as cli_delivery
from claritycast.cli import ops as cli_ops
from claritycast.cli import topics as cli_topics
from claritycast.cli.common import publisher_for, run, store_for
from claritycast.clock import SystemClock
from claritycast.errors import ClarityCastError, ConfigError
from claritycast.logs import configure_logging
from claritycast.runtime.embedded import RunDir, resolve_endpoints
from claritycast.settings import Settings, load_settings
from claritycast.store.core import open_store

T = TypeVar("T")

STAGES_HELP = (
    "Stages to run: names or groups, comma-separated, or 'all'. "
    f"Stages: {', '.join(agents.CHAIN)}; groups: {', '.join(agents.GROUPS)}."
)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"claritycast: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="claritycast")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Microsoft Clarity metrics, kept as history, delivered as charts."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


@cli.command()
@click.option("--stages", default="all", show_default=True, help=STAGES_HELP)
@click.pass_obj
def up(settings: Settings, stages: str) -> None:
    """Start the embedded broker and database (unless URLs are set) and a worker.

    Data lives under CLARITYCAST_DATA_DIR (default ./var). Ctrl-C stops
    everything.
    """
    from claritycast.runtime.up import run_up

    agents.select([stages])
    sys.exit(run(run_up(settings, [stages])))


@cli.command()
@click.option("--stages", default="all", show_default=True, help=STAGES_HELP)
@click.pass_obj
def worker(settings: Settings, stages: str) -> None:
    """Run a worker for some stages, on a running `up` or on the configured URLs."""
    from claritycast.runtime.worker import run_worker

    agents.select([stages])
    run_worker(settings, [stages])


@cli.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show where the broker and database are and which workers are alive."""
    state = RunDir(settings.run_dir).live_state()
    if state is not None:
        click.echo(f"embedded servers: running ({state.describe()}, since {state.started_at})")
    elif settings.embedded_kafka or settings.embedded_mongodb:
        click.echo(f"embedded servers: not running on {settings.data_dir}")
    endpoints = resolve_endpoints(settings)
    click.echo(f"kafka:   {endpoints.kafka_url}")
    click.echo(f"mongodb: {endpoints.mongodb_url} (database {settings.mongodb_database})")

    async def show_workers() -> None:
        async with open_store(endpoints.mongodb_url, settings.mongodb_database) as store:
            workers = await store.live_workers(within_s=30)
        if not workers:
            click.echo("workers: none alive")
        for beat in workers:
            click.echo(
                f"worker {beat.worker_id}: stages {','.join(beat.stages)}, "
                f"up since {beat.started_at:%Y-%m-%d %H:%M:%S}Z, "
                f"seen {beat.seen_at:%H:%M:%S}Z"
            )

    run(show_workers())


@cli.command()
def stages() -> None:
    """List the stages this version runs and the deployment groups."""
    for name in agents.CHAIN:
        click.echo(f"{name:8} {agents.STAGES[name].description}")
    for group, members in agents.GROUPS.items():
        click.echo(f"group {group}: {', '.join(members)}")


@cli.command()
@click.pass_obj
def config(settings: Settings) -> None:
    """Show every setting, its effective value (secrets masked) and what it does."""
    for variable, value, description in settings.described():
        click.echo(f"{variable:38} {value:40} {description}")


def _read_token(token: str | None) -> str:
    """From the option, from stdin (``-``), or typed without echo."""
    if token == "-":  # noqa: S105 - the stdin marker, not a secret
        return sys.stdin.readline().strip()
    if token is None:
        return click.prompt("Clarity Data Export token", hide_input=True).strip()
    return token.strip()


@cli.command()
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

    secret = _read_token(token)

    async def go() -> int:
        async with store_for(settings) as store, publisher_for(settings) as publisher:
            result = await connect_project(
                store, publisher.send, SystemClock(), token=secret, label=label,
                org_name=org_name, default_timezone=settings.default_timezone, wait_s=wait_s,
            )  # fmt: skip
        click.echo(f"connected {result.project.label} as {result.project.project_id}")
        click.echo(f"pulling {result.local_date} (yesterday in its organisation's timezone):")
        for report in result.groups:
            detail = f"  {report.detail}" if report.detail else ""
            click.echo(f"  {report.group:8} {report.outcome}{detail}")
        return 0 if result.complete else 1

    sys.exit(run(go()))


@cli.command()
@click.argument("project_ref", metavar="PROJECT")
@click.option("--group", "groups", multiple=True, help="Only this fetch group (repeatable).")
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to wait.")
@click.pass_obj
def refresh(settings: Settings, project_ref: str, groups: tuple[str, ...], wait_s: float) -> None:
    """Fetch yesterday's missing groups now, within the quota's headroom (3 a day)."""
    from claritycast.ingest.refresh import refresh as refresh_project

    async def go() -> int:
        async with store_for(settings) as store, publisher_for(settings) as publisher:
            reports = await refresh_project(
                store, publisher.send, project_ref, list(groups), SystemClock().now(),
                default_timezone=settings.default_timezone, wait_s=wait_s,
            )  # fmt: skip
        for report in reports:
            detail = f"  {report.detail}" if report.detail else ""
            click.echo(f"  {report.group:8} {report.outcome}{detail}")
        return 0 if all(report.outcome == "stored" for report in reports) else 1

    sys.exit(run(go()))


@cli.group()
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
        async with store_for(settings) as store:
            org = await add_organisation(
                store, name, timezone or settings.default_timezone, SystemClock().now()
            )
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


@cli.command()
@click.pass_obj
def sources(settings: Settings) -> None:
    """Connected projects: status, last snapshot, Clarity requests used in 24 h."""
    from claritycast.ingest.quota import COUNTED_FOR, DAILY_LIMIT, NEVER_MADE

    async def go() -> None:
        now = SystemClock().now()
        async with store_for(settings) as store:
            projects = await store.projects()
            rows = []
            for project in projects:
                last = await store.last_snapshot_date(project.project_id)
                calls = await store.calls_since(project.project_id, now - COUNTED_FOR)
                used = sum(1 for call in calls if call.outcome not in NEVER_MADE)
                waiting = project.waiting_until()
                note = (
                    f", waits until {waiting:%Y-%m-%d %H:%M}Z" if waiting and waiting > now else ""
                )
                reason = f" ({project.status_reason})" if project.status_reason else ""
                rows.append(
                    f"{project.label[:24]:24} {project.project_id:24} {project.org_id:12} "
                    f"{project.status + reason:28} {last or '-':10}  {used}/{DAILY_LIMIT}{note}"
                )
        if not rows:
            click.echo("no project connected: `claritycast connect --label NAME --token -`")
            return
        click.echo(
            f"{'label':24} {'project':24} {'org':12} {'status':28} {'last day':10}  used 24 h"
        )
        for row in rows:
            click.echo(row)

    run(go())


@cli.command()
@click.option("--project", "project_ref", required=True, help="Project label or id.")
@click.option("--metric", "metric_id", required=True, help="A catalogue metric id.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366))
@click.pass_obj
def series(settings: Settings, project_ref: str, metric_id: str, days: int) -> None:
    """Show a metric's stored daily series (or top values, for a breakdown)."""
    from claritycast.clarity.big_answers import values_total
    from claritycast.errors import InputError
    from claritycast.localtime import local_yesterday
    from claritycast.reports import series as series_of
    from models import catalogue
    from models.catalogue import Unit
    from models.clarity import ClarityResponse

    try:
        metric = catalogue.get(metric_id)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None

    async def go() -> None:
        async with store_for(settings) as store:
            project = await store.find_project(project_ref)
            if project is None:
                raise InputError(f"no project {project_ref!r}; see `claritycast sources`")
            org = await store.get_organisation(project.org_id)
            timezone = org.timezone if org else settings.default_timezone
            last = local_yesterday(timezone, SystemClock().now())
            first = last - timedelta(days=days - 1)
            snapshots = await store.snapshots_for(
                project.project_id, first.isoformat(), last.isoformat(), group=metric.group,
                metrics=series_of.blocks_needed(metric),
            )  # fmt: skip
        by_day = {
            date.fromisoformat(s.local_date): ClarityResponse.from_json(s.blocks) for s in snapshots
        }
        click.echo(f"{metric.title} ({metric.unit}) for {project.label}, {first} to {last}")
        shape = ",.0f" if metric.unit == Unit.COUNT else ",.2f"
        if metric.is_breakdown:
            everything = series_of.breakdown(metric, by_day.values(), top_n=None)
            for label, value in everything[: series_of.TOP_N]:
                click.echo(f"  {format(value, shape):>12}  {click.unstyle(label)[:100]}")
            more = max(len(everything), values_total(metric.block, snapshots)) - series_of.TOP_N
            if more > 0:
                click.echo(f"  … and {more:,} more")
        else:
            points = series_of.daily_series(metric, by_day, first, last)
            for point in points:
                shown = "-" if point.value is None else format(point.value, shape)
                click.echo(f"  {point.day}  {shown:>12}")
        click.echo(f"{len(by_day)} of {days} days collected")

    run(go())


@cli.command()
@click.option("--projects", "count", default=2, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--sessions-per-day", default=1500, show_default=True)
@click.pass_obj
def simulate(settings: Settings, count: int, host: str, port: int, sessions_per_day: int) -> None:
    """Run the local Clarity simulator (for trying claritycast without Clarity)."""
    from claritycast.standins.clarity import ClaritySimulator

    async def go() -> None:
        simulator = ClaritySimulator(SystemClock())
        for i in range(1, count + 1):
            simulator.add_project(f"sim-{i}", sessions_per_day)
        await simulator.start(host, port)
        tokens = settings.data_dir / "simulator" / "tokens.json"
        tokens.parent.mkdir(parents=True, exist_ok=True)
        tokens.touch(mode=0o600)
        tokens.write_text(
            json.dumps({p.project_id: p.token for p in simulator.projects.values()}, indent=2)
        )
        click.echo(f"Clarity simulator at {simulator.export_url}")
        click.echo(f"{count} projects; their tokens are in {tokens}")
        click.echo(f"use it with CLARITYCAST_CLARITY_API_URL={simulator.export_url}; Ctrl-C stops")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await simulator.stop()

    run(go())


for _command in (
    cli_delivery.connections,
    cli_delivery.send_now,
    cli_delivery.preview,
    cli_delivery.deliveries,
    cli_delivery.demo,
    cli_dead_letters.dead_letters,
    cli_dead_letters.replay_command,
    cli_topics.topics,
    cli_ops.quota,
):
    cli.add_command(_command)


def main() -> None:
    """Console entry point: every known failure is one line, never a traceback."""
    try:
        cli.main(prog_name="claritycast", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        fail(str(exc), code=2)
    except ClarityCastError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
