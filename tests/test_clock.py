"""The file clock that `bench.month` moves for real worker processes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from claritycast.clock import FileClock, write_clock_file
from claritycast.settings import load_settings


def test_a_file_clock_tells_the_time_last_written(tmp_path: Path) -> None:
    """Time stands still between writes and jumps with each, in UTC whatever was written."""
    path = tmp_path / "clock"
    first = datetime(2026, 11, 24, 0, 35, tzinfo=UTC)
    write_clock_file(path, first)
    clock = FileClock(path)
    assert clock.now() == first
    assert clock.now() == first
    later = datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    write_clock_file(path, later)
    assert clock.now() == later
    assert clock.now().tzinfo is UTC
    assert list(tmp_path.iterdir()) == [path], "no temporary file left behind"


def test_a_naive_moment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_clock_file(tmp_path / "clock", datetime(2026, 11, 24))


def test_the_setting_is_unset_by_default(tmp_path: Path) -> None:
    assert load_settings().clock_file is None
    assert load_settings(clock_file=tmp_path / "clock").clock_file == tmp_path / "clock"
