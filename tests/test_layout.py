"""The package's shape stays true: wings import downwards only, and modules stay small.

The import graph is read from the source with ``ast`` (no module is imported),
so a new module or a new import is checked the moment it is written. Each
module belongs to a layer; it may import its own layer and the layers below
it (`ALLOWED`), never a layer above. `standins` (the simulator, the stand-ins,
the demo) may import anything, and only the `demo` and `simulate` commands
import it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("claritycast", "agents", "topics", "models")
MAX_LINES = 450


def below(*layers: str) -> set[str]:
    return set(layers)


# What each layer may import besides itself (and the standard library and third parties).
BASE = below("root", "models")
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "root": below("models"),
    "store": BASE,
    "clarity": BASE,
    "topics": BASE,
    "reports": BASE | below("store", "clarity"),
    "delivery": BASE | below("reports", "store", "clarity", "topics"),
    "ingest": BASE | below("delivery", "store", "clarity", "topics"),
}
ALLOWED["agents"] = ALLOWED["ingest"] | below("ingest", "reports")
ALLOWED["runtime"] = ALLOWED["agents"] | below("agents")
ALLOWED["web"] = ALLOWED["runtime"] | below("runtime")
ALLOWED["cli"] = ALLOWED["web"] | below("web")
ALLOWED["standins"] = set(ALLOWED)
WINGS = {"clarity", "ingest", "reports", "delivery", "runtime", "cli", "web", "standins", "store"}
# The commands that run the stand-ins for a person: the demo and the simulator.
STANDIN_USERS = {"claritycast.cli.demo", "claritycast.cli.simulate"}


def layer_of(module: str) -> str:
    """``claritycast.ingest.quota`` -> ``ingest``; ``claritycast.errors`` -> ``root``."""
    if module == "claritycast.__main__":  # `python -m claritycast` is the command
        return "cli"
    top, _, rest = module.partition(".")
    if top != "claritycast":
        return top
    wing = rest.partition(".")[0]
    return wing if wing in WINGS else "root"


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Every first-party module ``path`` imports, with its line."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def first_party(name: str) -> str | None:
    """The module an imported name belongs to, if it is ours."""
    top = name.partition(".")[0]
    if top not in PACKAGES:
        return None
    known = {module for module, _ in modules()}
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or top


def violations() -> list[str]:
    found = []
    for module, path in modules():
        layer = layer_of(module)
        for line, name in imports(path, module):
            target = first_party(name)
            if target is None:
                continue
            target_layer = layer_of(target)
            where = f"{path.relative_to(path.parents[1])}:{line}"
            if target_layer == "standins" and layer != "standins" and module not in STANDIN_USERS:
                found.append(f"{where}: {module} ({layer}) imports the stand-ins ({target})")
            elif target_layer not in (layer, "standins") and target_layer not in ALLOWED[layer]:
                found.append(
                    f"{where}: {module} ({layer}) imports {target} ({target_layer}), above"
                )
    return found


def test_wings_import_downwards_only() -> None:
    """No module imports a wing above its own; only the demo and simulate use the stand-ins."""
    assert violations() == []


def test_an_upward_import_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself fails on a forbidden import (the store reaching up into delivery)."""
    store = ROOT / "claritycast" / "store" / "core.py"
    planted = tmp_path / "core.py"
    planted.write_text(store.read_text() + "\nfrom claritycast.delivery import slack\n")
    real = modules

    def with_plant() -> Iterator[tuple[str, Path]]:
        for module, path in real():
            yield module, planted if path == store else path

    monkeypatch.setattr(sys.modules[__name__], "modules", with_plant)
    assert any("claritycast.store.core (store) imports claritycast.delivery" in v
               for v in violations())  # fmt: skip


def test_no_module_is_over_450_lines() -> None:
    """A module past about 400 lines is two things: split it by what a reader looks for."""
    long = [
        f"{path.relative_to(ROOT)} ({count})"
        for _, path in modules()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    ]
    assert long == []
