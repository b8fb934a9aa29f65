"""The delivery half of the chain, without Kafka: what is due, render it, send it once.

Each step reads and moves one delivery in the log (`models.delivery`), whose
key — connection and period — is unique, so every step can run again on the
same message without effect: a doubled tick opens nothing new, a redelivered
"due" finds the delivery rendered, a redelivered "rendered" finds it sent.
Sending is guarded by a claim (state ``sending`` with a time), taken by one
worker at a time.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from claritycast.delivery.destinations import Destinations
from claritycast.delivery.schedule import latest_due, next_due
from claritycast.errors import (
    ClarityCastError,
    ConfigError,
    DeliveryPermanent,
    DeliveryRetryable,
)
from claritycast.logs import get_logger
from claritycast.reports.builder import build_report, missing_data
from claritycast.reports.figures import format_day
from claritycast.reports.summariser import Summariser
from claritycast.store.core import OPEN_STATES, Store
from claritycast.store.deliveries import new_delivery
from models import catalogue
from models.delivery import (
    Attempt,
    Connection,
    ConnectionStatus,
    Delivery,
    DeliveryState,
)
from models.records import ChartRendered, DeadLetter, DeliveryDue, DeliverySent
from models.report import Report

log = get_logger(__name__)

# A message sent down the chain is sent again if nothing moved it on in this time.
RECHECK = timedelta(minutes=10)
# While a delivery waits for its data, it is looked at again this often.
WAIT_RECHECK = timedelta(minutes=5)
# A worker that claimed a delivery and went silent this long is presumed dead.
SEND_LEASE = timedelta(minutes=15)
# Waits before retrying a transient failure; after the last, the delivery fails.
RETRY_BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)
MAX_ATTEMPTS = len(RETRY_BACKOFF) + 1
# The reason of a delivery that carries a notice (words, no chart) rather than a report.
NOTICE = "notice"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def delivery_key(connection: str, period: str) -> str:
    return f"{connection}/{period}"


def send_now_key(connection: str) -> str:
    return f"{connection}/now-{uuid.uuid4().hex[:12]}"


# The tick


async def due_deliveries(store: Store, now: datetime) -> list[DeliveryDue]:
    """Every delivery to send down the chain now: new ones, and open ones to look at again.

    Only connections whose next send has come are read (`claritycast.store.due`),
    and only open deliveries whose next check has come: a tick's cost follows
    what is due. A scheduled send that fell before the connection existed is
    not due; after downtime only the latest period of each connection is sent,
    never a backlog: an open scheduled delivery of an older period is skipped.
    """
    opening: list[tuple[Connection, str, str, datetime]] = []
    next_at: dict[str, datetime] = {}
    for connection in await store.connections_due(now):
        due = latest_due(connection.schedule, connection.timezone, now)
        if due is not None and due[1] >= connection.created_at:
            day, at = due
            key = delivery_key(connection.name, day.isoformat())
            opening.append((connection, key, day.isoformat(), at))
        next_at[connection.name] = next_due(connection.schedule, connection.timezone, now)[1]
    created = await store.open_deliveries([
        new_delivery(key, connection=connection.name, period=period, reason="schedule",
                     scheduled_at=at, now=now, next_check_at=now + RECHECK)
        for connection, key, period, at in opening
    ])  # fmt: skip
    messages = [
        _due(connection, key, period, "schedule", at, now)
        for connection, key, period, at in opening
        if key in created
    ]
    await store.set_next_dues(next_at)
    checks = await store.deliveries_to_check(now, [state.value for state in OPEN_STATES])
    connections = await store.connections_named({delivery.connection for delivery in checks})
    for delivery in checks:
        connection = connections.get(delivery.connection)
        stale = _why_stale(delivery, connection, now)
        if stale is not None:
            if await store.move_delivery(delivery.key, DeliveryState.SKIPPED):
                log.info("tick.skipped", delivery=delivery.key, why=stale)
            continue
        assert connection is not None
        if await store.recheck_delivery(delivery.key, now, now + RECHECK):
            messages.append(
                _due(connection, delivery.key, delivery.period, delivery.reason,
                     delivery.scheduled_at, now)
            )  # fmt: skip
    return messages


def _why_stale(delivery: Delivery, connection: Connection | None, now: datetime) -> str | None:
    """Why an open delivery must not be sent any more, if so."""
    if connection is None or connection.status is not ConnectionStatus.ACTIVE:
        return "connection paused or removed"
    if delivery.reason == "schedule":
        latest = latest_due(connection.schedule, connection.timezone, now)
        if latest is not None and latest[0].isoformat() != delivery.period:
            return f"superseded by the period {latest[0].isoformat()}"
    return None


async def open_send_now(store: Store, connection: Connection, now: datetime) -> DeliveryDue:
    """A delivery of today's report outside the schedule; it never waits for data."""
    key = send_now_key(connection.name)
    period = _local_today(connection, now)
    await _open(store, connection, key, period, "send-now", now, now)
    return _due(connection, key, period, "send-now", now, now)


async def open_notices(store: Store, project_id: str, now: datetime) -> list[DeliveryDue]:
    """Tell a project's owner, through each of its connections, that its token was refused.

    One delivery per connection under a key that names the moment, so the
    notice goes out once however often the message carrying it is redelivered.
    """
    notices = []
    for connection in await store.connections(ConnectionStatus.ACTIVE, project_id=project_id):
        key = f"{connection.name}/notice-{now:%Y%m%dT%H%M%S}"
        period = _local_today(connection, now)
        await _open(store, connection, key, period, NOTICE, now, now)
        notices.append(_due(connection, key, period, NOTICE, now, now))
    return notices


def _local_today(connection: Connection, now: datetime) -> str:
    return now.astimezone(ZoneInfo(connection.timezone)).date().isoformat()


async def _open(
    store: Store,
    connection: Connection,
    key: str,
    period: str,
    reason: str,
    at: datetime,
    now: datetime,
) -> bool:
    return await store.open_delivery(
        key, connection=connection.name, period=period, reason=reason, scheduled_at=at,
        now=now, next_check_at=now + RECHECK,
    )  # fmt: skip


def _due(
    connection: Connection, key: str, period: str, reason: str, at: datetime, now: datetime
) -> DeliveryDue:
    return DeliveryDue(
        delivery_key=key,
        connection=connection.name,
        project_id=connection.project_id,
        period=period,
        reason=reason,
        scheduled_at=at,
        requested_at=now,
    )


# The render stage


@dataclass(frozen=True)
class Renderer:
    """Draws a due delivery's report and stores it, or decides to wait for its data."""

    store: Store
    grace: timedelta
    summariser: Summariser | None = None

    async def render(self, due: DeliveryDue, now: datetime) -> ChartRendered | None:
        delivery = await self.store.get_delivery(due.delivery_key)
        if delivery is None or delivery.state.final:
            return None
        connection = await self.store.get_connection(due.connection)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            await self.store.move_delivery(delivery.key, DeliveryState.SKIPPED)
            log.info("render.skipped", delivery=delivery.key, why="connection paused or removed")
            return None
        if delivery.state in (DeliveryState.DUE, DeliveryState.WAITING):
            return await self._render(delivery, connection, now)
        # Rendered before: the "rendered" message may have been lost; send it again.
        chart = await self.store.get_chart(delivery.key)
        if chart is None:
            return await self._render(delivery, connection, now)
        return _rendered(delivery, connection, delivery.incomplete, delivery.summary_source, now)

    async def _render(
        self, delivery: Delivery, connection: Connection, now: datetime
    ) -> ChartRendered | None:
        missing: list[str] = []
        if delivery.reason == NOTICE:
            report, source = await _notice_report(self.store, connection, delivery), "plain"
        else:
            period = date.fromisoformat(delivery.period)
            metric = catalogue.get(connection.metric_id)
            missing = await missing_data(self.store, connection.project_id, metric, period)
            deadline = delivery.scheduled_at + self.grace
            if missing and delivery.reason == "schedule" and now < deadline:
                await self.store.move_delivery(
                    delivery.key,
                    DeliveryState.WAITING,
                    next_check_at=min(now + WAIT_RECHECK, deadline),
                    incomplete=missing,
                )
                log.info("render.waiting", delivery=delivery.key, missing=missing, until=deadline)
                return None
            report, source = await build_report(
                self.store, connection, period, missing=missing, summariser=self.summariser
            )
        await self.store.save_chart(delivery.key, report, now)
        await self.store.move_delivery(
            delivery.key,
            DeliveryState.RENDERED,
            incomplete=missing,
            summary_source=source,
            next_check_at=now + RECHECK,
        )
        log.info("render.done", delivery=delivery.key, incomplete=bool(missing), summary=source)
        return _rendered(delivery, connection, tuple(missing), source, now)


async def _notice_report(store: Store, connection: Connection, delivery: Delivery) -> Report:
    project = await store.get_project(connection.project_id)
    label = project.label if project else connection.project_id
    since = delivery.scheduled_at
    why = project.status_reason if project and project.status_reason else "token invalid"
    return Report(
        title=f"Clarity token refused · {label}",
        period_label=f"since {format_day(since)} {since.year} {since:%H:%M} UTC",
        summary=(
            f"Clarity refused the Data Export token of {label} ({why}). claritycast makes "
            "no more requests for this project, so its charts stop at the last day stored. "
            "To go on, generate a new token in Clarity (Settings → Data Export) and connect "
            f"the project again. You get this once, for the connection {connection.name}."
        ),
        alt_text="",
        png=b"",
        local_date=delivery.period,
    )


def _rendered(
    delivery: Delivery,
    connection: Connection,
    missing: tuple[str, ...] | list[str],
    source: str | None,
    now: datetime,
) -> ChartRendered:
    return ChartRendered(
        delivery_key=delivery.key,
        connection=connection.name,
        project_id=connection.project_id,
        period=delivery.period,
        incomplete=list(missing),
        summary_source=source or "plain",
        rendered_at=now,
    )


# The deliver stage


class Sender:
    """Sends a rendered report once, records the attempt, and pauses on a permanent refusal.

    What fails for good (a permanent refusal, or `MAX_ATTEMPTS` transient
    failures) becomes a dead letter, for ``claritycast replay``.
    """

    def __init__(self, store: Store, destinations: Destinations, worker: str | None = None) -> None:
        self.store = store
        self.destinations = destinations
        self.worker = worker or worker_name()

    async def send(
        self, rendered: ChartRendered, now: datetime
    ) -> DeliverySent | DeadLetter | None:
        connection = await self.store.get_connection(rendered.connection)
        if connection is None or connection.status is not ConnectionStatus.ACTIVE:
            await self.store.move_delivery(rendered.delivery_key, DeliveryState.SKIPPED)
            return None
        delivery = await self.store.claim_delivery(
            rendered.delivery_key, self.worker, now, SEND_LEASE
        )
        if delivery is None:
            log.info("deliver.already", delivery=rendered.delivery_key)
            return None
        report = await self.store.get_chart(delivery.key)
        if report is None:  # expired or never saved: render it again
            await self.store.move_delivery(delivery.key, DeliveryState.DUE, next_check_at=now)
            return None
        try:
            receipt = await self.destinations.send(connection, report, delivery.key)
        except DeliveryPermanent as exc:
            return await self._failed(rendered, delivery, connection, exc.reason, str(exc), now)
        except ConfigError as exc:
            return await self._failed(
                rendered, delivery, connection, "not_configured", str(exc), now
            )
        except DeliveryRetryable as exc:
            return await self._retry(rendered, delivery, exc.reason, str(exc), now)
        except ClarityCastError as exc:
            return await self._retry(rendered, delivery, type(exc).__name__, str(exc), now)
        await self.store.finish_attempt(
            delivery.key,
            Attempt(now, self.worker, "sent"),
            DeliveryState.SENT,
            receipt=receipt,
        )
        log.info("deliver.sent", delivery=delivery.key, to=connection.destination.describe())
        return DeliverySent(
            delivery_key=delivery.key,
            connection=connection.name,
            project_id=connection.project_id,
            metric_id=connection.metric_id,
            period=delivery.period,
            destination=connection.destination.kind.value,
            receipt=receipt,
            incomplete=bool(delivery.incomplete),
            sent_at=now,
        )

    async def _failed(
        self,
        rendered: ChartRendered,
        delivery: Delivery,
        connection: Connection,
        reason: str,
        detail: str,
        now: datetime,
    ) -> DeadLetter:
        await self.store.finish_attempt(
            delivery.key, Attempt(now, self.worker, reason, detail), DeliveryState.FAILED
        )
        await self.store.set_connection_status(
            connection.name, ConnectionStatus.PAUSED, f"{reason}: {detail}"
        )
        log.error("deliver.paused", connection=connection.name, reason=reason, detail=detail)
        return await self._dead(rendered, delivery, reason, detail, now)

    async def _retry(
        self, rendered: ChartRendered, delivery: Delivery, reason: str, detail: str, now: datetime
    ) -> DeadLetter | None:
        tried = len(delivery.attempts) + 1 - delivery.retry_from
        if tried >= MAX_ATTEMPTS:
            await self.store.finish_attempt(
                delivery.key, Attempt(now, self.worker, reason, detail), DeliveryState.FAILED
            )
            log.error("deliver.gave_up", delivery=delivery.key, attempts=tried, reason=reason)
            return await self._dead(rendered, delivery, reason, detail, now)
        next_at = now + RETRY_BACKOFF[tried - 1]
        await self.store.finish_attempt(
            delivery.key,
            Attempt(now, self.worker, reason, detail),
            DeliveryState.RETRYING,
            next_check_at=next_at,
        )
        log.warning("deliver.retrying", delivery=delivery.key, reason=reason, at=next_at)
        return None

    async def _dead(
        self, rendered: ChartRendered, delivery: Delivery, reason: str, detail: str, now: datetime
    ) -> DeadLetter:
        letter = DeadLetter(
            dead_letter_id=deliver_dead_letter_id(delivery.key),
            stage="deliver",
            key=rendered.connection,
            project_id=rendered.project_id,
            reason=reason,
            detail=detail,
            attempts=len(delivery.attempts) + 1,
            original_type=ChartRendered._options.namespace,
            original=json.loads(rendered.dumps(serializer="json")),
            failed_at=now,
        )
        await self.store.save_dead_letter(letter)
        return letter


def deliver_dead_letter_id(key: str) -> str:
    return f"deliver/{key}"
