"""What the simulated Clarity answers: the JSON array of metric blocks, in Clarity's shapes.

16 blocks without a dimension and 9 with, counts as strings, the ``Url`` key
of the URL breakdown (quirk 3) with its ``null`` aggregate row (quirk 4),
hostile page text, and the documented (old) spellings on request. Every
breakdown is cut from the window's totals (`clarity_data`), so all 7 groups
agree with each other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from claritycast.standins.clarity_data import (
    BROWSERS,
    COUNTRIES,
    DEVICES,
    FRUSTRATIONS,
    OSES,
    PAGES,
    REFERRERS,
    SOURCES,
    Figures,
    Profile,
    allocate,
    figures,
    label_weights,
    unit,
)
from models.clarity import DIMENSIONED_BLOCKS

MAX_ROWS = 1000
Spelling = Literal["live", "documented"]

_DIMENSION_LABELS: dict[str, tuple[tuple[Any, ...], ...]] = {
    "Browser": BROWSERS,
    "Device": DEVICES,
    "Country/Region": COUNTRIES,
    "OS": OSES,
}
# The key each requested dimension comes back under (quirk 3: URL → Url).
_ROW_KEYS = {"URL": "Url", "Country/Region": "Country"}
_DOCUMENTED_NAMES = {
    "DeadClickCount": "Dead Click Count",
    "ExcessiveScroll": "Excessive Scroll",
    "RageClickCount": "Rage Click Count",
    "QuickbackClick": "Quickback Click",
    "ScriptErrorCount": "Script Error Count",
    "ErrorClickCount": "Error Click Count",
    "ScrollDepth": "Scroll Depth",
    "EngagementTime": "Engagement Time",
    "PageTitle": "Page Title",
    "ReferrerUrl": "Referrer Url",
    "PopularPages": "Popular Pages",
}


def _frustration_row(
    block: str, sessions: int, affected: int, views: int, events: int
) -> dict[str, Any]:
    share = round(100 * affected / sessions, 2) if sessions else 0.0
    return {
        "sessionsCount": str(sessions),
        "sessionsWithMetricPercentage": share,
        "sessionsWithoutMetricPercentage": round(100 - share, 2),
        "pagesViews": str(views),
        "subTotal": str(events),
    }


def _rows(
    totals: Figures,
    profile: Profile,
    salt: object,
    labels: list[dict[str, Any]],
    weights: list[float],
) -> dict[str, list[dict[str, Any]]]:
    """The 9 dimensioned blocks' rows, allocated from ``totals`` over ``labels``."""
    sessions = allocate(totals.sessions, weights)
    bots = allocate(totals.bots, weights)
    users = allocate(totals.users, weights)
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in FRUSTRATIONS}
    blocks |= {"ScrollDepth": [], "Traffic": [], "EngagementTime": []}
    per_block = {
        block: [allocate(value, sessions) for value in totals.frustration[block]]
        for block in FRUSTRATIONS
    }
    for i, label in enumerate(labels):
        wobble = 0.8 + 0.4 * unit(profile.project_id, "row", salt, repr(label))
        for block in FRUSTRATIONS:
            affected, views, events = (column[i] for column in per_block[block])
            blocks[block].append(
                _frustration_row(block, sessions[i], affected, views, events) | label
            )
        blocks["ScrollDepth"].append(
            {"averageScrollDepth": round(min(100.0, totals.scroll * wobble), 2)} | label
        )
        blocks["Traffic"].append(
            {
                "totalSessionCount": str(sessions[i]),
                "totalBotSessionCount": str(bots[i]),
                "distinctUserCount": str(users[i]),
                "pagesPerSessionPercentage": round(totals.pages_per_session * wobble, 4),
            }
            | label
        )
        blocks["EngagementTime"].append(
            {
                "totalTime": str(round(totals.total_time * wobble)),
                "activeTime": str(round(totals.active_time * wobble)),
            }
            | label
        )
    return blocks


def _totals_rows(totals: Figures) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {
        block: _frustration_row(block, totals.sessions, *totals.frustration[block])
        for block in FRUSTRATIONS
    }
    rows["ScrollDepth"] = {"averageScrollDepth": totals.scroll}
    rows["Traffic"] = {
        "totalSessionCount": str(totals.sessions),
        "totalBotSessionCount": str(totals.bots),
        "distinctUserCount": str(totals.users),
        "pagesPerSessionPercentage": totals.pages_per_session,
    }
    rows["EngagementTime"] = {
        "totalTime": str(totals.total_time),
        "activeTime": str(totals.active_time),
    }
    return rows


def _named(
    labels: tuple[tuple[Any, ...], ...],
    sessions: int,
    weights: list[float],
    key: str = "name",
    count: str = "sessionsCount",
) -> list[dict[str, str]]:
    parts = allocate(sessions, weights)
    rows = [{key: str(label[0]), count: str(n)} for label, n in zip(labels, parts, strict=True)]
    return sorted(rows, key=lambda row: -int(row[count]))


DIMENSIONED = DIMENSIONED_BLOCKS
# The overall-only blocks: (block, labels with weights, row label key, row count key).
OVERALL_ONLY: tuple[tuple[str, tuple[tuple[Any, ...], ...], str, str], ...] = (
    ("Browser", BROWSERS, "name", "sessionsCount"),
    ("Device", DEVICES, "name", "sessionsCount"),
    ("OS", OSES, "name", "sessionsCount"),
    ("Country", COUNTRIES, "name", "sessionsCount"),
    ("PageTitle", tuple((title, w) for _, title, w in PAGES), "name", "sessionsCount"),
    ("ReferrerUrl", REFERRERS, "name", "sessionsCount"),
    ("PopularPages", tuple((url, w) for url, _, w in PAGES), "url", "visitsCount"),
)


def build_response(
    profile: Profile,
    start: datetime,
    end: datetime,
    dimensions: list[str],
    spelling: Spelling = "live",
    *,
    pages: tuple[tuple[str, str, float], ...] = (),
    max_rows: int = MAX_ROWS,
) -> list[dict[str, Any]]:
    """The JSON array Clarity would answer for this window and these dimensions.

    ``pages`` are a large site's pages beyond the usual ones (`long_tail_pages`).
    """
    salt = int(end.timestamp() // 86400)
    totals = figures(profile, profile.window_sessions(start, end), salt)
    blocks: list[tuple[str, list[dict[str, Any]]]]
    if not dimensions:
        total_rows = _totals_rows(totals)
        blocks = [(name, [total_rows[name]]) for name in DIMENSIONED]
        for name, labels, key, count in OVERALL_ONLY:
            weights = label_weights(profile.project_id, salt, labels)
            blocks.append((name, _named(labels, totals.sessions, weights, key, count)))
    else:
        labels, weights = _dimension_labels(profile, salt, dimensions, pages)
        rows = _rows(totals, profile, salt, labels, weights)
        if dimensions == ["URL"]:
            total_rows = _totals_rows(totals)
            for name in DIMENSIONED:
                rows[name].insert(0, total_rows[name] | {"Url": None})
        blocks = [(name, rows[name][:max_rows]) for name in DIMENSIONED]
    return [
        {"metricName": _spell(name, spelling), "information": _respell(info, spelling)}
        for name, info in blocks
    ]


def _dimension_labels(
    profile: Profile,
    salt: object,
    dimensions: list[str],
    pages: tuple[tuple[str, str, float], ...] = (),
) -> tuple[list[dict[str, Any]], list[float]]:
    if dimensions == ["URL"]:
        entries = tuple((url, weight) for url, _, weight in PAGES + pages)
        return [{"Url": url} for url, _ in entries], label_weights(
            profile.project_id, salt, entries
        )
    if dimensions == ["Source", "Channel"]:
        return (
            [{"Source": s, "Channel": c} for s, c, _ in SOURCES],
            label_weights(profile.project_id, salt, SOURCES),
        )
    if len(dimensions) == 1 and (dimensions[0] in _DIMENSION_LABELS or dimensions[0] == "Country"):
        name = "Country/Region" if dimensions[0] == "Country" else dimensions[0]
        entries = _DIMENSION_LABELS[name]
        key = _ROW_KEYS.get(name, name)
        return [{key: label} for label, _ in entries], label_weights(
            profile.project_id, salt, entries
        )
    # Any other combination: one row per dimension, all traffic under "(other)".
    return [{_ROW_KEYS.get(d, d): "(other)" for d in dimensions}], [1.0]


def _spell(metric: str, spelling: Spelling) -> str:
    return _DOCUMENTED_NAMES.get(metric, metric) if spelling == "documented" else metric


def _respell(rows: list[dict[str, Any]], spelling: Spelling) -> list[dict[str, Any]]:
    if spelling == "live":
        return rows
    renamed = {
        "distinctUserCount": "distantUserCount",
        "pagesPerSessionPercentage": "PagesPerSessionPercentage",
    }
    return [{renamed.get(k, k): v for k, v in row.items()} for row in rows]
