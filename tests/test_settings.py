"""Settings: environment, file, precedence, and one clear line for a bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from claritycast.errors import ConfigError
from claritycast.settings import CLARITY_EXPORT_URL, load_settings


def test_defaults_are_the_embedded_default() -> None:
    """Nothing set: embedded broker and database, data in ./var, Clarity's real endpoint."""
    settings = load_settings()
    assert settings.embedded_kafka and settings.embedded_mongodb
    assert settings.data_dir == Path("./var")
    assert settings.clarity_api_url == CLARITY_EXPORT_URL
    assert settings.partitions == 32


def test_environment_sets_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLARITYCAST_* variables are read and typed."""
    monkeypatch.setenv("CLARITYCAST_KAFKA_URL", "broker-1:9092;broker-2:9092")
    monkeypatch.setenv("CLARITYCAST_MONGODB_URL", "mongodb://db:27017")
    monkeypatch.setenv("CLARITYCAST_PARTITIONS", "12")
    monkeypatch.setenv("CLARITYCAST_LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.kafka_url == "kafka://broker-1:9092;broker-2:9092"
    assert not settings.embedded_kafka and not settings.embedded_mongodb
    assert settings.partitions == 12
    assert settings.log_format == "json"


def test_file_is_read_and_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Values come from the TOML file unless the environment sets them too."""
    config = tmp_path / "claritycast.toml"
    config.write_text('partitions = 3\nlog_level = "DEBUG"\nsmtp_host = "mail.example"\n')
    monkeypatch.setenv("CLARITYCAST_CONFIG_FILE", str(config))
    monkeypatch.setenv("CLARITYCAST_PARTITIONS", "5")
    settings = load_settings()
    assert settings.partitions == 5
    assert settings.log_level == "DEBUG"
    assert settings.smtp_host == "mail.example"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CLARITYCAST_PARTITIONS", "0", "greater than or equal to 1"),
        ("CLARITYCAST_PARTITIONS", "many", "valid integer"),
        ("CLARITYCAST_KAFKA_URL", "kafka://nohost", "kafka://host:port"),
        ("CLARITYCAST_MONGODB_URL", "postgres://db", "mongodb://"),
        ("CLARITYCAST_DEFAULT_TIMEZONE", "Mars/Olympus", "IANA timezone"),
        ("CLARITYCAST_LOG_FORMAT", "xml", "'human' or 'json'"),
        ("CLARITYCAST_CLARITY_API_URL", "ftp://x", "http"),
        ("CLARITYCAST_SMTP_PORT", "70000", "less than or equal to 65535"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    """Each bad value fails with a ConfigError naming the environment variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting {variable}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_config_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file that does not exist is a clear error, not a silent default."""
    monkeypatch.setenv("CLARITYCAST_CONFIG_FILE", "/nonexistent/claritycast.toml")
    with pytest.raises(ConfigError, match="CLARITYCAST_CONFIG_FILE: no such file"):
        load_settings()


def test_malformed_config_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A TOML syntax error names the file setting in one line."""
    config = tmp_path / "bad.toml"
    config.write_text("partitions = = 3\n")
    monkeypatch.setenv("CLARITYCAST_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match="CLARITYCAST_CONFIG_FILE"):
        load_settings()


def test_unknown_key_in_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A typo in the file is caught instead of silently ignored."""
    config = tmp_path / "claritycast.toml"
    config.write_text("partitons = 3\n")
    monkeypatch.setenv("CLARITYCAST_CONFIG_FILE", str(config))
    with pytest.raises(ConfigError, match="CLARITYCAST_PARTITONS"):
        load_settings()


def test_secret_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors about a secret setting do not repeat its value; describing settings masks it."""
    monkeypatch.setenv("CLARITYCAST_SMTP_PASSWORD", "correct-horse-battery")
    monkeypatch.setenv("CLARITYCAST_SMTP_PORT", "nope")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "correct-horse-battery" not in str(caught.value)
    monkeypatch.delenv("CLARITYCAST_SMTP_PORT")
    described = load_settings().described()
    assert ("CLARITYCAST_SMTP_PASSWORD", "***") in [(name, value) for name, value, _ in described]


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    """From the command line, a bad setting is one line on stderr and exit code 2."""
    result = subprocess.run(
        [sys.executable, "-m", "claritycast", "status"],
        env={"CLARITYCAST_PARTITIONS": "-1", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "claritycast: invalid setting CLARITYCAST_PARTITIONS: "
        "Input should be greater than or equal to 1 (got '-1')"
    ]
