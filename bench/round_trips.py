"""Every database operation of a run, by shape, with the plan the server chose for it.

Turns SecantusDB's profiler on (level 2: every command is written to
``system.profile``), and afterwards groups the commands by collection,
command and the shape of their filter (field names and operators, never
values), with how often each ran, its total server time, and the plan
``explain`` gives for that filter: ``IXSCAN`` or ``COLLSCAN``. A COLLSCAN on a
collection that grows with the history is a cost that grows with the data.

The profiler writes a document per command, so a run measured this way is
slower: use it to count round trips (`bench.ingest --ops`), not to time them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

# The command field that holds each command's filter, where it has one.
FILTERS = {
    "find": ("filter",),
    "count": ("query",),
    "delete": ("deletes", "q"),
    "update": ("updates", "q"),
    "findAndModify": ("query",),
}
IGNORED = {"hello", "isMaster", "ismaster", "ping", "endSessions", "buildInfo", "getMore"}


def shape(value: Any) -> Any:
    """A filter without its values: field names and operators only."""
    if isinstance(value, dict):
        return {key: shape(inner) for key, inner in sorted(value.items())}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [shape(value[0])]
    return "?"


@dataclass
class Shape:
    collection: str
    command: str
    filter: dict[str, Any]
    example: dict[str, Any]
    count: int = 0
    millis: int = 0
    plan: str = ""
    upsert: bool = False
    extra: set[str] = field(default_factory=set)


def filter_of(command: str, doc: dict[str, Any]) -> dict[str, Any]:
    path = FILTERS.get(command)
    if path is None:
        return {}
    value: Any = doc.get(path[0])
    if isinstance(value, list):
        value = value[0] if value else {}
        value = value.get(path[1], {}) if isinstance(value, dict) else {}
    return value if isinstance(value, dict) else {}


# The profiler's collection is capped; SecantusDB's default cap (10 MB) keeps about the
# last 2,000 commands, a small part of a night. Made this large before profiling starts.
PROFILE_BYTES = 2 << 30


async def start(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Profile every command, keeping them all (a capped collection large enough for a night)."""
    await db.command("profile", 0)
    await db.drop_collection("system.profile")
    await db.create_collection("system.profile", capped=True, size=PROFILE_BYTES)
    await db.command("profile", 2)


async def report(db: AsyncDatabase[dict[str, Any]], per: int, per_name: str) -> list[str]:
    """Lines of a table: each shape, its count per ``per_name``, its plan."""
    shapes: dict[str, Shape] = {}
    async for entry in db["system.profile"].find({}):
        doc = entry.get("command") or {}
        command = next(iter(doc), "")
        if command in IGNORED or not isinstance(doc.get(command), str):
            continue
        collection = doc[command]
        if collection.startswith("system."):
            continue
        filter_ = filter_of(command, doc)
        key = f"{collection} {command} {shape(filter_)}"
        found = shapes.get(key)
        if found is None:
            found = shapes[key] = Shape(collection, command, shape(filter_), filter_)
            updates = doc.get("updates") or []
            found.upsert = bool(
                updates and isinstance(updates[0], dict) and updates[0].get("upsert")
            )
        found.count += 1
        found.millis += int(entry.get("millis") or 0)
    for found in shapes.values():
        if found.example:
            found.plan = await plan_of(db, found.collection, found.example)
    lines = [
        f"| collection | command | filter | per {per_name} | server ms | plan |",
        "|---|---|---|---|---|---|",
    ]
    total = 0
    by_count = sorted(shapes.values(), key=lambda s: (-s.count, s.collection))
    for found in by_count:
        total += found.count
        command = found.command + (" (upsert)" if found.upsert else "")
        lines.append(
            f"| {found.collection} | {command} | `{found.filter}` | {found.count / per:.2f} "
            f"| {found.millis} | {found.plan} |"
        )
    lines.append(
        f"| all | | | **{total / per:.2f}** | {sum(s.millis for s in shapes.values())} | |"
    )
    return lines


async def plan_of(
    db: AsyncDatabase[dict[str, Any]], collection: str, filter_: dict[str, Any]
) -> str:
    """The stages of the plan ``explain`` gives for a find with this filter."""
    answer = await db.command({"explain": {"find": collection, "filter": filter_}})
    stages: list[str] = []
    collect_stages(answer.get("queryPlanner", {}).get("winningPlan", {}), stages)
    return ">".join(stages) or "?"


def collect_stages(plan: Any, stages: list[str]) -> None:
    if isinstance(plan, dict):
        if "stage" in plan:
            name = plan["stage"]
            if "indexName" in plan:
                name += f"({plan['indexName']})"
            stages.append(name)
        for key in ("inputStage", "queryPlan"):
            collect_stages(plan.get(key), stages)
        for child in plan.get("inputStages", []):
            collect_stages(child, stages)
