"""How the fetch stage cuts a batch of grants into waves (`agents.fetch.waves`)."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.fetch import waves
from models.records import FetchGranted

AT = datetime(2026, 3, 30, 0, 5, tzinfo=UTC)


def grant(project_id: str, group: str) -> FetchGranted:
    return FetchGranted(
        request_id=f"{project_id}/{group}", project_id=project_id, local_date="2026-03-29",
        group=group, reason="daily", timezone="UTC", granted_at=AT,
    )  # fmt: skip


def test_a_wave_never_holds_two_grants_of_one_project_and_keeps_their_order() -> None:
    """A project's grants are made in turn (a 429 must be seen before its next request)."""
    grants = [grant(f"p{p}", g) for p in range(5) for g in ("url", "device", "country")]
    found = waves(grants, 4)
    made = [granted for wave in found for granted in wave]
    assert sorted(made, key=grants.index) == grants  # each grant once
    for wave in found:
        assert 0 < len(wave) <= 4
        assert len({granted.project_id for granted in wave}) == len(wave)
    for project in (f"p{p}" for p in range(5)):  # a project's grants in their order
        mine = [granted.group for granted in made if granted.project_id == project]
        assert mine == ["url", "device", "country"]
    assert len(found) == 4  # 15 grants, 4 at a time: as few waves as the rule allows


def test_one_projects_grants_go_one_wave_each() -> None:
    grants = [grant("p1", g) for g in ("url", "device", "country")]
    assert waves(grants, 8) == [[grants[0]], [grants[1]], [grants[2]]]
    assert waves([], 8) == []
