"""`claritycast` with faults injected, for tests that need a real worker process to fail.

Run as ``python -m tests.faulty_worker worker --stages …``. Two settings, read
from the environment, say what to break; everything else is the real command:

- ``FAULTY_HANDLERS``: comma-separated stages whose handler raises a plain
  ``RuntimeError`` (not one of ours) for any message about a project or a
  connection whose name starts with ``poison-<stage>``;
- ``FAULTY_AGENT``: a stage whose agent loop itself raises, outside the
  handler, for a message about a project or connection starting with
  ``crash``: what `agents.guard` cannot catch.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from faust.events import Event

from claritycast.cli.main import main


class InjectedFault(RuntimeError):
    """A failure no handler plans for."""


def _about(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    message = kwargs.get("message", args[0] if args else None)
    if isinstance(message, Event):  # a batch of the quota stage holds events
        message = message.value
    return str(getattr(message, "connection", None) or getattr(message, "project_id", ""))


def break_handler(stage: str) -> None:
    """The stage's handler raises for poisoned messages; so does its batch handler, if any.

    A batch that holds a poisoned message fails as a whole, and the agent then
    takes its messages one at a time (`agents.batch`), through ``handle``.
    """
    module = importlib.import_module(f"agents.{stage}")
    handle: Callable[..., Awaitable[None]] = module.handle

    async def faulty(*args: Any, **kwargs: Any) -> None:
        if _about(args, kwargs).startswith(f"poison-{stage}"):
            raise InjectedFault(f"injected into the {stage} handler")
        await handle(*args, **kwargs)

    module.handle = faulty
    handle_batch: Callable[..., Awaitable[None]] | None = getattr(module, "handle_batch", None)
    if handle_batch is None:
        return
    batch_handler = handle_batch

    async def faulty_batch(messages: list[Any], *args: Any, **kwargs: Any) -> None:
        if any(_about((message,), {}).startswith(f"poison-{stage}") for message in messages):
            raise InjectedFault(f"injected into the {stage} batch handler")
        await batch_handler(messages, *args, **kwargs)

    module.handle_batch = faulty_batch


def break_agent(stage: str) -> None:
    """The stage's loop raises, outside the handler, for a message about ``crash…``.

    The loop hands a message to ``guarded``, or a batch of them to
    ``guarded_batch``: both are broken.
    """
    module = importlib.import_module(f"agents.{stage}")
    guarded: Callable[..., Awaitable[None]] = module.guarded

    async def crashing(*args: Any, **kwargs: Any) -> None:
        if _about((), kwargs).startswith("crash"):
            raise InjectedFault(f"injected into the {stage} agent's loop")
        await guarded(*args, **kwargs)

    module.guarded = crashing
    guarded_batch: Callable[..., Awaitable[None]] | None = getattr(module, "guarded_batch", None)
    if guarded_batch is None:
        return
    batch_guard = guarded_batch

    async def crashing_batch(*args: Any, **kwargs: Any) -> None:
        if any(_about((message,), {}).startswith("crash") for message in kwargs["messages"]):
            raise InjectedFault(f"injected into the {stage} agent's loop")
        await batch_guard(*args, **kwargs)

    module.guarded_batch = crashing_batch


if __name__ == "__main__":
    for name in filter(None, os.environ.get("FAULTY_HANDLERS", "").split(",")):
        break_handler(name)
    if os.environ.get("FAULTY_AGENT"):
        break_agent(os.environ["FAULTY_AGENT"])
    main()
