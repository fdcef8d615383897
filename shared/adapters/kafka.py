"""Kafka adapter: the broker connection, topic set-up and the publisher ingest uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from shared.domain.events import Event
from shared.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time: nothing may be reported as accepted."""


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """The connection options every aiokafka client of the project takes (producer, consumer,
    admin; FastStream's broker through `broker_security`): the one place that turns the
    KAFKA_* settings into bootstrap servers, TLS and SASL, so no client can connect to a
    managed cluster without them."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        # aiokafka splits a comma-separated string too; a list says it plainly.
        "bootstrap_servers": [
            server.strip() for server in settings.kafka_bootstrap.split(",") if server.strip()
        ],
        "security_protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        # aiokafka refuses TLS without a context. No CA file: the system's CAs, as a public
        # managed service needs. Hostnames are always checked.
        key_password = settings.kafka_ssl_key_password
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_ca_file,
            certfile=settings.kafka_ssl_cert_file,
            keyfile=settings.kafka_ssl_key_file,
            password=key_password.get_secret_value() if key_password is not None else None,
        )
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


_SASL_CLASSES: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


def broker_security(options: dict[str, Any]) -> BaseSecurity | None:
    """`kafka_client_options` in the form FastStream's broker takes (it turns it back into the
    same aiokafka options, and shows the mechanism in the AsyncAPI docs)."""
    protocol = options["security_protocol"]
    ssl_context = options.get("ssl_context")
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    return _SASL_CLASSES[options["sasl_mechanism"]](
        options["sasl_plain_username"],
        options["sasl_plain_password"],
        ssl_context=ssl_context,
        use_ssl=protocol == "SASL_SSL",
    )


def make_broker(settings: Settings, *, client_id: str, producer: bool = True) -> KafkaBroker:
    options = kafka_client_options(settings)
    return KafkaBroker(
        options["bootstrap_servers"],
        security=broker_security(options),
        client_id=client_id,
        acks="all",
        # The broker drops a batch the producer retried after it was written (a lost
        # acknowledgement), and keeps a partition's batches in the order they were sent.
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1 << 20,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        consumer_only=not producer,
        # Topics are created with their partition count by `ensure_topics`, never by accident.
        allow_auto_create_topics=False,
        # FastStream logs every message at this level: keep it below what is printed.
        log_level=logging.DEBUG,
    )


def topic_configs(settings: Settings) -> dict[str, str]:
    """Per-topic configuration `init` sets, so the topics do not depend on broker defaults."""
    configs = {"retention.ms": str(settings.kafka_retention_ms)}
    if settings.kafka_min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(settings.kafka_min_insync_replicas)
    return configs


async def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create each topic with its partition count, the replication factor and the configs of
    the settings, if it does not exist yet. An existing topic is left as it is (Kafka cannot
    shrink partitions, and growing them moves keys): a mismatch is only logged."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=topic_configs(settings),
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(missing)
            log.info("created topics %s", [topic.name for topic in missing])
        present = [name for name in topics if name in existing]
        if present:
            for found in await admin.describe_topics(present):
                wanted = topics[found["topic"]]
                if len(found["partitions"]) != wanted:
                    log.warning(
                        "topic %s has %d partitions, settings say %d: left as it is",
                        found["topic"],
                        len(found["partitions"]),
                        wanted,
                    )
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
