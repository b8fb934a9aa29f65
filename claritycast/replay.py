"""Replay dead letters: send failed work back through the chain, once it can succeed.

A fetch goes back through the quota check (never straight to Clarity), as a
new request for the same project, day and group; a delivery goes back to the
deliver stage. Replay is idempotent: what has since succeeded (a group now
stored, a report now sent) is marked replayed and nothing is sent, and what is
sent again meets the same quota check and the same delivery claim as any
other message.

A fetch can only be replayed while its day is still "yesterday" for the
project: Clarity serves the last 24 hours, so a later request would store
another day's numbers under that date. Such a letter is marked ``expired``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from claritycast.connect import SendFn
from claritycast.deliveries import RECHECK
from claritycast.errors import InputError
from claritycast.localtime import local_yesterday
from claritycast.store import Store
from models.delivery import ConnectionStatus, DeliveryState
from models.documents import ProjectStatus
from models.records import DeadLetter, DeliveryDue, FetchRequested
from topics import DELIVERIES_DUE, FETCH_REQUESTED

STAGES = ("fetch", "deliver")


@dataclass(frozen=True)
class Replayed:
    """What replay did with a dead letter: ``sent``, ``done already``, ``expired``, ``skipped``."""

    letter: DeadLetter
    outcome: str
    detail: str = ""


async def replay(
    store: Store,
    send: SendFn,
    now: datetime,
    *,
    stage: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    default_timezone: str = "UTC",
) -> list[Replayed]:
    """Replay every dead letter that matches; returns what happened to each."""
    if stage is not None and stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}: replay takes fetch or deliver")
    project_id = None
    if project is not None:
        found = await store.find_project(project)
        if found is None:
            raise InputError(f"no project {project!r}; see `claritycast sources`")
        project_id = found.project_id
    results = []
    for letter, _ in await store.dead_letters(stage=stage, project_id=project_id, since=since):
        if letter.stage == "fetch":
            result = await _replay_fetch(store, send, letter, now, default_timezone)
        else:
            result = await _replay_delivery(store, send, letter, now)
        if result.outcome != "skipped":
            await store.mark_dead_letter(letter.dead_letter_id, _state(result.outcome), now)
        results.append(result)
    return results


def _state(outcome: str) -> str:
    return "expired" if outcome == "expired" else "replayed"


async def _replay_fetch(
    store: Store, send: SendFn, letter: DeadLetter, now: datetime, default_timezone: str
) -> Replayed:
    original = letter.original
    project_id, local_date, group = letter.project_id, original["local_date"], original["group"]
    if group in await store.groups_stored(project_id, local_date):
        return Replayed(letter, "done already", f"{local_date} {group} is stored")
    project = await store.get_project(project_id)
    if project is None or project.status != ProjectStatus.ACTIVE:
        status = project.status if project else "removed"
        return Replayed(letter, "skipped", f"project {status}: fix it, then replay")
    org = await store.get_organisation(project.org_id)
    timezone = org.timezone if org else original.get("timezone", default_timezone)
    if local_yesterday(timezone, now).isoformat() != local_date:
        return Replayed(letter, "expired", f"Clarity no longer serves {local_date}")
    await store.release_group(project_id, local_date, group)
    request = FetchRequested(
        request_id=uuid.uuid4().hex,
        project_id=project_id,
        local_date=local_date,
        group=group,
        reason=original.get("reason", "daily"),
        timezone=timezone,
        requested_at=now,
    )
    await send(FETCH_REQUESTED, project_id, request)
    return Replayed(letter, "sent", f"{local_date} {group} back to the quota check")


async def _replay_delivery(
    store: Store, send: SendFn, letter: DeadLetter, now: datetime
) -> Replayed:
    key = letter.original["delivery_key"]
    delivery = await store.get_delivery(key)
    if delivery is None:
        return Replayed(letter, "expired", f"{key} is no longer in the delivery log")
    if delivery.state is DeliveryState.SENT:
        return Replayed(letter, "done already", f"{key} was sent")
    connection = await store.get_connection(delivery.connection)
    if connection is None:
        return Replayed(letter, "expired", f"connection {delivery.connection} was removed")
    if connection.status is not ConnectionStatus.ACTIVE:
        return Replayed(
            letter,
            "skipped",
            f"connection {connection.name} is paused ({connection.status_reason}); "
            f"fix the cause, `claritycast connections resume {connection.name}`, then replay",
        )
    state = DeliveryState.RENDERED if await store.get_chart(key) else DeliveryState.DUE
    await store.move_delivery(
        key, state, unless_final=False, next_check_at=now + RECHECK,
        retry_from=len(delivery.attempts),
    )  # fmt: skip
    due = DeliveryDue(
        delivery_key=key,
        connection=connection.name,
        project_id=connection.project_id,
        period=delivery.period,
        reason=delivery.reason,
        scheduled_at=delivery.scheduled_at,
        requested_at=now,
    )
    await send(DELIVERIES_DUE, connection.name, due)
    return Replayed(letter, "sent", f"{key} back to the render and deliver stages")
