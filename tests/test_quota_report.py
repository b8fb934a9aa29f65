"""`claritycast quota`: each project's requests, from the call log, in UTC and local time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from claritycast.cli.main import cli
from claritycast.errors import InputError
from claritycast.ingest.quota import COUNTED_FOR
from claritycast.ingest.quota_report import (
    NOTHING_CONNECTED,
    both_times,
    quota_report,
    report_lines,
)
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES
from models.documents import Call, Organisation, Project, ProjectStatus
from tests.helpers import history_snapshot, make_token, run_cli

NOW = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)  # 15:30 in Berlin
YESTERDAY = "2026-11-23"


async def add_project(
    store: Store, project_id: str, org: Organisation, token: str | None = None, **fields: object
) -> Project:
    """A project stored as `connect` stores it: its token sealed, its expiry beside it."""
    if await store.get_organisation(org.org_id) is None:
        await store.add_organisation(org)
    sealed = store.seal_token(token or make_token(project_id), project_id)
    project = Project(project_id, project_id.title(), org.org_id, sealed, **fields)
    await store.add_project(project, [metric.id for metric in catalogue.METRICS])
    return project


def call(request_id: str, project_id: str, group: str, at: datetime, **fields: object) -> Call:
    values: dict[str, object] = {"local_date": YESTERDAY, "reason": "daily", "outcome": "ok"}
    values |= fields
    return Call(request_id, project_id, group=group, at=at, **values)  # type: ignore[arg-type]


async def test_nothing_connected_says_so(store: Store) -> None:
    """No project: no rows, and one line telling how to connect one."""
    assert await quota_report(store, NOW) == []
    assert report_lines([]) == [NOTHING_CONNECTED]


async def test_used_reserved_left_and_next_reset_come_from_the_call_log(store: Store) -> None:
    """Counted calls, yesterday's groups still to fetch, refreshes, and when the oldest ages out."""
    berlin = Organisation("acme", "Acme", "Europe/Berlin", NOW)
    await add_project(store, "shop", berlin, exhausted_until=NOW + timedelta(hours=8, minutes=30))
    pulled_at = NOW - timedelta(hours=20)
    calls = [call(f"d{i}", "shop", group, pulled_at) for i, group in enumerate(GROUP_NAMES[:5])]
    calls += [
        call("fail", "shop", GROUP_NAMES[5], pulled_at, outcome="server error", status=500),
        call("r1", "shop", GROUP_NAMES[6], NOW - timedelta(minutes=1), reason="refresh"),
        call("old", "shop", GROUP_NAMES[6], NOW - COUNTED_FOR - timedelta(seconds=1)),
    ]
    for logged in calls:
        await store.log_call(logged)
    for group in GROUP_NAMES[:4]:  # the 5th's snapshot was lost, the 7th's is on its way
        await store.save_snapshot(
            history_snapshot("shop", date.fromisoformat(YESTERDAY), group, "Europe/Berlin")
        )

    (row,) = await quota_report(store, NOW)
    assert (row.used, row.reserved, row.left, row.refreshes_left) == (7, 2, 3, 2)
    assert row.local_date == YESTERDAY
    assert row.next_reset_at == pulled_at + COUNTED_FOR
    assert row.exhausted_until == NOW + timedelta(hours=8, minutes=30)
    assert row.deferred_until is None
    assert row.token == "ok"

    header, line = report_lines([row])
    assert header.split()[:5] == ["project", "used", "left", "reserved", "refreshes"]
    assert line.split()[:6] == ["Shop", "(shop)", "7/10", "3", "2", "2"]
    assert "2026-11-24 18:32 UTC (19:32 CET)" in line, "next reset in UTC and Berlin time"
    assert "exhausted until 2026-11-24 23:00 UTC (2026-11-25 00:00 CET)" in line


async def test_token_status_and_one_project_by_name(store: Store) -> None:
    """Invalid, unreadable, expired, expiring and paused tokens are told apart, and nothing
    is decrypted for it; the token itself never shows."""
    utc = Organisation("default", "default", "UTC", NOW)
    in_3_days = NOW + timedelta(days=3)
    soon = make_token("soon", exp=in_3_days.timestamp())
    await add_project(store, "soon", utc, token=soon, token_expires_at=in_3_days)
    reason = "token invalid (401)"
    await add_project(
        store, "revoked", utc, status=ProjectStatus.TOKEN_INVALID, status_reason=reason
    )
    await add_project(store, "resting", utc, status=ProjectStatus.PAUSED)
    await add_project(
        store, "lost", utc, status=ProjectStatus.TOKEN_UNREADABLE,
        status_reason="key missing: sealed with key 0badc0de",
    )  # fmt: skip
    yesterday = NOW - timedelta(days=1)
    stale = make_token("stale", exp=yesterday.timestamp())
    await add_project(store, "stale", utc, token=stale, token_expires_at=yesterday)

    rows = {row.project_id: row for row in await quota_report(store, NOW)}
    assert rows["soon"].token == "ok, expires 2026-11-27 14:30 UTC"
    assert rows["soon"].reserved == 7, "nothing of yesterday is fetched yet"
    assert rows["soon"].next_reset_at is None
    assert rows["revoked"].token == "token invalid (401)"
    assert rows["revoked"].reserved == 0, "no pull is coming for it"
    assert rows["resting"].token == "ok, project paused"
    assert rows["lost"].token == "unreadable: key missing: sealed with key 0badc0de"
    assert rows["lost"].reserved == 0, "no pull is coming for it"
    assert rows["stale"].token == "unusable: token expired at 2026-11-23 14:30 UTC"
    lines = report_lines(list(rows.values()))
    assert not any(soon in line for line in lines)
    assert "2026-11-24" not in next(line for line in lines if "(soon)" in line), "no reset yet"

    (only,) = await quota_report(store, NOW, "Revoked")
    assert only.project_id == "revoked"
    with pytest.raises(InputError, match="no project 'nowhere'"):
        await quota_report(store, NOW, "nowhere")


def test_times_are_written_in_utc_and_local_time() -> None:
    """UTC organisations get one time; others also get local time, with its date when it differs."""
    moment = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert both_times(moment, "UTC") == "2026-11-24 23:30 UTC"
    assert both_times(moment, "Europe/Berlin") == "2026-11-24 23:30 UTC (2026-11-25 00:30 CET)"
    assert both_times(moment - timedelta(hours=3), "America/New_York") == (
        "2026-11-24 20:30 UTC (15:30 EST)"
    )
    assert both_times(None, "Europe/Berlin") == "-"


@pytest.mark.slow
@pytest.mark.skipif("quota" not in cli.commands, reason="`quota` is not registered in cli.py yet")
async def test_quota_command(settings_env: dict[str, str], store: Store) -> None:
    """The command prints a header and a line per project, or says nothing is connected."""
    code, out, err = await run_cli(settings_env, "quota")
    assert (code, out.strip()) == (0, NOTHING_CONNECTED), err

    now = datetime.now(UTC)
    token = make_token("shop")
    await add_project(store, "shop", Organisation("acme", "Acme", "Europe/Berlin", now), token)
    for i, group in enumerate(GROUP_NAMES):
        await store.log_call(call(f"c{i}", "shop", group, now - timedelta(minutes=5)))
    code, out, err = await run_cli(settings_env, "quota", "Shop")
    assert code == 0, err
    header, line = out.splitlines()
    assert header.startswith("project")
    assert line.split()[:6] == ["Shop", "(shop)", "7/10", "3", "7", "3"]
    assert "CET)" in line or "CEST)" in line
    assert token not in out + err

    code, out, err = await run_cli(settings_env, "quota", "Nope")
    assert code == 1
    assert err.strip() == "claritycast: no project 'Nope'; see `claritycast sources`"
