"""Changes over HTTP are on the audit trail, and replacing a token works over HTTP.

A real web process, real accounts and API keys: each change is one record
naming its actor (the account, or the API key's name), its object and how it
ended; refusals and forged posts are recorded as refusals; a sign-in for an
account that does not exist names no one. No record, answer or log holds a
token, a password or an API key.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from claritycast.clarity.token import fingerprint
from claritycast.store.core import Store
from claritycast.web import monitoring
from claritycast.web.app import API_ROUTERS
from claritycast.web.audit_trail import AUDITED, READ_ONLY
from claritycast.web.auth import UNSAFE
from models.documents import ProjectStatus
from tests.helpers import make_token, run_cli
from tests.webproc import PASSWORD, add_user, sign_in, web, web_env

__all__ = ["web", "web_env"]  # fixtures

pytestmark = pytest.mark.slow


def test_every_route_that_may_change_something_is_audited() -> None:
    """A new route that changes something cannot be added without its audit action."""
    changing = {
        (method, route.path)
        for router in (monitoring.router, *API_ROUTERS)
        for route in router.routes
        for method in getattr(route, "methods", None) or ()
        if method in UNSAFE
    }
    assert len(changing) > 15, "the routes that change things are all seen"
    assert changing - READ_ONLY == set(AUDITED), "audit each changing route, or say it reads only"


async def admin_key(env: dict[str, str], name: str = "deployer") -> str:
    code, out, err = await run_cli(env, "api-keys", "create", name, "--role", "admin")
    assert code == 0, err
    return out.strip().splitlines()[-1]


async def test_http_changes_are_audited_with_their_actor_and_outcome(
    web: str, web_env: dict[str, str], store: Store
) -> None:
    began = datetime.now(UTC)
    key = await admin_key(web_env)
    await add_user(web_env, "viewer@example.com", "viewer")
    token = make_token("shop-project")
    bad_token = make_token("shop-project", exp=1_000_000)  # expired in 1970
    async with httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {key}"}) as api:
        made = await api.post("/api/v1/sources", json={"token": token, "label": "Shop"})
        assert made.status_code == 202, made.text
        source = made.json()["source"]
        project_id = source["id"]
        assert source["token_fingerprint"] == fingerprint(token)
        refused = await api.put(f"/api/v1/sources/{project_id}/token", json={"token": bad_token})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "token"
        assert (await api.post(f"/api/v1/sources/{project_id}/pause")).status_code == 200
        duplicate = await api.post("/api/v1/sources", json={"token": token, "label": "Shop"})
        assert duplicate.status_code == 409

    async with httpx.AsyncClient(base_url=web) as viewer:
        csrf = (await sign_in(viewer, "viewer@example.com")).json()["csrf_token"]
        denied = await viewer.post(
            f"/api/v1/sources/{project_id}/resume", headers={"X-CSRF-Token": csrf}
        )
        assert denied.status_code == 403
        forged = await viewer.post(f"/api/v1/sources/{project_id}/resume")
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
    async with httpx.AsyncClient(base_url=web) as stranger:
        assert (await sign_in(stranger, "viewer@example.com", "wrong")).status_code == 401
        assert (await sign_in(stranger, PASSWORD, PASSWORD)).status_code == 401  # swapped fields
        anonymous = await stranger.post(f"/api/v1/sources/{project_id}/resume")
        assert anonymous.status_code == 401

    trail = [e for e in await store.audit_events(since=began, limit=1000) if e.actor_kind != "cli"]
    lines = [(e.actor.describe(), e.action, e.object, e.outcome.split(":")[0]) for e in trail]
    project = f"project:{project_id}"
    assert lines == [
        ("api-key:deployer", "project.connect", project, "ok"),
        ("api-key:deployer", "project.set-token", project, "refused"),
        ("api-key:deployer", "project.pause", project, "ok"),
        ("api-key:deployer", "project.connect", "project:new", "refused"),
        ("user:viewer@example.com", "account.sign-in", "account:viewer@example.com", "ok"),
        ("user:viewer@example.com", "project.resume", project, "refused"),
        ("user:viewer@example.com", "project.resume", project, "refused"),
        ("user:viewer@example.com", "account.sign-in", "account:viewer@example.com", "refused"),
        ("user:unknown", "account.sign-in", "account:unknown", "refused"),
    ]
    outcomes = [e.outcome for e in trail]
    assert outcomes[5] == "refused: your role may read, not change: ask an admin"
    assert outcomes[6] == "refused: the form is out of date or not ours: reload the page"
    assert "exists already" in outcomes[3]
    assert trail[0].detail == "label 'Shop'"
    by_cli = [e for e in await store.audit_events(since=began, limit=1000) if e.actor_kind == "cli"]
    assert [(e.action, e.outcome) for e in by_cli] == [("api-key.create", "ok"), ("user.add", "ok")]
    everything = repr([e.to_representation() for e in await store.audit_events(limit=1000)])
    for secret in (token, bad_token, key, PASSWORD):
        assert secret not in everything


async def test_a_token_is_replaced_over_http_and_the_source_is_active_again(
    web: str, web_env: dict[str, str], store: Store
) -> None:
    """PUT …/token: checked first, stored sealed, "token invalid" back to active."""
    key = await admin_key(web_env)
    first, second = make_token("shop-project"), make_token("shop-project-2")
    async with httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {key}"}) as api:
        made = await api.post("/api/v1/sources", json={"token": first, "label": "Shop"})
        project_id = made.json()["source"]["id"]
        await store.set_project_status(
            project_id, ProjectStatus.TOKEN_INVALID, "token invalid (401)"
        )
        assert (await api.get(f"/api/v1/sources/{project_id}")).json()["status"] == "token invalid"
        missing = await api.put("/api/v1/sources/nothing-here/token", json={"token": second})
        assert missing.status_code == 404
        replaced = await api.put(f"/api/v1/sources/{project_id}/token", json={"token": second})
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["status"] == "active"
        assert replaced.json()["token_fingerprint"] == fingerprint(second)
        assert second not in replaced.text
    stored = await store.get_project(project_id)
    assert stored is not None and stored.sealed_token is not None
    assert second not in stored.sealed_token and store.open_token(stored) == second
    events = await store.audit_events(object_name=f"project:{project_id}", limit=100)
    assert [(e.action, e.outcome, e.detail) for e in events][-1] == (
        "project.set-token",
        "ok",
        "was token invalid, now active",
    )
