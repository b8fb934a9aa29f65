"""What every command module shares: running a coroutine, the store, the publisher, the actor."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import faust

from claritycast.clock import SystemClock
from claritycast.errors import InputError
from claritycast.ingest.audit import Audited, audited
from claritycast.ingest.connect import SendFn
from claritycast.keyfile import keyring_for
from claritycast.runtime.embedded import resolve_endpoints
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings
from claritycast.store.core import Store, open_store
from models.audit import Actor, ActorKind
from topics import TopicSpec

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@asynccontextmanager
async def store_for(settings: Settings, *, keys: bool = False) -> AsyncIterator[Store]:
    """The store; with ``keys``, able to seal and open Clarity tokens (the key must be set)."""
    endpoints = resolve_endpoints(settings)
    keyring = keyring_for(settings) if keys else None
    async with open_store(endpoints.mongodb_url, settings.mongodb_database, keyring) as store:
        yield store


def parse_since(text: str | None) -> datetime | None:
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


def publisher_for(settings: Settings) -> Publisher:
    endpoints = resolve_endpoints(settings)
    return Publisher(
        endpoints.kafka_url, settings.topic_prefix, settings.partitions, settings.replication_factor
    )


def cli_actor() -> Actor:
    """The operator at this terminal: the OS account of the real user id, and the host.

    The real uid, not ``$USER``, which anyone can set.
    """
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's uid with no passwd entry
        user = f"uid {uid}"
    return Actor(ActorKind.CLI, f"{user}@{socket.gethostname()}")


def audit_sender(settings: Settings) -> SendFn:
    """A send for one audit record, from a command that has no publisher of its own.

    The broker is reached only once the action is done, so a broker outage never
    stops an action; the record is in MongoDB whatever happens (see `record`).
    """

    async def send(spec: TopicSpec, key: str, record: faust.Record) -> None:
        async with publisher_for(settings) as publisher:
            await publisher.send(spec, key, record)

    return send


@asynccontextmanager
async def audited_command(
    settings: Settings, store: Store, action: str, object: str, send: SendFn | None = None
) -> AsyncIterator[Audited]:
    """An operator's action at the terminal, on the audit trail however it ends."""
    async with audited(store, send or audit_sender(settings), cli_actor(), action, object) as note:
        yield note
