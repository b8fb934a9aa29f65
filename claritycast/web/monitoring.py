"""The web process's own health and metrics: ``/healthz``, ``/readyz``, ``/metrics``.

``/healthz`` says only that the process answers, and is the one route open
to anyone (a load balancer's liveness probe). ``/readyz`` says whether the
service can work (MongoDB, the broker, a live worker), with the reasons when
it cannot; ``/metrics`` counts requests by route and status with their
latency, for Prometheus. Both need credentials, like everything else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from claritycast.runtime.readiness import readiness
from claritycast.web import views
from claritycast.web.auth import Context, Viewer

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "claritycast_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "claritycast_http_request_seconds",
    "Time to answer an HTTP request, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", summary="Readiness: MongoDB, the broker and a worker answer")
async def readyz(_who: Viewer, ctx: Context) -> JSONResponse:
    result = views.readiness(await readiness(ctx.store, ctx.kafka_url))
    return JSONResponse(result.model_dump(mode="json"), status_code=200 if result.ready else 503)


@router.get("/metrics", summary="Prometheus metrics of this web process", response_class=Response)
async def metrics(_who: Viewer) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def route_of(request: Request) -> str:
    """The route's template (``/api/v1/sources/{source_id}``): bounded, unlike paths."""
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def install(app: FastAPI) -> None:
    """Count and time every request, by its route's template."""

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = route_of(request)
            REQUESTS.labels(route, request.method, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - began)
