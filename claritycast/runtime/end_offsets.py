"""A partition's true end offset, as a fetch reports it, on Kafka and on Tansu alike.

Kafka's ``ListOffsets`` (aiokafka's ``end_offsets``) answers the offset the next
record will get. Tansu, the embedded broker, answers the base offset of the
partition's last *batch* plus one: right while every batch holds one record,
short by the rest of the last batch once producers put several records in a
batch (``bench.broker_batches``). A lag computed from it would read zero while
records still wait, and `up` would restart the broker under them.

A fetch response carries the partition's high watermark, and Tansu gets that
one right. So `end_offsets` asks ``ListOffsets`` first, then fetches each
partition from its last listed record (one batch, at most) and takes the high
watermark the fetch reports: on Kafka the same number, on Tansu the true one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

FETCH_TIMEOUT_S = 10.0
POLL_MS = 100


class EndOffsetsUnknown(KafkaError):
    """No fetch reported a partition's high watermark in time.

    A `KafkaError`, so every caller that already treats the broker as unreachable
    for now (`up`'s lag check logs ``broker.lag_unknown`` and tries later) does so.
    """


async def end_offsets(
    bootstrap: str, partitions: Iterable[TopicPartition], timeout_s: float = FETCH_TIMEOUT_S
) -> dict[TopicPartition, int]:
    """The offset the next record of each partition will get (the high watermark).

    Uses a consumer of its own (no group, nothing committed), so a caller's
    consumer keeps its positions.
    """
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await probe.start()
    try:
        return await ends_read_by(probe, partitions, timeout_s)
    finally:
        await probe.stop()


async def ends_read_by(
    probe: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    timeout_s: float = FETCH_TIMEOUT_S,
) -> dict[TopicPartition, int]:
    """`end_offsets` through ``probe``, a started consumer with no group that reads nothing else.

    ``probe`` is left assigned to the partitions, each paused.
    """
    # Faust's own TPs too: aiokafka takes only its TopicPartition.
    wanted = sorted({TopicPartition(tp.topic, tp.partition) for tp in partitions})
    if not wanted:
        return {}
    listed = await probe.end_offsets(wanted)
    probe.assign(wanted)
    for tp in wanted:
        probe.seek(tp, max(listed[tp] - 1, 0))
    ends: dict[TopicPartition, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(ends) < len(wanted):
        if loop.time() > deadline:
            missing = ", ".join(str(tp) for tp in wanted if tp not in ends)
            raise EndOffsetsUnknown(f"no fetch reported the end of {missing}")
        await probe.getmany(timeout_ms=POLL_MS)
        for tp in wanted:
            highwater = probe.highwater(tp)
            if tp not in ends and highwater is not None:
                ends[tp] = max(highwater, listed[tp])
                probe.pause(tp)
    return ends
