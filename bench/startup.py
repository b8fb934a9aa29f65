"""How long `claritycast up` takes to be ready, and to stop, on the embedded default.

.venv/bin/python -m bench.startup [runs]
"""

from __future__ import annotations

import statistics
import sys

from bench.embedded import Up


def main(runs: int) -> None:
    ready_s: list[float] = []
    stop_s: list[float] = []
    for _ in range(runs):
        up = Up()
        try:
            ready_s.append(up.wait_ready())
            stop_s.append(up.stop())
        finally:
            up.kill()
    for name, values in (("ready", ready_s), ("stop", stop_s)):
        print(
            f"up {name:5}: min {min(values):.2f} s  median {statistics.median(values):.2f} s  "
            f"max {max(values):.2f} s  ({runs} runs)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
