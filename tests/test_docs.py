"""The README stays true: the two commands first, every setting documented."""

from __future__ import annotations

from pathlib import Path

from claritycast.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    """The first lines give `make run` and `make test`, and CI runs that test command."""
    head = README.splitlines()[:6]
    assert any(line.startswith("make run ") for line in head)
    assert any(line.startswith("make test ") for line in head)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_documents_every_setting() -> None:
    """Each setting appears in the configuration table, and the table names no other."""
    rows = {
        line.split("`")[1] for line in README.splitlines() if line.startswith(f"| `{ENV_PREFIX}")
    }
    assert rows == {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
