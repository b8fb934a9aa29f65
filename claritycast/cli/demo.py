"""`claritycast demo`: the whole service on this machine, against stand-ins, 30 days in a minute."""

from __future__ import annotations

from pathlib import Path

import click

from claritycast.cli.common import run
from claritycast.settings import Settings


@click.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(3, 90))
@click.option("--outbox", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.pass_obj
def demo(settings: Settings, days: int, outbox: Path | None) -> None:
    """Run everything against the built-in simulator on a fast clock; results in var/outbox."""
    from claritycast.standins.demo import describe, run_demo

    result = run(run_demo(settings, days=days, outbox=outbox or settings.data_dir / "outbox"))
    for line in describe(result):
        click.echo(line)
