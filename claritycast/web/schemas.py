"""What the HTTP API reads and answers, as pydantic models: its OpenAPI description.

The same models serve the CLI's ``--json``, so a script gets the same JSON
from a listing command as from the API. Tokens are write-only: a source shows
its token's fingerprint (a prefix of the token's SHA-256, kept beside the
encrypted token when it is given), never the token.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
Role = Literal["admin", "viewer"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Model):
    code: str = Field(description="Stable, for programs: not_found, invalid, quota_refused, …")
    message: str = Field(description="For people: the same line the CLI prints")
    field: str | None = Field(default=None, description="The input at fault, if one is")
    next_possible_at: datetime | None = None
    refreshes_left: int | None = None


class ErrorBody(Model):
    error: ErrorDetail


class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last")


# Sessions


class SignIn(Model):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class SessionView(Model):
    email: str
    role: Role
    csrf_token: str = Field(description="Send as X-CSRF-Token with every change")


class WhoAmI(Model):
    kind: Literal["user", "api-key"]
    name: str
    role: Role


# Organisations


class Organisation(Model):
    id: str
    name: str
    timezone: str
    created_at: datetime


class OrganisationCreate(Model):
    name: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", max_length=64, description="IANA, e.g. Europe/Paris")


class OrganisationChange(Model):
    timezone: str = Field(max_length=64, description="IANA, e.g. Europe/Paris")


# Sources (connected Clarity projects)


class Quota(Model):
    used: int = Field(description="Clarity requests in the last 24 h")
    reserved: int = Field(description="Kept for tonight's pull")
    left: int
    refreshes_left: int
    next_reset_at: datetime | None
    exhausted_until: datetime | None = Field(description="Clarity said 429: nothing until then")
    deferred_until: datetime | None


class Source(Model):
    id: str
    label: str
    organisation: str
    timezone: str
    status: str = Field(description="active, paused, token invalid, …")
    status_reason: str | None
    token: str = Field(description="What the token is worth: valid until …, invalid, …")
    token_fingerprint: str | None = Field(
        description="Identifies the token (sha256:…); never the token. None for a token "
        "stored by a version that did not keep it"
    )
    connected_at: datetime
    last_day_stored: date | None
    days_collected: int = Field(description="Days with data stored among the last 30")
    local_date: date = Field(description="Tonight's pull's day: yesterday, local")
    quota: Quota


class SourceCreate(Model):
    token: str = Field(min_length=1, max_length=8192, description="Write-only")
    label: str = Field(min_length=1, max_length=200)
    organisation: str | None = Field(default=None, max_length=200)


class TokenReplace(Model):
    token: str = Field(min_length=1, max_length=8192, description="Write-only")


class GroupProgress(Model):
    group: str
    outcome: str = Field(description="stored, pending, refused, not due, a failure kind")
    detail: str | None


class Pull(Model):
    id: str
    kind: Literal["connect", "refresh"]
    source: str
    local_date: date
    created_at: datetime
    done: bool
    groups: list[GroupProgress]


class SourceCreated(Model):
    source: Source
    pull: Pull


class RefreshRequest(Model):
    groups: list[str] = Field(default_factory=list, max_length=7, description="[]: all missing")
    wait_s: float = Field(
        default=30.0, ge=0, le=120, strict=True, description="How long to wait for ends"
    )


class Removed(Model):
    source: str
    connections_removed: list[str]
    snapshots_removed: int


# Metrics


class Metric(Model):
    id: str
    title: str
    category: str
    unit: str
    group: str
    breakdown: bool


class Point(Model):
    day: date
    value: float | None = Field(description="null: not collected (a gap, never zero)")


class Ranked(Model):
    label: str
    value: float


class MetricData(Model):
    metric: Metric
    source: str
    first: date
    last: date
    days_collected: int
    points: list[Point] | None = Field(description="A daily metric's series")
    top: list[Ranked] | None = Field(description="A breakdown's top values over the range")
    values_total: int | None = Field(description="How many values the breakdown has in all")


# Connections


class Destination(Model):
    kind: Literal["slack", "email"]
    channel: str | None
    addresses: list[str]


class Schedule(Model):
    spec: str = Field(description="daily, weekly:<weekday>, monthly:<1-28>, monthly:last")
    at: str = Field(description="Local time, HH:MM")
    description: str


class Connection(Model):
    name: str
    source: str
    metric: str
    destination: Destination
    schedule: Schedule
    timezone: str
    window_days: int
    ai_summary: bool
    status: str
    status_reason: str | None
    created_at: datetime
    next_due_at: datetime | None


class ConnectionCreate(Model):
    source: str = Field(max_length=200)
    metric: str = Field(max_length=100)
    slack_channel: str | None = Field(default=None, max_length=100)
    emails: str | None = Field(default=None, max_length=2000, description="Comma-separated")
    schedule: str = Field(default="daily", max_length=40)
    at: str = Field(default="09:00", max_length=5)
    timezone: str | None = Field(default=None, max_length=64)
    window_days: int = Field(default=30, strict=True)
    ai_summary: bool = Field(default=False, strict=True)
    name: str | None = Field(default=None, max_length=80)


class ConnectionChange(Model):
    metric: str | None = Field(default=None, max_length=100)
    slack_channel: str | None = Field(default=None, max_length=100)
    emails: str | None = Field(default=None, max_length=2000)
    schedule: str | None = Field(default=None, max_length=40)
    at: str | None = Field(default=None, max_length=5)
    timezone: str | None = Field(default=None, max_length=64)
    window_days: int | None = Field(default=None, strict=True)
    ai_summary: bool | None = Field(default=None, strict=True)


# Deliveries


class AttemptView(Model):
    at: datetime
    outcome: str
    detail: str | None
    worker: str


class Delivery(Model):
    key: str
    connection: str
    period: str
    reason: str
    state: str
    scheduled_at: datetime
    created_at: datetime
    sent_at: datetime | None
    incomplete: list[str]
    summary_source: str | None
    attempts: list[AttemptView]
    receipt: dict[str, Any] | None


class SendNow(Model):
    wait_s: float = Field(
        default=0.0, ge=0, le=120, strict=True, description="How long to wait for the end"
    )


# Operations


class DeadLetter(Model):
    id: str
    stage: str
    key: str
    source: str
    reason: str
    detail: str
    attempts: int
    failed_at: datetime
    state: str
    body: str | None


class ReplayRequest(Model):
    stage: Literal["quota", "fetch", "store", "render", "deliver"] | None = None
    source: str | None = Field(default=None, max_length=200)
    since: datetime | None = None
    wait_s: float = Field(default=30.0, ge=0, le=120, strict=True)


class Replayed(Model):
    id: str
    outcome: str
    detail: str
    end: str | None
    end_detail: str | None


class SourceQuota(Model):
    source: str
    label: str
    timezone: str
    local_date: date
    token: str
    quota: Quota


class Worker(Model):
    id: str
    app_id: str
    stages: list[str]
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    metrics_url: str | None


class Readiness(Model):
    ready: bool
    reasons: list[str] = Field(description="Why not ready; empty when ready")
    mongodb: bool
    kafka: bool
    workers: list[Worker]


class Status(Model):
    kafka_url: str
    mongodb_url: str
    database: str
    readiness: Readiness


class ApiKeyView(Model):
    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreate(Model):
    name: str = Field(min_length=1, max_length=100)
    role: Role = "viewer"


class ApiKeyCreated(Model):
    key: str = Field(description="Shown once: keep it; only its hash is stored")
    api_key: ApiKeyView


class User(Model):
    email: str
    role: Role
    created_at: datetime


class ReportPreview(Model):
    title: str
    period_label: str
    period: date
    summary: str
    summary_source: Literal["ai", "plain"]
    note: str | None
    alt_text: str
    png_base64: str = Field(description="The chart, exactly as it would be sent")


class Sent(Model):
    delivery: Delivery | None
    delivery_key: str
