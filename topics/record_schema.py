"""A Faust record as a JSON Schema (draft 2020-12), generated from the record's own fields.

The rules the schemas state are in `topics.schema`'s docstring. A field type
this cannot express in JSON Schema is a `ContractError`: such a record cannot
be published until it can.
"""

from __future__ import annotations

import collections.abc
import enum
import json
import types
import typing
from datetime import datetime
from typing import Any

import faust

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Schema = dict[str, Any]


class ContractError(Exception):
    """A record cannot be published as it stands, or the contract file disagrees."""


def namespace(record: type[faust.Record]) -> str:
    return record._options.namespace


def schema_version(record: type[faust.Record]) -> int:
    """The version a record writes: the default of its ``schema_version`` field."""
    version = record._options.defaults.get("schema_version")
    if record._options.fields.get("schema_version") is not int or not isinstance(version, int):
        raise ContractError(f"{namespace(record)} has no `schema_version: int = <n>` field")
    return version


def description(record: type[faust.Record]) -> str:
    """The first paragraph of the record's own docstring (not an inherited one)."""
    doc = record.__dict__.get("__doc__") or ""
    paragraph = doc.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def field_types(record: type[faust.Record]) -> dict[str, Schema]:
    """Each field's type as JSON Schema, without annotations: the part a reader depends on."""
    return {
        name: _type_schema(annotation, f"{namespace(record)}.{name}")
        for name, annotation in record._options.fields.items()
    }


def required_fields(record: type[faust.Record]) -> list[str]:
    return [name for name, field in record._options.descriptors.items() if field.required]


def record_schema(record: type[faust.Record], *, top_level: bool = True) -> Schema:
    """The JSON Schema of a record's JSON form (``record.dumps(serializer="json")``)."""
    ns = namespace(record)
    version = schema_version(record) if top_level else None
    defaults = record._options.defaults
    properties: dict[str, Schema] = {}
    for name, type_schema in field_types(record).items():
        prop = dict(type_schema)
        if name in defaults and (default := _json_value(defaults[name])) is not _NO_JSON:
            prop["default"] = default
        if name == "schema_version" and version is not None:
            prop["const"] = version
        properties[name] = prop
    properties["__faust"] = {
        "description": "Faust's envelope: the record's namespace (optional for other producers)",
        "type": "object",
        "properties": {"ns": {"const": ns}},
    }
    schema: Schema = {"$schema": JSON_SCHEMA_DIALECT} if top_level else {}
    schema["title"] = ns
    if text := description(record):
        schema["description"] = text
    schema |= {
        "type": "object",
        "properties": properties,
        "required": required_fields(record),
        "additionalProperties": True,
    }
    return schema


_NO_JSON = object()


def _json_value(value: Any) -> Any:
    """A default as JSON, or ``_NO_JSON`` when it has no JSON form."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return _NO_JSON
    return value


_SCALARS: dict[Any, Schema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    datetime: {"type": "string", "format": "date-time"},  # records use isodates=True
    type(None): {"type": "null"},
}
_ARRAYS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set)
_OBJECTS = (dict, collections.abc.Mapping)


def _type_schema(annotation: Any, where: str) -> Schema:
    """JSON Schema of one annotation, as Faust's JSON serializer writes it."""
    if annotation is Any:
        return {}
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _union_schema([_type_schema(arg, where) for arg in args])
    if origin is typing.Literal:
        return {"enum": list(args)}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    if isinstance(annotation, type) and issubclass(annotation, faust.Record):
        return record_schema(annotation, top_level=False)
    if annotation in _ARRAYS or origin in _ARRAYS:
        if origin is tuple and args and args[-1] is not Ellipsis:
            raise ContractError(f"{where}: use tuple[X, ...] or list[X], not a fixed tuple")
        items = _type_schema(args[0], where) if args else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if annotation in _OBJECTS or origin in _OBJECTS:
        if args and args[0] is not str:
            raise ContractError(f"{where}: JSON object keys are strings; use dict[str, …]")
        values = _type_schema(args[1], where) if args else {}
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    raise ContractError(
        f"{where}: no JSON Schema for {annotation!r}; use str, int, float, bool, datetime, "
        "list, dict[str, …], a faust.Record or X | None, or teach topics/schema.py the type"
    )


def _union_schema(members: list[Schema]) -> Schema:
    """``X | None`` as ``{"type": [x, "null"]}`` when X is a plain type, else ``anyOf``."""
    others = [member for member in members if member != {"type": "null"}]
    if len(members) == 2 and len(others) == 1:
        (other,) = others
        if isinstance(other.get("type"), str) and set(other) <= {"type", "format"}:
            return other | {"type": [other["type"], "null"]}
    return {"anyOf": members}
