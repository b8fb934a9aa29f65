"""`claritycast dead-letters` and `claritycast replay`: what failed for good, sent again."""

from __future__ import annotations

import json
import sys
from collections import Counter

import click

from claritycast.cli.common import audited_command, parse_since, publisher_for, run, store_for
from claritycast.clock import SystemClock
from claritycast.errors import NotFound
from claritycast.ingest.replay import STAGES, replay
from claritycast.settings import Settings
from claritycast.web import schemas, views
from models.audit import Action


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
                stage=stage, project_id=project_id, since=parse_since(since),
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
        chosen = [f"{k} {v}" for k, v in (("stage", stage), ("project", project),
                                           ("since", since)) if v]  # fmt: skip
        async with (
            store_for(settings) as store,
            publisher_for(settings) as publisher,
            audited_command(
                settings, store, Action.DEAD_LETTERS_REPLAY, "dead-letters", publisher.send
            ) as note,
        ):
            note.detail = ", ".join(chosen) or "all"
            results = await replay(
                store, publisher.send, SystemClock().now(), stage=stage, project=project,
                since=parse_since(since), default_timezone=settings.default_timezone, wait_s=wait_s,
            )  # fmt: skip
            outcomes = Counter(result.outcome for result in results)
            done = ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items())
            note.detail += f": {done or 'nothing to replay'}"
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
