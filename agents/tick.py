"""tick: the leader's timer that asks for every missing snapshot and due delivery.

Due-ness comes from the store, never from the timer: each tick looks at every
active project whose moment has come (an indexed time on the project, see
`claritycast.store.due`), works out "yesterday" in its organisation's timezone
(so DST days are right), and requests each fetch group not yet stored. A missed tick
is made up by the next; a doubled one is absorbed by the quota check's leases.
Clarity only serves the last 24 to 72 hours, so after downtime only yesterday
can be caught up; older missing days are reported once in the log.

Deliveries are found the same way (`claritycast.delivery.log.due_deliveries`):
from connections' schedules and the delivery log, never from the timer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from datetime import date, datetime, timedelta

import faust
from faust.types import TopicT

from agents.deps import Deps
from claritycast.delivery.log import due_deliveries
from claritycast.ingest.quota import GRANT_TTL
from claritycast.localtime import local_midnight, local_yesterday, next_local_midnight
from claritycast.logs import get_logger
from claritycast.store.due import DueProject
from models.clarity import GROUP_NAMES
from models.documents import PullProgress
from models.records import FetchRequested
from topics import DELIVERIES_DUE, FETCH_REQUESTED, Topics, send_bounded

log = get_logger(__name__)

# A night cut into waves by the bound on groups in flight asks for the next wave this often.
WAVE_INTERVAL_S = 1.0
# The due projects' ids read for a night's waves are read again after this: a project
# connected meanwhile (due at once) waits no longer than this behind a big night.
DUE_LIST_FOR = timedelta(seconds=60)
# A group asked for and not stored stops counting against the bound after this: by then
# it was granted and fetched, or dropped, refused or lost (a grant older than GRANT_TTL
# is never made).
IN_FLIGHT_FOR = GRANT_TTL + timedelta(minutes=1)


class Ticker:
    """One tick's work; between ticks it remembers only what it asked for recently.

    The tick reads only the projects whose moment has come
    (`claritycast.store.due`), decides for each which groups of yesterday to
    ask for, and writes when to look at it again: its next local midnight (a
    new yesterday), a held group's retry, the end of the fetch lease of what
    it asked for, or the end of a wait on the quota. With nothing due, a tick
    is a read of the drain by id, two small indexed queries for projects and
    three for deliveries. While `up` drains the chain before restarting its
    broker (`claritycast.store.drain`), a tick asks for nothing at all.

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
        # (project, local date) -> the groups asked for and not seen stored, and when.
        self._in_flight: dict[tuple[str, str], tuple[set[str], datetime]] = {}
        self._lock = asyncio.Lock()
        # The ids of the projects due, read once for several waves, and when (`_due_projects`).
        self._due: deque[str] = deque()
        self._due_read_at: datetime | None = None
        # The last tick left due projects for the next wave. A new leader starts behind:
        # its first look is within a second, not a tick interval (after `up` restarted
        # the broker mid-night, the night goes on at once).
        self.behind = True
        self.draining = False  # `up` asked for a drain (`claritycast.store.drain`)

    async def tick(self) -> int:
        """Request missing groups of yesterday, within the bound; returns how many were requested.

        At most ``CLARITYCAST_PULL_IN_FLIGHT`` groups are asked for and not yet
        stored at once (`_room`): a night of 10,000 projects is asked for in
        waves as the chain stores them, rather than all at once, so no grant
        waits in a queue long enough to expire (`GRANT_TTL`) and the quota
        check never counts calls that the fetch stage then cannot make. The
        projects left for later keep their moment and come first in the next
        wave (`wave`, every second while `behind`).
        """
        async with self._lock:
            if await self._drained():
                return 0
            return await self._tick()

    async def wave(self) -> int:
        """The next wave of a pull the bound cut short; nothing (no query) otherwise."""
        return await self.tick() if self.behind else 0

    async def _drained(self) -> bool:
        """Whether `up` asked the chain to fall quiet: then nothing new is asked for.

        One read by id. While it lasts the tick stays `behind`, so the wave
        timer looks again every second and the night goes on as soon as it ends.
        """
        until = await self.deps.store.draining_until()
        if until is None:
            if self.draining:
                log.info("tick.drain_over")
            self.draining = False
            return False
        if not self.draining:
            log.info("tick.draining", until=until.isoformat(), in_flight=self.in_flight)
        self.draining = self.behind = True
        return True

    async def _tick(self) -> int:
        store = self.deps.store
        now = self.deps.clock.now()
        lease = timedelta(seconds=self.deps.settings.fetch_lease_s)
        self._forget_asked(now - lease)
        room = await self._room(now)
        if room == 0:
            self.behind = True
            return 0
        # Most projects want all 7 groups: take no more than the room can take.
        projects = await self._due_projects(now, limit=-(-room // len(GROUP_NAMES)))
        if not projects:
            return 0
        timezones = await store.timezones_of({project.org_id for project in projects})
        next_at: dict[str, datetime] = {}
        due: list[tuple[DueProject, str, date]] = []
        for project in projects:
            if project.waiting_until is not None and project.waiting_until > now:
                next_at[project.project_id] = project.waiting_until
                continue
            timezone = timezones.get(project.org_id, self.deps.settings.default_timezone)
            due.append((project, timezone, local_yesterday(timezone, now)))
        pulls = await store.pulls_of(
            (project.project_id, day.isoformat())
            for project, _, yesterday in due
            for day in (yesterday, yesterday - timedelta(days=1))
        )
        sent = 0
        handled = [project for project in projects if project.project_id in next_at]
        for position, (project, timezone, yesterday) in enumerate(due):
            pull = pulls.get((project.project_id, yesterday.isoformat()), PullProgress())
            missing = [
                group
                for group in GROUP_NAMES
                if self._wanted(project, yesterday, group, pull, now, lease)
            ]
            if len(missing) > room - sent:  # the bound (at least 7) always fits one project
                waiting = [later.project_id for later, _, _ in due[position:]]
                self._due.extendleft(reversed(waiting))  # first in the next wave
                self.behind = True
                break
            handled.append(project)
            if missing:
                await self._report_gap(project, timezone, yesterday, pulls)
                self._in_flight[(project.project_id, yesterday.isoformat())] = (set(missing), now)
            for group in missing:
                key = (project.project_id, yesterday.isoformat(), group)
                self._asked.pop(key, None)  # to the end: the dict stays in the order asked
                self._asked[key] = now
                await send_bounded(
                    self.requested_topic,
                    project.project_id,
                    FetchRequested(
                        request_id=uuid.uuid4().hex,
                        project_id=project.project_id,
                        local_date=yesterday.isoformat(),
                        group=group,
                        reason="daily",
                        timezone=timezone,
                        requested_at=now,
                    ),
                )
                sent += 1
            next_at[project.project_id] = self._next_look(
                project, timezone, yesterday, pull, now, lease
            )
        await store.set_next_pulls(handled, next_at)
        if sent:
            log.info("tick.requested", fetches=sent, in_flight=self.in_flight,
                     more_due=self.behind)  # fmt: skip
        return sent

    async def _due_projects(self, now: datetime, limit: int) -> list[DueProject]:
        """Up to ``limit`` due projects, from the ids of all those due read once for many waves.

        The ids are read again when they run out or are older than
        `DUE_LIST_FOR` (and whenever the clock is set back); each wave reads
        its own projects by id, so a project handled, paused or rescheduled
        since is left out. The tick stays `behind` while ids are left.
        """
        read_at = self._due_read_at
        if not self._due or read_at is None or not read_at <= now < read_at + DUE_LIST_FOR:
            self._due = deque(await self.deps.store.due_project_ids(now))
            self._due_read_at = now
        projects: list[DueProject] = []
        while self._due and len(projects) < limit:
            ids = [self._due.popleft() for _ in range(min(limit - len(projects), len(self._due)))]
            projects += await self.deps.store.projects_if_due(ids, now)
        self.behind = bool(self._due)
        return projects

    @property
    def in_flight(self) -> int:
        """Groups this leader asked for and has not seen stored (within `IN_FLIGHT_FOR`)."""
        return sum(len(groups) for groups, _ in self._in_flight.values())

    async def _room(self, now: datetime) -> int:
        """How many groups may be asked for now: the bound less those still on their way.

        One read of the pulls asked for (at most the bound's worth of
        projects): a group stored, or held after a failure, is no longer on its
        way. One asked for longer ago than `IN_FLIGHT_FOR` stops counting: it
        was dropped or refused by the quota check (a project out of quota), or
        lost, and the lease asks for it again if needed.
        """
        self._in_flight = {
            key: (groups, at)
            for key, (groups, at) in self._in_flight.items()
            if at > now - IN_FLIGHT_FOR
        }
        if self._in_flight:
            pulls = await self.deps.store.pulls_of(self._in_flight)
            for key, (groups, _) in list(self._in_flight.items()):
                pull = pulls.get(key)
                if pull is not None:
                    groups -= {g for g in groups if g in pull.stored or pull.held(g, now)}
                if not groups:
                    del self._in_flight[key]
        return max(0, self.deps.settings.pull_in_flight - self.in_flight)

    def _wanted(
        self,
        project: DueProject,
        yesterday: date,
        group: str,
        pull: PullProgress,
        now: datetime,
        lease: timedelta,
    ) -> bool:
        """Is ``group`` of yesterday neither stored, held, nor asked for within the lease?"""
        if group in pull.stored or pull.held(group, now) is not None:
            return False
        asked = self._asked.get((project.project_id, yesterday.isoformat(), group))
        return asked is None or asked <= now - lease

    def _forget_asked(self, before: datetime) -> None:
        """Drop what was asked for at or before ``before``: the oldest first, no more.

        ``_asked`` is in the order things were asked for, so this reads only
        what it drops and the first it keeps, not every group asked for in the
        lease (70,000 of them an hour into a night of 10,000 projects, read on
        every wave). A clock set back only leaves an entry a little longer:
        `_wanted` compares its time anyway.
        """
        while self._asked:
            key, at = next(iter(self._asked.items()))
            if at > before:
                return
            del self._asked[key]

    def _next_look(
        self,
        project: DueProject,
        timezone: str,
        yesterday: date,
        pull: PullProgress,
        now: datetime,
        lease: timedelta,
    ) -> datetime:
        """When this project may next have something to ask for.

        Its next local midnight, or sooner: the end of the lease of a group
        asked for and not stored yet (it is asked again then), or a held
        group's retry.
        """
        moments = [next_local_midnight(now, timezone)]
        for group in GROUP_NAMES:
            if group in pull.stored:
                continue
            asked = self._asked.get((project.project_id, yesterday.isoformat(), group))
            if asked is not None:
                moments.append(asked + lease)
            retry_at = pull.retry_at.get(group)
            if retry_at is not None and retry_at > now and group not in pull.dead:
                moments.append(retry_at)
        return min(moments)

    async def _report_gap(
        self,
        project: DueProject,
        timezone: str,
        yesterday: date,
        pulls: dict[tuple[str, str], PullProgress],
    ) -> None:
        """Log once when days before yesterday are missing: Clarity cannot serve them any more.

        The pulls of yesterday and the day before answer for nearly every
        project; the snapshots are read only for a project that has neither
        and existed before yesterday began.
        """
        for day in (yesterday, yesterday - timedelta(days=1)):
            if pulls.get((project.project_id, day.isoformat()), PullProgress()).stored:
                return
        if project.connected_at >= local_midnight(yesterday + timedelta(days=1), timezone):
            return  # connected today: nothing before yesterday was ever due
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
        try:
            await ticker.tick()
        except Exception as exc:
            log.exception("tick.failed", error=str(exc), kind=type(exc).__name__)
        if ticker.draining:  # no report either: a drain waits for the chain to fall quiet
            return
        try:
            await tick_deliveries(deps, due_topic)
        except Exception as exc:
            log.exception("tick.failed", error=str(exc), kind=type(exc).__name__)

    @app.timer(min(WAVE_INTERVAL_S, deps.settings.tick_interval_s), on_leader=True,
               name="claritycast.tick.wave")  # fmt: skip
    async def wave() -> None:
        try:
            await ticker.wave()
        except Exception as exc:
            log.exception("tick.failed", error=str(exc), kind=type(exc).__name__)
