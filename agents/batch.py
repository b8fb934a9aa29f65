"""Ingest agents take their messages a batch at a time, and fall back to one at a time.

A night's pull is 7 messages per project through three stages, and each
message used to cost its own round trips to MongoDB: the project read again
for each of its 7 groups, a snapshot upsert and a progress update each, one
commit (and one fsync on the embedded database) per write. A batch shares
them: the projects of a batch in one read, its snapshots in one bulk write,
its calls in one insert (`bench.ingest`, ``docs/benchmarks.md``).

Faust's ``take`` hands the agent up to `BATCH_MAX` messages, or what came
within `BATCH_WAIT_S`, and acknowledges them only once the batch is handled,
so an offset is still committed only after its message was handled; a worker
killed during a batch has the whole batch read again by its successor, and
every handler is idempotent by request id or key. A rebalance waits for the
batch in hand (Faust's ``wait_empty``), exactly as it waits for one message.

`guarded_batch` keeps the promise of `agents.guard` for every message: while
MongoDB is unreachable the batch is retried; on any other exception each
message of the batch is handled alone through `guarded`, so a message that
cannot be handled becomes a dead letter alone and the others go through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from agents.guard import with_store_retry
from claritycast.logs import get_logger

log = get_logger(__name__)

BATCH_MAX = 100
BATCH_WAIT_S = 0.05

M = TypeVar("M")


async def guarded_batch(
    stage: str,
    handler: Callable[[], Awaitable[None]],
    *,
    messages: Sequence[M],
    one_by_one: Callable[[M], Awaitable[None]],
) -> None:
    """Run a batch's handler; if it fails for another reason than the store, each message alone.

    ``one_by_one`` is the stage's guarded handling of one message (it never raises).
    """
    try:
        await with_store_retry(stage, handler, messages=len(messages))
        return
    except Exception as exc:
        log.warning(f"{stage}.batch_failed", messages=len(messages), error=str(exc)[:300],
                    kind=type(exc).__name__, then="one message at a time",
                    exc_info=True)  # fmt: skip
    for message in messages:
        await one_by_one(message)
