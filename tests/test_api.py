"""The HTTP API against a real `claritycast up`: everything the CLI does, over HTTP.

`up` runs a worker and the web process against the suite's Tansu and
SecantusDB (given by URL, so it starts no server of its own); the Clarity
simulator, the Slack stand-in and a real SMTP server run in the test's
process. What the API says is checked in the store and at the stand-ins, and
the metrics the processes report are checked against what the store holds.
The OpenAPI description is then fuzzed against the same running app.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from claritycast.standins.clarity import ClaritySimulator
from claritycast.standins.slack import SlackStandin
from claritycast.standins.smtp import SmtpCatcher
from claritycast.store.core import Store
from models.clarity import GROUP_NAMES
from models.delivery import DeliveryState
from tests.helpers import run_cli, wait_for
from tests.test_up import UpProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

START = None  # real processes: the real clock
READY_WITHIN_S = 60


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpCatcher]:
    async with SmtpCatcher() as catcher:
        yield catcher


@pytest.fixture
def up_env(
    settings_env: dict[str, str],
    simulator: ClaritySimulator,
    slack: SlackStandin,
    smtp: SmtpCatcher,
) -> dict[str, str]:
    return settings_env | {
        "CLARITYCAST_CLARITY_API_URL": simulator.export_url,
        "CLARITYCAST_SLACK_TOKEN": slack.token,
        "CLARITYCAST_SLACK_API_URL": slack.base_url,
        "CLARITYCAST_SMTP_HOST": "127.0.0.1",
        "CLARITYCAST_SMTP_PORT": str(smtp.port),
        "CLARITYCAST_SMTP_SECURITY": "none",
        "CLARITYCAST_TICK_INTERVAL_S": "0.5",
        "CLARITYCAST_DELIVERY_GRACE_S": "0",
    }


@pytest.fixture
def up(up_env: dict[str, str], tmp_path: Path) -> Iterator[UpProcess]:
    process = UpProcess(tmp_path / "var", env=up_env)
    try:
        process.wait_ready(READY_WITHIN_S)
        yield process
    finally:
        process.stop()


def web_url(up: UpProcess) -> str:
    ready = next(line for line in up.lines if "claritycast is ready" in line)
    match = re.search(r"web at (http://[0-9.]+:\d+)", ready)
    assert match, ready
    return match.group(1)


async def admin_key(env: dict[str, str]) -> str:
    code, out, err = await run_cli(env, "api-keys", "create", "tests", "--role", "admin")
    assert code == 0, err
    return out.strip().splitlines()[-1]


async def pulled(client: httpx.AsyncClient, location: str) -> dict[str, Any] | None:
    view = (await client.get(location)).json()
    return view if view["done"] else None


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in sample for key, val in labels.items()):
            total += float(value)
    return total


async def test_the_api_does_what_the_cli_does_and_its_contract_holds(
    up: UpProcess,
    up_env: dict[str, str],
    store: Store,
    simulator: ClaritySimulator,
    slack: SlackStandin,
    smtp: SmtpCatcher,
) -> None:
    """Connect, refresh, replay, connections, send-now, the log, metrics; then a fuzz run."""
    base = web_url(up)
    key = await admin_key(up_env)
    shop = simulator.add_project("api-shop")
    simulator.set_fault("api-shop", "wrong-shape-200", only="Device", times=1)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        org = await client.post("/api/v1/organisations", json={"name": "Acme", "timezone": "UTC"})
        assert org.status_code == 201, org.text

        # Test & Connect: the token checked first, nothing stored when it fails.
        bad = await client.post("/api/v1/sources", json={"token": "nope", "label": "Bad"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "token"
        created = await client.post(
            "/api/v1/sources", json={"token": shop.token, "label": "Shop", "organisation": "Acme"}
        )
        assert created.status_code == 202, created.text
        source = created.json()["source"]["id"]
        assert shop.token not in created.text
        location = created.headers["location"]
        async with client.stream("GET", f"{location}/events") as events:
            body = "".join([chunk async for chunk in events.aiter_text()])
        group_events = [json.loads(line[5:]) for line in body.splitlines()
                        if line.startswith("data:") and '"group"' in line]  # fmt: skip
        assert sorted(e["group"] for e in group_events) == sorted(GROUP_NAMES)
        pull = await wait_for(lambda: pulled(client, location), timeout_s=60)
        outcomes = {g["group"]: g["outcome"] for g in pull["groups"]}
        assert outcomes["device"] == "malformed response"
        assert list(outcomes.values()).count("stored") == 6

        # Replay the dead letter: the group is stored; Clarity saw one more request.
        replayed = await client.post(
            "/api/v1/dead-letters/replay", json={"source": source, "wait_s": 60}
        )
        assert replayed.status_code == 200, replayed.text
        assert [(r["outcome"], r["end"]) for r in replayed.json()] == [("sent", "stored")]
        stored_day = pull["local_date"]
        assert await store.groups_stored(source, stored_day) == set(GROUP_NAMES)

        # Refresh: every group is stored, so nothing to refresh; a named refusal.
        refresh = await client.post(f"/api/v1/sources/{source}/refresh", json={})
        assert refresh.status_code == 422 and "nothing to refresh" in refresh.text

        # Connections to the Slack stand-in and the SMTP server; preview; send now.
        for body_ in (
            {"source": source, "metric": "sessions", "slack_channel": "#reports", "name": "s"},
            {"source": source, "metric": "top_browsers", "emails": "ops@example.com", "name": "e"},
        ):
            made = await client.post("/api/v1/connections", json=body_)
            assert made.status_code == 201, made.text
        invalid = await client.post(
            "/api/v1/connections", json={"source": source, "metric": "sessions", "emails": "ops@"}
        )
        assert invalid.status_code == 422 and invalid.json()["error"]["field"] == "emails"
        preview = await client.get("/api/v1/connections/s/preview")
        assert preview.headers["content-type"] == "image/png"
        assert preview.content.startswith(b"\x89PNG")
        for name in ("s", "e"):
            sent = await client.post(f"/api/v1/connections/{name}/send", json={"wait_s": 60})
            assert sent.status_code == 202, sent.text
            assert sent.json()["delivery"]["state"] == "sent", sent.text
        assert len(slack.messages) == 1 and len(smtp.messages) == 1
        log = (await client.get("/api/v1/deliveries")).json()["items"]
        assert {d["connection"] for d in log if d["state"] == "sent"} == {"s", "e"}
        assert {d["receipt"]["ts"] for d in log if d["connection"] == "s"} == {slack.messages[0].ts}

        # Metrics: what the processes counted is what the store says happened.
        web_metrics = (await client.get("/metrics")).text
        assert metric_sum(web_metrics, "claritycast_http_requests_total", route="/api/v1/sources",
                          method="POST", status="202") == 1  # fmt: skip
        [worker] = (await client.get("/api/v1/workers")).json()
        worker_metrics = (await client.get(worker["metrics_url"])).text
        calls = len(simulator.requests_for("api-shop"))
        assert metric_sum(worker_metrics, "claritycast_clarity_calls_total") == calls == 8
        snapshots = await store.count_snapshots(source)
        assert metric_sum(worker_metrics, "claritycast_snapshots_stored_total") == snapshots == 7
        sent_in_store = [d for d in await store.deliveries() if d.state is DeliveryState.SENT]
        assert metric_sum(worker_metrics, "claritycast_deliveries_total", outcome="sent") == len(
            sent_in_store
        ) == 2  # fmt: skip
        async with httpx.AsyncClient(timeout=10) as anonymous:
            assert (await anonymous.get(worker["metrics_url"])).status_code == 401

    # The contract, fuzzed: no 5xx, every answer as described, every error in the one shape.
    code, output = await fuzz(base, key, up.data_dir)
    assert code == 0, output[-6000:]


async def fuzz(base: str, key: str, workdir: Path) -> tuple[int, str]:
    """Schemathesis against the live app, with bounded examples per route."""
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert executable is not None
    argv = [
        executable, "run", f"{base}/api/v1/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", ",".join((
            "not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_schema_conformance", "response_headers_conformance",
            "negative_data_rejection", "ignored_auth", "unsupported_method",
        )),
        "--max-examples", "8", "--workers", "2", "--seed", "1",
        # Revoking the fuzzer's own key or removing people would lock the run out.
        "--exclude-path-regex", "^/api/v1/(api-keys|users)/",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")
