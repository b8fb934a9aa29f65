"""Catch per message: no agent dies on a message, and no message is lost silently.

An exception escaping an agent's loop crashes the agent after Faust has
acknowledged the message: that message is lost, and the stage handles
nothing more on that worker. So `guarded` runs one message's handler and:

- while MongoDB is unreachable (`StoreUnavailable`), retries with capped
  backoff: the partition waits, which is right, since nothing downstream can
  proceed without the store;
- on any other exception, ours or not, logs it with the message's context
  and its traceback, sends the message to the stage's dead-letter topic with
  the error (`DeadLetterSink`), holds its work (`claritycast.store.dead_letters`),
  and lets the stream move on to the next message.

Only cancellation (a rebalance or a shutdown) passes through. What still
crashes an agent (a bug in Faust, or in the loop around the handler) stops
the worker with a non-zero exit (`claritycast.runtime.app`), so that ``up`` or the
orchestrator starts a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import faust
from faust.types import TopicT

from claritycast.clock import Clock
from claritycast.errors import StoreUnavailable
from claritycast.logs import get_logger
from claritycast.store.core import Store
from claritycast.store.dead_letters import handler_error_letter, hold_work
from claritycast.telemetry import DEAD_LETTERS
from topics import send_bounded

log = get_logger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0

T = TypeVar("T")


async def with_store_retry(stage: str, operation: Callable[[], Awaitable[T]], **context: Any) -> T:
    """Run ``operation`` until MongoDB answers (capped backoff); other errors propagate."""
    delay_s = RETRY_FIRST_S
    while True:
        try:
            return await operation()
        except StoreUnavailable as exc:
            log.warning(f"{stage}.store_retry", retry_in_s=delay_s, error=str(exc), **context)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)


@dataclass(frozen=True)
class DeadLetterSink:
    """Where one stage's unhandled messages go: its dead-letter topic and the store."""

    stage: str
    topic: TopicT
    store: Store
    clock: Clock

    async def bury(self, message: faust.Record, key: str, exc: BaseException) -> None:
        letter = handler_error_letter(self.stage, message, key, exc, self.clock.now())

        async def record() -> None:
            await self.store.save_dead_letter(letter)
            await hold_work(self.store, letter)
            await send_bounded(self.topic, letter.key, letter)

        await with_store_retry(self.stage, record, dead_letter=letter.dead_letter_id)
        DEAD_LETTERS.labels(self.stage).inc()
        log.error(f"{self.stage}.dead_letter", dead_letter=letter.dead_letter_id,
                  why=letter.reason, detail=letter.detail)  # fmt: skip


async def guarded(
    stage: str,
    handler: Callable[[], Awaitable[None]],
    *,
    message: faust.Record,
    key: str,
    sink: DeadLetterSink,
    **context: Any,
) -> None:
    """Run ``handler`` for one message, as described above."""
    try:
        await with_store_retry(stage, handler, **context)
    except Exception as exc:
        log.exception(f"{stage}.handler_failed", error=str(exc), kind=type(exc).__name__,
                      **context)  # fmt: skip
        try:
            await sink.bury(message, key, exc)
        except Exception as buried:
            log.exception(f"{stage}.dead_letter_failed", error=str(buried), **context)
