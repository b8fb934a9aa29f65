"""tick: the leader's timer that asks for every missing snapshot and due delivery.

Due-ness comes from the store, never from the timer: each tick looks at every
active project, works out "yesterday" in its organisation's timezone (so DST
days are right), and requests each fetch group not yet stored. A missed tick
is made up by the next; a doubled one is absorbed by the quota check's leases.
Clarity only serves the last 24 to 72 hours, so after downtime only yesterday
can be caught up; older missing days are reported once in the log.

Deliveries are found the same way (`claritycast.deliveries.due_deliveries`):
from connections' schedules and the delivery log, never from the timer.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import faust
from faust.types import TopicT

from agents.deps import Deps
from claritycast.delivery.log import due_deliveries
from claritycast.localtime import local_yesterday
from claritycast.logs import get_logger
from models.clarity import GROUP_NAMES
from models.documents import Project, ProjectStatus
from models.records import FetchRequested
from topics import DELIVERIES_DUE, FETCH_REQUESTED, Topics, send_bounded

log = get_logger(__name__)


class Ticker:
    """One tick's work; between ticks it remembers only what it asked for recently.

    A group asked for is not asked again for the fetch lease (`LEASE` unless
    ``CLARITYCAST_FETCH_LEASE_S`` says otherwise, by the clock): within that
    time it is being granted, fetched or stored, and asking again would only
    queue duplicates for the quota check to drop. A new leader forgets, which
    costs one round of duplicates, nothing more.
    """

    def __init__(self, deps: Deps, requested_topic: TopicT) -> None:
        self.deps = deps
        self.requested_topic = requested_topic
        self._reported_gaps: set[tuple[str, str]] = set()
        self._asked: dict[tuple[str, str, str], datetime] = {}

    async def tick(self) -> int:
        """Request every missing group of yesterday; returns how many were requested."""
        store = self.deps.store
        now = self.deps.clock.now()
        lease = timedelta(seconds=self.deps.settings.fetch_lease_s)
        self._asked = {key: at for key, at in self._asked.items() if at > now - lease}
        timezones = {org.org_id: org.timezone for org in await store.organisations()}
        due: list[tuple[Project, str, str]] = []
        for project in await store.projects(status=ProjectStatus.ACTIVE):
            waiting_until = project.waiting_until()
            if waiting_until is not None and waiting_until > now:
                continue
            timezone = timezones.get(project.org_id, self.deps.settings.default_timezone)
            due.append((project, timezone, local_yesterday(timezone, now).isoformat()))
        not_due = await store.groups_not_due_on(sorted({day for _, _, day in due}), now)
        sent = 0
        for project, timezone, yesterday in due:
            have = not_due.get((project.project_id, yesterday), set())
            missing = [
                group
                for group in GROUP_NAMES
                if group not in have and (project.project_id, yesterday, group) not in self._asked
            ]
            if not missing:
                continue
            await self._report_gap(project, date.fromisoformat(yesterday))
            for group in missing:
                self._asked[(project.project_id, yesterday, group)] = now
                await send_bounded(
                    self.requested_topic,
                    project.project_id,
                    FetchRequested(
                        request_id=uuid.uuid4().hex,
                        project_id=project.project_id,
                        local_date=yesterday,
                        group=group,
                        reason="daily",
                        timezone=timezone,
                        requested_at=now,
                    ),
                )
                sent += 1
        if sent:
            log.info("tick.requested", fetches=sent)
        return sent

    async def _report_gap(self, project: Project, yesterday: date) -> None:
        last = await self.deps.store.last_snapshot_date(project.project_id)
        if last is None or date.fromisoformat(last) >= yesterday - timedelta(days=1):
            return
        key = (project.project_id, last)
        if key not in self._reported_gaps:
            self._reported_gaps.add(key)
            log.warning(
                "tick.gap",
                project=project.project_id,
                last_stored=last,
                catching_up=yesterday.isoformat(),
                note="Clarity keeps no history: the days in between cannot be fetched",
            )


async def tick_deliveries(deps: Deps, due_topic: TopicT) -> int:
    """Send every due delivery down the chain; returns how many."""
    messages = await due_deliveries(deps.store, deps.clock.now())
    for message in messages:
        await send_bounded(due_topic, message.connection, message)
    if messages:
        log.info("tick.deliveries", due=len(messages))
    return len(messages)


def register(app: faust.App, topics: Topics, deps: Deps) -> None:
    """Add the leader-only tick timer to ``app``."""
    ticker = Ticker(deps, topics[FETCH_REQUESTED])
    due_topic = topics[DELIVERIES_DUE]

    @app.timer(deps.settings.tick_interval_s, on_leader=True, name="claritycast.tick")
    async def tick() -> None:
        for part in (ticker.tick, lambda: tick_deliveries(deps, due_topic)):
            try:
                await part()
            except Exception as exc:
                log.exception("tick.failed", error=str(exc), kind=type(exc).__name__)
