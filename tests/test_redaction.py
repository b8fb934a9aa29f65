"""Secrets never reach a log line, whatever their shape and wherever they hide."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from claritycast.logs import configure_logging, get_logger
from claritycast.redact import MASK, redact, redact_value, register_secret

# Made up for the tests: the shapes of real secrets, never real ones.
CLARITY_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJwcm9qZWN0LTEiLCJpc3MiOiJjbGFyaXR5IiwiYXVkIjoiY2xhcml0eS5kYXRhLWV4cG9ydGVyIn0."
    "c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb25nLWVub3VnaA"
)
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"calling clarity with {CLARITY_TOKEN}", CLARITY_TOKEN),
        (f"Authorization: Bearer {CLARITY_TOKEN}", CLARITY_TOKEN),
        (f"slack said invalid_auth for {SLACK_TOKEN}", SLACK_TOKEN),
        ("Authorization: Bearer opaque-token-123456", "opaque-token-123456"),
        ("mongodb://claritycast:s3cr3t-pass@db:27017/x", "s3cr3t-pass"),
        ("smtp login password=hunter2hunter2 failed", "hunter2hunter2"),
        ('{"api_key": "sk-abcdefghijklmnopqrstuvwx"}', "sk-abcdefghijklmnopqrstuvwx"),
        (
            "a request with cc_0123456789ab_V5894ab7zJcOucHZPEdbwi8LLd8TmAVhUOZI0QgxezM failed",
            "V5894ab7zJcOucHZPEdbwi8LLd8TmAVhUOZI0QgxezM",
        ),
    ],
)
def test_token_shapes_are_masked(text: str, secret: str) -> None:
    """Each secret shape is replaced by the mask."""
    redacted = redact(text)
    assert secret not in redacted
    assert MASK in redacted


def test_registered_secret_without_shape_is_masked() -> None:
    """A plain password registered at start-up is masked wherever it appears."""
    register_secret("plainpassword42")
    assert redact("login with plainpassword42 refused") == f"login with {MASK} refused"


def test_secret_keys_mask_the_whole_value() -> None:
    """Under a key that names a secret, the whole value goes, even if it has no shape."""
    assert redact_value("token", "abc") == MASK
    assert redact_value("context", {"password": "x1", "user": "me"}) == {
        "password": MASK,
        "user": "me",
    }


def test_ordinary_text_is_untouched() -> None:
    """Page titles, URLs and counts pass through unchanged."""
    text = "https://shop.example/cart?item=42 — 1,204 sessions, scroll 63%"
    assert redact(text) == text


@pytest.fixture
def log_output() -> io.StringIO:
    stream = io.StringIO()
    yield stream
    configure_logging("WARNING", "human", stream=io.StringIO())
    structlog.reset_defaults()


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_token_never_reaches_the_log(log_output: io.StringIO, fmt: str) -> None:
    """In messages, fields, tracebacks and library records, the token is masked."""
    configure_logging("DEBUG", fmt, stream=log_output)
    log = get_logger("claritycast.test", project="p1")
    log.info("clarity.request", url=f"https://x/?t={CLARITY_TOKEN}", token=CLARITY_TOKEN)
    log.warning(f"slack refused {SLACK_TOKEN}")
    try:
        raise RuntimeError(f"401 for Bearer {CLARITY_TOKEN}")
    except RuntimeError:
        log.exception("clarity.failed")
    logging.getLogger("aiokafka.test").warning("connecting with %s", SLACK_TOKEN)

    output = log_output.getvalue()
    assert CLARITY_TOKEN not in output
    assert SLACK_TOKEN not in output
    assert "eyJhbGciOi" not in output
    assert "clarity.request" in output and "clarity.failed" in output
    assert "RuntimeError" in output, "the traceback is kept, minus the secret"
    lines = output.strip().splitlines()
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert {r["event"] for r in records} >= {"clarity.request", "clarity.failed"}
        assert all(r.get("project") == "p1" for r in records if r["logger"] == "claritycast.test")


def test_cli_never_prints_a_configured_token(tmp_path: Path) -> None:
    """`claritycast config` shows secret settings as *** and nothing token-shaped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env |= {"CLARITYCAST_SLACK_TOKEN": SLACK_TOKEN, "CLARITYCAST_SMTP_PASSWORD": "pw-0000-zz"}
    result = subprocess.run(
        [sys.executable, "-m", "claritycast", "config"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = result.stdout + result.stderr
    assert SLACK_TOKEN not in output and "pw-0000-zz" not in output
    assert "CLARITYCAST_SLACK_TOKEN" in output
