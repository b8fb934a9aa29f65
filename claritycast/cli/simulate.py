"""`claritycast simulate`: the local Clarity simulator, for trying claritycast without Clarity."""

from __future__ import annotations

import asyncio
import json
import signal

import click

from claritycast.cli.common import run
from claritycast.clock import SystemClock
from claritycast.settings import Settings


@click.command()
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
