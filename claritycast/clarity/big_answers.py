"""A large answer, cut down for reading; the complete one stays in the claim check.

Charts, summaries and ``claritycast series`` read a snapshot's blocks for up
to 90 days at a time. A big shop's URL breakdown can hold 20,000 rows or
more per day, and reading that 90 times over is slow for nothing: a chart
shows the top 10. So a snapshot keeps, per block, the aggregate row and the
rows of its `ROWS_KEPT` largest dimension values (by sessions, from the
Traffic block, the same values in every block so figures of one page stay
together), and records how many rows each block really had. The complete
answer is pinned in the claim check (`claritycast.store.claim_check`) under the
snapshot's ``blocks_ref``.

`ROWS_KEPT` is Clarity's documented maximum per answer, so an answer of the
documented size is stored whole. A page outside a day's top 1,000 by
sessions adds at most the 1,000th page's figure to a window's total, so a
breakdown's top 10 over days is the same in every realistic case; the chart
says how many values there were in all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.documents import Snapshot

ROWS_KEPT = 1000


def _dims_key(row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((row.get("dims") or {}).items()))


def _is_aggregate(row: dict[str, Any]) -> bool:
    dims = row.get("dims") or {}
    return bool(dims) and all(value is None for value in dims.values())


def _first_figure(row: dict[str, Any]) -> float:
    values = row.get("values") or {}
    return max((float(v) for v in values.values()), default=0.0)


def cut_down(
    blocks: list[dict[str, Any]], rows_kept: int = ROWS_KEPT
) -> tuple[list[dict[str, Any]], bool]:
    """The blocks as snapshots keep them for reading, and whether anything was left out."""
    if all(len(block["rows"]) <= rows_kept for block in blocks):
        return blocks, False
    traffic = next((b for b in blocks if b["metric"] == "Traffic"), None)
    ranked = sorted(
        (row for row in (traffic["rows"] if traffic else []) if not _is_aggregate(row)),
        key=lambda row: -float((row.get("values") or {}).get("totalSessionCount", 0.0)),
    )
    kept_keys = {_dims_key(row) for row in ranked[:rows_kept]}
    cut = []
    for block in blocks:
        rows = block["rows"]
        if len(rows) <= rows_kept:
            cut.append(block)
            continue
        if kept_keys and any(row.get("dims") for row in rows):
            kept = [row for row in rows if _is_aggregate(row) or _dims_key(row) in kept_keys]
        else:  # a labelled block (overall answer): its largest rows
            kept = sorted(rows, key=_first_figure, reverse=True)[:rows_kept]
        cut.append({**block, "rows": kept})
    return cut, True


def values_total(block: str, snapshots: Iterable[Snapshot]) -> int:
    """How many values a block had on its largest cut-down day (0 when none was cut).

    The aggregate row is not a value: it is the total.
    """
    most = 0
    for snapshot in snapshots:
        if not snapshot.cut_down or not snapshot.rows_total:
            continue
        kept = next((b for b in snapshot.blocks if b["metric"] == block), None)
        aggregates = sum(1 for row in kept["rows"] if _is_aggregate(row)) if kept else 0
        most = max(most, snapshot.rows_total.get(block, 0) - aggregates)
    return most
