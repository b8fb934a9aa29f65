"""The Faust fixes in `claritycast.runtime.transport`, each against Faust's own behaviour.

The end-to-end proof is the kill -9 test in `tests/test_restarts.py`; these
pin each mechanism down, so a Faust upgrade that changes one is noticed here
first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from faust.streams import current_event as faust_current_event
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP
from faust.types.tuples import Message
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from agents.quota import EventTable
from claritycast.keyring import new_key
from claritycast.runtime.app import create_app
from claritycast.runtime.embedded import Endpoints
from claritycast.runtime.transport import SeekingConsumer, SteadyFlowControl, TansuConsumer
from claritycast.settings import load_settings

EMBEDDED = Endpoints("kafka://127.0.0.1:1", "mongodb://127.0.0.1:2", True, True)


async def queued_after_two_resumes(flow_control: FlowControlEvent) -> list[str]:
    """What an agent's queue still holds after a rebalance's two resumes."""
    queue: FlowControlQueue = FlowControlQueue(flow_control=flow_control, clear_on_resume=True)
    flow_control.suspend()  # the revoke
    flow_control.resume()  # table recovery finds nothing to restore
    await queue.put("grant handed to the agent between the two resumes")
    flow_control.resume()  # after the stream partitions are sought
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def test_faust_flow_control_empties_the_queues_on_every_resume() -> None:
    """The loss this module fixes, shown on Faust's own class: the second resume drops the grant."""
    assert await queued_after_two_resumes(FlowControlEvent()) == []


async def test_a_resume_of_a_flowing_stream_keeps_what_is_queued() -> None:
    assert await queued_after_two_resumes(SteadyFlowControl()) == [
        "grant handed to the agent between the two resumes"
    ]


async def test_a_real_suspension_still_empties_the_queues_on_resume() -> None:
    """What was queued before a revoke is read again from the committed offset: drop it."""
    flow_control = SteadyFlowControl()
    queue: FlowControlQueue = FlowControlQueue(flow_control=flow_control, clear_on_resume=True)
    flow_control.resume()  # a worker starts suspended
    await queue.put("queued before the revoke")
    flow_control.suspend()
    flow_control.resume()
    assert queue.qsize() == 0


def message(offset: int, generation_id: int) -> Message:
    return Message(
        "t.fetch.granted", 0, offset, 0.0, 0, None, b"p01", b"{}", None,
        generation_id=generation_id,
    )  # fmt: skip


async def test_a_message_from_an_earlier_generation_is_never_committed(tmp_path: Path) -> None:
    """Faust skips such a message and acks it; its offset must not be committed unprocessed."""
    app = create_app(load_settings(data_dir=tmp_path, secret_keys=new_key()), ["fetch"], EMBEDDED)
    assert isinstance(app.flow_control, SteadyFlowControl)
    consumer = app.consumer
    assert isinstance(consumer, SeekingConsumer) and isinstance(consumer, TansuConsumer)
    consumer._thread.thread_loop.close()  # never started: its own loop is not needed
    app.topics._acking_topics.add("t.fetch.granted")
    app.consumer_generation_id = 2
    tp = TP("t.fetch.granted", 0)

    stale = message(7, generation_id=1)
    consumer.track_message(stale)
    assert consumer.ack(stale) is False
    assert stale.acked, "nothing waits for it: a revoke's wait_empty is not held up"
    assert stale not in consumer._unacked_messages
    assert consumer._new_offset(tp) is None, "nothing to commit"

    fresh = message(7, generation_id=2)
    consumer.track_message(fresh)
    assert consumer.ack(fresh) is True
    assert consumer._new_offset(tp) == 8


class FakeRecord:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class SeekRecorder:
    """Stands in for aiokafka's consumer inside the consumer thread: assignment and seeks."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return self.assigned

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


async def test_a_batch_fetched_while_the_flow_is_stopped_is_rewound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust throws such a batch away; a changelog has no committed offset to go back to."""
    app = create_app(load_settings(data_dir=tmp_path), ["quota"], EMBEDDED)
    consumer = app.consumer
    thread = consumer._thread
    thread.thread_loop.close()
    changelog, stream, gone = TP("x-quota-changelog", 2), TP("x.fetch.requested", 2), TP("y", 0)
    batch = {
        changelog: [FakeRecord(0), FakeRecord(1)],
        stream: [FakeRecord(40)],
        gone: [FakeRecord(7)],
    }

    async def fetched(self: Consumer, active: set[TP] | None, wait_s: float) -> dict:
        return batch

    async def in_thread(fun: Callable[..., Awaitable[None]], *args: object) -> None:
        await fun(*args)

    recorder = SeekRecorder({changelog, stream})
    monkeypatch.setattr(Consumer, "_getmany", fetched)
    monkeypatch.setattr(thread, "call_thread", in_thread)
    monkeypatch.setattr(thread, "_ensure_consumer", lambda: recorder)

    consumer.flow_active = True
    assert await consumer._getmany(None, 1.0) is batch
    assert recorder.seeks == []

    consumer.flow_active = False
    assert await consumer._getmany(None, 1.0) == {}
    assert sorted(recorder.seeks) == sorted([(changelog, 0), (stream, 40)])


class _Event:
    """An event as far as the table's changelog sees one: the partition of its message."""

    def __init__(self, partition: int) -> None:
        self.partition = partition


class _PartitionRecorder(dict[str, Any]):
    """Records, for each write, the event Faust's ``Table.partition_for_key`` would read."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: dict[str, int | None] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        event = faust_current_event()
        self.partitions[key] = None if event is None else event.partition
        super().__setitem__(key, value)


def test_a_batch_writes_each_projects_quota_to_its_own_events_partition() -> None:
    """Faust sends a table write to the partition of the event in hand (``current_event``).

    A batch is handled after the stream moved on: `agents.quota.EventTable`
    names, for each project's write, one of that project's own events, and
    leaves the stream's current event as it was.
    """
    recorder = _PartitionRecorder()
    events = {"p-a": _Event(0), "p-b": _Event(3)}
    table = EventTable(recorder, events)  # type: ignore[arg-type]
    table["p-b"] = {"calls": []}
    table["p-a"] = {"calls": []}
    assert recorder.partitions == {"p-b": 3, "p-a": 0}
    assert table.get("p-a") == {"calls": []}
    assert faust_current_event() is None
