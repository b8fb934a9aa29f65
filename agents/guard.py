"""Catch per event: an exception escaping an agent's loop loses the event.

`guarded` runs one event's handler. While MongoDB is unreachable it retries
with capped backoff (the partition waits, which is right: nothing downstream
can proceed without the store). A known failure (`ClarityCastError`) is logged
with the event's context and the stream moves on. Anything else is a bug and
propagates, crashing the agent loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from claritycast.errors import ClarityCastError, StoreUnavailable
from claritycast.logs import get_logger

log = get_logger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


async def guarded(stage: str, handler: Callable[[], Awaitable[None]], **context: Any) -> None:
    """Run ``handler`` for one event, as described above."""
    delay_s = RETRY_FIRST_S
    while True:
        try:
            await handler()
            return
        except StoreUnavailable as exc:
            log.warning(f"{stage}.store_retry", retry_in_s=delay_s, error=str(exc), **context)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)
        except ClarityCastError as exc:
            log.error(f"{stage}.failed", error=str(exc), kind=type(exc).__name__, **context)
            return
