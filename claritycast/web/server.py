"""`claritycast web`: the web process, served by uvicorn on a socket bound here first.

Binding before uvicorn starts turns a taken port into one line naming the
setting (``CLARITYCAST_WEB_PORT``), not a traceback, and lets ``0`` pick a free
port whose URL is then printed. Run several behind a load balancer: they
share nothing but MongoDB, Kafka and ``CLARITYCAST_WEB_SECRET``.
"""

from __future__ import annotations

import contextlib
import socket

import uvicorn

from claritycast.keyfile import keyring_for
from claritycast.logs import get_logger
from claritycast.runtime.embedded import resolve_endpoints
from claritycast.runtime.ports import bind
from claritycast.settings import Settings
from claritycast.web.app import create_web_app
from claritycast.web.sessions import web_secret

log = get_logger(__name__)


def web_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def run_web(settings: Settings, announce: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; logging is configured by the caller."""
    web_secret(settings)  # refuse to start without one, before binding anything
    keyring = keyring_for(settings)  # it seals the tokens people give: the same key as fetchers
    endpoints = resolve_endpoints(settings)
    sock = bind(settings.web_host, settings.web_port)
    url = web_url(sock)
    app = create_web_app(settings, endpoints, keyring=keyring)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", proxy_headers=True,
        server_header=False, timeout_graceful_shutdown=10,
    )  # fmt: skip
    server = uvicorn.Server(config)
    log.info("web.listening", url=url)
    if announce:
        print(f"claritycast web at {url}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()
