"""How many records share a producer batch on the broker: what a night costs Tansu per batch.

Tansu keeps each batch as one object (about 1.1 KiB of memory besides its
records) and a fetch reads through every batch before its offset, so a
topic's records per batch says how much of the broker's memory and CPU the
batching saves. A consumer never sees batches, so this reads them raw: a
``Fetch`` request per partition, from offset 0, its record sets parsed batch by
batch (aiokafka's own parser).

    .venv/bin/python -m bench.broker_batches BOOTSTRAP [topic-prefix]
    .venv/bin/python -m bench.broker_batches --memory

`bench.ingest` prints the same at the end of each night (since the broker's last
restart, if it had one). ``--memory`` measures what a record costs a fresh Tansu's
memory, one record per batch and ten per batch, for small and record-sized values.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from bench.embedded import fresh_tansu, memory_kib

MAX_BYTES = 64 * 1024 * 1024
# Tansu answers a fetch asking for nothing at all with no partitions; asking for a byte
# makes it hold a fetch of an empty partition this long.
WAIT_MS = 10


@dataclass
class Batches:
    records: int = 0
    batches: int = 0

    @property
    def per_batch(self) -> float:
        return self.records / self.batches if self.batches else 0.0


async def count_batches(bootstrap: str, prefix: str = "") -> dict[str, Batches]:
    """Records and batches of every topic whose name starts with ``prefix``."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.force_metadata_update()
        counts: dict[str, Batches] = {}
        for topic in sorted(t for t in client.cluster.topics() if t.startswith(prefix)):
            counted = counts.setdefault(topic, Batches())
            for partition in sorted(client.cluster.partitions_for_topic(topic) or ()):
                await _count_partition(client, topic, partition, counted)
        return counts
    finally:
        await client.close()


async def _count_partition(
    client: AIOKafkaClient, topic: str, partition: int, into: Batches
) -> None:
    """Fetch the partition from its start, as many times as it takes, counting batches."""
    node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
    offset = 0
    while True:
        wanted = [(topic, [(partition, offset, MAX_BYTES)])]
        request = FetchRequest(WAIT_MS, 1, MAX_BYTES, 0, wanted)
        response = await client.send(node, request)
        if not response.topics:  # Tansu's answer when the wait passed with nothing new
            return
        ((_, partitions),) = response.topics
        ((_, error, highwater, *rest),) = partitions  # the record set is last in every version
        record_set = rest[-1]
        if error or not record_set:
            return
        records = MemoryRecords(record_set)
        moved = False
        while records.has_next():
            batch = records.next_batch()
            if batch is None:
                break
            into.batches += 1
            into.records += sum(1 for _ in batch)
            offset = batch.next_offset
            moved = True
        if not moved or offset >= highwater:
            return


MEMORY_RECORDS = 20_000
MEMORY_CASES = ((100, 1), (500, 1), (100, 10), (500, 10))  # (value bytes, records a batch)
SENT_TOGETHER = 10


async def memory_per_record(value_bytes: int, per_batch: int) -> float:
    """Bytes of a fresh Tansu's resident memory per record, batches of ``per_batch`` (1 or 10).

    Records go out 10 at a time to one partition; ``max_batch_size=1`` keeps each alone.
    """
    async with fresh_tansu("filled", 8) as (bootstrap, pid):
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 if per_batch == 1 else 16384
        )
        await producer.start()
        before = memory_kib(pid)
        value = b"x" * value_bytes
        for start in range(0, MEMORY_RECORDS, SENT_TOGETHER):
            partition = (start // SENT_TOGETHER) % 8
            sent = [await producer.send("filled", value, partition=partition)
                    for _ in range(SENT_TOGETHER)]  # fmt: skip
            await asyncio.gather(*sent)
        await producer.stop()
        return 1024 * (memory_kib(pid) - before) / MEMORY_RECORDS


async def memory_table() -> None:
    print(f"| value bytes | records a batch | Tansu memory per record ({MEMORY_RECORDS:,}) |")
    print("|---|---|---|")
    for value_bytes, per_batch in MEMORY_CASES:
        per_record = await memory_per_record(value_bytes, per_batch)
        print(f"| {value_bytes} | {per_batch} | {per_record:,.0f} bytes |", flush=True)


def main(argv: list[str]) -> None:
    if argv == ["--memory"]:
        asyncio.run(memory_table())
        return
    bootstrap, prefix = argv[0], argv[1] if len(argv) > 1 else ""
    for topic, counted in asyncio.run(count_batches(bootstrap, prefix)).items():
        print(f"{topic}: {counted.records} records in {counted.batches} batches "
              f"({counted.per_batch:.1f} a batch)")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
