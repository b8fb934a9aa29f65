"""Run `claritycast up` in a scratch data folder and read its state (bench helper)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from claritycast.runtime.embedded import tansu
from claritycast.runtime.ports import free_port

# What another run's processes look like: a figure taken beside one is off (a worker
# orphaned by an interrupted run once used a fifth of a core through two benchmarks).
OTHERS = (
    "claritycast worker", "claritycast up", "claritycast web", "-m secantus", "secantusdb_main",
    "tansu",
)  # fmt: skip
UP_TAIL_LINES = 80  # printed when a run ends with `up` still running


def other_runs() -> list[str]:
    """Processes of another claritycast run on this machine, as "pid command"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if any(marker in command for marker in OTHERS):
            found.append(f"{entry.name} {command[:100]}")
    return found


class Up:
    """`claritycast up` as a user runs it, in its own session and data folder.

    It refuses to start beside another run's processes (``BENCH_ALLOW_OTHERS=1``
    to start anyway): they would share the cores being measured.
    """

    def __init__(self, **settings: str) -> None:
        others = other_runs()
        if others and os.environ.get("BENCH_ALLOW_OTHERS") != "1":
            raise SystemExit(
                "another claritycast run is using this machine; stop it, or set "
                "BENCH_ALLOW_OTHERS=1 to measure beside it:\n  " + "\n  ".join(others)
            )
        self.data_dir = Path(tempfile.mkdtemp(prefix="claritycast-bench-")) / "var"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
        env["CLARITYCAST_DATA_DIR"] = str(self.data_dir)
        env["CLARITYCAST_WEB_PORT"] = "0"  # a free port, unless the caller names one
        env.update({f"CLARITYCAST_{k.upper()}": v for k, v in settings.items()})
        self.started = time.monotonic()
        self.ready = threading.Event()
        self.lines: list[str] = []
        self.kept: list[str] = []  # lines holding one of `keep`, for a benchmark to read
        self.keep: tuple[str, ...] = ("broker.restart", "broker.drain", "database.")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "claritycast", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "claritycast is ready" in line:
                self.ready.set()
            if any(marker in line for marker in self.keep):
                self.kept.append(line)

    def wait_ready(self, timeout_s: float = 60) -> float:
        if not self.ready.wait(timeout_s):
            self.kill()
            raise SystemExit("claritycast up did not become ready")
        return time.monotonic() - self.started

    def state(self) -> dict[str, object]:
        return json.loads((self.data_dir / "run" / "state.json").read_text())

    def children(self) -> dict[str, int]:
        """The pid of each child `up` runs now (its state is rewritten atomically on a restart)."""
        children = self.state()["children"]
        assert isinstance(children, dict)
        return children

    def stop(self) -> float:
        began = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(120)
        return time.monotonic() - began

    def kill(self) -> None:
        """Kill whatever is left of it and remove its scratch folder (the end of every run).

        A benchmark's data would otherwise stay behind: a 10,000-project night
        leaves over a gigabyte of database files. A run that ends with `up` still
        running ended early (an error, a timeout, Ctrl-C): the end of `up`'s output
        is printed first, since the scratch folder with its logs goes too.
        """
        if self.process.poll() is None:
            tail = "".join(self.lines[-UP_TAIL_LINES:])
            print(f"-- the last {UP_TAIL_LINES} lines of claritycast up:\n{tail}", file=sys.stderr)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def stop_on_sigterm() -> None:
    """SIGTERM ends a benchmark as Ctrl-C does: `up` and the stand-ins stopped, scratch removed.

    Without it SIGTERM kills the benchmark at once and leaves `up` running, orphaned.
    SIGINT is given Python's own handler back first: a shell starts a background
    job (``nohup ... &``) with SIGINT ignored, and asyncio then ignores it too.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a live process from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


@asynccontextmanager
async def fresh_tansu(topic: str, partitions: int) -> AsyncIterator[tuple[str, int]]:
    """A Tansu of its own, started as `up` starts it, with ``topic`` made: (bootstrap, pid)."""
    port = free_port()
    broker = tansu(port, Path(tempfile.mkdtemp(prefix="claritycast-bench-broker-")))
    await broker.start()
    assert broker.pid is not None
    bootstrap = f"127.0.0.1:{port}"
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        await admin.close()
        yield bootstrap, broker.pid
    finally:
        await broker.stop()
