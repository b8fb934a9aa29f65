"""`claritycast dead-letters` and `claritycast replay`: what failed for good, sent again."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import click

from claritycast.cli.common import publisher_for, run, store_for
from claritycast.clock import SystemClock
from claritycast.errors import InputError, NotFound
from claritycast.ingest.replay import STAGES, replay
from claritycast.settings import Settings
from claritycast.web import schemas, views


def _since(text: str | None) -> datetime | None:
    """``2026-11-28``, ``2026-11-28T06:00`` (UTC) or a duration back from now: ``36h``, ``7d``."""
    if text is None:
        return None
    units = {"h": "hours", "d": "days", "m": "minutes"}
    if text[:-1].isdigit() and text[-1] in units:
        return SystemClock().now() - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"invalid --since {text!r}: a date (2026-11-28), a time in UTC "
            "(2026-11-28T06:00) or a duration (36h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("dead-letters")
@click.option("--stage", type=click.Choice(STAGES), help="Only this stage's dead letters.")
@click.option("--project", help="Only this project's (label or id).")
@click.option("--since", help="Failed since: a date, a UTC time, or 36h / 7d.")
@click.option("--all", "everything", is_flag=True, help="Also those already replayed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def dead_letters(
    settings: Settings,
    stage: str | None,
    project: str | None,
    since: str | None,
    everything: bool,
    as_json: bool,
) -> None:
    """Work that failed for good: when, where, why, after how many tries."""

    async def go() -> None:
        async with store_for(settings) as store:
            project_id = None
            if project is not None:
                found = await store.find_project(project)
                if found is None:
                    raise NotFound(f"no project {project!r}; see `claritycast sources`")
                project_id = found.project_id
            letters = await store.dead_letters(
                stage=stage, project_id=project_id, since=_since(since),
                state=None if everything else "dead",
            )  # fmt: skip
        if as_json:
            items = [views.dead_letter(letter, state) for letter, state in letters]
            page = schemas.Page[schemas.DeadLetter](items=items, next_cursor=None)
            click.echo(json.dumps(views.dump(page), indent=2))
            return
        if not letters:
            click.echo("no dead letters" + ("" if everything else " waiting for a replay"))
            return
        for letter, state in letters:
            click.echo(
                f"{letter.failed_at:%Y-%m-%d %H:%M}Z {letter.stage:7} {state:8} "
                f"{letter.dead_letter_id}  {letter.reason} after {letter.attempts} "
                f"attempt{'s' if letter.attempts != 1 else ''}"
            )
            click.echo(f"    {letter.detail[:300]}")
            if letter.body:
                click.echo(f"    body: {letter.body[:120]!r}")

    run(go())


@click.command("replay")
@click.option("--stage", type=click.Choice(STAGES), help="Only this stage's dead letters.")
@click.option("--project", help="Only this project's (label or id).")
@click.option("--since", help="Failed since: a date, a UTC time, or 36h / 7d.")
@click.option(
    "--wait", "wait_s", default=60.0, show_default=True,
    help="Seconds to wait for what was sent to end (0: do not wait).",
)  # fmt: skip
@click.pass_obj
def replay_command(
    settings: Settings, stage: str | None, project: str | None, since: str | None, wait_s: float
) -> None:
    """Send dead letters back, and say what became of each.

    Fetches go through the quota check, fetched snapshots back to the store
    stage, reports back to be drawn and sent.
    """

    async def go() -> int:
        async with store_for(settings) as store, publisher_for(settings) as publisher:
            results = await replay(
                store, publisher.send, SystemClock().now(), stage=stage, project=project,
                since=_since(since), default_timezone=settings.default_timezone, wait_s=wait_s,
            )  # fmt: skip
        if not results:
            click.echo("nothing to replay")
        for result in results:
            click.echo(f"{result.letter.dead_letter_id}: {result.outcome}  {result.detail}")
            if result.end is not None:
                detail = f"  {result.end_detail}" if result.end_detail else ""
                click.echo(f"    → {result.end}{detail}")
        unfinished = {"skipped", "refused"}
        ends = {"stored", "sent", "not due", None}
        return 1 if any(r.outcome in unfinished or r.end not in ends for r in results) else 0

    sys.exit(run(go()))
