"""Creating and changing connections, with every input checked before anything is stored.

Plain async functions over the store, used by ``claritycast connections`` and
the demo. Each bad input — unknown project or metric, malformed address or
channel, invalid time, schedule or timezone — is one `InputError` line.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from claritycast.delivery.email_message import parse_addresses
from claritycast.delivery.log import open_send_now
from claritycast.delivery.schedule import parse_schedule, parse_time
from claritycast.errors import Conflict, InputError, NotFound
from claritycast.localtime import valid_timezone
from claritycast.naming import slug
from claritycast.store.core import Store
from models import catalogue
from models.delivery import (
    WINDOWS,
    Connection,
    ConnectionStatus,
    Delivery,
    Destination,
    DestinationKind,
)
from models.documents import Project
from models.records import DeliveryDue

# A Slack channel: its id (C…, G…) or its name, with or without '#'.
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
_CHANNEL_NAME = re.compile(r"^#?[a-z0-9][a-z0-9._-]{0,79}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
T = TypeVar("T")


def parse_channel(text: str) -> str:
    channel = text.strip()
    if _CHANNEL_ID.match(channel) or _CHANNEL_NAME.match(channel):
        return channel
    raise InputError(
        f"invalid Slack channel {text!r}: use its id (C0123ABCD) or its name "
        "(#reports: lower case, no spaces)",
        field="slack_channel",
    )


def _at(field: str, parse: Callable[[], T]) -> T:
    """Run a parser; its `InputError` names ``field``."""
    try:
        return parse()
    except InputError as exc:
        if exc.field is not None:
            raise
        raise InputError(str(exc), field=field) from None


async def check_connection(
    store: Store,
    *,
    project: str,
    metric: str,
    now: datetime,
    slack_channel: str | None = None,
    emails: str | None = None,
    schedule: str = "daily",
    at: str = "09:00",
    timezone: str | None = None,
    window_days: int = 30,
    ai_summary: bool = False,
    name: str | None = None,
) -> Connection:
    """A connection from what an operator typed, every input checked; nothing is stored.

    Raises an `InputError` naming the field at fault, on the first problem.
    """
    found = await get_project_of(store, project)
    try:
        metric_id = catalogue.get(metric).id
    except KeyError as exc:
        raise InputError(str(exc.args[0]), field="metric") from None
    if (slack_channel is None) == (emails is None):
        raise InputError(
            "give exactly one destination: a Slack channel or email addresses", field="destination"
        )
    if slack_channel is not None:
        destination = Destination(DestinationKind.SLACK, channel=parse_channel(slack_channel))
    else:
        assert emails is not None
        addresses = _at("emails", lambda: tuple(parse_addresses(emails)))
        destination = Destination(DestinationKind.EMAIL, addresses=addresses)
    _at("at", lambda: parse_time(at))
    parsed_schedule = _at("schedule", lambda: parse_schedule(schedule, at))
    if timezone is None:
        org = await store.get_organisation(found.org_id)
        timezone = org.timezone if org else "UTC"
    elif not valid_timezone(timezone):
        raise InputError(
            f"unknown timezone {timezone!r}: use an IANA name such as Europe/Paris",
            field="timezone",
        )
    if window_days not in WINDOWS:
        raise InputError(
            f"invalid window {window_days}: one of {', '.join(map(str, WINDOWS))} days",
            field="window_days",
        )
    name = name.strip().lower() if name else _default_name(found.label, metric_id, destination)
    if not _NAME.match(name):
        raise InputError(
            f"invalid connection name {name!r}: lower case letters, digits, - . _", field="name"
        )
    return Connection(
        name=name,
        project_id=found.project_id,
        metric_id=metric_id,
        destination=destination,
        schedule=parsed_schedule,
        timezone=timezone,
        window_days=window_days,
        ai_summary=ai_summary,
        created_at=now,
    )


async def create_connection(
    store: Store,
    *,
    project: str,
    metric: str,
    now: datetime,
    slack_channel: str | None = None,
    emails: str | None = None,
    schedule: str = "daily",
    at: str = "09:00",
    timezone: str | None = None,
    window_days: int = 30,
    ai_summary: bool = False,
    name: str | None = None,
) -> Connection:
    """Check everything, then store the connection; raises `InputError` on the first problem."""
    connection = await check_connection(
        store, project=project, metric=metric, now=now, slack_channel=slack_channel,
        emails=emails, schedule=schedule, at=at, timezone=timezone, window_days=window_days,
        ai_summary=ai_summary, name=name,
    )  # fmt: skip
    if not await store.add_connection(connection):
        raise Conflict(
            f"a connection named {connection.name!r} exists already; choose --name", field="name"
        )
    return connection


async def change_connection(
    store: Store,
    name: str,
    now: datetime,
    *,
    metric: str | None = None,
    slack_channel: str | None = None,
    emails: str | None = None,
    schedule: str | None = None,
    at: str | None = None,
    timezone: str | None = None,
    window_days: int | None = None,
    ai_summary: bool | None = None,
) -> Connection:
    """Change some of a connection's settings (None: unchanged), checked like a new one.

    Its name, status and history stay; a new schedule applies from its next due time.
    """
    old = await get_connection(store, name)
    destination = old.destination
    if slack_channel is None and emails is None:
        if destination.kind is DestinationKind.SLACK:
            slack_channel = destination.channel
        else:
            emails = ", ".join(destination.addresses)
    changed = await check_connection(
        store,
        project=old.project_id,
        metric=metric or old.metric_id,
        now=old.created_at,
        slack_channel=slack_channel,
        emails=emails,
        schedule=schedule or old.schedule.spec,
        at=at or f"{old.schedule.at:%H:%M}",
        timezone=timezone or old.timezone,
        window_days=window_days if window_days is not None else old.window_days,
        ai_summary=ai_summary if ai_summary is not None else old.ai_summary,
        name=old.name,
    )
    changed = replace(changed, status=old.status, status_reason=old.status_reason)
    if not await store.replace_connection(changed):
        raise NotFound(f"no connection {name!r}; see `claritycast connections list`")
    return changed


def _default_name(label: str, metric_id: str, destination: Destination) -> str:
    return f"{slug(label)}-{metric_id.replace('_', '-')}-{destination.kind.value}"


async def get_project_of(store: Store, ref: str) -> Project:
    """A project by label or id, for a connection; `NotFound` when there is none."""
    found = await store.find_project(ref)
    if found is None:
        raise NotFound(f"no project {ref!r}; see `claritycast sources`", field="project")
    return found


def local_today(connection: Connection, now: datetime) -> date:
    """Today in the connection's timezone: the period a report sent now is for."""
    return now.astimezone(ZoneInfo(connection.timezone)).date()


async def get_connection(store: Store, name: str) -> Connection:
    connection = await store.get_connection(name)
    if connection is None:
        raise NotFound(f"no connection {name!r}; see `claritycast connections list`")
    return connection


async def pause(store: Store, name: str, reason: str = "paused by an operator") -> None:
    """Stop a connection; what it had due and not yet sent is skipped, never sent later."""
    if not await store.set_connection_status(name, ConnectionStatus.PAUSED, reason):
        raise NotFound(f"no connection {name!r}; see `claritycast connections list`")
    await store.skip_open_deliveries(name)


async def resume(store: Store, name: str) -> None:
    if not await store.set_connection_status(name, ConnectionStatus.ACTIVE, None):
        raise NotFound(f"no connection {name!r}; see `claritycast connections list`")


async def remove(store: Store, name: str) -> None:
    if not await store.remove_connection(name):
        raise NotFound(f"no connection {name!r}; see `claritycast connections list`")


async def send_now(store: Store, name: str, now: datetime) -> DeliveryDue:
    """Open a send-now delivery; the caller puts the message on ``deliveries.due``."""
    connection = await get_connection(store, name)
    if connection.status is not ConnectionStatus.ACTIVE:
        raise InputError(
            f"connection {name!r} is paused ({connection.status_reason}); "
            f"`claritycast connections resume {name}` first"
        )
    return await open_send_now(store, connection, now)


async def wait_for_delivery(store: Store, key: str, wait_s: float) -> Delivery | None:
    """Poll the delivery log until ``key`` is final (sent, failed, skipped) or time is up."""
    deadline = time.monotonic() + wait_s
    while True:
        delivery = await store.get_delivery(key)
        if delivery is not None and delivery.state.final:
            return delivery
        if time.monotonic() > deadline:
            return delivery
        await asyncio.sleep(0.2)
