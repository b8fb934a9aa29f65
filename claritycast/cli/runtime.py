"""`claritycast up`, `worker`, `status`, `stages`, `config`: running the service, seeing it run."""

from __future__ import annotations

import sys

import click

import agents
from claritycast.cli.common import run
from claritycast.runtime.embedded import RunDir, resolve_endpoints
from claritycast.settings import Settings
from claritycast.store.core import open_store

STAGES_HELP = (
    "Stages to run: names or groups, comma-separated, or 'all'. "
    f"Stages: {', '.join(agents.CHAIN)}; groups: {', '.join(agents.GROUPS)}."
)


@click.command()
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


@click.command()
@click.option("--stages", default="all", show_default=True, help=STAGES_HELP)
@click.pass_obj
def worker(settings: Settings, stages: str) -> None:
    """Run a worker for some stages, on a running `up` or on the configured URLs."""
    from claritycast.runtime.worker import run_worker

    agents.select([stages])
    run_worker(settings, [stages])


@click.command()
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


@click.command()
def stages() -> None:
    """List the stages this version runs and the deployment groups."""
    for name in agents.CHAIN:
        click.echo(f"{name:8} {agents.STAGES[name].description}")
    for group, members in agents.GROUPS.items():
        click.echo(f"group {group}: {', '.join(members)}")


@click.command()
@click.pass_obj
def config(settings: Settings) -> None:
    """Show every setting, its effective value (secrets masked) and what it does."""
    for variable, value, description in settings.described():
        click.echo(f"{variable:38} {value:40} {description}")
