"""The topics' public contract: schemas that match the records, versions that move with them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
import typing
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import click
import faust
import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from claritycast.cli.main import cli
from claritycast.cli.topics import topics as topics_command
from claritycast.runtime.ports import free_port
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings, load_settings
from models.records import DeliverySent, SnapshotStored
from tests.helpers import bootstrap, produce
from topics import ALL, DELIVERIES_SENT, SNAPSHOTS_STORED
from topics.schema import (
    CONTRACT_PATH,
    EVENTS_DOC_PATH,
    REGENERATE,
    ContractError,
    contract_problems,
    current_entries,
    default_table_settings,
    events_table_is_current,
    json_schemas,
    load_contract,
    record_entry,
    record_schema,
    topic_contracts,
    updated_contract,
)

try:
    import jsonschema
except ImportError:  # not a dependency: the structural check below stands in
    jsonschema = None

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "consume_events.py"
RECORDS = {spec.value._options.namespace: spec.value for spec in ALL}


# Validation: jsonschema when installed, else a check of exactly the keywords we generate.

_KNOWN_KEYWORDS = {
    "$schema", "title", "description", "default", "type", "format", "properties",
    "required", "additionalProperties", "items", "anyOf", "enum", "const",
}  # fmt: skip
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return True  # formats only constrain strings
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def structural_errors(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """The subset of draft 2020-12 that topics/schema.py emits; any other keyword fails."""
    unknown = set(schema) - _KNOWN_KEYWORDS
    assert not unknown, f"the structural check does not know {unknown}"
    errors: list[str] = []
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_JSON_TYPES[t](instance) for t in allowed):
            return [f"{path}: {instance!r} is not {' or '.join(allowed)}"]
    if schema.get("format") == "date-time" and not _is_date_time(instance):
        errors.append(f"{path}: {instance!r} is not an RFC 3339 date-time")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: {instance!r} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']!r}")
    if "anyOf" in schema and all(structural_errors(instance, s, path) for s in schema["anyOf"]):
        errors.append(f"{path}: {instance!r} matches none of anyOf")
    if isinstance(instance, dict):
        missing = [name for name in schema.get("required", ()) if name not in instance]
        errors.extend(f"{path}: no {name!r}" for name in missing)
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, value in instance.items():
            if name in properties:
                errors.extend(structural_errors(value, properties[name], f"{path}.{name}"))
            elif extra is False:
                errors.append(f"{path}: unexpected {name!r}")
            elif isinstance(extra, dict):
                errors.extend(structural_errors(value, extra, f"{path}.{name}"))
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            errors.extend(structural_errors(item, schema["items"], f"{path}[{i}]"))
    return errors


def validation_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        return [error.message for error in validator.iter_errors(instance)]
    return structural_errors(instance, schema)


# Sample records, built from the fields alone, so new records are covered unchanged.

WHEN = datetime(2025, 3, 31, 0, 1, 12, 480000, tzinfo=UTC)


def sample(annotation: Any) -> Any:
    """A non-empty, non-null value of ``annotation``."""
    simple = {str: "sample", int: 3, float: 1.5, bool: True, datetime: WHEN}
    if annotation in simple:
        return simple[annotation]
    if annotation is Any:
        return "anything"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return sample(next(arg for arg in args if arg is not type(None)))
    if origin is Literal:
        return args[0]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return next(iter(annotation))
    if isinstance(annotation, type) and issubclass(annotation, faust.Record):
        return sample_record(annotation)
    if origin is tuple:
        return (sample(args[0]),)
    if annotation is list or origin is list:
        return [sample(args[0]) if args else "item"]
    if annotation is dict or origin is dict:
        return {"key": sample(args[1]) if args else "value"}
    raise AssertionError(f"tests/test_contract.py cannot make a {annotation!r}: teach sample()")


def sample_record(record: type[faust.Record], *, only_required: bool = False) -> faust.Record:
    descriptors = record._options.descriptors
    values = {
        name: sample(annotation)
        for name, annotation in record._options.fields.items()
        if name != "schema_version" and (descriptors[name].required or not only_required)
    }
    return record(**values)


def as_message(record: faust.Record) -> dict[str, Any]:
    """The record's value exactly as it travels on its topic."""
    value: dict[str, Any] = json.loads(record.dumps(serializer="json"))
    return value


# The schemas.


def test_every_topic_has_a_schema() -> None:
    """Each declared topic, dead-letter topics included, has its value's schema under its name."""
    schemas = json_schemas("acme.", 3)
    assert set(schemas) == {f"acme.{spec.name}" for spec in ALL}
    for spec in ALL:
        schema = schemas[f"acme.{spec.name}"]
        version = spec.value._options.defaults["schema_version"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"] == spec.value._options.namespace
        assert schema["description"], f"{spec.value.__name__} needs a docstring"
        assert schema["properties"]["schema_version"]["const"] == version
        assert set(schema["required"]) <= set(schema["properties"])
        assert schema["additionalProperties"] is True


@pytest.mark.parametrize("namespace", sorted(RECORDS))
def test_every_schema_validates_a_real_message(namespace: str) -> None:
    """A record with every field set, and one with only the required ones, match its schema."""
    record = RECORDS[namespace]
    schema = record_schema(record)
    for instance in (sample_record(record), sample_record(record, only_required=True)):
        message = as_message(instance)
        assert validation_errors(message, schema) == []
        assert record.loads(json.dumps(message).encode()).asdict() == instance.asdict()


@pytest.mark.parametrize("namespace", sorted(RECORDS))
def test_every_schema_rejects_a_broken_message(namespace: str) -> None:
    """A missing required field, a wrong type and another version are all invalid."""
    record = RECORDS[namespace]
    schema = record_schema(record)
    message = as_message(sample_record(record))
    typed = next(name for name in schema["required"] if "type" in schema["properties"][name])
    missing = {k: v for k, v in message.items() if k != typed}
    assert validation_errors(missing, schema)
    wrong = [1, 2] if "array" not in schema["properties"][typed]["type"] else "one"
    assert validation_errors(message | {typed: wrong}, schema)
    assert validation_errors(message | {"schema_version": message["schema_version"] + 1}, schema)


def test_readers_tolerate_an_added_field() -> None:
    """A field claritycast does not know yet is valid, and Faust still decodes the message."""
    message = as_message(sample_record(SnapshotStored)) | {"added_later": {"x": 1}}
    assert validation_errors(message, record_schema(SnapshotStored)) == []
    decoded = SnapshotStored.loads(json.dumps(message).encode())
    assert decoded.project_id == "sample"
    assert "added_later" not in decoded.asdict()


class Colour(enum.Enum):
    RED = "red"


class ProbePart(faust.Record, serializer="json", isodates=True, namespace="tests.contract.Part"):
    """A nested record."""

    at: datetime
    weight: float | None = None


class ProbeShapes(
    faust.Record, serializer="json", isodates=True, namespace="tests.contract.Shapes"
):
    """Every shape topics/schema.py maps, as a record a later change might add.

    Not the description.
    """

    part: ProbePart
    parts: list[ProbePart]
    maybe_part: ProbePart | None
    colour: Colour
    mode: Literal["a", "b"]
    counts: dict[str, list[int]]
    tags: tuple[str, ...]
    anything: Any
    either: str | datetime
    maybe_anything: Any | None = None
    note: str | None = None
    schema_version: int = 4


def test_every_mapped_shape_validates() -> None:
    """Nested records, lists, enums, literals, mappings and optionals map to working schemas."""
    schema = record_schema(ProbeShapes)
    assert schema["description"].startswith("Every shape topics/schema.py maps,")
    assert "Not the description" not in schema["description"]
    assert schema["properties"]["note"] == {"type": ["string", "null"], "default": None}
    assert schema["properties"]["colour"] == {"enum": ["red"]}
    assert schema["properties"]["either"] == {
        "anyOf": [{"type": "string"}, {"type": "string", "format": "date-time"}]
    }
    assert schema["properties"]["part"]["properties"]["at"]["format"] == "date-time"
    assert schema["required"] == [
        "part", "parts", "colour", "mode", "counts", "tags", "anything", "either",
    ]  # fmt: skip
    for instance in (sample_record(ProbeShapes), sample_record(ProbeShapes, only_required=True)):
        assert validation_errors(as_message(instance), schema) == []
    broken = as_message(sample_record(ProbeShapes)) | {"counts": {"key": ["one"]}}
    assert validation_errors(broken, schema)


def test_a_type_without_json_form_is_refused_by_name() -> None:
    """A field type with no JSON Schema stops the contract, naming the record and field."""

    class Dated(faust.Record, serializer="json", namespace="tests.contract.Dated"):
        day: date
        schema_version: int = 1

    with pytest.raises(ContractError, match=r"tests\.contract\.Dated\.day"):
        record_schema(Dated)

    class Unversioned(faust.Record, serializer="json", namespace="tests.contract.Unversioned"):
        name: str

    with pytest.raises(ContractError, match="schema_version"):
        record_schema(Unversioned)


def test_topic_contracts_follow_the_declarations() -> None:
    """Names get the prefix; partitions are the topic's own or the setting; retention in ms."""
    for spec, contract in zip(ALL, topic_contracts("acme.", 3), strict=True):
        described = contract.as_json()
        assert described["name"] == f"acme.{spec.name}"
        assert described["key"]["is"] == spec.key
        assert described["partitions"] == (spec.partitions or 3)
        assert described["cleanup_policy"] == ("compact" if spec.compacted else "delete")
        expected_ms = None if spec.retention is None else spec.retention.total_seconds() * 1000
        assert described["retention_ms"] == expected_ms
        assert described["value"]["record"] == spec.value._options.namespace


# The contract file.


def test_the_contract_file_matches_the_records() -> None:
    """Every record's fields and version are what topics/contract.json recorded."""
    problems = contract_problems(current_entries(), load_contract())
    assert not problems, "\n".join(problems)


def test_the_events_doc_lists_every_topic() -> None:
    """docs/events.md's topic table is the one the declarations make."""
    assert events_table_is_current(EVENTS_DOC_PATH, *default_table_settings()), (
        f"the topic table in docs/events.md is stale: run `{REGENERATE}`"
    )


class Probe(faust.Record, serializer="json", namespace="tests.contract.Probe"):
    """A record as released."""

    name: str
    count: int
    schema_version: int = 1


class ProbeGrown(faust.Record, serializer="json", namespace="tests.contract.ProbeGrown"):
    """The same record with a field added and the version forgotten."""

    name: str
    count: int
    note: str | None = None
    schema_version: int = 1


class ProbeRetyped(faust.Record, serializer="json", namespace="tests.contract.ProbeRetyped"):
    """The same record with a field retyped and the version forgotten."""

    name: str
    count: float
    schema_version: int = 1


class ProbeBumped(faust.Record, serializer="json", namespace="tests.contract.ProbeBumped"):
    """The grown record, with its version bumped."""

    name: str
    count: int
    note: str | None = None
    schema_version: int = 2


class ProbeRespelled(faust.Record, serializer="json", namespace="tests.contract.ProbeRespelled"):
    """The released record with its fields in another order: the JSON is the same."""

    count: int
    name: str
    schema_version: int = 1


NS = "tests.contract.Probe"


def test_a_field_change_without_a_version_bump_fails() -> None:
    """Adding or retyping a field at the same schema_version is reported, with what to do."""
    released = {NS: record_entry(Probe)}
    (added,) = contract_problems({NS: record_entry(ProbeGrown)}, released)
    assert "added: note" in added
    assert "schema_version is still 1" in added
    assert "bump schema_version to 2" in added
    (retyped,) = contract_problems({NS: record_entry(ProbeRetyped)}, released)
    assert "changed: count" in retyped


def test_a_bump_without_the_contract_file_says_how_to_regenerate() -> None:
    """A new version that topics/contract.json does not record names the command to run."""
    released = {NS: record_entry(Probe)}
    (problem,) = contract_problems({NS: record_entry(ProbeBumped)}, released)
    assert "schema_version 2" in problem
    assert "records 1" in problem
    assert REGENERATE in problem
    regenerated = updated_contract({NS: record_entry(ProbeBumped)}, released)
    assert contract_problems({NS: record_entry(ProbeBumped)}, regenerated) == []
    assert regenerated[NS]["history"] == {
        "1": record_entry(Probe)["fingerprint"],
        "2": record_entry(ProbeBumped)["fingerprint"],
    }


def test_unchanged_fields_pass_and_new_or_removed_records_are_reported() -> None:
    """Same fields, same version: nothing to say; a new or vanished record is named."""
    released = {NS: record_entry(Probe)}
    assert contract_problems({NS: record_entry(ProbeRespelled)}, released) == []
    (new,) = contract_problems({NS: record_entry(Probe), "x.New": record_entry(Probe)}, released)
    assert new.startswith("x.New") and REGENERATE in new
    (gone,) = contract_problems({}, released)
    assert "breaking change" in gone


def test_regenerating_refuses_to_rewrite_a_recorded_version() -> None:
    """--write-contract cannot launder a change: changed fields need a new version first."""
    released = updated_contract({NS: record_entry(Probe)}, {})
    with pytest.raises(ContractError, match="bump schema_version"):
        updated_contract({NS: record_entry(ProbeGrown)}, released)
    bumped = updated_contract({NS: record_entry(ProbeBumped)}, released)
    with pytest.raises(ContractError, match="older"):
        updated_contract({NS: record_entry(Probe)}, bumped)


def test_the_regenerate_command_writes_a_current_contract(tmp_path: Path) -> None:
    """`python -m topics.schema --write-contract` brings a stale contract and table up to date."""
    contract = tmp_path / "contract.json"
    doc = tmp_path / "events.md"
    shutil.copy(EVENTS_DOC_PATH, doc)
    stale = {ns: dict(entry) for ns, entry in load_contract(CONTRACT_PATH).items()}
    stale.pop(next(iter(stale)))
    contract.write_text(json.dumps(stale))
    doc.write_text(doc.read_text().replace("| `claritycast.", "| `old.", 1))

    def schema_command(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "topics.schema", *args, "--contract", str(contract)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
        return subprocess.run(
            [*argv, "--events-doc", str(doc)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert schema_command("--check").returncode == 1
    written = schema_command("--write-contract")
    assert written.returncode == 0, written.stderr
    assert contract_problems(current_entries(), load_contract(contract)) == []
    assert events_table_is_current(doc, *default_table_settings())
    checked = schema_command("--check")
    assert checked.returncode == 0, checked.stderr


# The command.


@pytest.fixture
def offline_settings(tmp_path: Path) -> Settings:
    """Settings whose broker and database are closed ports: the command must not need them."""
    return load_settings(
        kafka_url=f"kafka://127.0.0.1:{free_port()}",
        mongodb_url=f"mongodb://127.0.0.1:{free_port()}",
        topic_prefix="acme.",
        partitions=3,
        data_dir=tmp_path / "var",
    )


def test_topics_lists_every_topic(offline_settings: Settings) -> None:
    """One line per topic: full name, key, record and version, partitions, retention, meaning."""
    result = CliRunner().invoke(topics_command, [], obj=offline_settings)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["topic", "key", "value", "partitions", "retention"]
    assert len(lines) == len(ALL) + 1
    for spec, line in zip(ALL, lines[1:], strict=True):
        version = spec.value._options.defaults["schema_version"]
        words = line.split()
        assert words[:5] == [
            f"acme.{spec.name}", spec.key, spec.value._options.namespace, f"v{version}",
            str(spec.partitions or 3),
        ]  # fmt: skip
        assert line.endswith(spec.description)
        policy = "compact" if spec.compacted else "delete"
        assert f", {policy}" in line


def test_json_schema_prints_one_json_document(offline_settings: Settings) -> None:
    """--json-schema prints {topic: schema} as valid JSON and nothing else."""
    result = CliRunner().invoke(topics_command, ["--json-schema"], obj=offline_settings)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert json.loads(result.stdout) == json_schemas("acme.", 3)


def test_topics_reads_settings_like_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered on a group that loads the settings, it follows CLARITYCAST_TOPIC_PREFIX."""

    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = load_settings()

    group.add_command(topics_command)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        group, ["topics", "--json-schema"], env={"CLARITYCAST_TOPIC_PREFIX": "env."}
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {f"env.{spec.name}" for spec in ALL}


@pytest.mark.skipif("topics" not in cli.commands, reason="not registered on `claritycast` yet")
def test_claritycast_topics_runs_without_servers(tmp_path: Path) -> None:
    """`claritycast topics --json-schema` in its own process: JSON on stdout, no servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLARITYCAST_")}
    env |= {
        "CLARITYCAST_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}",
        "CLARITYCAST_MONGODB_URL": f"mongodb://127.0.0.1:{free_port()}",
        "CLARITYCAST_DATA_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "claritycast", "topics", "--json-schema"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json_schemas("claritycast.", 8)


# The documentation and its example.


def test_the_docs_example_value_matches_its_schema() -> None:
    """The snapshots.stored value shown in docs/events.md is a valid message."""
    text = EVENTS_DOC_PATH.read_text()
    (example,) = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    message = json.loads(example)
    assert validation_errors(message, record_schema(SnapshotStored)) == []
    assert SnapshotStored.loads(json.dumps(message).encode()).created is True
    assert "claritycast topics --json-schema" in text
    assert REGENERATE in text


def test_the_docs_snippet_is_the_examples_code() -> None:
    """Every line of the consumer shown in docs/events.md is in the runnable example."""
    (snippet,) = re.findall(r"```python\n(.*?)```", EVENTS_DOC_PATH.read_text(), flags=re.DOTALL)
    code = {line.strip() for line in EXAMPLE.read_text().splitlines()}
    for line in snippet.splitlines():
        statement = line.split("  #", 1)[0].strip()
        assert not statement or statement in code, f"{statement!r} is not in {EXAMPLE.name}"


def _load_example() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("consume_events_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _known(reader: type, record: faust.Record) -> dict[str, Any]:
    """The record's fields that the example's reader class knows."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(reader)}


def _snapshot_id(received: Any) -> str | None:
    return getattr(received.event, "snapshot_id", None)


async def _read(stream: AsyncIterator[Any], until: Callable[[list[Any]], bool]) -> list[Any]:
    received: list[Any] = []
    async with asyncio.timeout(30):
        async for item in stream:
            received.append(item)
            if until(received):
                break
    return received


async def test_the_docs_example_consumes_stored_and_sent_events(settings: Settings) -> None:
    """The example reads one event of each kind, ignores unknown fields and resumes its group."""
    assert settings.kafka_url is not None
    example = _load_example()
    prefix, group = settings.topic_prefix, f"{settings.app_id}-example"
    async with Publisher(settings.kafka_url, prefix, settings.partitions):
        pass  # declares every topic with its partition count, as the workers do
    stored = sample_record(SnapshotStored)
    sent = sample_record(DeliverySent)
    await produce(settings.kafka_url, SNAPSHOTS_STORED.full_name(prefix), "p-1", stored)
    await produce(settings.kafka_url, DELIVERIES_SENT.full_name(prefix), "shop-daily", sent)

    def stream() -> contextlib.aclosing[AsyncIterator[Any]]:
        events = example.events(settings.kafka_url, prefix, group, session_timeout_ms=3000)
        return contextlib.aclosing(events)

    async with stream() as events:
        first = await _read(events, lambda got: len(got) == 2)
    by_topic = {item.topic: item for item in first}
    snapshot = by_topic[SNAPSHOTS_STORED.full_name(prefix)]
    assert snapshot.key == "p-1"
    assert snapshot.event == example.SnapshotStored(**_known(example.SnapshotStored, stored))
    delivery = by_topic[DELIVERIES_SENT.full_name(prefix)]
    assert delivery.key == "shop-daily"
    assert delivery.event == example.DeliverySent(**_known(example.DeliverySent, sent))

    newer = as_message(stored) | {"snapshot_id": "later", "added_in_a_later_version": 1}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(settings.kafka_url))
    await producer.start()
    try:
        await producer.send_and_wait(
            SNAPSHOTS_STORED.full_name(prefix), json.dumps(newer).encode(), key=b"p-1"
        )
    finally:
        await producer.stop()
    async with stream() as events:
        again = await _read(events, lambda got: _snapshot_id(got[-1]) == "later")
    assert first[0] not in again[:-1], "the group re-read an event it had committed"
    assert len(again) <= 2
