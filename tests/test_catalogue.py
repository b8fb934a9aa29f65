"""The metric catalogue, and series and breakdowns computed from the samples."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from claritycast.clarity.parse import parse_body
from claritycast.reports.series import breakdown, daily_series, day_value
from models import catalogue
from models.catalogue import Aggregation, Category
from models.clarity import GROUP_NAMES, GROUPS_BY_NAME

SAMPLES = Path(__file__).parent / "samples"


def load(name: str, group: str):
    return parse_body((SAMPLES / name).read_bytes(), GROUPS_BY_NAME[group].dimensions)


def test_catalogue_has_the_nineteen_and_the_two_errors() -> None:
    """19 metrics in four categories, plus script errors and error clicks."""
    assert len(catalogue.METRICS) == 21
    counts = {c: sum(m.category == c for m in catalogue.METRICS) for c in Category}
    assert counts == {
        Category.TRAFFIC: 3,
        Category.ENGAGEMENT: 3,
        Category.FRUSTRATION: 6,
        Category.BREAKDOWNS: 9,
    }
    for metric in catalogue.METRICS:
        assert metric.group in GROUP_NAMES
        assert metric.is_breakdown == (metric.aggregation is Aggregation.TOP_N)


def test_unknown_metric_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="unknown metric 'sesions'; one of: sessions"):
        catalogue.get("sesions")


@pytest.mark.parametrize(
    ("metric_id", "expected"),
    [
        ("sessions", 1342),
        ("distinct_users", 1187),
        ("bot_sessions", 211),
        ("pages_per_session", 2.3417),
        ("active_time", 61),
        ("scroll_depth", 48.73),
        ("rage_clicks", 19),
        ("dead_clicks", 52),
        ("excessive_scroll", 5),
        ("quickback_clicks", 27),
        ("script_errors", 141),
        ("error_clicks", 2),
    ],
)
def test_day_values_from_the_overall_sample(metric_id: str, expected: float) -> None:
    """Each non-breakdown metric reads its figure from both spellings of the overall sample."""
    metric = catalogue.get(metric_id)
    for name in ("overall.json", "overall_documented_spelling.json"):
        assert day_value(metric, load(name, "overall")) == expected


def test_series_has_gaps_for_missing_days() -> None:
    """A day with no snapshot is None, not zero."""
    overall = load("overall.json", "overall")
    series = daily_series(
        catalogue.get("sessions"),
        {date(2026, 11, 1): overall, date(2026, 11, 3): overall},
        date(2026, 11, 1),
        date(2026, 11, 4),
    )
    assert [p.value for p in series] == [1342, None, 1342, None]


def test_url_aggregate_row_is_the_total_not_a_page() -> None:
    """The null-Url row gives the day's value; breakdowns leave it out."""
    url = load("dimension_url.json", "url")
    assert day_value(catalogue.get("sessions"), url) == 1342
    pages = breakdown(catalogue.get("top_pages_by_sessions"), [url])
    assert pages == [
        ("https://shop.example.com/", 812),
        ("https://shop.example.com/cart?ref=mail&utm_source=newsletter", 201),
        ("https://shop.example.com/checkout", 119),
        ("https://shop.example.com/search?q=<script>alert(1)</script>", 17),
    ]


def test_sources_sum_over_channels_and_channels_over_sources() -> None:
    """t.co under Social and Referral adds up into one source."""
    source = load("dimension_source_channel.json", "source")
    sources = dict(breakdown(catalogue.get("top_sources"), [source]))
    traffic = source.block("Traffic")
    tco = sum(r.values["totalSessionCount"] for r in traffic.rows if r.dims["Source"] == "t.co")
    assert sources["t.co"] == tco
    channels = dict(breakdown(catalogue.get("top_channels"), [source]))
    assert sum(channels.values()) == sum(sources.values())


def test_weighted_breakdown_weights_by_sessions() -> None:
    """Scroll depth per page over two days weights each day by that page's sessions."""
    url = load("dimension_url.json", "url")
    scroll = dict(breakdown(catalogue.get("top_pages_by_scroll_depth"), [url, url]))
    assert scroll["https://shop.example.com/"] == pytest.approx(52.1)


def test_breakdown_ranks_and_cuts_to_top_n() -> None:
    """Largest first, at most N entries."""
    browser = load("dimension_browser.json", "browser")
    ranked = breakdown(catalogue.get("top_browsers"), [browser], top_n=2)
    assert len(ranked) == 2
    assert ranked[0][1] >= ranked[1][1]
