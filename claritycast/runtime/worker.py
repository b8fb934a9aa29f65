"""Run a Faust worker for a set of stages, from code rather than `faust worker`.

Started from code, ``web_enabled=False`` is honoured (the `faust … worker`
command binds 0.0.0.0:6066 regardless), so several workers share a host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import faust

from claritycast.clock import FileClock
from claritycast.logs import get_logger
from claritycast.runtime.app import create_app
from claritycast.runtime.embedded import resolve_endpoints
from claritycast.settings import Settings

log = get_logger(__name__)


def run_worker(settings: Settings, stages: Iterable[str]) -> None:
    """Block until SIGINT/SIGTERM; logging is already configured by the caller."""
    endpoints = resolve_endpoints(settings)
    clock = FileClock(settings.clock_file) if settings.clock_file is not None else None
    app = create_app(settings, stages, endpoints, clock)
    log.info(
        "worker.starting",
        app_id=app.conf.id,
        stages=",".join(app.stage_names),
        kafka=endpoints.kafka_url,
        mongodb=endpoints.mongodb_url,
        embedded=endpoints.embedded_kafka,
    )
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        redirect_stdouts=False,
    )
    worker.spinner = None  # a terminal spinner has no place in one-line-per-event logs

    stopping: list[asyncio.Future[None]] = []

    def stop_failed(exc: BaseException) -> None:
        """A crashed agent: stop, then exit non-zero (mode re-raises ``crash_reason``)."""
        if worker.crash_reason is None:
            worker.crash_reason = exc
            log.critical("worker.stopping", why="an agent crashed", exit_code=1)
            stopping.append(asyncio.ensure_future(worker.stop()))

    app.on_fatal = stop_failed
    worker.execute_from_commandline()
