"""Time from an injectable clock, so tests and the demo can run days in seconds."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time, timezone-aware, in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests, the demo, the simulator)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


class FileClock:
    """The time written in a file, for benchmarks that run real worker processes on a fast clock.

    Whoever moves time (`bench.month`) rewrites the file, atomically, with an
    ISO 8601 instant; every worker reading it sees the same time, and time
    stands still between two writes, as with `ManualClock`. The file is read
    again only when it was replaced.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._now = datetime.fromtimestamp(0, UTC)

    def now(self) -> datetime:
        stat = self.path.stat()
        version = (stat.st_ino, stat.st_mtime_ns)
        if version != self._seen:
            self._now = datetime.fromisoformat(self.path.read_text().strip()).astimezone(UTC)
            self._seen = version
        return self._now


def write_clock_file(path: Path, moment: datetime) -> None:
    """Set a `FileClock`'s time: a new file renamed over the old one, never half written."""
    if moment.tzinfo is None:
        raise ValueError("the clock file needs a timezone-aware moment")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(moment.astimezone(UTC).isoformat())
    temporary.replace(path)
