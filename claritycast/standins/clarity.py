"""A local Clarity Data Export API: a real HTTP server for tests, the demo and benchmarks.

It speaks the contract of ``shared/clarity-api.md``: one JWT per project, the
rolling ``numOfDays`` window relative to an injectable clock, 16 blocks without
dimensions and 9 with, counts as strings, the ``Url`` key, the ``null``
aggregate row of the URL breakdown, and hostile page text. It enforces 10
requests per project per UTC day (then 429), and can be told to misbehave per
project: documented spelling, empty-body 500s, empty, non-JSON, HTML (a
gateway's error page), truncated or wrongly shaped 200s, 400, 401, 403, 429,
latency, for every request or only the next few (``times``).

What the real Clarity does and the documentation does not say is taught here
as it is met, each with a test: a large site's URL breakdown far beyond the
documented 1,000 rows (``url_pages``, ``max_rows``), and a quota already
spent by another tool reading the same project (``spend``).

Admin endpoints under ``/_simulator/`` let another process (or a test) add
projects, inject faults, move a manual clock and read the request log.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from claritycast.clock import Clock, ManualClock
from claritycast.runtime.ports import LOOPBACK
from claritycast.standins.clarity_data import (
    BROWSERS,
    COUNTRIES,
    DEVICES,
    FRUSTRATIONS,
    OSES,
    PAGES,
    REFERRERS,
    SOURCES,
    Figures,
    Profile,
    allocate,
    figures,
    label_weights,
    long_tail_pages,
    unit,
)
from models.clarity import DIMENSIONED_BLOCKS, DIMENSIONS

EXPORT_PATH = "/export-data/api/v1/project-live-insights"
DAILY_LIMIT = 10
MAX_ROWS = 1000
JSON = "application/json"

Fault = Literal[
    "server-error",
    "empty-200",
    "garbage-200",
    "html-200",
    "truncated-200",
    "wrong-shape-200",
    "bad-request",
    "unauthorized",
    "forbidden",
    "quota",
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]
Spelling = Literal["live", "documented"]

_DIMENSION_LABELS: dict[str, tuple[tuple[Any, ...], ...]] = {
    "Browser": BROWSERS,
    "Device": DEVICES,
    "Country/Region": COUNTRIES,
    "OS": OSES,
}
# The key each requested dimension comes back under (quirk 3: URL → Url).
_ROW_KEYS = {"URL": "Url", "Country/Region": "Country"}
_DOCUMENTED_NAMES = {
    "DeadClickCount": "Dead Click Count",
    "ExcessiveScroll": "Excessive Scroll",
    "RageClickCount": "Rage Click Count",
    "QuickbackClick": "Quickback Click",
    "ScriptErrorCount": "Script Error Count",
    "ErrorClickCount": "Error Click Count",
    "ScrollDepth": "Scroll Depth",
    "EngagementTime": "Engagement Time",
    "PageTitle": "Page Title",
    "ReferrerUrl": "Referrer Url",
    "PopularPages": "Popular Pages",
}
VALID_DIMENSIONS = {*DIMENSIONS, "Country"}  # the older spelling of Country/Region
# Faults answered before any data is built: (status, body, content type).
FAULT_ANSWERS: dict[str, tuple[int, bytes, str]] = {
    "bad-request": (400, b"", JSON),
    "server-error": (500, b"", JSON),
    "empty-200": (200, b"", JSON),
    "garbage-200": (200, b"upstream said: no", "text/plain"),
    # What a gateway or proxy in front of the API answers during an outage.
    "html-200": (
        200,
        b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
        b"<body><h1>Bad Gateway</h1><p>The upstream server is not answering.</p></body></html>",
        "text/html",
    ),
    "wrong-shape-200": (200, b'{"metrics": {"Traffic": []}}', JSON),
}


def simulator_token(project_id: str, expires: datetime | None = None) -> str:
    """A JWT shaped like Clarity's, bound to one simulated project."""

    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    exp = int((expires or datetime(2100, 1, 1, tzinfo=UTC)).timestamp())
    claims = {"sub": project_id, "exp": exp, "iss": "clarity", "aud": "clarity.data-exporter"}
    signature = base64.urlsafe_b64encode(
        bytes(int(unit(project_id, "sig", i) * 256) for i in range(24))
    ).rstrip(b"=")
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{signature.decode()}"


@dataclass
class SimulatedProject:
    """One Clarity project as the simulator serves it."""

    project_id: str
    token: str
    profile: Profile
    fault: str | None = None
    fault_only: str | None = None  # the fault hits only this group (dimension1, or "overall")
    fault_times: int | None = None  # the fault hits only the next N matching requests
    spelling: Spelling = "live"
    latency_s: float = 0.0
    url_pages: int = 0  # a large site: this many more pages in the URL breakdown
    max_rows: int = MAX_ROWS  # rows per block; the real Clarity sends more than documented


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the simulator saw it (the token is never kept)."""

    at: datetime
    project_id: str | None
    params: dict[str, str]
    status: int


@dataclass
class _Ledger:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)


class ClaritySimulator:
    """Many simulated projects behind one Data Export endpoint."""

    def __init__(self, clock: Clock, *, daily_limit: int = DAILY_LIMIT) -> None:
        self.clock = clock
        self.daily_limit = daily_limit
        self.projects: dict[str, SimulatedProject] = {}
        self._by_token: dict[str, SimulatedProject] = {}
        self.log: list[LoggedRequest] = []
        self._ledger = _Ledger()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # Projects and faults

    def add_project(self, project_id: str, sessions_per_day: int = 1500) -> SimulatedProject:
        project = SimulatedProject(
            project_id, simulator_token(project_id), Profile(project_id, sessions_per_day)
        )
        self.projects[project_id] = project
        self._by_token[project.token] = project
        return project

    def set_fault(
        self, project_id: str, fault: str | None, only: str | None = None, times: int | None = None
    ) -> None:
        """Make a project's requests fail.

        ``only`` limits it to one dimension ("overall": none); ``times`` to the
        next N requests it hits, after which the project answers normally.
        """
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        project = self.projects[project_id]
        project.fault, project.fault_only, project.fault_times = fault, only, times

    def make_large(self, project_id: str, url_pages: int, max_rows: int | None = None) -> None:
        """Give a project a URL breakdown of ``url_pages`` more pages (a big shop's long tail)."""
        project = self.projects[project_id]
        project.url_pages = url_pages
        project.max_rows = max_rows if max_rows is not None else url_pages + len(PAGES) + 1

    def spend(self, project_id: str, requests: int) -> None:
        """Count ``requests`` made today by another tool reading the same project."""
        key = (project_id, self.clock.now().date().isoformat())
        self._ledger.counts[key] = self._ledger.counts.get(key, 0) + requests

    def requests_for(self, project_id: str) -> list[LoggedRequest]:
        return [entry for entry in self.log if entry.project_id == project_id]

    def used_today(self, project_id: str) -> int:
        return self._ledger.counts.get((project_id, self.clock.now().date().isoformat()), 0)

    @property
    def export_url(self) -> str:
        return f"{self.base_url}{EXPORT_PATH}"

    # HTTP

    def application(self) -> web.Application:
        app = web.Application()
        app.router.add_get(EXPORT_PATH, self._export)
        app.router.add_get("/_simulator/projects", self._list_projects)
        app.router.add_post("/_simulator/projects", self._add_project)
        app.router.add_post("/_simulator/faults", self._set_fault)
        app.router.add_get("/_simulator/log", self._read_log)
        app.router.add_post("/_simulator/clock", self._set_clock)
        return app

    async def start(self, host: str = LOOPBACK, port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); returns the base URL."""
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        assert server.sockets
        bound = server.sockets[0].getsockname()[1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ClaritySimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _export(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        project = self._authenticate(request.headers.get("Authorization", ""))
        status, body, content_type = self._answer(project, params)
        if project is not None and project.latency_s:
            await asyncio.sleep(project.latency_s)
        self.log.append(
            LoggedRequest(self.clock.now(), project.project_id if project else None, params, status)
        )
        return web.Response(status=status, body=body, content_type=content_type)

    def _authenticate(self, header: str) -> SimulatedProject | None:
        scheme, _, token = header.partition(" ")
        return self._by_token.get(token.strip()) if scheme.lower() == "bearer" else None

    def _fault_for(self, project: SimulatedProject | None, params: dict[str, str]) -> str | None:
        """The fault this request meets, counting down a ``times`` limit."""
        if project is None or project.fault is None:
            return None
        only = project.fault_only
        if only is not None and params.get("dimension1", "overall") != only:
            return None
        fault = project.fault
        if project.fault_times is not None:
            project.fault_times -= 1
            if project.fault_times <= 0:
                project.fault, project.fault_only, project.fault_times = None, None, None
        return fault

    def _answer(
        self, project: SimulatedProject | None, params: dict[str, str]
    ) -> tuple[int, bytes, str]:
        fault = self._fault_for(project, params)
        if project is None or fault == "unauthorized":
            return 401, b"", JSON
        if fault == "forbidden":
            return 403, b"", JSON
        day = self.clock.now().date().isoformat()
        key = (project.project_id, day)
        if fault == "quota" or self._ledger.counts.get(key, 0) >= self.daily_limit:
            return 429, b"", JSON
        self._ledger.counts[key] = self._ledger.counts.get(key, 0) + 1
        if fault in FAULT_ANSWERS:
            return FAULT_ANSWERS[fault]
        days = params.get("numOfDays", "")
        dimensions = [params[f"dimension{i}"] for i in (1, 2, 3) if params.get(f"dimension{i}")]
        if days not in ("1", "2", "3") or any(f"dimension{i}" in params for i in (4, 5)):
            return 400, b"", JSON
        if any(dimension not in VALID_DIMENSIONS for dimension in dimensions):
            return 200, b"", JSON  # seen live for an unknown dimension
        end = self.clock.now()
        start = end - timedelta(days=int(days))
        blocks = build_response(
            project.profile, start, end, dimensions, project.spelling,
            pages=long_tail_pages(project.url_pages), max_rows=project.max_rows,
        )  # fmt: skip
        body = json.dumps(blocks).encode()
        if fault == "truncated-200":  # a proxy cut the answer short, status already sent
            return 200, body[: len(body) // 2], JSON
        return 200, body, JSON

    async def _list_projects(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "project_id": p.project_id,
                    "token": p.token,
                    "used_today": self.used_today(p.project_id),
                }
                for p in self.projects.values()
            ]
        )

    async def _add_project(self, request: web.Request) -> web.Response:
        data = await request.json()
        project = self.add_project(data["project_id"], int(data.get("sessions_per_day", 1500)))
        return web.json_response({"project_id": project.project_id, "token": project.token})

    async def _set_fault(self, request: web.Request) -> web.Response:
        data = await request.json()
        project = self.projects.get(data.get("project_id", ""))
        if project is None:
            return web.json_response({"error": "unknown project"}, status=404)
        try:
            self.set_fault(
                project.project_id, data.get("fault"), data.get("only"), data.get("times")
            )
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        project.spelling = data.get("spelling", project.spelling)
        project.latency_s = float(data.get("latency_s", project.latency_s))
        if data.get("url_pages"):
            self.make_large(project.project_id, int(data["url_pages"]))
        if data.get("spend"):
            self.spend(project.project_id, int(data["spend"]))
        return web.json_response({"ok": True})

    async def _read_log(self, request: web.Request) -> web.Response:
        project_id = request.query.get("project_id")
        entries = [e for e in self.log if project_id is None or e.project_id == project_id]
        return web.json_response([asdict(e) | {"at": e.at.isoformat()} for e in entries])

    async def _set_clock(self, request: web.Request) -> web.Response:
        if not isinstance(self.clock, ManualClock):
            return web.json_response({"error": "the simulator runs on the real clock"}, status=409)
        data = await request.json()
        self.clock.set(datetime.fromisoformat(data["now"]))
        return web.json_response({"now": self.clock.now().isoformat()})


def _frustration_row(
    block: str, sessions: int, affected: int, views: int, events: int
) -> dict[str, Any]:
    share = round(100 * affected / sessions, 2) if sessions else 0.0
    return {
        "sessionsCount": str(sessions),
        "sessionsWithMetricPercentage": share,
        "sessionsWithoutMetricPercentage": round(100 - share, 2),
        "pagesViews": str(views),
        "subTotal": str(events),
    }


def _rows(
    totals: Figures,
    profile: Profile,
    salt: object,
    labels: list[dict[str, Any]],
    weights: list[float],
) -> dict[str, list[dict[str, Any]]]:
    """The 9 dimensioned blocks' rows, allocated from ``totals`` over ``labels``."""
    sessions = allocate(totals.sessions, weights)
    bots = allocate(totals.bots, weights)
    users = allocate(totals.users, weights)
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in FRUSTRATIONS}
    blocks |= {"ScrollDepth": [], "Traffic": [], "EngagementTime": []}
    per_block = {
        block: [allocate(value, sessions) for value in totals.frustration[block]]
        for block in FRUSTRATIONS
    }
    for i, label in enumerate(labels):
        wobble = 0.8 + 0.4 * unit(profile.project_id, "row", salt, repr(label))
        for block in FRUSTRATIONS:
            affected, views, events = (column[i] for column in per_block[block])
            blocks[block].append(
                _frustration_row(block, sessions[i], affected, views, events) | label
            )
        blocks["ScrollDepth"].append(
            {"averageScrollDepth": round(min(100.0, totals.scroll * wobble), 2)} | label
        )
        blocks["Traffic"].append(
            {
                "totalSessionCount": str(sessions[i]),
                "totalBotSessionCount": str(bots[i]),
                "distinctUserCount": str(users[i]),
                "pagesPerSessionPercentage": round(totals.pages_per_session * wobble, 4),
            }
            | label
        )
        blocks["EngagementTime"].append(
            {
                "totalTime": str(round(totals.total_time * wobble)),
                "activeTime": str(round(totals.active_time * wobble)),
            }
            | label
        )
    return blocks


def _totals_rows(totals: Figures) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {
        block: _frustration_row(block, totals.sessions, *totals.frustration[block])
        for block in FRUSTRATIONS
    }
    rows["ScrollDepth"] = {"averageScrollDepth": totals.scroll}
    rows["Traffic"] = {
        "totalSessionCount": str(totals.sessions),
        "totalBotSessionCount": str(totals.bots),
        "distinctUserCount": str(totals.users),
        "pagesPerSessionPercentage": totals.pages_per_session,
    }
    rows["EngagementTime"] = {
        "totalTime": str(totals.total_time),
        "activeTime": str(totals.active_time),
    }
    return rows


def _named(
    labels: tuple[tuple[Any, ...], ...],
    sessions: int,
    weights: list[float],
    key: str = "name",
    count: str = "sessionsCount",
) -> list[dict[str, str]]:
    parts = allocate(sessions, weights)
    rows = [{key: str(label[0]), count: str(n)} for label, n in zip(labels, parts, strict=True)]
    return sorted(rows, key=lambda row: -int(row[count]))


DIMENSIONED = DIMENSIONED_BLOCKS
# The overall-only blocks: (block, labels with weights, row label key, row count key).
OVERALL_ONLY: tuple[tuple[str, tuple[tuple[Any, ...], ...], str, str], ...] = (
    ("Browser", BROWSERS, "name", "sessionsCount"),
    ("Device", DEVICES, "name", "sessionsCount"),
    ("OS", OSES, "name", "sessionsCount"),
    ("Country", COUNTRIES, "name", "sessionsCount"),
    ("PageTitle", tuple((title, w) for _, title, w in PAGES), "name", "sessionsCount"),
    ("ReferrerUrl", REFERRERS, "name", "sessionsCount"),
    ("PopularPages", tuple((url, w) for url, _, w in PAGES), "url", "visitsCount"),
)


def build_response(
    profile: Profile,
    start: datetime,
    end: datetime,
    dimensions: list[str],
    spelling: Spelling = "live",
    *,
    pages: tuple[tuple[str, str, float], ...] = (),
    max_rows: int = MAX_ROWS,
) -> list[dict[str, Any]]:
    """The JSON array Clarity would answer for this window and these dimensions.

    ``pages`` are a large site's pages beyond the usual ones (`long_tail_pages`).
    """
    salt = int(end.timestamp() // 86400)
    totals = figures(profile, profile.window_sessions(start, end), salt)
    blocks: list[tuple[str, list[dict[str, Any]]]]
    if not dimensions:
        total_rows = _totals_rows(totals)
        blocks = [(name, [total_rows[name]]) for name in DIMENSIONED]
        for name, labels, key, count in OVERALL_ONLY:
            weights = label_weights(profile.project_id, salt, labels)
            blocks.append((name, _named(labels, totals.sessions, weights, key, count)))
    else:
        labels, weights = _dimension_labels(profile, salt, dimensions, pages)
        rows = _rows(totals, profile, salt, labels, weights)
        if dimensions == ["URL"]:
            total_rows = _totals_rows(totals)
            for name in DIMENSIONED:
                rows[name].insert(0, total_rows[name] | {"Url": None})
        blocks = [(name, rows[name][:max_rows]) for name in DIMENSIONED]
    return [
        {"metricName": _spell(name, spelling), "information": _respell(info, spelling)}
        for name, info in blocks
    ]


def _dimension_labels(
    profile: Profile,
    salt: object,
    dimensions: list[str],
    pages: tuple[tuple[str, str, float], ...] = (),
) -> tuple[list[dict[str, Any]], list[float]]:
    if dimensions == ["URL"]:
        entries = tuple((url, weight) for url, _, weight in PAGES + pages)
        return [{"Url": url} for url, _ in entries], label_weights(
            profile.project_id, salt, entries
        )
    if dimensions == ["Source", "Channel"]:
        return (
            [{"Source": s, "Channel": c} for s, c, _ in SOURCES],
            label_weights(profile.project_id, salt, SOURCES),
        )
    if len(dimensions) == 1 and (dimensions[0] in _DIMENSION_LABELS or dimensions[0] == "Country"):
        name = "Country/Region" if dimensions[0] == "Country" else dimensions[0]
        entries = _DIMENSION_LABELS[name]
        key = _ROW_KEYS.get(name, name)
        return [{key: label} for label, _ in entries], label_weights(
            profile.project_id, salt, entries
        )
    # Any other combination: one row per dimension, all traffic under "(other)".
    return [{_ROW_KEYS.get(d, d): "(other)" for d in dimensions}], [1.0]


def _spell(metric: str, spelling: Spelling) -> str:
    return _DOCUMENTED_NAMES.get(metric, metric) if spelling == "documented" else metric


def _respell(rows: list[dict[str, Any]], spelling: Spelling) -> list[dict[str, Any]]:
    if spelling == "live":
        return rows
    renamed = {
        "distinctUserCount": "distantUserCount",
        "pagesPerSessionPercentage": "PagesPerSessionPercentage",
    }
    return [{renamed.get(k, k): v for k, v in row.items()} for row in rows]
