"""A worker's ``/metrics`` for Prometheus, on its own port, behind an API key.

Served from the worker's own event loop (aiohttp, which Faust already uses),
on ``CLARITYCAST_METRICS_HOST`` (loopback by default) and
``CLARITYCAST_METRICS_PORT`` (0: a free port, which the worker's heartbeat
records so ``up`` and ``status`` can say where it is). Like every route but
liveness it needs credentials: Prometheus sends an API key as a bearer token
(``authorization: {credentials: …}`` in its scrape config). A key is checked
against the store and remembered for `KEY_CACHE_S`, so a revoked key stops
working within that time.

Consumer lag is read at scrape time from Faust's consumer: per topic, the
partitions' high watermarks less what this worker has read.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from claritycast.access import api_key_principal
from claritycast.logs import get_logger
from claritycast.telemetry import CONSUMER_LAG, REGISTRY

if TYPE_CHECKING:
    from claritycast.runtime.app import ClarityCastApp

log = get_logger(__name__)

KEY_CACHE_S = 30.0


def record_consumer_lag(app: ClarityCastApp) -> None:
    """Per topic: high watermark less the next offset to read, over this worker's partitions."""
    consumer = app.consumer
    lag: dict[str, int] = {}
    with contextlib.suppress(Exception):  # a rebalance under way: report what is known
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            read = consumer._read_offset.get(tp)  # Faust keeps no public read position
            position = (read + 1) if read is not None else 0
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, highwater - position)
    for topic, value in lag.items():
        CONSUMER_LAG.labels(topic).set(value)


class MetricsServer:
    """The ``/metrics`` endpoint of one worker."""

    def __init__(self, app: ClarityCastApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._keys: dict[str, float] = {}

    async def _allowed(self, request: web.Request) -> bool:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return False
        checked = self._keys.get(key)
        if checked is not None and time.monotonic() - checked < KEY_CACHE_S:
            return True
        if await api_key_principal(self.app.deps.store, key) is None:
            self._keys.pop(key, None)
            return False
        self._keys[key] = time.monotonic()
        return True

    async def _metrics(self, request: web.Request) -> web.Response:
        if not await self._allowed(request):
            return web.json_response(
                {"error": {"code": "unauthenticated", "message": "send an API key as a bearer "
                           "token", "field": None}},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="claritycast"'},
            )  # fmt: skip
        record_consumer_lag(self.app)
        content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return web.Response(
            body=generate_latest(REGISTRY), content_type=content_type, charset="utf-8"
        )

    async def start(self) -> str:
        application = web.Application()
        application.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        assert server.sockets
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}/metrics"
        log.info("worker.metrics", url=self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
