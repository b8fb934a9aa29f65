"""A pull follows each group to its end, even when another request was fetching it.

The tick can ask for a just-connected project's day before connect's own
requests reach the quota check; those are then dropped as "not due: on its
way". The person watching Test & Connect must see the group stored (or
failed), not "not due".
"""

from __future__ import annotations

from datetime import UTC, datetime

from claritycast.ingest.connect import AskedRequest, outcomes_now
from claritycast.ingest.quota import ON_ITS_WAY, STORED_ALREADY
from claritycast.standins.history import history_snapshot
from claritycast.store.core import Store

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = "2026-11-30"


def asked(request_id: str, group: str) -> AskedRequest:
    return AskedRequest(request_id, "shop", DAY, group)


async def test_a_group_already_under_way_is_followed_to_its_end(store: Store) -> None:
    overall, device, browser = asked("c1", "overall"), asked("c2", "device"), asked("c3", "browser")
    for request in (overall, device):
        why = f"{DAY} {request.group} {ON_ITS_WAY} (a call granted at 08:59:59Z)"
        await store.record_refusal(request.request_id, "shop", why, None, NOW, kind="not due")
    stored_already = f"{DAY} browser {STORED_ALREADY}"
    await store.record_refusal("c3", "shop", stored_already, None, NOW, kind="not due")

    ended = await outcomes_now(store, [overall, device, browser])
    assert set(ended) == {"c3"}, "under way: no end yet, shown as pending"
    assert (ended["c3"].outcome, ended["c3"].detail) == ("stored", stored_already)

    await store.save_snapshot(
        history_snapshot("shop", datetime(2026, 11, 30).date(), "overall", "UTC")
    )
    await store.hold_group("shop", DAY, "device", None)  # its call failed and was dead-lettered
    ended = await outcomes_now(store, [overall, device])
    assert ended["c1"].outcome == "stored", ended
    assert ended["c2"].outcome == "failed" and "replay" in str(ended["c2"].detail), ended
