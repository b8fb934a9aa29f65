"""`claritycast up` as a user runs it: ready, single instance, nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from claritycast.keyring import parse_keys
from claritycast.runtime.ports import bind, is_listening

pytestmark = pytest.mark.slow

READY_WITHIN_S = 30


def claritycast(*args: str) -> list[str]:
    return [sys.executable, "-m", "claritycast", *args]


def is_running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class UpProcess:
    """`claritycast up` in its own session, as a terminal would run it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
            env["CLARITYCAST_PARTITIONS"] = "2"
            env["CLARITYCAST_WEB_PORT"] = "0"  # a free port: test runs may overlap
        self.env = env | {"CLARITYCAST_DATA_DIR": str(data_dir)}
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            claritycast("up"),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        # `stop` closes the pipe if a child outlives the kill by more than its wait (a
        # worker left without its parent exits after 10 s): that ends the reading too.
        with contextlib.suppress(ValueError, OSError):
            for line in self.process.stdout:
                self.lines.append(line)

    def wait_ready(self, timeout_s: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if any("claritycast is ready" in line for line in self.lines):
                return time.monotonic() - started
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("up did not report ready:\n" + "".join(self.lines))

    def state(self) -> dict[str, object]:
        return json.loads((self.data_dir / "run" / "state.json").read_text())

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            claritycast(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpProcess]:
    process = UpProcess(tmp_path / "var")
    try:
        yield process
    finally:
        process.stop()


def children_of(state: dict[str, object]) -> dict[str, int]:
    children = state["children"]
    assert isinstance(children, dict)
    return children


def ports_of(state: dict[str, object]) -> list[int]:
    return [urlsplit(str(state[key])).port or 0 for key in ("kafka_url", "mongodb_url")]


def wait_gone(pids: list[int], timeout_s: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if is_running(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if is_running(pid)]


def wait_for_line(up: UpProcess, text: str, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [line for line in up.lines if text in line]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r}:\n" + "".join(up.lines))


def test_up_is_ready_single_and_stops_everything_on_ctrl_c(up: UpProcess) -> None:
    """Ready within 30 s; a second up refuses; Ctrl-C leaves no process or port behind."""
    elapsed_s = up.wait_ready(READY_WITHIN_S)
    assert elapsed_s < READY_WITHIN_S
    hint = wait_for_line(up, "No Clarity project is connected yet")
    assert "claritycast demo" in hint
    state = up.state()
    children = children_of(state)
    assert set(children) == {"tansu", "secantusdb", "worker", "web"}
    assert all(is_listening(port) for port in ports_of(state))

    second = up.run("up")
    assert second.returncode == 1
    assert "already running" in second.stderr
    assert str(state["kafka_url"]) in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert children_of(up.state()) == children, "the second up started nothing"

    status = up.run("status")
    assert status.returncode == 0, status.stderr
    assert "embedded servers: running" in status.stdout
    assert f":{children['worker']}:claritycast: stages tick,quota,fetch,store" in status.stdout

    os.killpg(up.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert up.process.wait(60) == 0, "".join(up.lines)
    assert wait_gone([*children.values(), up.process.pid]) == []
    assert not any(is_listening(port) for port in ports_of(state))
    assert not (up.data_dir / "run" / "state.json").exists()
    assert "Traceback" not in "".join(up.lines)

    after = up.run("status")
    assert after.returncode == 1
    assert "no `claritycast up` is running" in after.stderr


def test_kill_9_leaves_no_orphans_and_up_starts_again(up: UpProcess, tmp_path: Path) -> None:
    """SIGKILL of up takes its children down; the same data folder then starts cleanly."""
    up.wait_ready(READY_WITHIN_S)
    children = children_of(up.state())
    up.process.send_signal(signal.SIGKILL)
    up.process.wait()
    assert wait_gone(list(children.values())) == [], "children outlived a killed up"

    again = UpProcess(up.data_dir)
    try:
        again.wait_ready(READY_WITHIN_S)
        assert children_of(again.state())["worker"] != children["worker"]
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(60) == 0
    finally:
        again.stop()


def test_up_with_urls_starts_no_server(settings_env: dict[str, str], tmp_path: Path) -> None:
    """Kafka and MongoDB given by URL: up runs only the worker, against those servers."""
    up = UpProcess(tmp_path / "urls", env=settings_env)
    try:
        up.wait_ready(READY_WITHIN_S)
        state = up.state()
        assert set(children_of(state)) == {"worker", "web"}
        assert state["kafka_url"] == settings_env["CLARITYCAST_KAFKA_URL"]
        assert state["mongodb_url"] == settings_env["CLARITYCAST_MONGODB_URL"]
        assert not (up.data_dir / "mongodb").exists()
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(60) == 0
    finally:
        up.stop()


def test_a_worker_that_exits_is_started_again(up: UpProcess) -> None:
    """up notices a worker that died, says so, and starts a new one, which reports in."""
    up.wait_ready(READY_WITHIN_S)
    first = children_of(up.state())["worker"]
    os.kill(first, signal.SIGKILL)
    line = wait_for_line(up, "exited with code", timeout_s=20)
    assert f"the worker (pid {first}) exited with code -9" in line
    assert "starting a new one in 1 s" in line
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        second = children_of(up.state())["worker"]
        status = up.run("status")
        if second != first and f":{second}:claritycast:" in status.stdout:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("no new worker reported in:\n" + "".join(up.lines))
    assert up.process.poll() is None, "up itself keeps running"
    up.process.send_signal(signal.SIGTERM)
    assert up.process.wait(60) == 0
    assert wait_gone([second]) == []


def test_a_taken_web_port_is_one_line_naming_its_setting(tmp_path: Path) -> None:
    """`up` on a web port already in use starts nothing and says which setting to change."""
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
        env |= {"CLARITYCAST_DATA_DIR": str(tmp_path / "var"), "CLARITYCAST_WEB_PORT": str(port)}
        result = subprocess.run(
            claritycast("up"), env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        taken.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"claritycast: invalid setting CLARITYCAST_WEB_PORT: cannot listen on 127.0.0.1:{port}: "
        "the port is in use"
    ]
    assert not (tmp_path / "var" / "mongodb").exists(), "no server was started"


def test_up_makes_its_key_once_and_everything_on_the_folder_uses_it(up: UpProcess) -> None:
    """The first up makes a 0600 key file and says so once; its worker and commands use it."""
    up.wait_ready(READY_WITHIN_S)
    key_file = up.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len([line for line in up.lines if "keys.created" in line]) == 1
    key_id = parse_keys(key_file.read_text()).writer.key_id
    rotated = up.run("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.startswith(f"0 token(s) re-encrypted with key {key_id}")
    os.killpg(up.process.pid, signal.SIGINT)
    assert up.process.wait(60) == 0

    again = UpProcess(up.data_dir)
    try:
        again.wait_ready(READY_WITHIN_S)
        assert not any("keys.created" in line for line in again.lines), "said once only"
        assert parse_keys(key_file.read_text()).writer.key_id == key_id
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(60) == 0
    finally:
        again.stop()
    assert key_file.read_text().strip() not in "".join(up.lines + again.lines)


def test_up_on_an_external_database_without_a_key_starts_nothing(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    """CLARITYCAST_MONGODB_URL set and no key: one line naming the setting, exit 2, no server."""
    env = {k: v for k, v in settings_env.items() if k != "CLARITYCAST_SECRET_KEYS"}
    up = UpProcess(tmp_path / "external", env=env)
    try:
        assert up.process.wait(60) == 2
        up.stop()
        output = "".join(up.lines)
        assert output.startswith("claritycast: invalid setting CLARITYCAST_SECRET_KEYS: not set")
        assert "external MongoDB" in output and "Traceback" not in output
        assert not (up.data_dir / "secret.key").exists()
        assert not (up.data_dir / "run" / "state.json").exists()
        assert not (up.data_dir / "mongodb").exists()
    finally:
        up.stop()
