"""Replay dead letters: send failed work back through the chain, and say what became of it.

A fetch (a dead letter of the quota or fetch stage) goes back through the
quota check (never straight to Clarity), as a new request for the same
project, day and group; a snapshot the store stage could not store goes back
to the store stage, whose blocks are still in the claim check (Clarity is not
asked twice for what it already answered); a report (render or deliver) goes
back to be drawn and sent.

Replay is idempotent: what has since succeeded (a group now stored, a report
now sent) is marked replayed and nothing is sent, and what is sent again
meets the same quota check and the same delivery claim as any other message.
A project Clarity answered 429 for is left alone until its reset: its
letters are refused at once, with when it resets, and stay dead.

A fetch can only be replayed while its day is still "yesterday" for the
project: Clarity serves the last 24 hours, so a later request would store
another day's numbers under that date. Such a letter is marked ``expired``.

With a wait, `replay` follows what it sent until each item has an end:
stored, refused by the quota (with when the next is possible), not due any
more, sent, failed again, or still pending when the wait ran out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime

import faust

from claritycast.delivery.log import RECHECK
from claritycast.errors import InputError, NotFound
from claritycast.ingest.connect import SendFn, wait_for_outcomes
from claritycast.localtime import local_yesterday
from claritycast.store.claim_check import BlocksMissing
from claritycast.store.core import Store
from models.delivery import ConnectionStatus, DeliveryState
from models.documents import ProjectStatus
from models.records import DeadLetter, DeliveryDue, FetchRequested, SnapshotFetched
from topics import DELIVERIES_DUE, FETCH_REQUESTED, SNAPSHOTS_FETCHED

STAGES = ("quota", "fetch", "store", "render", "deliver")
FETCH_CHAIN = ("quota", "fetch")
POLL_S = 0.2


@dataclass(frozen=True)
class Replayed:
    """What replay did with a dead letter, and (after a wait) what became of it.

    ``outcome`` is ``sent``, ``done already``, ``expired``, ``refused`` or
    ``skipped``; ``end`` is what happened to what was sent: ``stored``,
    ``refused``, ``not due``, ``sent``, a failure kind, or ``pending``.
    """

    letter: DeadLetter
    outcome: str
    detail: str = ""
    message: faust.Record | None = None
    end: str | None = None
    end_detail: str | None = None


async def replay(
    store: Store,
    send: SendFn,
    now: datetime,
    *,
    stage: str | None = None,
    project: str | None = None,
    since: datetime | None = None,
    default_timezone: str = "UTC",
    wait_s: float = 0.0,
) -> list[Replayed]:
    """Replay every dead letter that matches; returns what happened to each."""
    if stage is not None and stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}: replay takes {', '.join(STAGES)}")
    project_id = None
    if project is not None:
        found = await store.find_project(project)
        if found is None:
            raise NotFound(f"no project {project!r}; see `claritycast sources`")
        project_id = found.project_id
    results = []
    for letter, _ in await store.dead_letters(stage=stage, project_id=project_id, since=since):
        if letter.stage in FETCH_CHAIN:
            result = await _replay_fetch(store, send, letter, now, default_timezone)
        elif letter.stage == "store":
            result = await _replay_store(store, send, letter, now, default_timezone)
        else:
            result = await _replay_delivery(store, send, letter, now)
        if result.outcome not in ("skipped", "refused"):
            await store.mark_dead_letter(letter.dead_letter_id, _state(result.outcome), now)
        results.append(result)
    if wait_s > 0:
        results = await follow(store, results, wait_s)
    return results


def _state(outcome: str) -> str:
    return "expired" if outcome == "expired" else "replayed"


async def _fetch_allowed(
    store: Store, letter: DeadLetter, now: datetime, default_timezone: str
) -> Replayed | str:
    """The project's timezone if its letter may be replayed now, else why not."""
    original = letter.original
    project_id, local_date, group = letter.project_id, original["local_date"], original["group"]
    if group in await store.groups_stored(project_id, local_date):
        return Replayed(letter, "done already", f"{local_date} {group} is stored")
    project = await store.get_project(project_id)
    if project is None or project.status != ProjectStatus.ACTIVE:
        status = project.status if project else "removed"
        return Replayed(letter, "skipped", f"project {status}: fix it, then replay")
    if project.exhausted_until is not None and project.exhausted_until > now:
        return Replayed(
            letter,
            "refused",
            "Clarity answered 429 for this project; nothing is asked before "
            f"{project.exhausted_until:%Y-%m-%d %H:%M}Z, replay it after that",
        )
    org = await store.get_organisation(project.org_id)
    timezone: str = org.timezone if org else original.get("timezone", default_timezone)
    if local_yesterday(timezone, now).isoformat() != local_date:
        return Replayed(letter, "expired", f"Clarity no longer serves {local_date}")
    return timezone


async def _replay_fetch(
    store: Store, send: SendFn, letter: DeadLetter, now: datetime, default_timezone: str
) -> Replayed:
    allowed = await _fetch_allowed(store, letter, now, default_timezone)
    if isinstance(allowed, Replayed):
        return allowed
    original = letter.original
    project_id, local_date, group = letter.project_id, original["local_date"], original["group"]
    await store.release_group(project_id, local_date, group)
    request = FetchRequested(
        request_id=uuid.uuid4().hex,
        project_id=project_id,
        local_date=local_date,
        group=group,
        reason="refresh" if original.get("reason") == "refresh" else "replay",
        timezone=allowed,
        requested_at=now,
    )
    await send(FETCH_REQUESTED, project_id, request)
    return Replayed(letter, "sent", f"{local_date} {group} back to the quota check", request)


async def _replay_store(
    store: Store, send: SendFn, letter: DeadLetter, now: datetime, default_timezone: str
) -> Replayed:
    """The answer was fetched (and counted): store it from the claim check, never ask again.

    Its day need not be yesterday any more: the answer covers that day. The
    group stays held until the store stage has stored it (a stored group is
    never due, held or not): released before, the tick could ask Clarity for
    it again in between, spending a request on an answer already in hand.
    """
    record = SnapshotFetched.from_data(letter.original)
    project_id, local_date, group = record.project_id, record.local_date, record.group
    if await store.snapshot_exists(project_id, local_date, group):
        return Replayed(letter, "done already", f"{local_date} {group} is stored")
    if await store.get_project(project_id) is None:
        return Replayed(letter, "expired", f"project {project_id} was removed")
    try:
        await store.get_blocks(record.blocks_ref)
    except BlocksMissing:
        await store.release_group(project_id, local_date, group)
        return Replayed(letter, "expired", f"the answer for {local_date} {group} is no longer kept")
    await send(SNAPSHOTS_FETCHED, project_id, record)
    return Replayed(letter, "sent", f"{local_date} {group} back to the store stage", record)


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
    return Replayed(letter, "sent", f"{key} back to the render and deliver stages", due)


async def follow(store: Store, results: list[Replayed], wait_s: float) -> list[Replayed]:
    """Wait until everything replay sent has an end (or ``wait_s`` passes); fill it in."""
    deadline = time.monotonic() + wait_s
    requests = [r.message for r in results if isinstance(r.message, FetchRequested)]
    reports = {}
    if requests:
        for request, report in zip(
            requests, await wait_for_outcomes(store, requests, wait_s), strict=True
        ):
            reports[request.request_id] = (report.outcome, report.detail)
    ends: list[Replayed] = []
    for result in results:
        message = result.message
        if isinstance(message, FetchRequested):
            end, detail = reports[message.request_id]
        elif isinstance(message, SnapshotFetched):
            end, detail = await _stored_end(store, result.letter, message, deadline)
        elif isinstance(message, DeliveryDue):
            end, detail = await _delivery_end(store, message.delivery_key, deadline)
        else:
            ends.append(result)
            continue
        ends.append(replace(result, end=end, end_detail=detail))
    return ends


async def _stored_end(
    store: Store, letter: DeadLetter, record: SnapshotFetched, deadline: float
) -> tuple[str, str | None]:
    while True:
        if await store.snapshot_exists(record.project_id, record.local_date, record.group):
            return "stored", None
        again = await store.get_dead_letter(letter.dead_letter_id)
        if again is not None and again[1] == "dead":
            return "failed", again[0].detail
        if time.monotonic() > deadline:
            return "pending", "not stored yet: is a worker running the store stage?"
        await asyncio.sleep(POLL_S)


async def _delivery_end(store: Store, key: str, deadline: float) -> tuple[str, str | None]:
    while True:
        delivery = await store.get_delivery(key)
        if delivery is not None and delivery.state in (DeliveryState.SENT, DeliveryState.FAILED):
            last = delivery.attempts[-1] if delivery.attempts else None
            detail = f"{last.reason}: {last.detail}" if last and last.reason else None
            return delivery.state.value, detail
        if time.monotonic() > deadline:
            state = delivery.state.value if delivery else "gone"
            return "pending", f"still {state}: is a worker running render and deliver?"
        await asyncio.sleep(POLL_S)
