"""One typed settings object, read from the environment and an optional file.

Precedence, highest first: ``CLARITYCAST_*`` environment variables, then the
TOML file named by ``CLARITYCAST_CONFIG_FILE`` (or ``./claritycast.toml`` when
it exists), then the defaults below. Keys in the file are the setting names
without the prefix, in lower case (``kafka_url = "kafka://…"``).

Leaving ``kafka_url`` and ``mongodb_url`` unset means the embedded default:
``claritycast up`` runs the broker and the database itself, and every other
command on the same data folder finds them there. The embedded broker keeps
every message in memory until it stops, so ``up`` restarts it empty, at a
moment when nothing is in flight, once its memory passes
``broker_memory_limit_mb`` (see `claritycast.runtime.broker_bound`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from claritycast.errors import ConfigError
from claritycast.keyring import parse_keys
from claritycast.localtime import valid_timezone
from claritycast.redact import register_secret

ENV_PREFIX = "CLARITYCAST_"
CONFIG_FILE_ENV = f"{ENV_PREFIX}CONFIG_FILE"
DEFAULT_CONFIG_FILE = Path("claritycast.toml")
CLARITY_EXPORT_URL = "https://www.clarity.ms/export-data/api/v1/project-live-insights"


class Settings(BaseSettings):
    """Everything an operator can set; names map to ``CLARITYCAST_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # `VAR=` (as compose writes ${VAR:-}) means unset
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # Where things live.
    kafka_url: str | None = Field(
        default=None, description="Kafka bootstrap servers, kafka://host:port[;host:port]"
    )
    mongodb_url: str | None = Field(default=None, description="MongoDB connection string")
    mongodb_database: str = Field(default="claritycast", description="MongoDB database name")
    data_dir: Path = Field(default=Path("./var"), description="Embedded servers' data and logs")
    mongodb_sync_on_commit: bool = Field(
        default=True, description="Embedded database fsyncs every commit (no lost snapshot)"
    )
    mongodb_cache_mb: int = Field(
        default=4096,
        ge=64,
        le=1_048_576,
        description="Embedded database: WiredTiger's cache, in MiB, a cap filled as data needs "
        "(SecantusDB's own 1024 hung under a month's writes)",
    )

    # Secrets at rest.
    secret_keys: SecretStr | None = Field(
        default=None,
        description="Keys that encrypt stored Clarity tokens, comma-separated; the first "
        "encrypts new ones (unset: the embedded default's key file)",
    )

    # Kafka and Faust.
    app_id: str = Field(default="claritycast", description="Faust app id and consumer group")
    topic_prefix: str = Field(default="claritycast.", description="Prefix of every topic name")
    partitions: int = Field(default=32, ge=1, le=256, description="Partitions per topic")
    replication_factor: int = Field(default=1, ge=1, le=7, description="Replicas per topic")
    kafka_flavour: Literal["auto", "kafka", "tansu"] = Field(
        default="auto",
        description="Broker quirks to work around; auto = tansu when embedded, else kafka",
    )
    broker_session_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Consumer session timeout; default 4 s on the embedded broker, 60 s on Kafka",
    )
    broker_fetch_wait_ms: int = Field(
        default=250,
        ge=10,
        le=1500,
        description="Embedded broker: how long a consumer's fetch waits for records; it holds "
        "every fetch this long, and each costs it more the more it holds",
    )
    broker_memory_limit_mb: int = Field(
        default=256,
        ge=0,
        le=1_048_576,
        description="Embedded broker: `up` restarts it empty at a quiet moment once its memory "
        "passes this (0: never)",
    )
    broker_memory_check_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Embedded broker: how often `up` reads its memory",
    )
    database_watch_s: float = Field(
        default=15.0,
        ge=0,
        le=3600,
        description="Embedded database: how often `up` writes a probe to it (0: never)",
    )
    database_expiry_s: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Embedded database: how often `up` deletes what TTL indexes expire, "
        "through them (0: SecantusDB's own sweeper, which reads every document)",
    )
    database_hung_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Embedded database: a probe unanswered this long and `up` restarts it",
    )

    # Logs.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written"
    )
    log_format: Literal["human", "json"] = Field(
        default="human", description="One line per event: human-readable or JSON"
    )

    # Clarity.
    clarity_api_url: str = Field(
        default=CLARITY_EXPORT_URL, description="Full URL of the Data Export endpoint"
    )
    clarity_timeout_s: float = Field(default=30.0, gt=0, le=300, description="Per-request timeout")
    tick_interval_s: float = Field(
        default=30.0, gt=0, le=3600, description="How often the leader looks for due work"
    )
    fetch_lease_s: float = Field(
        default=600.0,
        ge=5,
        le=3600,
        description="A fetch asked for counts as in flight this long; then the tick asks again",
    )
    fetch_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Clarity requests a worker makes at once (a wave; at most one per project)",
    )
    pull_in_flight: int = Field(
        default=2000,
        ge=7,
        le=1_000_000,
        description="At most this many groups asked for by the tick and not yet stored; "
        "the rest of a night's pull is asked for as these are stored",
    )
    default_timezone: str = Field(
        default="UTC", description="IANA timezone of organisations created without one"
    )
    clock_file: Path | None = Field(
        default=None,
        description="Benchmarks only: a worker reads the time from this file (an ISO 8601 "
        "instant that the benchmark rewrites) instead of the system clock",
    )

    # Slack.
    slack_token: SecretStr | None = Field(default=None, description="Slack bot token (xoxb-…)")
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL"
    )

    # Delivery.
    delivery_deadline_s: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Give up retrying a transient Slack/SMTP failure after this (per attempt)",
    )
    delivery_grace_s: float = Field(
        default=3 * 3600.0,
        ge=0,
        le=86400,
        description="Wait this long past a delivery's time for missing data, then send marked",
    )

    # Email.
    smtp_host: str | None = Field(default=None, description="SMTP server host")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port")
    smtp_username: str | None = Field(default=None, description="SMTP user name")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS, implicit TLS, or plain (local catchers only)"
    )
    smtp_verify_certs: bool = Field(default=True, description="Check the SMTP certificate")
    smtp_ca_file: Path | None = Field(
        default=None, description="Extra CA bundle (PEM) to trust for the SMTP server"
    )
    smtp_timeout_s: float = Field(default=30.0, gt=0, le=300, description="SMTP timeout")
    smtp_from: str = Field(
        default="claritycast <claritycast@localhost>", description="From address of reports"
    )

    # AI summaries (any OpenAI-compatible chat-completions endpoint).
    summariser_url: str | None = Field(default=None, description="OpenAI-compatible base URL")
    summariser_model: str | None = Field(default=None, description="Model name")
    summariser_api_key: SecretStr | None = Field(default=None, description="API key")
    summariser_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Give up and use the plain summary after this"
    )
    summariser_max_chars: int = Field(
        default=700, ge=80, le=4000, description="Longest AI summary kept (longer is cut)"
    )

    # The web process (HTTP API and pages) and Prometheus metrics.
    web_host: str = Field(default="127.0.0.1", description="Address the web process binds")
    web_port: int = Field(default=8080, ge=0, le=65535, description="Port of the web process")
    web_secret: SecretStr | None = Field(
        default=None,
        description="Signs session cookies; shared by every web process (embedded: a file)",
    )
    web_idle_timeout_s: float = Field(
        default=1800.0, ge=60, le=7 * 86400, description="A session ends after this idle time"
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address a worker's /metrics binds")
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a worker's /metrics (unset: none; `up` sets one); 0 picks a free one",
    )

    @field_validator("kafka_url")
    @classmethod
    def _check_kafka_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for server in value.removeprefix("kafka://").split(";"):
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("expected kafka://host:port[;host:port]")
        return value if value.startswith("kafka://") else f"kafka://{value}"

    @field_validator("mongodb_url")
    @classmethod
    def _check_mongodb_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("expected a mongodb:// or mongodb+srv:// URL")
        return value

    @field_validator("clarity_api_url", "slack_api_url", "summariser_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("secret_keys")
    @classmethod
    def _check_secret_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_keys(value.get_secret_value())
            except ConfigError as exc:
                raise ValueError(exc.problem) from None
        return value

    @field_validator("default_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if not valid_timezone(value):
            raise ValueError("not an IANA timezone (e.g. Europe/Paris)")
        return value

    @field_validator("topic_prefix", "app_id", "mongodb_database")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if any(c.isspace() for c in value) or "/" in value or "$" in value:
            raise ValueError("must not contain spaces, '/' or '$'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def embedded_kafka(self) -> bool:
        """True when claritycast runs the broker itself."""
        return self.kafka_url is None

    @property
    def embedded_mongodb(self) -> bool:
        """True when claritycast runs the database itself."""
        return self.mongodb_url is None

    @property
    def run_dir(self) -> Path:
        """Lock and state files of a running `claritycast up`."""
        return self.data_dir / "run"

    @property
    def log_dir(self) -> Path:
        """Logs of the embedded servers."""
        return self.data_dir / "log"

    def described(self) -> list[tuple[str, str, str]]:
        """(environment variable, effective value, description), secrets masked."""
        rows = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown = "***"
            elif value is None:
                shown = "(unset)"
            else:
                shown = str(value)
            rows.append((f"{ENV_PREFIX}{name.upper()}", shown, field.description or ""))
        return rows


def _config_file() -> Path | None:
    named = os.environ.get(CONFIG_FILE_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(CONFIG_FILE_ENV, f"no such file: {path}")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or raise one `ConfigError` naming the first bad setting.

    Secret values are registered with the log redactor before anything can
    log them.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc) from None
    except (ValueError, OSError) as exc:  # an unreadable or malformed TOML file
        raise ConfigError(CONFIG_FILE_ENV, str(exc).splitlines()[0]) from None
    secrets = (
        settings.slack_token, settings.smtp_password, settings.summariser_api_key,
        settings.web_secret,
    )  # fmt: skip
    for secret in secrets:
        if secret is not None:
            register_secret(secret.get_secret_value())
    return settings


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = error.get("loc") or ("?",)
    name = str(location[0])
    field = Settings.model_fields.get(name)
    setting = f"{ENV_PREFIX}{name.upper()}"
    message = error["msg"].removeprefix("Value error, ")
    if field is not None and field.annotation not in (SecretStr, SecretStr | None):
        raw = os.environ.get(setting)
        if raw is not None:
            message = f"{message} (got {raw!r})"
    return ConfigError(setting, message)
