"""Looking for secrets where they must not be: a whole database, every topic, a log.

A leak is a secret, or any 12 characters of one, found in text. Assertions
name the secret that leaked, never its value: the test's output must not show
it either.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from bson import Binary, json_util
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers import topic_records

SUBSTRING = 12


def pieces(secret: str, size: int = SUBSTRING) -> set[str]:
    """Every ``size``-character substring of ``secret`` (the secret itself if shorter)."""
    if len(secret) <= size:
        return {secret}
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaks(text: str, secrets: Mapping[str, str]) -> list[str]:
    """The names of the secrets of which ``text`` holds 12 characters or more."""
    return sorted(
        name for name, secret in secrets.items() if any(p in text for p in pieces(secret))
    )


def _texts(value: Any) -> Iterator[str]:
    """Every string in a document, binaries as latin-1 and, when compressed, decompressed."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | Binary):
        raw = bytes(value)
        yield raw.decode("latin-1")
        try:
            plain = zlib.decompress(raw)
        except zlib.error:
            plain = b""
        yield plain.decode("latin-1")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


async def dump_database(db: AsyncDatabase[dict[str, Any]]) -> str:
    """Every field of every document of every collection (GridFS chunks included), as text."""
    parts = []
    for name in sorted(await db.list_collection_names()):
        async for document in db[name].find():
            parts.append(f"{name}: {json_util.dumps(document)}")
            parts.extend(_texts(document))
    return "\n".join(parts)


async def dump_topics(
    kafka_url: str, prefix: str, *, timeout_s: float = 60
) -> dict[str, list[str]]:
    """Every record (key and value, as text) of every topic whose name starts with ``prefix``."""
    records = await topic_records(kafka_url, prefix, timeout_s=timeout_s)
    return {
        topic: [key.decode("latin-1") + " " + value.decode("latin-1") for key, value in kept]
        for topic, kept in records.items()
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``text`` (other lines, e.g. a library's print, are skipped)."""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found
