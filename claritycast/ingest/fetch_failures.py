"""What a failed Clarity request leads to, by the API's error table (shared/clarity-api.md).

- 401/403: the token is invalid; the project makes no further requests, and its
  owner is told once, through each of the project's connections.
- 429: the project is exhausted until its next local midnight (another tool may
  share the quota); the tick asks again then.
- 5xx, timeouts and garbled 200s (empty, an HTML page, cut short): retried by
  the tick after a backoff, each retry a normal request inside the quota,
  `MAX_FETCH_ATTEMPTS` in all; then a dead letter holding the start of the body.
- 400 and malformed answers (complete JSON of the wrong shape, or not JSON at
  all): retrying the same request cannot help, so a dead letter at once,
  holding the start of the raw body.

A dead-lettered group is held: the tick stops asking for it until an operator
replays it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from claritycast.delivery.log import open_notices
from claritycast.errors import (
    ClarityBodyError,
    ClarityError,
    ClarityForbidden,
    ClarityPermanent,
    ClarityQuotaExhausted,
    ClarityRetryable,
    ClarityTokenInvalid,
)
from claritycast.ingest.quota import COUNTED_FOR
from claritycast.localtime import next_local_midnight
from claritycast.store.core import Store
from models.documents import ProjectStatus
from models.records import DeadLetter, DeliveryDue, FetchGranted

MAX_FETCH_ATTEMPTS = 3
# Waits before the tick asks again after the first and the second failure.
RETRY_BACKOFF = (timedelta(minutes=10), timedelta(minutes=30))
RETRYABLE_OUTCOMES = frozenset({"server error", "unreachable", "garbled response"})
# The most of a malformed body a dead letter keeps.
BODY_KEPT_CHARS = 4096


@dataclass
class FailureOutcome:
    """What the fetch stage must send on: a dead letter, and notices to the owner."""

    dead_letter: DeadLetter | None = None
    notices: list[DeliveryDue] = field(default_factory=list)


def fetch_dead_letter_id(project_id: str, local_date: str, group: str) -> str:
    return f"fetch/{project_id}/{local_date}/{group}"


async def after_failure(
    exc: ClarityError, granted: FetchGranted, store: Store, now: datetime
) -> FailureOutcome:
    """Record what a failure means; the call itself is still open (``calling``) in the log."""
    project_id, local_date, group = granted.project_id, granted.local_date, granted.group
    if isinstance(exc, ClarityTokenInvalid | ClarityForbidden):
        reason = f"{exc.outcome} ({exc.status or 'refused locally'})"
        changed = await store.change_project_status(
            project_id, ProjectStatus.ACTIVE, ProjectStatus.TOKEN_INVALID, reason
        )
        if not changed:  # another group's failure told the owner already
            return FailureOutcome()
        return FailureOutcome(notices=await open_notices(store, project_id, now))
    if isinstance(exc, ClarityQuotaExhausted):
        await store.set_exhausted_until(project_id, next_local_midnight(now, granted.timezone))
        return FailureOutcome()
    calls = await store.calls_for(project_id, local_date, group, now - COUNTED_FOR)
    earlier = [call for call in calls if call.request_id != granted.request_id]
    in_flight_or_fine = ("granted", "calling", "ok", "expired", "interrupted", "skipped")
    failures = 1 + sum(1 for call in earlier if call.outcome not in in_flight_or_fine)
    if isinstance(exc, ClarityRetryable):
        retryable = 1 + sum(1 for call in earlier if call.outcome in RETRYABLE_OUTCOMES)
        if retryable < MAX_FETCH_ATTEMPTS:
            await store.hold_group(
                project_id, local_date, group, now + RETRY_BACKOFF[retryable - 1]
            )
            return FailureOutcome()
    elif not isinstance(exc, ClarityPermanent):
        return FailureOutcome()
    body = None
    if isinstance(exc, ClarityBodyError):
        body = exc.body.decode("utf-8", errors="replace")[:BODY_KEPT_CHARS]
    letter = DeadLetter(
        dead_letter_id=fetch_dead_letter_id(project_id, local_date, group),
        stage="fetch",
        key=project_id,
        project_id=project_id,
        reason=exc.outcome,
        detail=str(exc),
        attempts=failures,
        original_type=FetchGranted._options.namespace,
        original=json.loads(granted.dumps(serializer="json")),
        failed_at=now,
        body=body,
    )
    await store.hold_group(project_id, local_date, group, None)
    await store.save_dead_letter(letter)
    return FailureOutcome(dead_letter=letter)
