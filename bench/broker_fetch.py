"""What one fetch costs the embedded broker as a partition fills: why `up` restarts it.

A night's chain fetches near the end of its partitions all the time. This starts
Tansu as `up` does (memory storage), fills one partition with one-record batches
(as the worker produced them until it was let batch records, eighth session;
a batch of several records is read through as one), and at each size
times 50 fetches of one record near the end, where a chain's consumers read,
with Tansu's own CPU from ``/proc``. Such a fetch reads through every batch
before its offset, so its cost grows with what the partition holds; a fetch at
the partition's end with nothing new costs nothing of the kind (the broker's CPU
at rest does not grow, `bench.ingest`).

    .venv/bin/python -m bench.broker_fetch [batches ...]   (default: 500 4000 16000 32000)
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.embedded import fresh_tansu
from bench.progress import cpu_s

FETCHES = 50
RECORD = b"x" * 500  # about a fetch.granted record


async def fetch_cost(consumer: AIOKafkaConsumer, tp: TopicPartition, pid: int,
                     offsets: list[int]) -> tuple[float, float]:  # fmt: skip
    """Broker CPU ms and wall ms per fetch of one record at each of ``offsets``."""
    cpu, wall = cpu_s(pid), time.perf_counter()
    for offset in offsets:
        consumer.seek(tp, offset)
        await consumer.getmany(tp, timeout_ms=2000, max_records=1)
    return (
        1000 * (cpu_s(pid) - cpu) / len(offsets),
        1000 * (time.perf_counter() - wall) / len(offsets),
    )


async def main(sizes: list[int]) -> None:
    async with fresh_tansu("filled", 1) as (bootstrap, pid):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_batch_size=1)
        await producer.start()
        tp = TopicPartition("filled", 0)
        held = 0
        print("| one-record batches in the partition | broker CPU ms per fetch | wall ms |")
        print("|---|---|---|")
        for size in sizes:
            while held < size:
                await producer.send_and_wait("filled", RECORD, partition=0)
                held += 1
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                        fetch_max_wait_ms=50)  # fmt: skip
            await consumer.start()
            consumer.assign([tp])
            near_end = [held - 1 - k for k in range(FETCHES)]
            cpu_ms, wall_ms = await fetch_cost(consumer, tp, pid, near_end)
            await consumer.stop()
            print(f"| {held:,} | {cpu_ms:.1f} | {wall_ms:.1f} |", flush=True)
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main([int(arg) for arg in sys.argv[1:]] or [500, 4000, 16000, 32000]))
