"""Who may do what over HTTP: a real web process, real accounts, real cookies.

Nothing but /healthz answers without credentials; a viewer reads and never
changes; a change made with a session needs its CSRF token; a revoked API
key stops at once; failed sign-ins are limited per account and per address,
in the same words; a taken port is one line naming its setting.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from claritycast import access
from claritycast.runtime.ports import bind
from claritycast.store.core import Store
from claritycast.web.sessions import MAX_FAILURES_PER_ACCOUNT, Sessions
from tests.helpers import run_cli
from tests.webproc import PASSWORD, add_user, sign_in, web, web_env

__all__ = ["web", "web_env"]  # fixtures

pytestmark = pytest.mark.slow

UNSAFE = ("post", "put", "patch", "delete")


def operations(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path with made-up ids) of every operation the API describes."""
    found = []
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        found += [(method, concrete) for method in methods]
    return found


async def test_access_rules_hold_for_every_route(web: str, web_env: dict[str, str]) -> None:
    """401 without credentials (but /healthz); 403 for a viewer's changes; CSRF for sessions."""
    await add_user(web_env, "admin@example.com", "admin")
    await add_user(web_env, "viewer@example.com", "viewer")
    async with httpx.AsyncClient(base_url=web) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/api/v1/openapi.json")).status_code == 401
        assert (await anonymous.get("/api/docs")).status_code == 401
        assert (await anonymous.get("/metrics")).status_code == 401
        assert (await anonymous.get("/readyz")).status_code == 401

    async with httpx.AsyncClient(base_url=web) as admin:
        assert (await sign_in(admin, "admin@example.com")).status_code == 200
        schema = (await admin.get("/api/v1/openapi.json")).json()
    every = operations(schema)
    assert len(every) > 30
    async with httpx.AsyncClient(base_url=web) as anonymous:
        for method, path in every:
            if path == "/healthz" or (method, path) == ("post", "/api/v1/session"):
                continue  # liveness is open to anyone; signing in carries its credentials
            answer = await anonymous.request(method, path)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "unauthenticated"

    async with httpx.AsyncClient(base_url=web) as viewer:
        signed = await sign_in(viewer, "viewer@example.com")
        csrf = signed.json()["csrf_token"]
        cookie = viewer.cookies.get("claritycast_session")
        assert cookie and "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=lax" in signed.headers["set-cookie"].lower()
        assert (await viewer.get("/api/v1/sources")).status_code == 200
        for method, path in every:
            if method in UNSAFE and path != "/api/v1/session":
                answer = await viewer.request(method, path, headers={"X-CSRF-Token": csrf}, json={})
                assert answer.status_code in (403, 422), (method, path, answer.text)
                if answer.status_code == 422:  # the body is read first only where it must be
                    continue
                assert answer.json()["error"]["code"] == "forbidden"

    async with httpx.AsyncClient(base_url=web) as admin:
        csrf = (await sign_in(admin, "admin@example.com")).json()["csrf_token"]
        org = {"name": "Acme", "timezone": "Europe/Paris"}
        forged = await admin.post("/api/v1/organisations", json=org)
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        form = await admin.post("/api/v1/organisations", data={"name": "Acme"})
        assert form.status_code == 403, "a form post without its token is refused"
        made = await admin.post("/api/v1/organisations", json=org, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        assert (
            await admin.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        ).status_code == 204
        assert (await admin.get("/api/v1/sources")).status_code == 401, "signed out at once"


async def test_a_revoked_api_key_stops_at_once(web: str, web_env: dict[str, str]) -> None:
    """An admin key makes a viewer key; revoked, it is refused on the very next request."""
    code, out, err = await run_cli(web_env, "api-keys", "create", "ops", "--role", "admin")
    assert code == 0, err
    admin_key = out.strip().splitlines()[-1]
    async with httpx.AsyncClient(base_url=web) as client:
        made = await client.post(
            "/api/v1/api-keys", json={"name": "grafana", "role": "viewer"},
            headers={"Authorization": f"Bearer {admin_key}"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        key, key_id = made.json()["key"], made.json()["api_key"]["id"]
        assert key.startswith(f"cc_{key_id}_")
        as_viewer = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/api/v1/sources", headers=as_viewer)).status_code == 200
        refused = await client.post("/api/v1/organisations", json={"name": "X"}, headers=as_viewer)
        assert refused.status_code == 403
        listed = (
            await client.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {admin_key}"})
        ).json()
        assert all("secret" not in json_key and key not in str(listed) for json_key in listed[0])
        revoked = await client.delete(
            f"/api/v1/api-keys/{key_id}", headers={"Authorization": f"Bearer {admin_key}"}
        )
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert (await client.get("/api/v1/sources", headers=as_viewer)).status_code == 401
        forged = as_viewer | {"Authorization": f"Bearer {key[:-2]}xx"}
        assert (await client.get("/api/v1/sources", headers=forged)).status_code == 401


async def test_failed_sign_ins_are_limited_per_account_in_the_same_words(
    web: str, web_env: dict[str, str]
) -> None:
    """Past the limit even the right password is refused, and nothing says which part was wrong."""
    await add_user(web_env, "someone@example.com", "viewer")
    async with httpx.AsyncClient(base_url=web) as client:
        unknown = await sign_in(client, "nobody@example.com", "whatever-whatever")
        wrong = await sign_in(client, "someone@example.com", "not the password")
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json() == wrong.json(), "no hint which of the two was wrong"
        for _ in range(MAX_FAILURES_PER_ACCOUNT - 1):
            assert (await sign_in(client, "someone@example.com", "nope")).status_code == 401
        limited = await sign_in(client, "someone@example.com")
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert "try again in" in limited.json()["error"]["message"]
        assert int(limited.headers["retry-after"]) > 0


async def test_a_taken_port_is_one_line_naming_its_setting(web_env: dict[str, str]) -> None:
    """The web process on a port already in use: one line, the setting named, no traceback."""
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        code, out, err = await run_cli(web_env | {"CLARITYCAST_WEB_PORT": str(port)}, "web")
    finally:
        taken.close()
    assert code == 2, out + err
    assert err.strip().splitlines() == [
        f"claritycast: invalid setting CLARITYCAST_WEB_PORT: cannot listen on 127.0.0.1:{port}: "
        "the port is in use"
    ]


async def test_a_session_ends_after_its_idle_time(store: Store) -> None:
    """Used within the idle time it lives on; left idle longer, it is gone."""
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    who = await access.add_user(store, "idle@example.com", PASSWORD, "viewer", now)
    sessions = Sessions(store, "secret", timedelta(minutes=30))
    cookie, _ = await sessions.open(who, now)
    assert await sessions.read(cookie, now + timedelta(minutes=29)) is not None
    assert await sessions.read(cookie, now + timedelta(minutes=58)) is not None, "renewed"
    assert await sessions.read(cookie, now + timedelta(minutes=89)) is None
    fresh, _ = await sessions.open(who, now)
    value, signature = fresh.rsplit(".", 1)
    forged = f"{value}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert await sessions.read(forged, now) is None, "a forged signature"
    for last in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if last != fresh[-1]:
            variant = fresh[:-1] + last
            assert await sessions.read(variant, now) is None, f"a variant ending in {last}"
    assert await sessions.read(fresh, now) is not None
