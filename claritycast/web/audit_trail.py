"""Every change made over HTTP goes on the audit trail, by whom, and how it ended.

One table says which route is which action (`AUDITED`), and one middleware
records it after the answer is made, so no route can change something
unrecorded: a test checks that every route that may change something is in
the table or in `READ_ONLY`. The actor is the principal the route's
credentials named (a person's account, or an API key's name, never the key);
the object comes from the path (``project:{source_id}``) unless the route
names it (a new project's id, a sign-in's account). The outcome is ``ok``
for a success, ``refused: <the answer's message>`` for a 4xx, and
``failed: <message>`` for a 5xx.

A request without valid credentials names no one, so it is not recorded
here (the sign-in is: a refused password is what an audit trail is for).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from claritycast.access import Principal
from claritycast.errors import ClarityCastError
from claritycast.ingest.audit import record
from claritycast.logs import get_logger
from claritycast.web.auth import UNSAFE, WebContext
from models.audit import Action, Actor, ActorKind

log = get_logger(__name__)

API = "/api/v1"

# (method, route template) → (action, object, with ``{path parameter}`` and ``{who}``).
AUDITED: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", f"{API}/session"): (Action.ACCOUNT_SIGN_IN, "account:unknown"),
    ("DELETE", f"{API}/session"): (Action.ACCOUNT_SIGN_OUT, "account:{who}"),
    ("POST", f"{API}/organisations"): (Action.ORGANISATION_ADD, "organisation:new"),
    ("PATCH", f"{API}/organisations/{{org_id}}"): (
        Action.ORGANISATION_CHANGE, "organisation:{org_id}"),
    ("POST", f"{API}/sources"): (Action.PROJECT_CONNECT, "project:new"),
    ("PUT", f"{API}/sources/{{source_id}}/token"): (
        Action.PROJECT_SET_TOKEN, "project:{source_id}"),
    ("POST", f"{API}/sources/{{source_id}}/refresh"): (
        Action.PROJECT_REFRESH, "project:{source_id}"),
    ("POST", f"{API}/sources/{{source_id}}/pause"): (Action.PROJECT_PAUSE, "project:{source_id}"),
    ("POST", f"{API}/sources/{{source_id}}/resume"): (
        Action.PROJECT_RESUME, "project:{source_id}"),
    ("DELETE", f"{API}/sources/{{source_id}}"): (Action.PROJECT_REMOVE, "project:{source_id}"),
    ("POST", f"{API}/connections"): (Action.CONNECTION_ADD, "connection:new"),
    ("PATCH", f"{API}/connections/{{name}}"): (Action.CONNECTION_CHANGE, "connection:{name}"),
    ("POST", f"{API}/connections/{{name}}/pause"): (Action.CONNECTION_PAUSE, "connection:{name}"),
    ("POST", f"{API}/connections/{{name}}/resume"): (
        Action.CONNECTION_RESUME, "connection:{name}"),
    ("DELETE", f"{API}/connections/{{name}}"): (Action.CONNECTION_REMOVE, "connection:{name}"),
    ("POST", f"{API}/connections/{{name}}/send"): (
        Action.DELIVERY_SEND_NOW, "connection:{name}"),
    ("POST", f"{API}/dead-letters/replay"): (Action.DEAD_LETTERS_REPLAY, "dead-letters:all"),
    ("DELETE", f"{API}/users/{{email}}"): (Action.USER_REMOVE, "user:{email}"),
    ("POST", f"{API}/api-keys"): (Action.API_KEY_CREATE, "api-key-id:new"),
    ("DELETE", f"{API}/api-keys/{{key_id}}"): (Action.API_KEY_REVOKE, "api-key-id:{key_id}"),
}  # fmt: skip

# Routes taking a body that change nothing: not on the trail.
READ_ONLY = {
    ("POST", f"{API}/connections/preview"),  # draws a chart from stored history
}


def name_object(request: Request, object: str, detail: str | None = None) -> None:
    """A route's word on what it acted on (a new id), and a detail for the trail."""
    request.state.audit_object = object
    if detail is not None:
        request.state.audit_detail = detail


def name_actor(request: Request, actor: Actor) -> None:
    """Who acts when no credentials say so yet: the account a sign-in is for."""
    request.state.audit_actor = actor


def actor_of(principal: Principal) -> Actor:
    kind = ActorKind.API_KEY if principal.kind == "api-key" else ActorKind.USER
    return Actor(kind, principal.name)


def outcome_of(status: int, message: str | None) -> str:
    if status < 400:
        return "ok"
    words = message or f"HTTP {status}"
    return f"{'refused' if status < 500 else 'failed'}: {words}"


def _object(template: str, request: Request, principal: Principal | None) -> str:
    named = getattr(request.state, "audit_object", None)
    if named is not None:
        return str(named)
    values: dict[str, Any] = dict(request.path_params)
    values["who"] = principal.name if principal else "unknown"
    return template.format(**values)


def install(app: FastAPI) -> None:
    """Record each audited route's outcome once its answer is made."""

    @app.middleware("http")
    async def audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.method not in UNSAFE:
            return response
        route = getattr(request.scope.get("route"), "path", None)
        entry = AUDITED.get((request.method, route)) if route else None
        if entry is None:
            return response
        action, template = entry
        principal: Principal | None = getattr(request.state, "principal", None)
        actor = getattr(request.state, "audit_actor", None)
        if actor is None and principal is not None:
            actor = actor_of(principal)
        if actor is None:
            return response  # no valid credentials: no one to name
        ctx: WebContext = request.app.state.ctx
        try:
            await record(
                ctx.store, ctx.publisher.send, actor=actor, action=action,
                object=_object(template, request, principal),
                # the error handlers keep the answer's words (`claritycast.web.errors`)
                outcome=outcome_of(response.status_code,
                                   getattr(request.state, "audit_message", None)),
                detail=getattr(request.state, "audit_detail", None), at=ctx.clock.now(),
            )  # fmt: skip
        except ClarityCastError as exc:
            # The action stands (it is done); the failure to record it must be seen.
            log.error("audit.unrecorded", action=action, actor=actor.describe(), error=str(exc))
        return response
