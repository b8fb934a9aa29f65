"""A very large answer is cut down for reading, consistently, and says how big it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from claritycast.clarity.big_answers import cut_down, values_total
from models.documents import Snapshot


def row(url: str | None, **values: float) -> dict[str, Any]:
    return {"values": values, "dims": {"URL": url}}


def url_answer(pages: int) -> list[dict[str, Any]]:
    """Traffic and rage clicks per page, page i having 10 * i sessions; the total row first."""
    traffic = [row(None, totalSessionCount=10.0 * sum(range(pages)))]
    rage = [row(None, subTotal=1.0 * pages)]
    for i in range(pages):
        traffic.append(row(f"/p/{i}", totalSessionCount=10.0 * i))
        rage.append(row(f"/p/{i}", subTotal=1.0))
    return [{"metric": "RageClickCount", "rows": rage}, {"metric": "Traffic", "rows": traffic}]


def test_an_answer_of_the_documented_size_is_kept_whole() -> None:
    """Up to the rows kept, nothing is cut."""
    blocks = url_answer(49)  # and the total row: 50 rows
    assert cut_down(blocks, rows_kept=50) == (blocks, False)


def test_a_large_answer_keeps_the_same_top_pages_in_every_block_and_the_total_row() -> None:
    """The pages kept are the most visited, the same in every block; the total row stays."""
    readable, was_cut = cut_down(url_answer(200), rows_kept=20)
    assert was_cut
    by_block = {block["metric"]: block["rows"] for block in readable}
    expected = {None} | {f"/p/{i}" for i in range(180, 200)}
    for rows in by_block.values():
        assert {r["dims"]["URL"] for r in rows} == expected
    assert [block["metric"] for block in readable] == ["RageClickCount", "Traffic"]


def test_how_many_values_a_cut_down_block_had() -> None:
    """The count leaves out the total row; uncut days count nothing extra."""
    end = datetime(2026, 11, 20, tzinfo=UTC)
    readable, _ = cut_down(url_answer(200), rows_kept=20)

    def day(blocks: list[dict[str, Any]], total: int, cut: bool) -> Snapshot:
        return Snapshot(
            "p", "2026-11-19", "url", end - timedelta(hours=24), end, end, blocks,
            rows_total={"Traffic": total, "RageClickCount": total}, cut_down=cut,
        )  # fmt: skip

    assert values_total("Traffic", [day(readable, 201, True)]) == 200
    assert values_total("Traffic", [day(url_answer(5), 6, False)]) == 0
