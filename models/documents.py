"""Documents as stored in MongoDB, with the conversions both ways.

Agents and the CLI never see raw BSON: the store hands out these dataclasses.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bson import Binary


def as_utc(moment: datetime) -> datetime:
    """MongoDB returns naive UTC datetimes; make them aware again."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def pack_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks as a snapshot document keeps them: each block's rows as compressed JSON.

    A reader decodes only the blocks it needs (a chart of top pages reads one
    of nine), and the database stores and sends a tenth of the bytes: reading
    90 days of a big site's URL answers is fast on any MongoDB.
    """
    return [
        {
            "metric": block["metric"],
            "count": len(block["rows"]),
            "rows_z": Binary(zlib.compress(json.dumps(block["rows"]).encode(), 1)),
        }
        for block in blocks
    ]


def unpack_blocks(
    stored: list[dict[str, Any]], metrics: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """The blocks of a snapshot document (all, or only ``metrics``), packed or not."""
    blocks = []
    for block in stored:
        if metrics is not None and block["metric"] not in metrics:
            continue
        if "rows_z" in block:
            rows = json.loads(zlib.decompress(bytes(block["rows_z"])))
            blocks.append({"metric": block["metric"], "rows": rows})
        else:  # stored before blocks were packed
            blocks.append(block)
    return blocks


def snapshot_id(project_id: str, local_date: str, group: str) -> str:
    """A snapshot's ``_id``: one per project, day and group, so a read by id needs no index."""
    return f"{project_id}/{local_date}/{group}"


@dataclass(frozen=True)
class Snapshot:
    """One fetch group's response for one project and local date.

    Unique on (project_id, local_date, group): the first stored copy wins, so a
    redelivered or replayed message never changes or duplicates it.

    ``blocks`` are what charts and series read: the whole answer, or for a
    very large one its top rows (``cut_down``; see `claritycast.clarity.big_answers`).
    ``blocks_ref`` names the complete answer in the claim check, and
    ``rows_total`` says how many rows each block had in it.
    """

    project_id: str
    local_date: str
    group: str
    window_start: datetime
    window_end: datetime
    fetched_at: datetime
    blocks: list[dict[str, Any]]
    late: bool = False
    stored_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    blocks_ref: str | None = None
    rows_total: dict[str, int] | None = None
    cut_down: bool = False

    @property
    def id(self) -> str:
        return snapshot_id(self.project_id, self.local_date, self.group)

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "project_id": self.project_id,
            "local_date": self.local_date,
            "group": self.group,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "fetched_at": self.fetched_at,
            "blocks": pack_blocks(self.blocks),
            "late": self.late,
            "stored_at": self.stored_at,
            "blocks_ref": self.blocks_ref,
            "rows_total": self.rows_total,
            "cut_down": self.cut_down,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], metrics: Collection[str] | None = None) -> Snapshot:
        """The snapshot of a document; with ``metrics``, only those blocks are decoded."""
        return cls(
            project_id=doc["project_id"],
            local_date=doc["local_date"],
            group=doc["group"],
            window_start=as_utc(doc["window_start"]),
            window_end=as_utc(doc["window_end"]),
            fetched_at=as_utc(doc["fetched_at"]),
            blocks=unpack_blocks(doc["blocks"], metrics),
            late=doc["late"],
            stored_at=as_utc(doc["stored_at"]),
            blocks_ref=doc.get("blocks_ref"),
            rows_total=doc.get("rows_total"),
            cut_down=doc.get("cut_down", False),
        )


@dataclass(frozen=True)
class PullProgress:
    """One project's pull of one local date: groups stored, and groups held back.

    A group is held while it waits for a retry (``retry_at``) or for good,
    once dead-lettered, until a replay (``dead``).
    """

    stored: frozenset[str] = frozenset()
    retry_at: dict[str, datetime] = field(default_factory=dict)
    dead: frozenset[str] = frozenset()

    @classmethod
    def from_document(cls, doc: dict[str, Any] | None) -> PullProgress:
        if doc is None:
            return cls()
        return cls(
            stored=frozenset(doc.get("groups") or ()),
            retry_at={g: as_utc(at) for g, at in (doc.get("retry_at") or {}).items()},
            dead=frozenset(doc.get("dead") or {}),
        )

    def held(self, group: str, now: datetime) -> str | None:
        """Why the tick must not ask for ``group`` now, if it is held."""
        if group in self.dead:
            return "dead-lettered: replay it"
        at = self.retry_at.get(group)
        if at is not None and at > now:
            return f"waiting to retry at {at:%H:%M:%S}Z"
        return None


@dataclass(frozen=True)
class WorkerBeat:
    """A running worker, as it last reported itself."""

    worker_id: str
    app_id: str
    stages: tuple[str, ...]
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    metrics_url: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.worker_id,
            "metrics_url": self.metrics_url,
            "app_id": self.app_id,
            "stages": list(self.stages),
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "seen_at": self.seen_at,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> WorkerBeat:
        return cls(
            worker_id=doc["_id"],
            app_id=doc["app_id"],
            stages=tuple(doc["stages"]),
            host=doc["host"],
            pid=doc["pid"],
            started_at=as_utc(doc["started_at"]),
            seen_at=as_utc(doc["seen_at"]),
            metrics_url=doc.get("metrics_url"),
        )


@dataclass(frozen=True)
class Organisation:
    """Who owns projects; its IANA timezone defines 'yesterday' and 'midnight'."""

    org_id: str
    name: str
    timezone: str = "UTC"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.org_id,
            "name": self.name,
            "timezone": self.timezone,
            "created_at": self.created_at,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Organisation:
        return cls(doc["_id"], doc["name"], doc["timezone"], as_utc(doc["created_at"]))


class ProjectStatus:
    ACTIVE = "active"
    TOKEN_INVALID = "token invalid"  # noqa: S105 - a status, not a secret
    # The stored token cannot be decrypted (its key is gone, or it was changed or moved).
    TOKEN_UNREADABLE = "token unreadable"  # noqa: S105 - a status, not a secret
    PAUSED = "paused"


@dataclass(frozen=True)
class Project:
    """A connected Clarity project.

    Its token is only ever here sealed (``sealed_token``, see
    `claritycast.keyring`): encrypted, bound to this project, naming its key.
    ``token_expires_at`` is the token's own ``exp`` claim, kept beside it so
    that reports can warn of an expiry without decrypting anything, and
    ``token_fingerprint`` its short mark (`claritycast.clarity.token.fingerprint`),
    so a person can tell which token is in use without it being opened.
    """

    project_id: str
    label: str
    org_id: str
    sealed_token: str | None = field(default=None, repr=False)
    status: str = ProjectStatus.ACTIVE
    status_reason: str | None = None
    connected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    exhausted_until: datetime | None = None
    deferred_until: datetime | None = None
    token_expires_at: datetime | None = None
    token_fingerprint: str | None = None

    def waiting_until(self) -> datetime | None:
        """When the quota lets this project's pull go on (429 or a full 24 h)."""
        moments = [m for m in (self.exhausted_until, self.deferred_until) if m is not None]
        return max(moments) if moments else None

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.project_id,
            "label": self.label,
            "org_id": self.org_id,
            "sealed_token": self.sealed_token,
            "token_expires_at": self.token_expires_at,
            "token_fingerprint": self.token_fingerprint,
            "status": self.status,
            "status_reason": self.status_reason,
            "connected_at": self.connected_at,
            "exhausted_until": self.exhausted_until,
            "deferred_until": self.deferred_until,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Project:
        """A project as stored; a plain ``token`` of an older version is never read here."""
        exhausted = doc.get("exhausted_until")
        deferred = doc.get("deferred_until")
        expires = doc.get("token_expires_at")
        return cls(
            project_id=doc["_id"],
            label=doc["label"],
            org_id=doc["org_id"],
            sealed_token=doc.get("sealed_token"),
            status=doc["status"],
            status_reason=doc.get("status_reason"),
            connected_at=as_utc(doc["connected_at"]),
            exhausted_until=as_utc(exhausted) if exhausted else None,
            deferred_until=as_utc(deferred) if deferred else None,
            token_expires_at=as_utc(expires) if expires else None,
            token_fingerprint=doc.get("token_fingerprint"),
        )


@dataclass(frozen=True)
class Call:
    """One Clarity request in the durable call log, written before it is made.

    ``outcome`` is ``granted`` until the fetch stage records what happened:
    ``ok`` or the error kind (``server error``, ``token invalid``, …).
    """

    request_id: str
    project_id: str
    local_date: str
    group: str
    reason: str
    at: datetime
    outcome: str = "granted"
    status: int | None = None
    detail: str | None = None
    settled: bool = False  # a call never made that the quota has stopped counting

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.request_id,
            "project_id": self.project_id,
            "local_date": self.local_date,
            "group": self.group,
            "reason": self.reason,
            "at": self.at,
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Call:
        return cls(
            request_id=doc["_id"],
            project_id=doc["project_id"],
            local_date=doc["local_date"],
            group=doc["group"],
            reason=doc["reason"],
            at=as_utc(doc["at"]),
            outcome=doc["outcome"],
            status=doc.get("status"),
            detail=doc.get("detail"),
            settled=bool(doc.get("settled")),
        )
