"""The API's answers, built from the wings: one place, for the routes and the CLI's ``--json``.

Lists are read a page at a time, in a few batched queries, whatever the
number of projects: a page of sources is four reads (projects, their calls of
the last 24 h, their pulls of the last 30 days, the organisations).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from claritycast.clarity.big_answers import values_total
from claritycast.delivery.schedule import next_due
from claritycast.ingest.connect import Pull as PullRecord
from claritycast.ingest.connect import pull_reports
from claritycast.ingest.quota import COUNTED_FOR
from claritycast.ingest.quota_report import ProjectQuota, quota_of
from claritycast.localtime import local_yesterday
from claritycast.redact import redact
from claritycast.reports import series
from claritycast.runtime.readiness import Readiness
from claritycast.runtime.readiness import readiness as check_readiness
from claritycast.store.core import Store
from claritycast.web import schemas
from models import catalogue
from models.catalogue import Metric
from models.clarity import ClarityResponse
from models.delivery import Connection, Delivery
from models.documents import Organisation, Project, WorkerBeat
from models.records import DeadLetter

COLLECTION_DAYS = 30


def organisation(org: Organisation) -> schemas.Organisation:
    return schemas.Organisation(
        id=org.org_id, name=org.name, timezone=org.timezone, created_at=org.created_at
    )


def quota(row: ProjectQuota) -> schemas.Quota:
    return schemas.Quota(
        used=row.used,
        reserved=row.reserved,
        left=row.left,
        refreshes_left=row.refreshes_left,
        next_reset_at=row.next_reset_at,
        exhausted_until=row.exhausted_until,
        deferred_until=row.deferred_until,
    )


async def sources(
    store: Store, projects: list[Project], now: datetime, default_timezone: str, lease: timedelta
) -> list[schemas.Source]:
    """Views of some projects, from four reads whatever their number."""
    if not projects:
        return []
    ids = [p.project_id for p in projects]
    timezones = {org.org_id: org.timezone for org in await store.organisations()}
    calls = await store.calls_since_many(ids, now - COUNTED_FOR)
    first = (now.date() - timedelta(days=COLLECTION_DAYS + 1)).isoformat()
    pulls = await store.pulls_since_many(ids, first)
    views = []
    for project in projects:
        timezone = timezones.get(project.org_id, default_timezone)
        yesterday = local_yesterday(timezone, now)
        stored = pulls[project.project_id]
        window = {(yesterday - timedelta(days=back)).isoformat() for back in range(COLLECTION_DAYS)}
        row = quota_of(
            project,
            timezone,
            calls[project.project_id],
            stored.get(yesterday.isoformat(), set()),
            now,
            lease,
        )
        views.append(
            schemas.Source(
                id=project.project_id,
                label=project.label,
                organisation=project.org_id,
                timezone=timezone,
                status=project.status,
                status_reason=project.status_reason,
                token=row.token,
                token_fingerprint=project.token_fingerprint,
                connected_at=project.connected_at,
                last_day_stored=date.fromisoformat(max(stored)) if stored else None,
                days_collected=len(window & set(stored)),
                local_date=yesterday,
                quota=quota(row),
            )
        )
    return views


def source_quota(row: ProjectQuota) -> schemas.SourceQuota:
    return schemas.SourceQuota(
        source=row.project_id,
        label=row.label,
        timezone=row.timezone,
        local_date=date.fromisoformat(row.local_date),
        token=row.token,
        quota=quota(row),
    )


async def pull(store: Store, record: PullRecord) -> schemas.Pull:
    reports = await pull_reports(store, record)
    return schemas.Pull(
        id=record.pull_id,
        kind=record.kind,  # type: ignore[arg-type]
        source=record.project_id,
        local_date=date.fromisoformat(record.local_date),
        created_at=record.created_at,
        done=all(r.outcome != "pending" for r in reports),
        groups=[
            schemas.GroupProgress(group=r.group, outcome=r.outcome, detail=r.detail)
            for r in reports
        ],
    )


def metric(item: Metric) -> schemas.Metric:
    return schemas.Metric(
        id=item.id,
        title=item.title,
        category=item.category.value,
        unit=item.unit.value,
        group=item.group,
        breakdown=item.is_breakdown,
    )


def catalogue_view() -> list[schemas.Metric]:
    return [metric(item) for item in catalogue.METRICS]


async def metric_data(
    store: Store, project: Project, item: Metric, first: date, last: date
) -> schemas.MetricData:
    """A metric's stored daily series, or a breakdown's top values, over [first, last]."""
    snapshots = await store.snapshots_for(
        project.project_id,
        first.isoformat(),
        last.isoformat(),
        group=item.group,
        metrics=series.blocks_needed(item),
    )
    by_day = {
        date.fromisoformat(s.local_date): ClarityResponse.from_json(s.blocks) for s in snapshots
    }
    points = top = total = None
    if item.is_breakdown:
        everything = series.breakdown(item, by_day.values(), top_n=None)
        top = [
            schemas.Ranked(label=label, value=value) for label, value in everything[: series.TOP_N]
        ]
        total = max(len(everything), values_total(item.block, snapshots))
    else:
        points = [
            schemas.Point(day=p.day, value=p.value)
            for p in series.daily_series(item, by_day, first, last)
        ]
    return schemas.MetricData(
        metric=metric(item),
        source=project.project_id,
        first=first,
        last=last,
        days_collected=len(by_day),
        points=points,
        top=top,
        values_total=total,
    )


def connection(item: Connection, now: datetime) -> schemas.Connection:
    destination = item.destination
    due_at = (
        next_due(item.schedule, item.timezone, now)[1] if item.status.value == "active" else None
    )
    return schemas.Connection(
        name=item.name,
        source=item.project_id,
        metric=item.metric_id,
        destination=schemas.Destination(
            kind=destination.kind.value,  # type: ignore[arg-type]
            channel=destination.channel,
            addresses=list(destination.addresses),
        ),
        schedule=schemas.Schedule(
            spec=item.schedule.spec,
            at=f"{item.schedule.at:%H:%M}",
            description=item.schedule.describe(),
        ),
        timezone=item.timezone,
        window_days=item.window_days,
        ai_summary=item.ai_summary,
        status=item.status.value,
        status_reason=item.status_reason,
        created_at=item.created_at,
        next_due_at=due_at,
    )


def delivery(item: Delivery) -> schemas.Delivery:
    return schemas.Delivery(
        key=item.key,
        connection=item.connection,
        period=item.period,
        reason=item.reason,
        state=item.state.value,
        scheduled_at=item.scheduled_at,
        created_at=item.created_at,
        sent_at=item.sent_at,
        incomplete=list(item.incomplete),
        summary_source=item.summary_source,
        attempts=[
            schemas.AttemptView(at=a.at, outcome=a.outcome, detail=a.detail, worker=a.worker)
            for a in item.attempts
        ],
        receipt=item.receipt,
    )


def dead_letter(letter: DeadLetter, state: str) -> schemas.DeadLetter:
    return schemas.DeadLetter(
        id=letter.dead_letter_id,
        stage=letter.stage,
        key=letter.key,
        source=letter.project_id,
        reason=letter.reason,
        detail=letter.detail,
        attempts=letter.attempts,
        failed_at=letter.failed_at,
        state=state,
        body=letter.body,
    )


def worker(beat: WorkerBeat) -> schemas.Worker:
    return schemas.Worker(
        id=beat.worker_id,
        app_id=beat.app_id,
        stages=list(beat.stages),
        host=beat.host,
        pid=beat.pid,
        started_at=beat.started_at,
        seen_at=beat.seen_at,
        metrics_url=beat.metrics_url,
    )


def readiness(result: Readiness) -> schemas.Readiness:
    return schemas.Readiness(
        ready=result.ready,
        reasons=result.reasons,
        mongodb=result.mongodb,
        kafka=result.kafka,
        workers=[worker(beat) for beat in result.workers],
    )


def dump(model: Any) -> Any:
    """A model (or a list of them) as plain JSON values, for the CLI's ``--json``."""
    if isinstance(model, list):
        return [dump(item) for item in model]
    return model.model_dump(mode="json")


async def status(store: Store, kafka_url: str, mongodb_url: str, database: str) -> schemas.Status:
    """Where the servers are and whether the service is ready: `status` and ``/readyz`` agree."""
    result = await check_readiness(store, kafka_url)
    return schemas.Status(
        kafka_url=kafka_url,
        mongodb_url=redact(mongodb_url),
        database=database,
        readiness=readiness(result),
    )
