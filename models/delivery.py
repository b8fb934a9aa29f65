"""Connections (what to send where, when) and the delivery log, as stored in MongoDB.

A connection joins one project's metric to one destination on a schedule. Each
scheduled send is a delivery whose key — connection and period — is the
document's ``_id``: the unique key that makes a redelivered message, a
restarted worker or a doubled tick send nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from enum import StrEnum
from typing import Any

from models.documents import as_utc

WINDOWS = (7, 30, 90)
LAST_DAY = -1  # ``Schedule.day`` for "the last day of the month"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class Schedule:
    """When a connection sends, in its local time.

    ``weekday`` (0 = Monday) is set for weekly schedules; ``day`` (1-28, or
    `LAST_DAY`) for monthly ones. Days 29-31 are refused: they do not exist in
    every month, and "the last day" says what people mean by them.
    """

    frequency: Frequency
    at: time = time(9, 0)
    weekday: int | None = None
    day: int | None = None

    def describe(self) -> str:
        at = self.at.strftime("%H:%M")
        if self.frequency is Frequency.WEEKLY and self.weekday is not None:
            return f"weekly on {WEEKDAYS[self.weekday].title()} at {at}"
        if self.frequency is Frequency.MONTHLY:
            which = "the last day" if self.day == LAST_DAY else f"day {self.day}"
            return f"monthly on {which} at {at}"
        return f"daily at {at}"

    @property
    def spec(self) -> str:
        """The schedule as `parse_schedule` reads it: ``weekly:monday``, ``monthly:last``."""
        if self.frequency is Frequency.WEEKLY and self.weekday is not None:
            return f"weekly:{WEEKDAYS[self.weekday]}"
        if self.frequency is Frequency.MONTHLY:
            return f"monthly:{'last' if self.day == LAST_DAY else self.day}"
        return "daily"

    @property
    def period_days(self) -> int:
        """How many days one period covers, for "change against the previous period"."""
        return {Frequency.DAILY: 1, Frequency.WEEKLY: 7, Frequency.MONTHLY: 30}[self.frequency]

    def to_document(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency.value,
            "at": self.at.strftime("%H:%M"),
            "weekday": self.weekday,
            "day": self.day,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Schedule:
        hour, minute = (int(part) for part in doc["at"].split(":"))
        return cls(
            Frequency(doc["frequency"]), time(hour, minute), doc.get("weekday"), doc.get("day")
        )


class DestinationKind(StrEnum):
    SLACK = "slack"
    EMAIL = "email"


@dataclass(frozen=True)
class Destination:
    """A Slack channel, or one or more email addresses."""

    kind: DestinationKind
    channel: str | None = None
    addresses: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is DestinationKind.SLACK:
            return f"slack {self.channel}"
        return "email " + ", ".join(self.addresses)

    def to_document(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "channel": self.channel, "addresses": list(self.addresses)}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Destination:
        return cls(
            DestinationKind(doc["kind"]), doc.get("channel"), tuple(doc.get("addresses", ()))
        )


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


@dataclass(frozen=True)
class Connection:
    """A metric source joined to a destination on a schedule.

    ``status_reason`` says why a connection is paused: by an operator, or by a
    destination that refused for good (``not_in_channel``, ``smtp_auth_failed``).
    """

    name: str
    project_id: str
    metric_id: str
    destination: Destination
    schedule: Schedule
    timezone: str
    window_days: int = 30
    ai_summary: bool = False
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    status_reason: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.name,
            "project_id": self.project_id,
            "metric_id": self.metric_id,
            "destination": self.destination.to_document(),
            "schedule": self.schedule.to_document(),
            "timezone": self.timezone,
            "window_days": self.window_days,
            "ai_summary": self.ai_summary,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "created_at": self.created_at,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Connection:
        return cls(
            name=doc["_id"],
            project_id=doc["project_id"],
            metric_id=doc["metric_id"],
            destination=Destination.from_document(doc["destination"]),
            schedule=Schedule.from_document(doc["schedule"]),
            timezone=doc["timezone"],
            window_days=doc["window_days"],
            ai_summary=doc["ai_summary"],
            status=ConnectionStatus(doc["status"]),
            status_reason=doc.get("status_reason"),
            created_at=as_utc(doc["created_at"]),
        )


class DeliveryState(StrEnum):
    """Where a delivery is. Only `SENT`, `FAILED` and `SKIPPED` are final.

    due → (waiting →) rendered → sending → sent; a transient failure goes to
    retrying (and back to sending); a permanent one to failed.
    """

    DUE = "due"
    WAITING = "waiting"  # its data is not all stored yet; inside the grace period
    RENDERED = "rendered"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # the connection was paused or removed before it went out

    @property
    def final(self) -> bool:
        return self in (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED)


@dataclass(frozen=True)
class Attempt:
    """One try at sending, kept in the delivery log."""

    at: datetime
    worker: str
    outcome: str  # "sent", or the destination's reason ("ratelimited", "not_in_channel")
    detail: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "worker": self.worker,
            "outcome": self.outcome,
            "detail": self.detail,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Attempt:
        return cls(as_utc(doc["at"]), doc["worker"], doc["outcome"], doc.get("detail"))


@dataclass(frozen=True)
class Delivery:
    """One (connection, period): its state, every attempt and the receipt.

    ``key`` is ``<connection>/<period>`` for scheduled sends and
    ``<connection>/now-<id>`` for ``send-now``. ``receipt`` holds what the
    destination answered: Slack's channel, message ``ts`` and file id, or
    the SMTP Message-ID and server reply.
    """

    key: str
    connection: str
    period: str
    reason: str  # "schedule" or "send-now"
    scheduled_at: datetime
    state: DeliveryState
    created_at: datetime
    next_check_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    receipt: dict[str, Any] | None = None
    incomplete: tuple[str, ...] = ()  # days/groups missing when it was rendered
    summary_source: str | None = None  # "ai" or "plain"
    sent_at: datetime | None = None
    claimed_at: datetime | None = None
    retry_from: int = 0  # attempts before the last replay do not count towards the limit

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Delivery:
        def moment(name: str) -> datetime | None:
            value = doc.get(name)
            return as_utc(value) if value else None

        return cls(
            key=doc["_id"],
            connection=doc["connection"],
            period=doc["period"],
            reason=doc["reason"],
            scheduled_at=as_utc(doc["scheduled_at"]),
            state=DeliveryState(doc["state"]),
            created_at=as_utc(doc["created_at"]),
            next_check_at=moment("next_check_at"),
            attempts=tuple(Attempt.from_document(a) for a in doc.get("attempts", ())),
            receipt=doc.get("receipt"),
            incomplete=tuple(doc.get("incomplete", ())),
            summary_source=doc.get("summary_source"),
            sent_at=moment("sent_at"),
            claimed_at=moment("claimed_at"),
            retry_from=doc.get("retry_from", 0),
        )
