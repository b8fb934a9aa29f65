"""`claritycast web`, `users` and `api-keys`: the web process, and who may use it."""

from __future__ import annotations

import json
import sys

import click

from claritycast import access
from claritycast.cli.common import audited_command, cli_actor, run, store_for
from claritycast.clock import SystemClock
from claritycast.errors import NotFound
from claritycast.settings import Settings
from models.audit import Action


@click.command()
@click.pass_obj
def web(settings: Settings) -> None:
    """Serve the HTTP API (and the pages) on CLARITYCAST_WEB_HOST:CLARITYCAST_WEB_PORT."""
    from claritycast.web.server import run_web

    run_web(settings)


def _read_password(password_from_stdin: bool) -> str:
    if password_from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group()
def users() -> None:
    """People who can sign in to the web pages and the API."""


@users.command("add")
@click.argument("email")
@click.option("--role", type=click.Choice(access.ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def users_add(settings: Settings, email: str, role: str, password_stdin: bool) -> None:
    """Add a person; the password is prompted (twice) or read from stdin."""
    password = _read_password(password_stdin)

    async def go() -> None:
        async with store_for(settings) as store:
            target = f"user:{access.normalise_email(email)}"
            async with audited_command(settings, store, Action.USER_ADD, target) as note:
                who = await access.add_user(store, email, password, role, SystemClock().now())
                note.detail = f"role {who.role}"
        click.echo(f"added {who.name} ({who.role})")

    run(go())


@users.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def users_set_password(settings: Settings, email: str, password_stdin: bool) -> None:
    """Give a person a new password."""
    password = _read_password(password_stdin)

    async def go() -> None:
        async with store_for(settings) as store:
            target = f"user:{access.normalise_email(email)}"
            async with audited_command(settings, store, Action.USER_CHANGE, target) as note:
                note.detail = "a new password"
                await access.set_password(store, email, password, SystemClock().now())
        click.echo(f"new password set for {email}")

    run(go())


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def users_list(settings: Settings, as_json: bool) -> None:
    """People who can sign in, and their roles."""

    async def go() -> None:
        async with store_for(settings) as store:
            found = await store.users()
        rows = [{"email": d["_id"], "role": d["role"], "created_at": d["created_at"].isoformat()}
                for d in found]  # fmt: skip
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            click.echo("no users yet: `claritycast users add EMAIL --role admin`")
        for row in [] if as_json else rows:
            click.echo(f"{row['email']:40} {row['role']:7} since {row['created_at'][:10]}")

    run(go())


@users.command("remove")
@click.argument("email")
@click.pass_obj
def users_remove(settings: Settings, email: str) -> None:
    """Remove a person; their sessions end at once."""

    async def go() -> None:
        async with store_for(settings) as store:
            target = f"user:{access.normalise_email(email)}"
            async with audited_command(settings, store, Action.USER_REMOVE, target):
                if not await store.remove_user(access.normalise_email(email)):
                    raise NotFound(f"no user {email!r}; see `claritycast users list`")
        click.echo(f"removed {email}")

    run(go())


@click.group("api-keys")
def api_keys() -> None:
    """Keys for services: `Authorization: Bearer <key>`; only their hashes are kept."""


@api_keys.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(access.ROLES), default="viewer", show_default=True)
@click.pass_obj
def api_keys_create(settings: Settings, name: str, role: str) -> None:
    """Make a key and print it once: keep it, it cannot be shown again."""

    async def go() -> None:
        by = cli_actor().describe()
        async with (
            store_for(settings) as store,
            audited_command(settings, store, Action.API_KEY_CREATE, "api-key-id:new") as note,
        ):
            key, record = await access.create_api_key(store, name, role, SystemClock().now(), by)
            note.object = f"api-key-id:{record.key_id}"
            note.detail = f"{record.name} ({record.role})"
        click.echo(f"API key {record.key_id} ({record.name}, {record.role}); shown once:")
        click.echo(key)

    run(go())


@api_keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API answers.")
@click.pass_obj
def api_keys_list(settings: Settings, as_json: bool) -> None:
    """Every key: id, name, role, when it was made, last used, revoked."""

    async def go() -> None:
        async with store_for(settings) as store:
            keys = [access.ApiKey.from_document(doc) for doc in await store.api_keys()]
        if as_json:
            click.echo(json.dumps([{
                "id": k.key_id, "name": k.name, "role": k.role,
                "created_at": k.created_at.isoformat(), "created_by": k.created_by,
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
            } for k in keys], indent=2))  # fmt: skip
            return
        if not keys:
            click.echo("no API keys: `claritycast api-keys create NAME --role viewer`")
        for k in keys:
            state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
            used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}Z" if k.last_used_at else "never used"
            click.echo(f"{k.key_id}  {k.name:24} {k.role:7} {state:18} {used}")

    run(go())


@api_keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
def api_keys_revoke(settings: Settings, key_id: str) -> None:
    """Revoke a key: it stops working at once."""

    async def go() -> None:
        target = f"api-key-id:{key_id}"
        async with (
            store_for(settings) as store,
            audited_command(settings, store, Action.API_KEY_REVOKE, target),
        ):
            revoked = await access.revoke_api_key(store, key_id, SystemClock().now())
        click.echo(f"revoked {revoked.key_id} ({revoked.name})")

    run(go())
