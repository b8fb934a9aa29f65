"""Faust's Kafka transport with two changes, one for every broker and one for Tansu.

1. Every broker: after a rebalance, Faust seeks each partition it now owns to
   its committed offset, but a partition nobody has committed yet is not sought
   at all (aiokafka's ``seek_to_committed`` skips offsets that are None or 0).
   Faust resumes fetching before it seeks, and what it fetched while the flow
   was paused is thrown away, so that partition's backlog was skipped whole:
   measured after ``kill -9`` of a worker mid-pull, grants and snapshots that
   were never processed. Such partitions are sought to their beginning here,
   which is what ``auto_offset_reset=earliest`` promises.
2. Tansu only: Faust asks the broker to hold an empty fetch for up to 1.5 s
   (``fetch_max_wait_ms=1500``, fixed in its aiokafka driver). Kafka answers as
   soon as a record arrives; Tansu, as bundled, was measured to hold the fetch
   for the whole wait, so every hop of the chain cost up to 1.5 s (the demo's 3
   simulated days took 26 s; with 50 ms waits, 3 s).
"""

from __future__ import annotations

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP

FETCH_MAX_WAIT_MS = 50


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


def _changelog(tp: TP) -> bool:
    """Table changelogs are read by Faust's recovery, never by a stream: leave them be."""
    return tp.topic.endswith("-changelog")


class KafkaTransport(Transport):
    Consumer = SeekingConsumer


class TansuConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class TansuConsumer(SeekingConsumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(Transport):
    Consumer = TansuConsumer
