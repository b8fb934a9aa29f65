"""The `claritycast` command.

Every command reads the same settings (environment and optional TOML file),
and every failure ends in one line on stderr: ``claritycast: <what went
wrong>``, exit code 2 for a configuration problem, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import click

import agents
from claritycast import __version__
from claritycast.embedded import RunDir, resolve_endpoints
from claritycast.errors import ClarityCastError, ConfigError
from claritycast.logs import configure_logging
from claritycast.settings import Settings, load_settings
from claritycast.store import open_store

T = TypeVar("T")

STAGES_HELP = (
    "Stages to run: names or groups, comma-separated, or 'all'. "
    f"Stages: {', '.join(agents.CHAIN)}; groups: {', '.join(agents.GROUPS)}."
)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"claritycast: {message}", err=True)
    sys.exit(code)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


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
    from claritycast.up import run_up

    agents.select([stages])
    sys.exit(run(run_up(settings, [stages])))


@cli.command()
@click.option("--stages", default="all", show_default=True, help=STAGES_HELP)
@click.pass_obj
def worker(settings: Settings, stages: str) -> None:
    """Run a worker for some stages, on a running `up` or on the configured URLs."""
    from claritycast.worker import run_worker

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
        stage = agents.STAGES.get(name)
        click.echo(f"{name:8} {stage.description if stage else '(not built in this version)'}")
    for group, members in agents.GROUPS.items():
        click.echo(f"group {group}: {', '.join(members)}")


@cli.command()
@click.pass_obj
def config(settings: Settings) -> None:
    """Show every setting, its effective value (secrets masked) and what it does."""
    for variable, value, description in settings.described():
        click.echo(f"{variable:38} {value:40} {description}")


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
