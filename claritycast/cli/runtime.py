"""`claritycast up`, `worker`, `status`, `stages`, `config`: running the service, seeing it run."""

from __future__ import annotations

import json
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API's /api/v1/status.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Where the broker, database and web process are; workers alive; ready or why not.

    Ready means what ``/readyz`` means (MongoDB and the broker answer, a
    worker reported lately); the exit code is 0 when ready, 1 when not.
    """
    from claritycast.web import views

    state = RunDir(settings.run_dir).live_state()
    endpoints = resolve_endpoints(settings)

    async def go() -> int:
        async with open_store(endpoints.mongodb_url, settings.mongodb_database) as store:
            answer = await views.status(
                store, endpoints.kafka_url, endpoints.mongodb_url, settings.mongodb_database
            )
        if as_json:
            click.echo(json.dumps(views.dump(answer), indent=2))
            return 0 if answer.readiness.ready else 1
        if state is not None:
            click.echo(f"embedded servers: running ({state.describe()}, since {state.started_at})")
        elif settings.embedded_kafka or settings.embedded_mongodb:
            click.echo(f"embedded servers: not running on {settings.data_dir}")
        click.echo(f"kafka:   {answer.kafka_url}")
        click.echo(f"mongodb: {answer.mongodb_url} (database {answer.database})")
        if state is not None and state.web_url:
            click.echo(f"web:     {state.web_url}")
        workers = answer.readiness.workers
        if not workers:
            click.echo("workers: none alive")
        for beat in workers:
            metrics = f", metrics at {beat.metrics_url}" if beat.metrics_url else ""
            click.echo(
                f"worker {beat.id}: stages {','.join(beat.stages)}, "
                f"up since {beat.started_at:%Y-%m-%d %H:%M:%S}Z, "
                f"seen {beat.seen_at:%H:%M:%S}Z{metrics}"
            )
        ready = answer.readiness
        click.echo("ready" if ready.ready else "not ready: " + "; ".join(ready.reasons))
        return 0 if ready.ready else 1

    sys.exit(run(go()))


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
