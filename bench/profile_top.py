"""Sum py-spy's collapsed stacks by function: where a process spent its samples.

    .venv/bin/python -m bench.profile_top FILE.txt [how many] [--inclusive]

Self time by default (the function on top of the stack); ``--inclusive``
counts every function once per sample it appears in, which shows which of
our calls (or which server command) the time was spent under.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def top(path: Path, count: int, inclusive: bool) -> list[tuple[str, int, float]]:
    totals: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        n = int(number)
        samples += n
        frames = stack.split(";")
        if inclusive:
            for frame in set(frames):
                totals[frame] += n
        else:
            totals[frames[-1]] += n
    return [(frame, n, 100 * n / max(samples, 1)) for frame, n in totals.most_common(count)]


def main(argv: list[str]) -> None:
    inclusive = "--inclusive" in argv
    args = [a for a in argv if not a.startswith("--")]
    for frame, n, share in top(Path(args[0]), int(args[1]) if len(args) > 1 else 30, inclusive):
        print(f"{share:5.1f} % {n:7d}  {frame}")


if __name__ == "__main__":
    main(sys.argv[1:])
