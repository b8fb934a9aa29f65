"""Faust's Kafka transport with the fixes that make "no message lost in a rebalance" true.

Found by ``kill -9`` of a worker mid-pull (``tests/test_restarts.py``), each
one seen as grants and snapshots the survivor never processed:

1. Every broker: after a rebalance, Faust seeks each partition it now owns to
   its committed offset, but a partition nobody has committed yet is not sought
   at all (aiokafka's ``seek_to_committed`` skips offsets that are None or 0).
   Faust resumes fetching before it seeks, and what it fetched while the flow
   was paused is thrown away, so that partition's backlog was skipped whole.
   Such partitions are sought to their beginning here, which is what
   ``auto_offset_reset=earliest`` promises.
2. Every broker: Faust resumes the flow twice after a rebalance (once when the
   table recovery finds nothing to restore, again after it seeks the stream
   partitions), and every resume empties the agents' queues. Messages handed to
   a queue between the two were dropped, and their offsets were already marked
   as read, so Faust also dropped them when it read them again after the seek
   ("DROPPED MESSAGE ROFF" in its debug log). `SteadyFlowControl` empties the
   queues only when the flow was really suspended (in a revoke, where Faust
   also forgets the read offsets).
3. Every broker: records fetched while a rebalance has stopped the flow are
   thrown away, and Faust then seeks back to the committed offsets, which a
   table's changelog does not have: the changelog records read since the
   recovery sought its start were gone, the recovery waited for them forever,
   and the worker processed nothing at all. `SeekingConsumer._getmany` puts
   every partition of such a batch back where the batch began.
4. Every broker: a message fetched before a rebalance and reaching its agent
   after it is skipped, and Faust acks it anyway, so its offset could be
   committed although it was never processed. `SeekingConsumer.ack` leaves such
   a message uncommitted: it is read again from the committed offset.
5. Tansu only: Faust asks the broker to hold an empty fetch for up to 1.5 s
   (``fetch_max_wait_ms=1500``, fixed in its aiokafka driver). Kafka answers as
   soon as a record arrives; Tansu, as bundled, was measured to hold the fetch
   for the whole wait, so every hop of the chain cost up to 1.5 s (the demo's 3
   simulated days took 26 s; with 50 ms waits, 3 s). The wait is
   ``CLARITYCAST_BROKER_FETCH_WAIT_MS`` (250 ms): each fetch costs Tansu more the
   more messages it holds, so short waits made a big night's cost grow faster than
   its size (``bench.ingest``: 3,000 projects in 271 s with 50 ms waits, 195 s
   with 250 ms; Tansu's CPU halved). Tests use 50 ms: many hops, little data.
6. Tansu only: its ``ListOffsets`` answers the last batch's base offset plus
   one, short of the end once the producer puts several records in a batch
   (which it does: with one record per batch, every broker fetch of a night
   read through many times as many batches). Faust's table recovery reads a
   changelog up to that end, and a worker whose table had read further raised
   ``ConsistencyError`` on the next rebalance. `TansuConsumerThread` takes the
   end a fetch reports instead (`claritycast.runtime.end_offsets`).

Every stage is idempotent by request id or key, so reading a message twice is
safe; these fixes only make sure each one is read at least once.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiokafka
from faust.transport.consumer import RecordMap
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

from claritycast.runtime.end_offsets import end_offsets


class SeekingConsumer(Consumer):
    """Seeks partitions without a committed offset to their beginning after a rebalance."""

    async def perform_seek(self) -> None:
        committed = await self.seek_to_committed()
        never = [tp for tp, offset in committed.items() if not offset and not _changelog(tp)]
        for tp in never:
            await self._seek(tp, 0)
        self._read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None
             for tp, offset in committed.items()}
        )  # fmt: skip
        self._committed_offset.update({tp: offset for tp, offset in committed.items() if offset})

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> RecordMap:
        """Fetch records; a batch that arrives while the flow is stopped is rewound, not lost."""
        records = await super()._getmany(active_partitions, timeout)
        if records and not self.flow_active:
            starts = {tp: batch[0].offset for tp, batch in records.items() if batch}
            await self._thread.call_thread(_rewind, self._thread, starts)
            self.log.info("Rewound %d partitions fetched while the flow was stopped", len(starts))
            return {}
        return records

    def ack(self, message: Message) -> bool:
        """Ack a processed message; one fetched in an earlier generation was skipped, not processed.

        Marked acked so that nothing waits for it, but its offset is not
        recorded for commit: after the rebalance's seek it is read again.
        """
        stale = message.generation_id not in (None, self.app.consumer_generation_id)
        if not stale:
            return super().ack(message)
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        return False


class SteadyFlowControl(FlowControlEvent):
    """Faust's flow control, except that resuming a flow that is not suspended keeps the queues.

    A resume empties every agent's queue; Faust calls it twice after a
    rebalance, and what was queued between the two calls was lost (see point 2
    of this module's docstring).
    """

    def resume(self) -> None:
        if self.is_active():
            return
        super().resume()


async def _rewind(thread: AIOKafkaConsumerThread, starts: dict[TP, int]) -> None:
    """Seek each partition still assigned back to ``starts`` (runs in the consumer's thread)."""
    consumer = thread._ensure_consumer()
    assigned = consumer.assignment()
    for tp, offset in starts.items():
        if tp in assigned:
            consumer.seek(tp, offset)


def _changelog(tp: TP) -> bool:
    """Table changelogs are read by Faust's recovery, never by a stream: leave them be."""
    return tp.topic.endswith("-changelog")


class KafkaTransport(Transport):
    Consumer = SeekingConsumer


class TansuConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = self.app.deps.settings.broker_fetch_wait_ms  # type: ignore[attr-defined]
        consumer._fetch_max_wait_ms = wait_ms  # read when the consumer starts
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """The changelogs' true ends for the table recovery (see point 6 above)."""
        bootstrap = ",".join(f"{url.host}:{url.port}" for url in self.app.conf.broker)
        ends = await end_offsets(bootstrap, partitions)
        return {TP(tp.topic, tp.partition): end for tp, end in ends.items()}


class TansuConsumer(SeekingConsumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(Transport):
    Consumer = TansuConsumer
