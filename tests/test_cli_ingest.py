"""The ingestion commands across processes: a worker, the simulator, and the CLI."""

from __future__ import annotations

import pytest

from claritycast.standins.clarity import ClaritySimulator
from claritycast.store.core import Store
from tests.helpers import WorkerProcess
from tests.helpers import run_cli as claritycast

pytestmark = pytest.mark.slow

START = None  # a real worker process: the real clock


async def test_connect_sources_and_series_from_the_command_line(
    settings_env: dict[str, str], simulator: ClaritySimulator, store: Store
) -> None:
    """connect reads the token from stdin, pulls 7 groups; sources and series show them."""
    env = settings_env | {"CLARITYCAST_CLARITY_API_URL": simulator.export_url}
    token = simulator.add_project("cli-shop").token
    worker = WorkerProcess(env, stages="all")
    await worker.start(store)
    try:
        code, out, err = await claritycast(env, "orgs", "add", "Acme", "--timezone", "Europe/Paris")
        assert code == 0, err
        code, out, err = await claritycast(env, "orgs", "add", "Bad", "--timezone", "Mars/Base")
        assert code == 1
        assert err.strip() == (
            "claritycast: unknown timezone 'Mars/Base': use an IANA name such as Europe/Paris"
        )
        code, out, err = await claritycast(
            env, "connect", "--token", "-", "--label", "Shop", "--org", "Acme", stdin=token
        )
        assert code == 0, out + err
        lines = out.splitlines()
        assert lines[0].startswith("connected Shop as shop-")
        assert [line.split()[1] for line in lines[2:]] == ["stored"] * 7
        assert token not in out + err

        code, out, err = await claritycast(env, "sources")
        assert code == 0, err
        assert "Shop" in out and "active" in out and "7/10" in out

        code, out, err = await claritycast(
            env, "series", "--project", "Shop", "--metric", "sessions", "--days", "7"
        )
        assert code == 0, err
        assert out.splitlines()[-1] == "1 of 7 days collected"
        values = [line.split()[1] for line in out.splitlines()[1:-1]]
        assert values.count("-") == 6
        assert float(next(v for v in values if v != "-").replace(",", "")) > 0

        code, out, err = await claritycast(
            env, "series", "--project", "Shop", "--metric", "top_browsers"
        )
        assert code == 0, err
        assert "Chrome" in out

        code, out, err = await claritycast(env, "connect", "--token", "not-a-jwt", "--label", "X")
        assert code == 1
        assert err.strip() == (
            "claritycast: token is not a JWT (expected three dot-separated parts)"
        )
        code, out, err = await claritycast(
            env, "series", "--project", "Shop", "--metric", "sesions"
        )
        assert code == 1
        assert "unknown metric 'sesions'" in err
    finally:
        assert await worker.stop() == 0
    assert len(simulator.requests_for("cli-shop")) == 7
