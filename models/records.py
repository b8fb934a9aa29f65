"""Faust records: the values of every topic, and so a public contract.

Other services consume these topics. Each record carries ``schema_version``;
changing a field means bumping it. Each record has an explicit, stable
``namespace`` because Faust indexes record classes by that name: never rename
one without a compatibility plan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import faust


class SnapshotFetched(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.SnapshotFetched",
):
    """One Clarity response for one project, local date and fetch group, parsed and stored aside.

    The blocks themselves are not in the record (a large answer is tens of
    megabytes): they are in MongoDB under ``blocks_ref`` (a claim check, see
    docs/events.md), compressed, with ``blocks_sha256`` the SHA-256 of their
    canonical JSON (``blocks_bytes`` long) and ``rows`` the row count of each
    block. ``window_start``/``window_end`` are the real 24 hours the call
    covered (Clarity's window is rolling, relative to the call); ``late`` says
    the call drifted from the organisation's local midnight.
    """

    project_id: str
    local_date: str
    group: str
    window_start: datetime
    window_end: datetime
    fetched_at: datetime
    blocks_ref: str
    blocks_sha256: str
    blocks_bytes: int
    rows: dict[str, int]
    late: bool = False
    schema_version: int = 2


class SnapshotStored(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.SnapshotStored",
):
    """A snapshot is durably in MongoDB; ``created`` is False for a redelivery."""

    project_id: str
    local_date: str
    group: str
    snapshot_id: str
    stored_at: datetime
    created: bool
    schema_version: int = 1


class FetchRequested(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.FetchRequested",
):
    """A wish to fetch one group of one project for one local date; not yet allowed.

    ``reason`` is ``daily`` (the nightly pull), ``connect`` (a new project's
    first pull) or ``refresh`` (an operator's extra request, only from the
    headroom). ``timezone`` is the organisation's, so the quota check knows
    the project's next local midnight. Never carries the token.
    """

    request_id: str
    project_id: str
    local_date: str
    group: str
    reason: str
    timezone: str
    requested_at: datetime
    schema_version: int = 1


class FetchGranted(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.FetchGranted",
):
    """The quota check allowed this request and logged it; the fetch stage makes it."""

    request_id: str
    project_id: str
    local_date: str
    group: str
    reason: str
    timezone: str
    granted_at: datetime
    schema_version: int = 1


class DeliveryDue(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.DeliveryDue",
):
    """A connection's report for one period should be rendered and sent.

    ``delivery_key`` is ``<connection>/<period>`` (``<connection>/now-<id>`` for
    send-now) and is unique in the delivery log, so this message may arrive
    any number of times and the report still goes out once.
    """

    delivery_key: str
    connection: str
    project_id: str
    period: str
    reason: str
    scheduled_at: datetime
    requested_at: datetime
    schema_version: int = 1


class ChartRendered(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.ChartRendered",
):
    """A report's chart and summary are stored under ``delivery_key``; send it.

    The PNG stays in MongoDB: topics carry references, not images.
    ``incomplete`` lists what was missing when it was drawn.
    """

    delivery_key: str
    connection: str
    project_id: str
    period: str
    incomplete: list[str]
    summary_source: str
    rendered_at: datetime
    schema_version: int = 1


class DeliverySent(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.DeliverySent",
):
    """A report reached its destination; ``receipt`` is what the destination answered.

    For Slack: ``channel``, ``ts`` and ``file_id``. For email: ``message_id``,
    ``recipients`` and the server's ``response``.
    """

    delivery_key: str
    connection: str
    project_id: str
    metric_id: str
    period: str
    destination: str
    receipt: dict[str, Any]
    incomplete: bool
    sent_at: datetime
    schema_version: int = 1


class DeadLetter(
    faust.Record,
    serializer="json",
    validation=True,
    isodates=True,
    namespace="claritycast.DeadLetter",
):
    """Work that failed for good: what, why, after how many tries, and the original message.

    ``stage`` is ``fetch`` or ``deliver``; ``reason`` is machine-readable (the
    call log's outcome, such as ``server error`` or ``malformed response``, or
    the destination's, such as ``not_in_channel``). ``original`` is the
    message that failed, as its topic carried it (``original_type`` names its
    record). ``body`` keeps the start of what Clarity answered when it was
    malformed. ``claritycast replay`` sends it back through the chain.
    """

    dead_letter_id: str
    stage: str
    key: str
    project_id: str
    reason: str
    detail: str
    attempts: int
    original_type: str
    original: dict[str, Any]
    failed_at: datetime
    body: str | None = None
    schema_version: int = 1
