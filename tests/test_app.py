"""The app factory: exactly the chosen stages, and broker settings that fit the broker."""

from __future__ import annotations

import pytest

import agents
from claritycast.errors import ConfigError, StageError
from claritycast.keyring import new_key
from claritycast.runtime.app import create_app, faust_options
from claritycast.runtime.embedded import Endpoints
from claritycast.settings import load_settings

KEY = new_key()  # a worker running the fetch stage is built with the key, or not at all
EMBEDDED = Endpoints("kafka://127.0.0.1:1", "mongodb://127.0.0.1:2", True, True)
EXTERNAL = Endpoints("kafka://kafka:9092", "mongodb://mongodb:27017", False, False)


def test_create_app_registers_exactly_the_chosen_stages(tmp_path) -> None:
    """Only the agents of the chosen stages are on the app, under explicit names."""
    settings = load_settings(secret_keys=KEY, data_dir=tmp_path)
    app = create_app(settings, ["store"], EMBEDDED)
    assert set(app.agents) == {"claritycast.store"}
    assert app.stage_names == ("store",)
    assert app.conf.id == "claritycast-store", "a stage group is its own consumer group"
    everything = create_app(settings, ["all"], EMBEDDED)
    assert set(everything.agents) == {
        "claritycast.quota",
        "claritycast.fetch",
        "claritycast.store",
        "claritycast.render",
        "claritycast.deliver",
    }
    assert everything.stage_names == agents.CHAIN
    assert everything.conf.id == "claritycast", "every built stage in one app: the plain app id"


def test_every_declared_topic_has_the_configured_partitions(tmp_path) -> None:
    """Topics carry the partition count before anything touches them."""
    settings = load_settings(secret_keys=KEY, data_dir=tmp_path, partitions=6, topic_prefix="x.")
    app = create_app(settings, ["all"], EMBEDDED)
    topics = list(app.declared)
    assert topics
    for topic in topics:
        assert topic.partitions == 6
        assert all(name.startswith("x.") for name in topic.topics)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["stroe"], "unknown stage 'stroe'"),
        ([""], "no stage chosen"),
    ],
)
def test_bad_stage_choice_is_refused(names: list[str], message: str) -> None:
    """Typos and empty choices are refused by name."""
    with pytest.raises(StageError, match=message):
        agents.select(names)


def test_groups_run_their_stages() -> None:
    """A deployment group (as docker-compose.yml names them) runs its stages."""
    for group, members in agents.GROUPS.items():
        assert tuple(s.name for s in agents.select([group])) == members
    assert [s.name for s in agents.select(["tick-quota,deliver"])] == ["tick", "quota", "deliver"]


def test_tansu_settings_only_on_the_embedded_broker(tmp_path) -> None:
    """A short session applies to Tansu, never to real Kafka; both batch records as Faust does.

    One record per batch is no longer forced on Tansu: the readers of its end
    offsets take them from a fetch (`tests/test_broker_batches.py`).
    """
    settings = load_settings(data_dir=tmp_path)
    embedded = faust_options(settings, EMBEDDED, "claritycast")
    assert embedded["broker_session_timeout"] <= 5
    assert embedded["broker_heartbeat_interval"] < embedded["broker_session_timeout"]
    external = faust_options(settings, EXTERNAL, "claritycast")
    assert "broker_session_timeout" not in external
    forced = faust_options(load_settings(kafka_flavour="tansu"), EXTERNAL, "claritycast")
    assert forced["broker_session_timeout"] <= 5
    for options in (embedded, external, forced):
        assert "producer_max_batch_size" not in options
        assert 0 < options["producer_linger"] <= 0.05  # a burst shares a batch, soon sent


def test_web_server_is_off_and_nothing_is_autodiscovered(tmp_path) -> None:
    """No 0.0.0.0:6066 listener, no import side effects."""
    options = faust_options(load_settings(data_dir=tmp_path), EMBEDDED, "claritycast")
    assert options["web_enabled"] is False
    assert options["autodiscover"] is False


def test_only_the_embedded_broker_gets_short_fetch_waits(tmp_path) -> None:
    """Tansu holds an empty fetch for the whole wait; Kafka keeps Faust's own transport."""
    from claritycast.runtime.transport import (
        KafkaTransport,
        SeekingConsumer,
        TansuConsumer,
        TansuTransport,
    )

    embedded = create_app(load_settings(data_dir=tmp_path), ["store"], EMBEDDED)
    external = create_app(load_settings(data_dir=tmp_path), ["store"], EXTERNAL)
    assert isinstance(embedded.transport, TansuTransport)
    assert embedded.transport.Consumer is TansuConsumer
    assert type(external.transport) is KafkaTransport
    assert external.transport.Consumer is SeekingConsumer


def test_only_a_worker_that_fetches_holds_the_key(tmp_path) -> None:
    """Only the fetch stage opens tokens: other stage groups start without the key; a fetching
    worker on an external database does not start without it."""
    values = {"data_dir": tmp_path, "kafka_url": "kafka://kafka:9092"}
    external = load_settings(**values, mongodb_url="mongodb://mongodb:27017")
    for group in ("tick-quota", "render-deliver"):
        assert create_app(external, [group], EXTERNAL).deps.store.keyring is None
    with pytest.raises(ConfigError) as caught:
        create_app(external, ["fetch-store"], EXTERNAL)
    assert caught.value.setting == "CLARITYCAST_SECRET_KEYS"
    keyed = load_settings(**values, mongodb_url="mongodb://mongodb:27017", secret_keys=KEY)
    fetching = create_app(keyed, ["fetch-store"], EXTERNAL)
    assert fetching.deps.store.keyring is not None
