"""The Clarity client: every documented response variant and every failure kind."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from claritycast.clarity.client import ClarityClient
from claritycast.clarity.parse import parse_body
from claritycast.clarity.token import check_token
from claritycast.errors import (
    ClarityBadRequest,
    ClarityBodyError,
    ClarityError,
    ClarityForbidden,
    ClarityGarbled,
    ClarityMalformed,
    ClarityQuotaExhausted,
    ClarityServerError,
    ClarityTokenInvalid,
    ClarityUnreachable,
)
from models.clarity import (
    ALL_BLOCKS,
    DIMENSIONED_BLOCKS,
    GROUPS_BY_NAME,
    ClarityResponse,
)
from tests.helpers import make_token

SAMPLES = Path(__file__).parent / "samples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "clarity-samples"
URL = "https://clarity.test/export-data/api/v1/project-live-insights"
JSON = "application/json"
TOKEN = make_token()
SAMPLE_GROUPS = {
    "overall.json": "overall",
    "overall_documented_spelling.json": "overall",
    "dimension_url.json": "url",
    "dimension_browser.json": "browser",
    "dimension_country.json": "country",
    "dimension_source_channel.json": "source",
}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def client_answering(
    status: int,
    body: bytes,
    seen: list[httpx.Request] | None = None,
    content_type: str = "application/json",
) -> ClarityClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    return ClarityClient(httpx.AsyncClient(transport=httpx.MockTransport(answer)), URL)


def test_samples_match_the_shared_copies() -> None:
    """tests/samples is a verbatim copy of shared/clarity-samples (when it is beside us)."""
    if not SHARED.is_dir():
        return  # a clone without shared/ beside it: the copy is all there is
    for path in SHARED.glob("*.json"):
        assert (SAMPLES / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("name", sorted(SAMPLE_GROUPS))
async def test_every_sample_parses_through_the_client(name: str) -> None:
    """Each sample, served over HTTP, parses into canonical blocks."""
    group = GROUPS_BY_NAME[SAMPLE_GROUPS[name]]
    response = await client_answering(200, sample(name)).fetch(TOKEN, group)
    expected = ALL_BLOCKS if group.name == "overall" else DIMENSIONED_BLOCKS
    assert tuple(block.metric for block in response.blocks) == expected
    assert response.notes == ()


def test_documented_spelling_parses_like_the_live_one() -> None:
    """distantUserCount, PagesPerSessionPercentage and spaced names mean the same."""
    live = parse_body(sample("overall.json"), ())
    documented = parse_body(sample("overall_documented_spelling.json"), ())
    assert documented == live
    traffic = live.block("Traffic")
    assert traffic is not None
    assert traffic.rows[0].values == {
        "totalSessionCount": 1342,
        "totalBotSessionCount": 211,
        "distinctUserCount": 1187,
        "pagesPerSessionPercentage": 2.3417,
    }


def test_url_dimension_keeps_the_aggregate_row_apart_and_urls_verbatim() -> None:
    """The Url key maps to URL, the null row is the aggregate, query strings stay."""
    response = parse_body(sample("dimension_url.json"), ("URL",))
    traffic = response.block("Traffic")
    assert traffic is not None
    aggregate = [row for row in traffic.rows if row.is_aggregate]
    assert len(aggregate) == 1
    assert aggregate[0].values["totalSessionCount"] == 1342
    urls = [row.dims["URL"] for row in traffic.rows if not row.is_aggregate]
    assert "https://shop.example.com/cart?ref=mail&utm_source=newsletter" in urls
    assert any("<script>" in str(url) for url in urls), "hostile text is kept, escaped later"


def test_country_key_is_accepted_for_country_region() -> None:
    """Rows keyed Country answer a Country/Region request."""
    response = parse_body(sample("dimension_country.json"), ("Country/Region",))
    traffic = response.block("Traffic")
    assert traffic is not None
    assert {row.dims["Country/Region"] for row in traffic.rows} == {
        "United States",
        "Brazil",
        "Germany",
        "India",
    }


def test_two_dimensions_are_both_kept() -> None:
    """Source and Channel both stay on each row; the same Source appears twice."""
    response = parse_body(sample("dimension_source_channel.json"), ("Source", "Channel"))
    traffic = response.block("Traffic")
    assert traffic is not None
    pairs = [(row.dims["Source"], row.dims["Channel"]) for row in traffic.rows]
    assert ("t.co", "Social") in pairs and ("t.co", "Referral") in pairs


def test_missing_null_and_string_figures() -> None:
    """Strings become numbers; null, missing and garbage figures are absent, not zero."""
    body = json.dumps(
        [
            {
                "metricName": "Traffic",
                "information": [
                    {
                        "totalSessionCount": "1,204",
                        "distinctUserCount": None,
                        "totalBotSessionCount": "n/a",
                    }
                ],
            },
            {"metricName": "Scroll Depth", "information": []},
            {"metricName": "EngagementTime", "information": None},
        ]
    ).encode()
    response = parse_body(body, ())
    traffic = response.block("Traffic")
    assert traffic is not None
    assert traffic.rows[0].values == {"totalSessionCount": 1204}
    assert response.block("ScrollDepth") is not None
    assert response.block("ScrollDepth").rows == ()
    assert response.block("EngagementTime").rows == ()
    assert any("totalBotSessionCount" in note for note in response.notes)


def test_parsed_response_round_trips_through_json() -> None:
    """What snapshots store reads back as the same response."""
    response = parse_body(sample("dimension_url.json"), ("URL",))
    assert ClarityResponse.from_json(json.loads(json.dumps(response.to_json()))) == response


CUT_SHORT = sample("dimension_url.json")[:-40]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind"),
    [
        (400, b"", JSON, ClarityBadRequest),
        (401, b"", JSON, ClarityTokenInvalid),
        (403, b"", JSON, ClarityForbidden),
        (429, b"", JSON, ClarityQuotaExhausted),
        (500, b"", JSON, ClarityServerError),
        (503, b"<html>down</html>", "text/html", ClarityServerError),
        # A 200 that is no answer at all: an outage in front of the API, retried.
        (200, b"", JSON, ClarityGarbled),
        (200, b"  \n", JSON, ClarityGarbled),
        (200, b"<html><body>Bad gateway</body></html>", "text/html; charset=utf-8", ClarityGarbled),
        (200, b"<!DOCTYPE html><html>Bad gateway</html>", JSON, ClarityGarbled),
        (200, CUT_SHORT, JSON, ClarityGarbled),
        (200, b'[{"metricName": "Traffic", "information": [{"Url": "caf\xc3', JSON, ClarityGarbled),
        # A complete answer that is not what the API documents: the same next time.
        (200, b"upstream said: no", "text/plain", ClarityMalformed),
        (200, b'{"error": "unknown dimension"}', JSON, ClarityMalformed),
        (200, b'[{"metricName": "Traffic", "information": "x"}]', JSON, ClarityMalformed),
        (200, b'[{"metricName": "Traffic", "information": []}] trailing', JSON, ClarityMalformed),
        (302, b"", JSON, ClarityMalformed),
    ],
)
async def test_each_failure_is_its_own_kind(
    status: int, body: bytes, content_type: str, kind: type[ClarityError]
) -> None:
    """Every row of the API's error table raises its own error, with status and request."""
    seen: list[httpx.Request] = []
    client = client_answering(status, body, seen, content_type)
    with pytest.raises(kind) as caught:
        await client.fetch(TOKEN, GROUPS_BY_NAME["url"])
    error = caught.value
    assert error.status == status
    assert (
        error.request == "GET /export-data/api/v1/project-live-insights?numOfDays=1&dimension1=URL"
    )
    assert TOKEN not in str(error) and TOKEN not in repr(error.args)
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert type(error) is kind, "one kind per row, not a parent class"
    if isinstance(error, ClarityBodyError):
        assert error.body == body


def _httpx_errors() -> list[type[httpx.HTTPError]]:
    return [
        cls
        for _, cls in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(cls, httpx.HTTPError) and not issubclass(cls, httpx.HTTPStatusError)
    ]


@pytest.mark.parametrize("exc_type", _httpx_errors(), ids=lambda cls: cls.__name__)
async def test_every_httpx_error_is_translated(exc_type: type[httpx.HTTPError]) -> None:
    """Whatever httpx raises becomes ClarityUnreachable, without the token."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise (
            exc_type(f"failed with {TOKEN}", request=request)
            if exc_type is not httpx.HTTPError
            else exc_type(f"failed with {TOKEN}")
        )

    client = ClarityClient(httpx.AsyncClient(transport=httpx.MockTransport(fail)), URL)
    with pytest.raises(ClarityUnreachable) as caught:
        await client.fetch(TOKEN, GROUPS_BY_NAME["overall"])
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


NOW = datetime(2026, 11, 29, tzinfo=UTC)


def test_a_well_formed_token_passes_the_local_check() -> None:
    """The claims are read; nothing about the token itself is returned."""
    claims = check_token(make_token("project-9"), NOW)
    assert claims.subject == "project-9"
    assert claims.expires_at is not None and claims.expires_at.year == 2100


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "three dot-separated parts"),
        ("a.b.c", "not base64url JSON"),
        (make_token(exp=NOW.timestamp() - 1), "expired at 2026-11-28 23:59"),
        (make_token(aud="someone.else"), "not a Data Export token"),
        (make_token(iss="evil"), "not issued by Clarity"),
    ],
)
def test_hopeless_tokens_are_refused_locally(token: str, reason: str) -> None:
    """Each refusal says why, and never repeats the token."""
    with pytest.raises(ClarityTokenInvalid) as caught:
        check_token(token, NOW)
    assert reason in str(caught.value)
    assert token not in str(caught.value)
