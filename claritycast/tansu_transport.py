"""Faust's Kafka transport with one change for the embedded Tansu broker: short fetch waits.

Faust asks the broker to hold an empty fetch for up to 1.5 s
(``fetch_max_wait_ms=1500``, fixed in its aiokafka driver). Kafka answers as
soon as a record arrives; Tansu, as bundled, was measured to hold the fetch
for the whole wait, so every hop of the chain cost up to 1.5 s (the demo's 3
simulated days took 26 s; with 50 ms waits, 3 s). This transport asks for
`FETCH_MAX_WAIT_MS` instead. It is used only when the broker is Tansu; on
Kafka the default transport runs unchanged.
"""

from __future__ import annotations

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

FETCH_MAX_WAIT_MS = 50


class TansuConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer


class TansuConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(Transport):
    Consumer = TansuConsumer
