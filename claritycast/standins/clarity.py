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
from claritycast.standins.clarity_answers import MAX_ROWS, Spelling, build_response
from claritycast.standins.clarity_data import (
    PAGES,
    Profile,
    long_tail_pages,
    unit,
)
from models.clarity import DIMENSIONS

__all__ = ["FAULTS", "FAULT_ANSWERS", "ClaritySimulator", "build_response", "simulator_token"]

EXPORT_PATH = "/export-data/api/v1/project-live-insights"
DAILY_LIMIT = 10
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
    held: asyncio.Event | None = None  # while set here and not yet fired, answers wait


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

    def hold(self, project_id: str) -> None:
        """Keep a project's answers from leaving until `release`: a request known to be in flight.

        The request is counted and answered as usual; only the reply waits, as
        when Clarity is slow. Tests use it to hold work in the chain for as long
        as they need, rather than hoping a latency outlasts something.
        """
        self.projects[project_id].held = asyncio.Event()

    def release(self, project_id: str) -> None:
        """Let a held project's waiting and later answers go."""
        project = self.projects[project_id]
        if project.held is not None:
            project.held.set()
            project.held = None

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
        if project is not None and project.held is not None:
            await project.held.wait()
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
