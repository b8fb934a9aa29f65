"""Run a Faust worker for a set of stages, from code rather than `faust worker`.

Started from code, ``web_enabled=False`` is honoured (the `faust … worker`
command binds 0.0.0.0:6066 regardless), so several workers share a host.
"""

from __future__ import annotations

from collections.abc import Iterable

import faust

from claritycast.app import create_app
from claritycast.embedded import resolve_endpoints
from claritycast.logs import get_logger
from claritycast.settings import Settings

log = get_logger(__name__)


def run_worker(settings: Settings, stages: Iterable[str]) -> None:
    """Block until SIGINT/SIGTERM; logging is already configured by the caller."""
    endpoints = resolve_endpoints(settings)
    app = create_app(settings, stages, endpoints)
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
    worker.execute_from_commandline()
