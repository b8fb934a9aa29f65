"""`claritycast keys new|rotate`: the keys that encrypt stored Clarity tokens."""

from __future__ import annotations

import sys

import click

from claritycast.cli.common import audited_command, run, store_for
from claritycast.clock import SystemClock
from claritycast.settings import Settings
from models.audit import Action


@click.group()
def keys() -> None:
    """The keys that encrypt stored Clarity tokens (CLARITYCAST_SECRET_KEYS)."""


@keys.command("new")
def keys_new() -> None:
    """Print a fresh key. Nothing is stored: put it in CLARITYCAST_SECRET_KEYS yourself.

    To rotate: put the new key first and keep the old one after it, on every
    worker and command; restart the workers; run `claritycast keys rotate`;
    then drop the old key and restart them again.
    """
    from claritycast.keyring import new_key

    click.echo(new_key())


@keys.command("rotate")
@click.pass_obj
def keys_rotate(settings: Settings) -> None:
    """Re-encrypt every stored token with the first key; safe while workers run.

    Run it again after an interruption: it goes on where it stopped. Exits 1
    while some token is still on an older key (it says which, and why).
    """
    from claritycast.ingest.keys import rotate_keys

    async def go() -> int:
        async with (
            store_for(settings, keys=True) as store,
            audited_command(settings, store, Action.KEYS_ROTATE, "keys") as note,
        ):
            rotation = await rotate_keys(store, SystemClock().now())
            note.detail = rotation.describe()
        click.echo(rotation.describe())
        if rotation.complete:
            click.echo("every stored token is on the first key: older keys can be dropped")
            return 0
        click.echo("keep the older keys until every token above is readable or replaced")
        return 1

    sys.exit(run(go()))
