"""The long-lived clients that agents use, opened and closed with the app."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from claritycast.clarity.client import ClarityClient, http_client
from claritycast.clock import Clock, SystemClock
from claritycast.delivery.destinations import Destinations
from claritycast.keyfile import keyring_for
from claritycast.reports.summariser import Summariser
from claritycast.settings import Settings
from claritycast.store.core import Store


@dataclass
class Deps:
    """What a stage's handlers may call. Built once per app; no Kafka inside."""

    settings: Settings
    store: Store
    clarity: ClarityClient
    http: httpx.AsyncClient
    clock: Clock
    destinations: Destinations
    summariser: Summariser | None

    @classmethod
    def build(
        cls,
        settings: Settings,
        mongodb_url: str,
        clock: Clock | None = None,
        *,
        opens_tokens: bool = True,
    ) -> Deps:
        """The clients. With ``opens_tokens`` (a worker running the fetch stage) the keys that
        seal Clarity tokens are required here, at its start; other workers never hold them.
        """
        keyring = keyring_for(settings) if opens_tokens else None
        http = http_client(settings.clarity_timeout_s)
        return cls(
            settings=settings,
            store=Store.connect(mongodb_url, settings.mongodb_database, keyring=keyring),
            clarity=ClarityClient(http, settings.clarity_api_url),
            http=http,
            clock=clock or SystemClock(),
            destinations=Destinations(settings),
            summariser=Summariser.from_settings(settings),
        )

    async def open(self) -> None:
        """Check the database answers and create its indexes."""
        await self.store.ensure_indexes()

    async def close(self) -> None:
        await self.destinations.close()
        if self.summariser is not None:
            await self.summariser.aclose()
        await self.http.aclose()
        await self.store.close()
