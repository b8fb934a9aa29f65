"""The `claritycast` command.

Every command reads the same settings (environment and optional TOML file),
and every failure ends in one line on stderr: ``claritycast: <what went
wrong>``, exit code 2 for a configuration problem, 1 otherwise.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from claritycast import __version__
from claritycast.cli import accounts as cli_accounts
from claritycast.cli import audit as cli_audit
from claritycast.cli import dead_letters as cli_dead_letters
from claritycast.cli import delivery as cli_delivery
from claritycast.cli import demo as cli_demo
from claritycast.cli import ingest as cli_ingest
from claritycast.cli import keys as cli_keys
from claritycast.cli import ops as cli_ops
from claritycast.cli import projects as cli_projects
from claritycast.cli import runtime as cli_runtime
from claritycast.cli import simulate as cli_simulate
from claritycast.cli import topics as cli_topics
from claritycast.errors import ClarityCastError, ConfigError
from claritycast.logs import configure_logging
from claritycast.settings import load_settings


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


for _command in (
    cli_runtime.up,
    cli_runtime.worker,
    cli_runtime.status,
    cli_runtime.stages,
    cli_runtime.config,
    cli_ingest.connect,
    cli_ingest.refresh,
    cli_ingest.orgs,
    cli_ingest.sources,
    cli_ingest.series,
    cli_simulate.simulate,
    cli_accounts.web,
    cli_accounts.users,
    cli_accounts.api_keys,
    cli_projects.projects,
    cli_delivery.connections,
    cli_delivery.send_now,
    cli_delivery.preview,
    cli_delivery.deliveries,
    cli_demo.demo,
    cli_dead_letters.dead_letters,
    cli_dead_letters.replay_command,
    cli_topics.topics,
    cli_ops.quota,
    cli_keys.keys,
    cli_audit.audit,
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
