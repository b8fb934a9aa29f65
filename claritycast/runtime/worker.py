"""Run a Faust worker for a set of stages, from code rather than `faust worker`.

Started from code, ``web_enabled=False`` is honoured (the `faust … worker`
command binds 0.0.0.0:6066 regardless), so several workers share a host.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterable

import faust

from claritycast.clock import FileClock
from claritycast.logs import get_logger
from claritycast.runtime.app import create_app
from claritycast.runtime.embedded import resolve_endpoints
from claritycast.settings import Settings

log = get_logger(__name__)

# How long a worker whose parent died may take to stop in order before it exits anyway.
ORPHAN_GRACE_S = 10.0


def exit_when_orphaned(grace_s: float = ORPHAN_GRACE_S) -> None:
    """Exit, after ``grace_s``, once the process that started this worker is gone.

    A worker started by `up` gets SIGTERM from the kernel when `up` dies
    (``PR_SET_PDEATHSIG``) and stops in order; but the embedded broker died
    with `up`, so that stop could wait for it for ever: a worker orphaned by
    one benchmark run was found running 78 minutes later, using a fifth of a
    core (``tests/test_up.py::test_kill_9_leaves_no_orphans_and_up_starts_again``
    caught the same once). A worker whose parent is the init process from the
    start (systemd, a container's entry point) is never an orphan here.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        time.sleep(grace_s)
        log.error("worker.orphaned", why="the process that started it is gone and the "
                  "stop did not finish", grace_s=grace_s)  # fmt: skip
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


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
    exit_when_orphaned()
    worker.execute_from_commandline()
