"""docker-compose.yml and deploy/: no Docker engine here, so their contents are checked."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import pytest
import yaml

import agents
from claritycast.cli.main import cli
from claritycast.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CLARITYCAST_SERVICES = {
    name: service
    for name, service in SERVICES.items()
    if service.get("image") == "claritycast:latest"
}


def test_compose_has_the_production_parts() -> None:
    """Kafka in KRaft mode, MongoDB, Mailpit, one service per stage group, the web process."""
    assert "broker,controller" in SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert SERVICES["mongodb"]["image"].startswith("mongo:")
    assert SERVICES["mailpit"]["image"].startswith("axllent/mailpit")
    assert set(CLARITYCAST_SERVICES) == {*agents.GROUPS, "web"}


def test_the_web_service_is_published_on_8080_and_needs_its_secret() -> None:
    """`claritycast web` on 0.0.0.0:8080 in the container, published on the host's 8080."""
    web = CLARITYCAST_SERVICES["web"]
    assert web["command"] == ["claritycast", "web"]
    assert web["environment"]["CLARITYCAST_WEB_PORT"] == "8080"
    assert "127.0.0.1:8080:8080" in web["ports"]
    assert "CLARITYCAST_WEB_SECRET:?" in str(web["environment"]["CLARITYCAST_WEB_SECRET"])
    assert "/healthz" in " ".join(web["healthcheck"]["test"])


@pytest.mark.parametrize("name", sorted(agents.GROUPS))
def test_each_service_command_is_a_real_claritycast_command(name: str) -> None:
    """The command parses with the real CLI and names real stages."""
    service = CLARITYCAST_SERVICES[name]
    program, *args = service["command"]
    assert program == "claritycast"
    with cli.make_context("claritycast", list(args), resilient_parsing=False) as ctx:
        command_name, command, rest = cli.resolve_command(ctx, list(args))
        assert isinstance(command, click.Command)
        sub = command.make_context(command_name, rest, parent=ctx)
    assert command_name == "worker"
    stages, groups = agents.parse_names([sub.params["stages"]])
    assert set(agents.GROUPS[name]) == stages | {s for g in groups for s in agents.GROUPS[g]}


@pytest.mark.parametrize("name", sorted({*agents.GROUPS}))
def test_services_can_scale(name: str) -> None:
    """No fixed container name or host port, so `--scale` works on every stage group."""
    service = CLARITYCAST_SERVICES[name]
    assert "container_name" not in service
    assert "ports" not in service


@pytest.mark.parametrize("name", sorted(agents.GROUPS))
def test_service_environment_is_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLARITYCAST_* variable in compose is a setting, valid as compose passes it.

    ``${VAR:-}`` becomes an empty value when the operator's .env does not set it,
    and an empty value means "unset".
    """
    environment = CLARITYCAST_SERVICES[name]["environment"]
    assert {k.removeprefix("CLARITYCAST_").lower() for k in environment} <= set(
        Settings.model_fields
    )
    for key, value in environment.items():
        monkeypatch.setenv(key, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    settings = load_settings()
    assert settings.kafka_url == "kafka://kafka:9092"
    assert settings.mongodb_url == "mongodb://mongodb:27017"
    assert settings.slack_token is None and settings.summariser_url is None


def test_dockerfile_installs_the_project_and_fonts() -> None:
    """The image installs claritycast with cairo, Pango and the CJK and emoji fonts.

    The package ships its sans-serif font; .ci/run installs the same system
    packages the charts' tests need.
    """
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --no-cache-dir ." in dockerfile
    assert "libcairo2" in dockerfile and "fontconfig" in dockerfile
    for package in ("libpangocairo-1.0-0", "fonts-noto-cjk", "fonts-noto-color-emoji"):
        assert package in dockerfile and package in ci
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "fonts/*" in pyproject["tool"]["setuptools"]["package-data"]["claritycast.reports"]
    assert (ROOT / "claritycast" / "reports" / "fonts" / "DejaVuSans.ttf").is_file()
    for package in ("claritycast", "agents", "topics", "models"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_example_production_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/claritycast.example.toml is a valid settings file."""
    monkeypatch.setenv("CLARITYCAST_CONFIG_FILE", str(ROOT / "deploy" / "claritycast.example.toml"))
    settings = load_settings()
    assert settings.replication_factor == 3
    assert not settings.embedded_kafka


def test_only_the_services_that_fetch_or_seal_hold_the_key() -> None:
    """The key reaches the fetch stage's containers (they open tokens) and the web process
    (it seals the tokens people give), and no other."""
    assert "web" in CLARITYCAST_SERVICES
    for name, service in CLARITYCAST_SERVICES.items():
        holds_key = "CLARITYCAST_SECRET_KEYS" in service["environment"]
        needs_key = name == "web" or "fetch" in agents.GROUPS[name]
        assert holds_key == needs_key, name
