"""The stages of the chain, each registered on an app by a function.

A worker runs any subset of the built stages (`select`), so one process can
run all of them (the embedded default) or a deployment can scale a stage on
its own. Registration is explicit: importing a stage module has no side
effects.

The design's chain is tick → quota → fetch → store → render → deliver; the
deployment groups below name stages of that chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faust

from agents import deliver, fetch, quota, render, store, tick
from agents.deps import Deps
from claritycast.errors import StageError
from topics import Topics

CHAIN: tuple[str, ...] = ("tick", "quota", "fetch", "store", "render", "deliver")

# How docker-compose.yml and deploy/ group stages into separately scaled services.
GROUPS: dict[str, tuple[str, ...]] = {
    "tick-quota": ("tick", "quota"),
    "fetch-store": ("fetch", "store"),
    "render-deliver": ("render", "deliver"),
}


@dataclass(frozen=True)
class Stage:
    """A stage: its name, what it does, and the function that registers its agents."""

    name: str
    description: str
    register: Callable[[faust.App, Topics, Deps], None]


STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        Stage(
            "tick",
            "leader-only timer: request missing snapshots and due deliveries",
            tick.register,
        ),
        Stage("quota", "grant fetches within 10 requests a day, logged first", quota.register),
        Stage("fetch", "make granted Clarity requests, record each outcome", fetch.register),
        Stage("store", "upsert fetched snapshots into MongoDB, once each", store.register),
        Stage("render", "draw due reports from stored history, with summaries", render.register),
        Stage("deliver", "send rendered reports to Slack or email, once each", deliver.register),
    )
}


def parse_names(names: Iterable[str]) -> tuple[set[str], set[str]]:
    """Split comma-separated names into (stages named, groups named); refuse unknown ones."""
    stages: set[str] = set()
    groups: set[str] = set()
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name == "all":
                stages.update(STAGES)
            elif name in GROUPS:
                groups.add(name)
            elif name in CHAIN:
                stages.add(name)
            else:
                raise StageError(
                    f"unknown stage {name!r}; stages are: {', '.join(CHAIN)}; "
                    f"groups: {', '.join(GROUPS)}; or 'all'"
                )
    if not stages and not groups:
        raise StageError("no stage chosen; name at least one of: " + ", ".join(STAGES))
    return stages, groups


def select(names: Iterable[str]) -> tuple[Stage, ...]:
    """The stages named, directly or through a group, in chain order."""
    stages, groups = parse_names(names)
    for group in groups:
        stages.update(GROUPS[group])
    return tuple(STAGES[name] for name in CHAIN if name in stages)
