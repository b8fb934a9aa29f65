"""How often a worker's `kill -9` mid-pull loses anything: the kill -9 test, run many times.

One run is the kill -9 test of `tests/test_restarts.py` in its own pytest
process (its own broker, database and simulator): two workers, one killed with
SIGKILL during a 20-project pull. The run fails if any group is not stored, any
grant never reached the fetch stage, or any project saw more than 10 requests
in 24 h. Several lanes run at once, so the runs also load the machine the way a
busy CI does; rebalance races show up under load, not on an idle machine.

    .venv/bin/python -m bench.failover [runs] [lanes]      (default: 30 3)

Prints one line per run and a summary: runs, failures, and the run time's median.
A failed run's pytest output is kept under ``var/bench/failover/``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

TEST = "tests/test_restarts.py::test_kill_9_of_a_worker_mid_pull_spends_no_extra_and_is_taken_over"
ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "var" / "bench" / "failover"


async def one_run(number: int) -> tuple[bool, float]:
    """Run the test once; (passed, seconds)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    seconds = time.monotonic() - started
    passed = process.returncode == 0
    if not passed:
        KEPT.mkdir(parents=True, exist_ok=True)
        (KEPT / f"run-{number:03d}.txt").write_bytes(output)
    return passed, seconds


async def main(runs: int, lanes: int) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(1, runs + 1):
        queue.put_nowait(number)
    results: list[tuple[bool, float]] = []

    async def lane() -> None:
        while not queue.empty():
            number = queue.get_nowait()
            passed, seconds = await one_run(number)
            results.append((passed, seconds))
            verdict = "ok" if passed else f"FAILED (kept in {KEPT.relative_to(ROOT)})"
            print(f"run {number:3d}: {seconds:5.1f} s  {verdict}", flush=True)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    failed = sum(1 for passed, _ in results if not passed)
    median = statistics.median(seconds for _, seconds in results)
    print(
        f"\nkill -9 failover: {runs} runs, {lanes} at a time: {failed} failed; "
        f"median run {median:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    sys.exit(asyncio.run(main(*(arguments + [30, 3][len(arguments) :]))))
