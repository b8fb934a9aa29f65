"""The pages' pure parts: link targets, redirects, the timezone review, sparklines, hover titles."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from claritycast.errors import InputError
from claritycast.ingest.projects import timezone_change
from claritycast.reports import charts
from claritycast.reports.sparkline import sparkline
from claritycast.standins.history import history_snapshot
from claritycast.web.audit_trail import PAGES_AUDITED, PAGES_READ_ONLY
from claritycast.web.pages import connections, deliveries, operations, settings, signin, sources
from claritycast.web.pages.render import ENV, local_path, safe_href, trusted_svg
from claritycast.web.schemas import Quota, Source
from models import catalogue
from models.clarity import ClarityResponse


@pytest.mark.parametrize(
    ("url", "link"),
    [
        (
            "https://shop.example.com/search?q=<script>",
            "https://shop.example.com/search?q=<script>",
        ),
        ("http://example.com/", "http://example.com/"),
        ("javascript:alert(1)", None),
        (" JaVaScRiPt:alert(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("//evil.example.com/", None),
        ("/relative", None),
        ("https:///no-host", None),
        ("(direct)", None),
        (None, None),
    ],
)
def test_only_http_and_https_urls_become_links(url: str | None, link: str | None) -> None:
    """Text from Clarity is a link target only with an http(s) scheme and a host."""
    assert safe_href(url) == link


def test_templates_escape_what_they_are_given() -> None:
    """Autoescape is on for every template: markup in a label is shown, not run."""
    html = ENV.from_string("<p>{{ label }}</p>").render(label="<img src=x onerror=alert(1)>")
    assert html == "<p>&lt;img src=x onerror=alert(1)&gt;</p>"


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/sources/x?days=7", "/sources/x?days=7"),
        ("//evil.example.com", "/sources"),
        ("https://evil.example.com", "/sources"),
        ("/\\evil.example.com", "/sources"),
        (None, "/sources"),
    ],
)
def test_after_signing_in_only_local_paths_are_followed(target: str | None, path: str) -> None:
    """An open redirect through ``?next=`` is refused."""
    assert local_path(target) == path


def test_a_timezone_change_says_what_it_does_to_tonights_pull() -> None:
    """East of the old zone, yesterday comes sooner; west, a stored day asks for nothing."""
    now = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
    east = timezone_change("UTC", "Pacific/Auckland", now)
    assert east[0].startswith("Now: the nightly pull of 2026-11-24 starts at 2026-11-25 00:00 UTC")
    assert "2026-11-24 is yesterday there" in east[2] and "next tick" in east[2]
    west = timezone_change("Europe/Paris", "America/New_York", now.replace(hour=1))
    assert "2026-11-24 05:00 UTC (00:00 in America/New_York)" in west[1]
    assert "2026-11-23 is yesterday already" in west[2]
    assert timezone_change("UTC", "UTC", now) == ["The timezone stays UTC: nothing changes."]
    with pytest.raises(InputError) as refused:
        timezone_change("UTC", "Mars/Olympus", now)
    assert refused.value.field == "timezone"


def test_a_sparkline_keeps_its_gaps() -> None:
    """A day not collected breaks the line; a lone day is a dot; the latest is the last day's."""
    line = sparkline([1.0, 2.0, None, 3.0, None, 2.0, 4.0], width=60, height=20)
    assert len(line.lines) == 2 and len(line.dots) == 1
    assert line.collected == 5 and line.days == 7 and line.latest == 4.0
    assert sparkline([None, None]).lines == () and sparkline([None, None]).latest is None


def test_the_page_chart_is_the_reports_chart_with_hover_titles() -> None:
    """Interactive: the same drawing, a <title> per point ("3 Nov: 1,234"), no script, no PNG."""
    last = date(2026, 11, 20)
    metric = catalogue.get("top_sources")
    by_day = {
        last - timedelta(days=back): ClarityResponse.from_json(
            history_snapshot("p", last - timedelta(days=back), "source", "UTC").blocks
        )
        for back in range(7)
    }
    chart = charts.render_chart(metric, by_day, last - timedelta(days=6), last,
                                project_label="Shop", interactive=True)  # fmt: skip
    svg = str(trusted_svg(chart.svg))
    assert chart.png == b"" and not svg.startswith("<?xml")
    assert "<script" not in svg and 'role="img"' in svg
    assert "<title>&lt;img src=x onerror=alert(1)&gt;: " in svg
    plain = charts.render_chart(metric, by_day, last - timedelta(days=6), last,
                                project_label="Shop")  # fmt: skip
    assert plain.png.startswith(b"\x89PNG") and b"<title>&lt;img" not in plain.svg


def test_every_page_form_that_changes_something_is_audited() -> None:
    """A page's post is on the audit trail as the API's route is, or says it changes nothing."""
    posts = {
        ("POST", route.path)
        for module in (signin, sources, connections, deliveries, operations, settings)
        for route in module.router.routes
        if "POST" in (getattr(route, "methods", None) or ())
    }
    assert len(posts) > 15
    assert posts - PAGES_READ_ONLY == set(PAGES_AUDITED)


RESET = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def a_source(status: str, **quota: object) -> Source:
    numbers = {"used": 0, "reserved": 7, "left": 10, "refreshes_left": 3, "next_reset_at": None,
               "exhausted_until": None, "deferred_until": None} | quota  # fmt: skip
    return Source(
        id="p", label="Shop", organisation="default", timezone="UTC", status=status,
        status_reason=None, token="valid", token_fingerprint=None,
        connected_at=datetime(2026, 11, 1, tzinfo=UTC), last_day_stored=None, days_collected=0,
        local_date=date(2026, 11, 23), quota=Quota.model_validate(numbers),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "badge", "said"),
    [
        (a_source("active"), ("active", "ok"), "3 refreshes left now (0 of 10"),
        (a_source("paused"), ("paused", "muted"), "3 refreshes left now"),
        (a_source("token invalid"), ("token invalid", "bad"), "3 refreshes left now"),
        (
            a_source("active", used=10, left=0, refreshes_left=0, next_reset_at=RESET),
            ("active", "ok"),
            "No refresh left now (10 of 10 requests used in the last 24 hours; 7 kept for "
            "tonight's pull); the next is possible after 2026-11-24 03:00 UTC.",
        ),
        (
            a_source("active", exhausted_until=datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
            ("exhausted until 2026-11-24 00:00 UTC", "bad"),
            "nothing is asked before 2026-11-24 00:00 UTC",
        ),
    ],
)
def test_a_sources_badge_and_headroom_say_its_state(
    source: Source, badge: tuple[str, str], said: str
) -> None:
    """Active, paused, token invalid, exhausted until …; the refreshes left before the button."""
    assert sources.status_words(source) == badge
    assert said in sources.headroom(source)
