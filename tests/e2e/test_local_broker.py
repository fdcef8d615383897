"""The local broker must be as safe as Apache Kafka where our totals depend on it: records
acknowledged to several producers writing the same partitions at once are all in the log,
each at its own offset. (With localbucket's own handler, tansu's compare-and-swap of a
partition's watermark was not atomic and acknowledged records vanished: deploy/local/s3store.)
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from deploy.local.stack import LocalStack


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
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[tuple[int, int, str]] = []
    try:
        idle = 0
        while idle < 4:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if any(batch.values()) else idle + 1
            for tp, records in batch.items():
                found.extend((tp.partition, r.offset, (r.value or b"").decode()) for r in records)
    finally:
        await consumer.stop()
    return found


def test_concurrent_producers_lose_nothing_acknowledged(infra: LocalStack) -> None:
    topic = f"producers-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[set[str], list[tuple[int, int, str]]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 4, 1)])
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
