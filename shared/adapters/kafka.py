"""Kafka adapter: the broker connection, topic set-up and the publisher ingest uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from shared.domain.events import Event
from shared.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time: nothing may be reported as accepted."""


def make_broker(settings: Settings, *, client_id: str, producer: bool = True) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        consumer_only=not producer,
        # Topics are created with their partition count by `ensure_topics`, never by accident.
        allow_auto_create_topics=False,
        # FastStream logs every message at this level: keep it below what is printed.
        log_level=logging.DEBUG,
    )


async def ensure_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create each topic with its partition count, if it does not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(missing)
            log.info("created topics %s", [topic.name for topic in missing])
    finally:
        await admin.close()


class EventPublisher:
    """Publishes events keyed so that a void and the event it voids share a partition."""

    def __init__(self, broker: KafkaBroker, topic: str, timeout_s: float) -> None:
        self._broker = broker
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, events: Sequence[Event]) -> None:
        """Return only once the broker acknowledged every event (acks=all)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                pending = [
                    await self._broker.publish(
                        event.model_dump_json(exclude_none=True).encode(),
                        self._topic,
                        key=event.partition_key(),
                        headers={"content-type": "application/json"},
                        no_confirm=True,
                    )
                    for event in events
                ]
                await asyncio.gather(*pending)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise BrokerUnavailable(f"broker did not acknowledge: {exc!r}") from exc
