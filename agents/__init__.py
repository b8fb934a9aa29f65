"""The stages of the chain, each registered on an app by a function.

A worker runs any subset of the built stages (`select`), so one process can
run all of them (the embedded default) or a deployment can scale a stage on
its own. Registration is explicit: importing a stage module has no side
effects.

The design's chain is tick → quota → fetch → store → render → deliver; the
deployment groups below name stages of that chain. A stage that is part of
the design but not built yet is refused by name, never run as an empty shell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import faust

from agents import store
from claritycast.deps import Deps
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
        Stage("store", "upsert fetched snapshots into MongoDB, once each", store.register),
    )
}


def select(names: Iterable[str]) -> tuple[Stage, ...]:
    """The stages named (``all`` for every built one), in chain order.

    Raises `StageError` for a name outside the chain, or for a stage of the
    chain that this version does not build yet.
    """
    wanted: set[str] = set()
    for raw in names:
        for name in (part.strip() for part in raw.split(",")):
            if not name:
                continue
            if name == "all":
                wanted.update(STAGES)
            elif name in GROUPS:
                wanted.update(GROUPS[name])
            else:
                wanted.add(name)
    if not wanted:
        raise StageError("no stage chosen; name at least one of: " + ", ".join(STAGES))
    unknown = sorted(wanted - set(CHAIN))
    if unknown:
        raise StageError(
            f"unknown stage {', '.join(unknown)}; stages are: {', '.join(CHAIN)} "
            f"(groups: {', '.join(GROUPS)})"
        )
    unbuilt = [name for name in CHAIN if name in wanted and name not in STAGES]
    if unbuilt:
        raise StageError(
            f"stage {', '.join(unbuilt)} is not built in this version; "
            f"built stages: {', '.join(STAGES)}"
        )
    return tuple(STAGES[name] for name in CHAIN if name in wanted)
