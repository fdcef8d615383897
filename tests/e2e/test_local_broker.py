"""The local broker (Apache Kafka, deploy/local/stack.py) where our totals depend on it:
records acknowledged to several producers writing the same partitions at once are all in the
log, each at its own offset; and the log's end is where ListOffsets says it is.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from deploy.local.stack import LocalStack

PARTITIONS = 4
# Far beyond a loaded machine's read of 12,000 records; only a broker that never serves the
# end fails it.
READ_DEADLINE_S = 60.0


async def _produce(bootstrap: str, topic: str, name: str, count: int, acked: set[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for start in range(0, count, 250):
            sent = [f"{name}-{i}" for i in range(start, min(start + 250, count))]
            futures = [await producer.send(topic, v.encode(), key=v.encode()) for v in sent]
            for value, future in zip(sent, futures, strict=True):
                try:
                    await future
                    acked.add(value)
                except KafkaError:
                    pass  # not acknowledged: nothing is promised about it
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str) -> list[tuple[int, int, str]]:
    """Every record of the topic, read to the end of each partition's log.

    Called after production has finished, so the end ListOffsets answers is the log's end.
    A quiet spell is no end: a reader that stops after some empty fetches would report
    records it has not read yet as lost, and nothing bounds how long a loaded machine keeps
    fetches empty.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[tuple[int, int, str]] = []
    try:
        unread = {TopicPartition(topic, partition) for partition in range(PARTITIONS)}
        consumer.assign(list(unread))
        ends = await consumer.end_offsets(list(unread))
        deadline = asyncio.get_running_loop().time() + READ_DEADLINE_S
        while unread:
            if asyncio.get_running_loop().time() > deadline:
                left = {tp.partition: (await consumer.position(tp), ends[tp]) for tp in unread}
                raise AssertionError(
                    f"log not read to its end in {READ_DEADLINE_S} s: "
                    f"partition: (position, end offset) {left}"
                )
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                found.extend((tp.partition, r.offset, (r.value or b"").decode()) for r in records)
            for tp in list(unread):
                # The position, not the last offset read + 1: it also steps over batches with
                # no records for us (control batches), which the end offset counts.
                if await consumer.position(tp) >= ends[tp]:
                    unread.discard(tp)
                elif consumer.highwater(tp) is not None:
                    # A fetch's high watermark is the same end, seen another way.
                    assert consumer.highwater(tp) == ends[tp], (tp, consumer.highwater(tp))
    finally:
        await consumer.stop()
    return found


def test_concurrent_producers_lose_nothing_acknowledged(infra: LocalStack) -> None:
    topic = f"producers-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[set[str], list[tuple[int, int, str]]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        finally:
            await admin.close()
        acked: set[str] = set()
        await asyncio.gather(
            *(_produce(infra.kafka_bootstrap, topic, name, 4_000, acked) for name in "ABC")
        )
        return acked, await _read_all(infra.kafka_bootstrap, topic)

    acked, log = asyncio.run(run())
    assert len(acked) > 11_000  # nearly everything is acknowledged
    coordinates = [(partition, offset) for partition, offset, _ in log]
    assert len(coordinates) == len(set(coordinates)), "two records share an offset"
    assert acked <= {value for _, _, value in log}, "an acknowledged record is not in the log"
