"""The aggregator's pipeline metrics beyond the batch counters of services/aggregator/app.py:
events by type, consumer lag per partition (records and seconds) and freshness.

Its own module, imported by the aggregator only: ingest and the API must not export these
(an unlabelled gauge would show as 0 there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from shared.adapters.mongo import Store

EVENTS_BY_TYPE = Counter(
    "aggregator_events_processed_total",
    "Records of applied batches by event type (duplicates and redeliveries included; "
    "`invalid` for records that are not events)",
    ["type"],
)
DB_WRITE_DURATION = Histogram(
    "aggregator_db_write_duration_seconds",
    "Time to write one batch's totals, ledger entry and offsets inside its transaction (the "
    "commit and the reads are in aggregator_batch_duration_seconds)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOTALS_DOCUMENT_WRITES = Counter(
    "aggregator_totals_document_writes_total",
    "Totals documents written by batch transactions, one per unit and month a batch touches "
    "(what a batch costs the database; a transaction run again writes them again)",
)
CONSUMER_LAG_RECORDS = Gauge(
    "aggregator_consumer_lag_records",
    "Records appended to the partition and not yet applied to the totals",
    ["partition"],
    multiprocess_mode="livemax",
)
CONSUMER_LAG_SECONDS = Gauge(
    "aggregator_consumer_lag_seconds",
    "How long the oldest record not yet in the totals has waited (0 when caught up)",
    ["partition"],
    multiprocess_mode="livemax",
)
LAST_RECORD_TIMESTAMP = Gauge(
    "aggregator_last_applied_record_timestamp_seconds",
    "Log (append) timestamp of the newest record applied, per partition",
    ["partition"],
    multiprocess_mode="livemax",
)
NEWEST_EVENT_TIME = Gauge(
    "aggregator_newest_event_time_seconds",
    "occurred_at of the newest event applied so far (freshness of the totals)",
    multiprocess_mode="livemax",
)


class Record(Protocol):
    """The parts of a consumed Kafka record read here (aiokafka's ConsumerRecord has them)."""

    @property
    def partition(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


# This process's newest applied record per partition (log time, seconds): the lag's reference.
_last_record_at: dict[int, float] = {}
_newest_event_at = 0.0


def observe_batch(
    records: Sequence[Record], by_type: Mapping[str, int], newest_occurred_at: datetime | None
) -> None:
    """Per-type counts and freshness of a batch that was applied, from what the applier
    already decoded (records that are not events count as `invalid`)."""
    global _newest_event_at
    for record in records:
        at = record.timestamp / 1000
        if at > _last_record_at.get(record.partition, 0.0):
            _last_record_at[record.partition] = at
            LAST_RECORD_TIMESTAMP.labels(str(record.partition)).set(at)
    for kind, count in by_type.items():
        # Event types are the contract's closed set, anything else is `invalid`: the label
        # stays bounded whatever is written to the topic.
        EVENTS_BY_TYPE.labels(kind).inc(count)
    if newest_occurred_at is not None:
        _newest_event_at = max(_newest_event_at, newest_occurred_at.timestamp())
    if _newest_event_at:
        NEWEST_EVENT_TIME.set(_newest_event_at)


class LagSource(Protocol):
    """What the lag needs from the Kafka consumer (aiokafka's AIOKafkaConsumer has it)."""

    def assignment(self) -> Any: ...
    def highwater(self, partition: Any) -> int | None: ...


async def report_lag_forever(
    consumer: Callable[[], LagSource | None],
    applied: Mapping[tuple[str, int], int],
    topic: str,
    interval_s: float = 1.0,
) -> None:
    """Every `interval_s`, the lag of each assigned partition in records and in seconds.

    Records: the log end seen by the consumer's last fetch minus the next offset applied.
    Seconds: see `lag_seconds`."""
    backlog_since: dict[int, float] = {}
    while True:
        await asyncio.sleep(interval_s)
        source = consumer()
        if source is None:
            continue
        now = time.time()
        assigned: set[int] = set()
        for tp in source.assignment():
            if tp.topic != topic:
                continue
            partition = int(tp.partition)
            assigned.add(partition)
            highwater = source.highwater(tp)
            done = applied.get((topic, partition))
            if highwater is None or done is None:
                continue
            behind = max(highwater - done, 0)
            CONSUMER_LAG_RECORDS.labels(str(partition)).set(behind)
            if behind == 0:
                backlog_since.pop(partition, None)
                CONSUMER_LAG_SECONDS.labels(str(partition)).set(0)
                continue
            since = backlog_since.setdefault(partition, now)
            seconds = lag_seconds(now, _last_record_at.get(partition), since)
            CONSUMER_LAG_SECONDS.labels(str(partition)).set(seconds)
        # A partition given to another consumer is that consumer's to report.
        for gauge in (CONSUMER_LAG_RECORDS, CONSUMER_LAG_SECONDS):
            for labels in _labelsets(gauge):
                if int(labels["partition"]) not in assigned:
                    gauge.remove(labels["partition"])


def lag_seconds(now: float, last_applied_at: float | None, backlog_since: float) -> float:
    """How long the oldest unapplied record has waited, estimated from what is known cheaply.

    That record was appended after the newest applied one (`last_applied_at`, log time) and
    before this process first saw the partition behind (`backlog_since`), so both `now -` each
    bound its age from above; the smaller is the estimate. Under steady load the first is the
    close one (the backlog never clears, so `backlog_since` is old); after an idle spell the
    second is (the last applied record may be days old while the new one is a second old)."""
    newest = backlog_since if last_applied_at is None else max(last_applied_at, backlog_since)
    return max(now - newest, 0.0)


def _labelsets(gauge: Gauge) -> list[dict[str, str]]:
    return [dict(sample.labels) for metric in gauge.collect() for sample in metric.samples]


class TimedStore(Store):
    """The aggregator's store, timing each batch's writes (`Store.apply`)."""

    async def apply(self, *args: Any, **kwargs: Any) -> int:
        started = time.perf_counter()
        try:
            written = await super().apply(*args, **kwargs)
        finally:
            DB_WRITE_DURATION.observe(time.perf_counter() - started)
        TOTALS_DOCUMENT_WRITES.inc(written)
        return written
