"""What every command module shares: running a coroutine, the store, the publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from claritycast.runtime.embedded import resolve_endpoints
from claritycast.runtime.publisher import Publisher
from claritycast.settings import Settings
from claritycast.store.core import Store, open_store

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@asynccontextmanager
async def store_for(settings: Settings) -> AsyncIterator[Store]:
    endpoints = resolve_endpoints(settings)
    async with open_store(endpoints.mongodb_url, settings.mongodb_database) as store:
        yield store


def publisher_for(settings: Settings) -> Publisher:
    endpoints = resolve_endpoints(settings)
    return Publisher(
        endpoints.kafka_url, settings.topic_prefix, settings.partitions, settings.replication_factor
    )
