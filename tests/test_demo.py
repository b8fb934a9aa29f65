"""`claritycast demo` as a newcomer runs it: everything local, 30 days, reports in the outbox."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from claritycast.standins.demo import CONNECTIONS, TIMEZONE

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
def test_the_demo_leaves_a_30_day_chart_in_the_outbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    result = subprocess.run(
        [sys.executable, "-m", "claritycast", "demo"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "day 30/30" in out and "Traceback" not in out + result.stderr
    outbox = tmp_path / "var" / "outbox"
    assert f"what was sent is in {Path('var') / 'outbox'}" in out

    yesterday = (datetime.now(UTC).astimezone(ZoneInfo(TIMEZONE)) - timedelta(days=1)).date()
    daily = sorted((outbox / "slack").glob("web-metrics-*.json"))
    assert len(daily) == 31, "one report a day, and the day it was connected"
    last = json.loads(daily[-1].read_text())
    context = next(b for b in last["blocks"] if b["type"] == "context")
    assert context["elements"][0]["text"] == f"30 days to {yesterday.day} {yesterday:%b %Y}"
    png = Image.open(io.BytesIO(daily[-1].with_suffix(".png").read_bytes()))
    assert png.size == (1600, 900)
    assert (
        f"the latest 30-day chart: {Path('var') / 'outbox' / 'slack' / daily[-1].stem}.png" in out
    )

    emails = sorted((outbox / "email").glob("*.eml"))
    assert emails, "the weekly and monthly email connections sent something"
    for path in emails:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message.get_body(("html",)) is not None
        assert any(part.get_content_type() == "image/png" for part in message.walk())
    names = {c.project.lower() + "-" + c.metric.replace("_", "-") for c in CONNECTIONS}
    assert all(any(line.strip().startswith(name) for line in out.splitlines()) for name in names)
