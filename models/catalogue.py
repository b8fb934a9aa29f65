"""The metric catalogue: one table that storage, charts and the CLI all read.

Each metric says where its number lives in a stored snapshot (fetch group,
metric block, field) and how numbers combine, across rows or across days:
counts add up, averages are weighted by sessions, breakdowns rank the top N.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    TRAFFIC = "Traffic"
    ENGAGEMENT = "Engagement"
    FRUSTRATION = "Frustration"
    BREAKDOWNS = "Breakdowns"


class Unit(StrEnum):
    COUNT = "count"
    SECONDS = "seconds"
    PERCENT = "%"
    PAGES = "pages"


class Aggregation(StrEnum):
    SUM = "sum"
    SESSION_WEIGHTED = "session-weighted average"
    TOP_N = "top-N"


@dataclass(frozen=True)
class Metric:
    """One chartable metric.

    A breakdown (``dimension`` set) ranks the values of ``field`` per value of
    that dimension, summed over any other dimension of the group; ``weighted``
    says its values are averages, combined by session weight.
    """

    id: str
    category: Category
    title: str
    unit: Unit
    group: str
    block: str
    field: str
    aggregation: Aggregation
    dimension: str | None = None
    weighted: bool = False

    @property
    def is_breakdown(self) -> bool:
        return self.dimension is not None


def _frustration(id_: str, title: str, block: str) -> Metric:
    return Metric(id_, Category.FRUSTRATION, title, Unit.COUNT, "overall", block, "subTotal",
                  Aggregation.SUM)  # fmt: skip


def _top(
    id_: str,
    title: str,
    group: str,
    dimension: str,
    block: str = "Traffic",
    field: str = "totalSessionCount",
    unit: Unit = Unit.COUNT,
    weighted: bool = False,
) -> Metric:
    return Metric(
        id_, Category.BREAKDOWNS, title, unit, group, block, field, Aggregation.TOP_N, dimension,
        weighted,
    )  # fmt: skip


METRICS: tuple[Metric, ...] = (
    Metric("sessions", Category.TRAFFIC, "Sessions", Unit.COUNT, "overall", "Traffic",
           "totalSessionCount", Aggregation.SUM),
    Metric("distinct_users", Category.TRAFFIC, "Distinct users", Unit.COUNT, "overall", "Traffic",
           "distinctUserCount", Aggregation.SUM),
    Metric("bot_sessions", Category.TRAFFIC, "Bot sessions", Unit.COUNT, "overall", "Traffic",
           "totalBotSessionCount", Aggregation.SUM),
    Metric("pages_per_session", Category.ENGAGEMENT, "Pages per session", Unit.PAGES, "overall",
           "Traffic", "pagesPerSessionPercentage", Aggregation.SESSION_WEIGHTED),
    Metric("active_time", Category.ENGAGEMENT, "Active engagement time", Unit.SECONDS, "overall",
           "EngagementTime", "activeTime", Aggregation.SESSION_WEIGHTED),
    Metric("scroll_depth", Category.ENGAGEMENT, "Scroll depth", Unit.PERCENT, "overall",
           "ScrollDepth", "averageScrollDepth", Aggregation.SESSION_WEIGHTED),
    _frustration("rage_clicks", "Rage clicks", "RageClickCount"),
    _frustration("dead_clicks", "Dead clicks", "DeadClickCount"),
    _frustration("excessive_scroll", "Excessive scrolling", "ExcessiveScroll"),
    _frustration("quickback_clicks", "Quickback clicks", "QuickbackClick"),
    _frustration("script_errors", "Script errors", "ScriptErrorCount"),
    _frustration("error_clicks", "Error clicks", "ErrorClickCount"),
    _top("top_pages_by_sessions", "Top pages by sessions", "url", "URL"),
    _top("top_pages_by_rage_clicks", "Top pages by rage clicks", "url", "URL",
         block="RageClickCount", field="subTotal"),
    _top("top_pages_by_scroll_depth", "Top pages by scroll depth", "url", "URL",
         block="ScrollDepth", field="averageScrollDepth", unit=Unit.PERCENT, weighted=True),
    _top("top_browsers", "Top browsers", "browser", "Browser"),
    _top("top_devices", "Top devices", "device", "Device"),
    _top("top_countries", "Top countries", "country", "Country/Region"),
    _top("top_oses", "Top operating systems", "os", "OS"),
    _top("top_sources", "Top traffic sources", "source", "Source"),
    _top("top_channels", "Top channels", "source", "Channel"),
)  # fmt: skip

BY_ID: dict[str, Metric] = {metric.id: metric for metric in METRICS}


def get(metric_id: str) -> Metric:
    """The metric with this id, or a KeyError listing the valid ones."""
    try:
        return BY_ID[metric_id]
    except KeyError:
        raise KeyError(f"unknown metric {metric_id!r}; one of: {', '.join(BY_ID)}") from None
