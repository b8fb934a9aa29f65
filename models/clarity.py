"""Clarity's Data Export responses as typed values, and the 7 fetch groups.

Clarity answers a JSON array of metric blocks whose spelling varies (see
``shared/clarity-api.md``). Parsing turns every variant into one canonical
form: CamelCase metric names, live field spellings, request-style dimension
names, numbers as numbers, and a missing or ``null`` figure simply absent,
never zero. That canonical form is what snapshots store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The dimension names the API takes, exactly as requested.
DIMENSIONS = (
    "Browser",
    "Device",
    "Country/Region",
    "OS",
    "Source",
    "Medium",
    "Campaign",
    "Channel",
    "URL",
)

# Metric blocks in the order Clarity sends them: 9 always, 7 more without dimensions.
DIMENSIONED_BLOCKS = (
    "DeadClickCount",
    "ExcessiveScroll",
    "RageClickCount",
    "QuickbackClick",
    "ScriptErrorCount",
    "ErrorClickCount",
    "ScrollDepth",
    "Traffic",
    "EngagementTime",
)
OVERALL_ONLY_BLOCKS = (
    "Browser",
    "Device",
    "OS",
    "Country",
    "PageTitle",
    "ReferrerUrl",
    "PopularPages",
)
ALL_BLOCKS = DIMENSIONED_BLOCKS + OVERALL_ONLY_BLOCKS

# Row keys that carry a label rather than a figure (overall-only blocks).
LABEL_KEYS = {"name": "name", "url": "url"}

# The documented (old) spellings of fields, mapped to the live ones.
FIELD_ALIASES = {
    "distantusercount": "distinctUserCount",
    "pagespersessionpercentage": "pagesPerSessionPercentage",
}


@dataclass(frozen=True)
class FetchGroup:
    """One of the 7 daily requests: its name and dimensions."""

    name: str
    dimensions: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, str]:
        """Query parameters of the request (always the last 24 hours)."""
        params = {"numOfDays": "1"}
        for index, dimension in enumerate(self.dimensions, start=1):
            params[f"dimension{index}"] = dimension
        return params


GROUPS: tuple[FetchGroup, ...] = (
    FetchGroup("overall"),
    FetchGroup("url", ("URL",)),
    FetchGroup("browser", ("Browser",)),
    FetchGroup("device", ("Device",)),
    FetchGroup("country", ("Country/Region",)),
    FetchGroup("os", ("OS",)),
    FetchGroup("source", ("Source", "Channel")),
)
GROUPS_BY_NAME = {group.name: group for group in GROUPS}
GROUP_NAMES = tuple(group.name for group in GROUPS)


@dataclass(frozen=True)
class Row:
    """One row of a metric block.

    ``dims`` maps requested dimension names to their value (``None`` is
    Clarity's aggregate row). ``label`` is the ``name``/``url`` of overall-only
    blocks. ``values`` holds only the figures that were present.
    """

    values: dict[str, float] = field(default_factory=dict)
    dims: dict[str, str | None] = field(default_factory=dict)
    label: str | None = None

    @property
    def is_aggregate(self) -> bool:
        """The total row some dimensioned blocks include: every dimension null."""
        return bool(self.dims) and all(value is None for value in self.dims.values())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"values": self.values}
        if self.dims:
            data["dims"] = self.dims
        if self.label is not None:
            data["label"] = self.label
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(values=data["values"], dims=data.get("dims", {}), label=data.get("label"))


@dataclass(frozen=True)
class Block:
    """One metric block, under its canonical CamelCase name."""

    metric: str
    rows: tuple[Row, ...]

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "rows": [row.to_json() for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Block:
        return cls(data["metric"], tuple(Row.from_json(row) for row in data["rows"]))


@dataclass(frozen=True)
class ClarityResponse:
    """A parsed answer; ``notes`` lists what was odd but survivable."""

    blocks: tuple[Block, ...]
    notes: tuple[str, ...] = ()

    def block(self, metric: str) -> Block | None:
        return next((b for b in self.blocks if b.metric == metric), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [block.to_json() for block in self.blocks]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> ClarityResponse:
        return cls(tuple(Block.from_json(block) for block in data))
