"""Every catalogue metric, drawn from snapshots stored in the real database, as a report."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from xml.etree import ElementTree

import pytest
from PIL import Image

from claritycast.delivery.connections import create_connection
from claritycast.reports import charts
from claritycast.reports.builder import build_report, missing_data, window
from claritycast.reports.series import breakdown, day_value
from claritycast.store.core import Store
from models import catalogue
from models.clarity import GROUP_NAMES, ClarityResponse
from models.documents import Organisation, Project
from tests.helpers import seed_history

TIMEZONE = "Asia/Tokyo"
PERIOD = date(2026, 11, 20)
LAST = PERIOD - timedelta(days=1)
GAP = LAST - timedelta(days=5)
NOW = datetime(2026, 11, 19, 1, 0, tzinfo=UTC)


@pytest.fixture
async def stored(store: Store) -> Store:
    """30 days of every group, one day missing, as the nightly pulls would have left them."""
    await store.add_organisation(Organisation("acme", "Acme", TIMEZONE, NOW))
    project = Project("shop-1", "Shop", "acme", connected_at=NOW)
    await store.add_project(project, [m.id for m in catalogue.METRICS])
    gap = [(GAP, group) for group in GROUP_NAMES]
    await seed_history(
        store, "shop-1", TIMEZONE, LAST - timedelta(days=29), LAST, GROUP_NAMES, skip=gap
    )
    return store


async def _by_day(store: Store, group: str, first: date) -> dict[date, ClarityResponse]:
    snapshots = await store.snapshots_for("shop-1", first.isoformat(), LAST.isoformat(), group)
    return {
        date.fromisoformat(s.local_date): ClarityResponse.from_json(s.blocks) for s in snapshots
    }


async def test_every_metric_renders_from_stored_snapshots(stored: Store) -> None:
    """One database, seeded once, drawn 21 ways."""
    for metric in catalogue.METRICS:
        await _check_metric(stored, metric)


async def _check_metric(stored: Store, metric: catalogue.Metric) -> None:
    connection = await create_connection(
        stored, project="Shop", metric=metric.id, now=NOW, emails="ops@example.com",
        name=metric.id.replace("_", "-"),
    )  # fmt: skip
    assert await missing_data(stored, "shop-1", metric, PERIOD) == []
    report, source = await build_report(stored, connection, PERIOD, missing=[])
    assert source == "plain"
    assert report.title == f"{metric.title} · Shop", metric.id
    assert report.period_label == "30 days to 19 Nov 2026"
    image = Image.open(io.BytesIO(report.png))
    assert image.format == "PNG" and image.size == (1600, 900)
    assert image.getextrema() != ((255, 255), (255, 255), (255, 255))  # not blank

    # The same stored days, drawn again: the SVG carries the labels a reader sees.
    first, last = window(connection, PERIOD)
    by_day = await _by_day(stored, metric.group, first)
    chart = charts.render_chart(metric, by_day, first, last, project_label="Shop")
    root = ElementTree.fromstring(chart.svg)  # noqa: S314 - our own SVG
    texts = " ".join("".join(node.itertext()) for node in root.iter())
    assert metric.title in texts and "29 of 30 days collected" in texts
    if metric.is_breakdown:
        top_label = breakdown(metric, by_day.values(), top_n=1)[0][0]
        assert charts.shorten_middle(charts.clean_label(top_label)) in texts
    else:
        latest = day_value(metric, by_day[LAST])
        assert latest is not None
        assert latest > 0 or metric.id in {"error_clicks", "script_errors"}
        assert str(LAST.day) in report.summary


async def test_a_missing_yesterday_is_named_in_the_report(stored: Store) -> None:
    metric = catalogue.get("sessions")
    connection = await create_connection(
        stored, project="Shop", metric="sessions", now=NOW, slack_channel="#web"
    )
    late_period = GAP + timedelta(days=1)
    missing = await missing_data(stored, "shop-1", metric, late_period)
    assert missing == [f"{GAP} overall"]
    report, _ = await build_report(stored, connection, late_period, missing=missing)
    assert report.note is not None and str(GAP) in report.note
