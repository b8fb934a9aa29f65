"""The web process's ASGI app: the JSON API under ``/api/v1``, its OpenAPI, health and metrics.

The process reads MongoDB and sends commands on Kafka through the same
publisher as the CLI; it never calls Clarity, Slack or SMTP itself (a
preview draws a chart from stored history, like the render stage). The
OpenAPI description is at ``/api/v1/openapi.json`` and interactive docs at
``/api/docs``: like everything but ``/healthz``, both need credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from claritycast import __version__
from claritycast.clock import Clock, SystemClock
from claritycast.keyfile import keyring_for
from claritycast.keyring import Keyring
from claritycast.runtime.embedded import Endpoints
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings
from claritycast.store.core import Store
from claritycast.web import audit_trail, errors, monitoring
from claritycast.web.auth import Viewer, WebContext
from claritycast.web.routes import (
    accounts,
    connections,
    deliveries,
    operations,
    organisations,
    session,
    sources,
)
from claritycast.web.schemas import ErrorBody
from claritycast.web.sessions import Sessions, web_secret

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_URL = "/api/docs"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": words}
    for status, words in (
        (400, "The request cannot be read (its body is not JSON)"),
        (401, "No credentials, or not valid ones"),
        (403, "Not allowed for this role, or a change without its CSRF token"),
        (404, "No such thing"),
        (409, "It exists already, or its state forbids this"),
        (422, "An input is not valid: `field` names it"),
        (429, "Refused by Clarity's quota, or too many failed sign-ins"),
        (503, "The database does not answer"),
    )
}


# The API's routers, in the order their routes are matched.
API_ROUTERS = tuple(
    module.router
    for module in (session, organisations, sources, connections, deliveries, operations, accounts)
)


def create_web_app(
    settings: Settings,
    endpoints: Endpoints,
    clock: Clock | None = None,
    keyring: Keyring | None = None,
) -> FastAPI:
    """The app for one web process on these servers.

    ``keyring`` seals the Clarity tokens people give (connect, replace a
    token); without one it is read from the settings when the app starts.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = keyring or keyring_for(settings)
        store = Store.connect(endpoints.mongodb_url, settings.mongodb_database, keyring=keys)
        publisher = Publisher(endpoints.kafka_url, settings.topic_prefix, settings.partitions,
                              settings.replication_factor)  # fmt: skip
        try:
            await store.ensure_indexes()
            await publisher.start()
            app.state.ctx = WebContext(
                settings=settings,
                store=store,
                publisher=publisher,
                sessions=Sessions(
                    store, web_secret(settings), timedelta(seconds=settings.web_idle_timeout_s)
                ),
                clock=clock or SystemClock(),
                kafka_url=endpoints.kafka_url,
                mongodb_url=endpoints.mongodb_url,
                key_touched={},
            )
            yield
        finally:
            await publisher.stop()
            await store.close()

    app = FastAPI(
        title="claritycast",
        version=__version__,
        description=(
            "Microsoft Clarity metrics, kept as history, delivered as charts. Every route but "
            "`/healthz` needs credentials: an API key (`Authorization: Bearer cc_…`) or a "
            "signed-in session (changes then need its `X-CSRF-Token`)."
        ),
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    errors.install(app)
    audit_trail.install(app)
    monitoring.install(app)
    app.include_router(monitoring.router)
    for router in API_ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi(_who: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs(_who: Viewer) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title="claritycast API")

    return app
