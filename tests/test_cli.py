"""The command line: only commands that exist and work, and one-line failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from claritycast.cli.main import cli

COMMANDS = {
    "up",
    "worker",
    "status",
    "stages",
    "config",
    "connect",
    "orgs",
    "sources",
    "series",
    "simulate",
    "connections",
    "send-now",
    "preview",
    "deliveries",
    "demo",
    "refresh",
    "dead-letters",
    "replay",
    "topics",
    "quota",
    "web",
    "users",
    "api-keys",
    "projects",
    "keys",
    "audit",
}


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    return subprocess.run(
        [sys.executable, "-m", "claritycast", *args],
        env=base | (env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_exactly_the_commands(tmp_path: Path) -> None:
    """`claritycast --help` lists every command, and nothing else."""
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    listed = result.stdout.split("Commands:", 1)[1].split()
    assert {word for word in listed if word in cli.commands} == COMMANDS
    assert set(cli.commands) == COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str, tmp_path: Path) -> None:
    """Every listed command answers --help."""
    result = run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage: claritycast " + command in result.stdout


def test_status_without_servers_says_how_to_start(tmp_path: Path) -> None:
    """Nothing running and no URLs: one line that says what to do."""
    result = run("status", cwd=tmp_path, env={"CLARITYCAST_DATA_DIR": str(tmp_path / "var")})
    assert result.returncode == 1
    assert "start it with `claritycast up`" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_refuses_an_unknown_stage(tmp_path: Path) -> None:
    """A typo in --stages is one clear line, before anything connects."""
    result = run("worker", "--stages", "stroe", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "claritycast: unknown stage 'stroe'; stages are: tick, quota, fetch, store, render, "
        "deliver; groups: tick-quota, fetch-store, render-deliver; or 'all'"
    )


def test_stages_lists_the_chain(tmp_path: Path) -> None:
    """`claritycast stages` shows every chain stage and which are built."""
    result = run("stages", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[3].startswith("store ")
