"""Aggregator: consumes the event log in a consumer group and keeps exact totals in MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaMessage
from prometheus_client import Counter, Gauge, Histogram

from shared.adapters.aggregator_metrics import TimedStore, observe_batch, report_lag_forever
from shared.adapters.catalog import CatalogCache
from shared.adapters.kafka import make_broker
from shared.adapters.metrics import render_metrics
from shared.adapters.mongo import connect
from shared.adapters.registry_store import RegistryCache, RegistryStore
from shared.adapters.sessions import TransactionSessions
from shared.aggregation import BatchApplier, DeadLetter
from shared.backfill import Backfiller, backfill_forever
from shared.settings import Settings, get_settings

log = logging.getLogger("aggregator")

EVENTS_PROCESSED = Counter("aggregator_events_total", "Records handled", ["outcome"])
BATCH_SIZE = Histogram(
    "aggregator_batch_size", "Records per batch", buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000)
)
BATCH_DURATION = Histogram(
    "aggregator_batch_duration_seconds",
    "Time to apply a batch (one MongoDB transaction)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_RETRIES = Counter(
    "aggregator_batch_retries_total", "Batches retried after a failure (e.g. database down)"
)
SESSIONS_REAPED = Counter(
    "aggregator_dead_sessions_aborted_total",
    "Open transactions of aggregators gone silent, aborted so that counting goes on",
)
DEAD_LETTERS = Counter("aggregator_dead_letters_total", "Records sent to the dead-letter topic")
UNCOMMITTED = Gauge(
    "aggregator_batch_uncommitted_seconds",
    "How long the batch in hand has gone without committing (0 between batches)",
)


class CommitWatch:
    """Since when the batch in hand has waited to commit: what /healthz and the
    AggregatorNotCommitting alert read. A batch commits in well under a second; one that
    waits for minutes has the infrastructure against it (the database gone: the driver
    itself retries a transaction for up to two minutes before it raises), never a poison
    record, which is isolated and dead-lettered."""

    def __init__(self) -> None:
        self.since: float | None = None

    def started(self) -> None:
        self.since = time.monotonic()

    def committed(self) -> None:
        self.since = None

    def waiting_for(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


def create_app(settings: Settings | None = None) -> AsgiFastStream:
    settings = settings or get_settings()
    client = connect(settings.mongodb_uri, app_name="aggregator")
    store = TimedStore(client, settings.mongodb_db)  # Store, timing its batch writes
    catalog = CatalogCache(store)
    registry = RegistryCache(RegistryStore(store))
    broker = make_broker(settings, client_id="aggregator")

    async def send_dead_letter(letter: DeadLetter) -> None:
        record = letter.record
        headers = {
            "reason": letter.reason[:1000],
            "source": f"{record.topic}:{record.partition}:{record.offset}",
        }
        if record.key is not None:
            # A re-drive must land on the partition the producer chose (a void beside the
            # event it voids), so the original key travels with the letter.
            headers["key"] = record.key.decode(errors="replace")
        await broker.publish(
            record.value or b"",
            settings.deadletter_topic,
            key=f"{record.topic}:{record.partition}:{record.offset}".encode(),
            headers=headers,
        )

    async def send_dead_letters(letters: Sequence[DeadLetter]) -> None:
        # Side by side, so the producer batches them: an attack can dead-letter thousands of
        # records at once, and one acknowledged round trip each would hold the batch up.
        for start in range(0, len(letters), 500):
            chunk = letters[start : start + 500]
            await asyncio.gather(*(send_dead_letter(letter) for letter in chunk))
        DEAD_LETTERS.inc(len(letters))

    sessions = TransactionSessions(store.db, stale_after_s=settings.aggregator_stale_after_s)
    applier = BatchApplier(
        store, catalog, send_dead_letters, sessions, newer_registry=registry.newer
    )
    watch = CommitWatch()
    UNCOMMITTED.set_function(watch.waiting_for)

    subscriber = broker.subscriber(
        settings.events_topic,
        batch=True,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        max_records=settings.aggregator_max_batch,
        batch_timeout_ms=settings.aggregator_batch_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_partition_fetch_bytes=4 << 20,
        # The body stays raw bytes: decoding is the aggregator's job, so poison cannot crash it.
        decoder=lambda message: message.body,
        title="events",
        description="Every accepted event (contract v1), keyed by event_id (voids by the id "
        "they void). Consumed by the aggregator group.",
    )

    @subscriber
    async def on_batch(_: Any, message: KafkaMessage) -> None:
        records = message.raw_message
        if not isinstance(records, tuple):
            records = (records,)
        # Never give a batch up: the consumer's position has already moved past it, so a
        # failure here (database down, say) must be retried, with backoff, until it succeeds.
        # Redoing it is safe: the offsets stored with the totals make a repeat count nothing.
        delay = 0.25
        watch.started()
        while True:
            try:
                with BATCH_DURATION.time():
                    report = await applier.apply(records)
                watch.committed()
                break
            except Exception:
                BATCH_RETRIES.inc()
                log.exception("batch of %d records failed; retrying in %.1f s", len(records), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        BATCH_SIZE.observe(len(records))
        observe_batch(records, report.by_type, report.newest_occurred_at)
        outcome = report.outcome
        EVENTS_PROCESSED.labels("counted").inc(outcome.accepted)
        EVENTS_PROCESSED.labels("duplicate").inc(outcome.duplicates)
        EVENTS_PROCESSED.labels("dead_letter").inc(report.dead_letters)
        EVENTS_PROCESSED.labels("redelivered").inc(report.skipped_already_applied)

    async def mark_caught_up_forever() -> None:
        """Advance `as_of` while idle: a partition whose applied offset reached the log end seen
        by the last fetch reflects everything appended before that fetch was sent."""
        margin = timedelta(milliseconds=settings.kafka_fetch_max_wait_ms + 50)
        while True:
            await asyncio.sleep(0.25)
            consumer: AIOKafkaConsumer | None = getattr(subscriber, "consumer", None)
            if consumer is None:
                continue
            caught_up: dict[int, datetime] = {}
            partitions = consumer.partitions_for_topic(settings.events_topic)
            for tp in consumer.assignment():
                assert isinstance(tp, TopicPartition)
                highwater = consumer.highwater(tp)
                polled_ms = consumer.last_poll_timestamp(tp)
                applied = applier.applied.get((tp.topic, tp.partition))
                if applied is None:
                    stored = await store.next_offsets(tp.topic, [tp.partition])
                    applied = applier.applied[(tp.topic, tp.partition)] = stored[tp.partition]
                if highwater is not None and polled_ms and applied >= highwater:
                    instant = datetime.fromtimestamp(polled_ms / 1000, UTC) - margin
                    caught_up[tp.partition] = instant
            if caught_up:
                with contextlib.suppress(Exception):
                    # Writing to a generation just retired is harmless: once a second is
                    # enough to look for a rebuild's switch, not every heartbeat.
                    await store.follow_generation(max_age_s=1.0)
                    await store.mark_caught_up(
                        settings.events_topic, caught_up, len(partitions) if partitions else None
                    )

    async def abort_the_dead_forever() -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                SESSIONS_REAPED.inc(len(await sessions.beat_and_reap()))
            except Exception:
                log.warning("could not beat or look for dead aggregators", exc_info=True)

    background: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.ensure_indexes()
        await catalog.reload()
        await registry.reload()
        await store.follow_generation()
        if await store.ledger_scheme() == "event":
            log.error(
                "the ledger predates unit-scoped event ids: run `python -m shared.admin init` "
                "once (it rebuilds the totals from the log); until then a re-post of an event "
                "counted before the upgrade is counted again"
            )

    async def started() -> None:
        background.append(asyncio.create_task(mark_caught_up_forever()))
        lag = report_lag_forever(
            lambda: getattr(subscriber, "consumer", None), applier.applied, settings.events_topic
        )
        background.append(asyncio.create_task(lag))
        background.append(asyncio.create_task(abort_the_dead_forever()))
        # New and changed indicators counted over the whole log (one aggregator at a time).
        background.append(
            asyncio.create_task(backfill_forever(Backfiller(settings, store, registry)))
        )

    async def stop() -> None:
        for task in background:
            task.cancel()
        with contextlib.suppress(Exception):
            await sessions.leave()
        await client.close()

    @get
    async def healthz(scope: Any) -> AsgiResponse:
        waiting_for = watch.waiting_for()
        if waiting_for > settings.aggregator_unhealthy_after_s:
            body = {
                "status": "failing",
                "service": "aggregator",
                "detail": f"a batch has waited {waiting_for:.0f} s to commit; see the log",
            }
            return AsgiResponse(json.dumps(body).encode(), 503)
        return AsgiResponse(json.dumps({"status": "ok", "service": "aggregator"}).encode(), 200)

    @get
    async def metrics(scope: Any) -> AsgiResponse:
        body, content_type = await render_metrics()
        return AsgiResponse(body, 200, headers={"content-type": content_type})

    return AsgiFastStream(
        broker,
        asgi_routes=[("/healthz", healthz), ("/metrics", metrics)],
        on_startup=[start],
        after_startup=[started],
        after_shutdown=[stop],
        asyncapi_path="/docs",
    )
