"""Recounting from the event log: `rebuild` and `reconcile` (python -m shared.admin ...).

The Kafka log is the source of truth; the totals are derived from it. Both commands replay the
log from its first offset through the aggregator's own `BatchApplier` into a generation of
collections of their own, so they count with exactly the rules the live aggregator uses:

- rebuild replays into a new generation while ingest and the live aggregator go on, and once
  the new generation has applied at least everything the served one has, switches every service
  to it in one transaction (see `switch_generation`). The live aggregator then goes on in the new
  generation; the records the replay applied already are recognised by their offsets.
- reconcile takes a consistent snapshot of the served totals and the offsets they reflect,
  replays exactly up to those offsets into a scratch generation, and reports every (unit,
  metric, day or month) that differs. In a healthy system it reports none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.adapters.catalog import CatalogCache
from shared.adapters.kafka import kafka_client_options
from shared.adapters.mongo import Document, Store, metric_name
from shared.adapters.registry_store import RegistryCache, RegistryStore
from shared.aggregation import BatchApplier, DeadLetter, Prepared
from shared.domain.ledger import RecordedIds
from shared.progress import Progress
from shared.settings import Settings

log = logging.getLogger("replay")

# How long a batch may gather records once it has some: with the log behind it a batch fills
# in a fraction of this; at the live end, a trickle of events must not hold a batch back.
GATHER_MAX_S = 1.0


class CatalogChanged(RuntimeError):
    """A reorganisation moved history in the served totals during a rebuild: what the rebuild
    counted before it used the old tree. Run the rebuild again."""


class RegistryChanged(RuntimeError):
    """The served generation was counted from a newer registry than this rebuild (a backfill
    switched meanwhile): switching would take indicators it made ready back to backfilling.
    Run the rebuild again."""


@dataclass
class ReplayStats:
    records: int = 0
    batches: int = 0
    dead_letters: int = 0


@dataclass(frozen=True, slots=True)
class Difference:
    unit_id: str
    metric: str
    period: str
    stored: int
    recounted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit_id": self.unit_id,
            "metric": self.metric,
            "period": self.period,
            "stored": self.stored,
            "recounted": self.recounted,
        }


async def recorded_in(store: Store) -> RecordedIds:
    """A filter of every id `store`'s generation holds (none, unless a replay resumes)."""
    recorded = RecordedIds()
    async for key in store.recorded_ids():
        recorded.add(key)
    return recorded


async def replay(
    settings: Settings,
    target: Store,
    *,
    stop_at: Mapping[int, int] | None = None,
    on_idle: Callable[[], Awaitable[bool]] | None = None,
    through_log_end: bool = False,
    progress: Progress | None = None,
) -> ReplayStats:
    """Apply the log to `target`'s generation from where it stands (its own offsets: an
    interrupted replay resumes) until every partition reaches `stop_at`, or until `on_idle`,
    called after every batch (and every empty fetch), says it is done; with
    `through_log_end`, `on_idle` is asked only once the log's end as it stood at the start is
    reached. `progress` is told the records read against the log's end: `stop_at`, else the
    end ListOffsets reports, read again whenever the replay reaches it (it grows under live
    ingest)."""
    # Batches of `settings.replay_batch_records`: a replay has the whole log behind it, and a
    # batch writes each unit's month document once for however many of its events it holds.
    batch_records = settings.replay_batch_records
    await target.ensure_indexes()
    catalog = CatalogCache(target)
    await catalog.reload()
    stats = ReplayStats()

    async def count_dead_letters(letters: Sequence[DeadLetter]) -> None:
        # Counted, not published: the live aggregator dead-lettered these records already.
        stats.dead_letters += len(letters)

    # The replay writes its generation alone: a filter of what it holds spares the store a
    # lookup of nearly every id (a replay's batches rarely meet an id counted before).
    registry = RegistryCache(RegistryStore(target))
    await registry.reload()  # the stored registry: it holds every type the log can hold
    applier = BatchApplier(
        target,
        catalog,
        count_dead_letters,
        recorded=await recorded_in(target),
        newer_registry=registry.newer,
    )
    consumer = AIOKafkaConsumer(
        **kafka_client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    ahead: asyncio.Task[tuple[list[ConsumerRecord[bytes, bytes]], Prepared]] | None = None
    try:
        partitions = await _partitions(settings, settings.events_topic)
        start = await target.next_offsets(settings.events_topic, partitions)
        assigned = [TopicPartition(settings.events_topic, p) for p in partitions]
        consumer.assign(assigned)
        for tp in assigned:
            consumer.seek(tp, start[tp.partition])
        position = dict(start)
        # The log's end when the replay starts (ListOffsets, latest): what `through_log_end`
        # must replay before a switch.
        floor: dict[int, int] = {}
        if through_log_end:
            ends = await consumer.end_offsets(assigned)
            floor = {tp.partition: offset for tp, offset in ends.items()}

        def reached_floor() -> bool:
            return all(position[p] >= floor.get(p, 0) for p in partitions)

        # The end the progress is reported against: `stop_at`, else the log's end (ListOffsets,
        # the same reading as the floor), read again once the replay has reached it.
        log_end: dict[int, int] = dict(stop_at) if stop_at is not None else dict(floor)

        async def report_progress() -> None:
            if progress is None:
                return
            if stop_at is None and (
                len(log_end) < len(partitions)
                or any(position[p] >= log_end.get(p, 0) for p in partitions)
            ):
                ends = await consumer.end_offsets(assigned)
                log_end.update({tp.partition: offset for tp, offset in ends.items()})
            done = sum(position[p] - start[p] for p in partitions)
            total = sum(max(log_end.get(p, 0), position[p]) - start[p] for p in partitions)
            progress.set_total(total)
            progress.set(done)

        async def next_batch() -> tuple[list[ConsumerRecord[bytes, bytes]], Prepared]:
            records = await _gather(consumer, batch_records)
            if stop_at is not None:
                records = [r for r in records if r.offset < stop_at.get(r.partition, 0)]
                for tp in assigned:
                    if position[tp.partition] >= stop_at.get(tp.partition, 0):
                        consumer.pause(tp)
            return records, await applier.prepare(records)

        # The next batch is fetched, decoded and folded while the database applies this one:
        # the two then share the machine's cores instead of taking turns.
        ahead = asyncio.create_task(next_batch())
        while True:
            if stop_at is not None and all(position[p] >= stop_at.get(p, 0) for p in partitions):
                return stats
            records, prepared = await ahead
            ahead = asyncio.create_task(next_batch())
            if records:
                report = await applier.apply(records, prepared)
                stats.records += report.records
                stats.batches += 1
                for record in records:
                    position[record.partition] = max(position[record.partition], record.offset + 1)
            await report_progress()
            # After every batch, not only when the log runs dry: under ingest at more than a
            # batch per gather the log never does, and a switch must still come.
            if on_idle is not None and reached_floor() and await on_idle():
                return stats
    finally:
        if ahead is not None:
            ahead.cancel()
            # Not needed once the replay is done or failed, whatever became of it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ahead
        await consumer.stop()


# Records taken per `getmany`: aiokafka turns fetched bytes into records inside the call,
# without yielding, and a replay gathers its next batch while the current one's transaction
# waits on the database; a call over a whole batch of records held each of its round trips up by a
# tenth of a second.
GATHER_SLICE = 2_000


async def _gather(consumer: AIOKafkaConsumer, limit: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Up to `limit` records: one fetch brings a few thousand, so keep fetching for up to
    `GATHER_MAX_S` while more come."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    timeout_ms = 500
    deadline = 0.0
    while len(records) < limit:
        fetched = await consumer.getmany(
            timeout_ms=timeout_ms, max_records=min(limit - len(records), GATHER_SLICE)
        )
        got = [record for batch in fetched.values() for record in batch]
        if not got:
            break
        if not records:
            deadline = time.monotonic() + GATHER_MAX_S
        records.extend(got)
        timeout_ms = int((deadline - time.monotonic()) * 1000)
        if timeout_ms <= 0:
            break
    return records


async def _partitions(settings: Settings, topic: str) -> list[int]:
    """The topic's partitions, as the cluster describes them. (Not the consumer's
    `partitions_for_topic`: a consumer with nothing assigned asks the cluster's metadata for
    no topic, so it knows none.)"""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        for _ in range(50):
            for found in await admin.describe_topics([topic]):
                if found["topic"] == topic and found["error_code"] == 0 and found["partitions"]:
                    return sorted(p["partition"] for p in found["partitions"])
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise RuntimeError(f"topic {topic!r} has no partitions (does it exist?)")


async def switch_generation(
    live: Store,
    new: Store,
    topic: str,
    catalog_version: int,
    registry_version: int = 1,
    guard: Callable[[AsyncClientSession], Awaitable[None]] | None = None,
) -> bool:
    """Serve `new` if it has applied, in every partition, at least what the served generation
    has; else False (replay more, then try again).

    One transaction reads the served generation's offsets and writes each of them, as the
    live aggregator's batch transaction does: a batch committed meanwhile makes this conflict
    and run again (re-reading its offsets), and a batch that read the old generation name
    conflicts with this and runs again in the new generation. So no batch is lost between the
    two. A reorganisation writes those offsets too, so it cannot slip between either.

    `registry_version` is the registry the replay started from (every batch of `new` was
    counted with it or a newer one): recorded with the switch, it tells which indicators the
    new generation holds exactly (`shared.domain.registry.indicator_status`). `guard`, run in
    the same transaction, may refuse the switch by raising (a backfill's lease)."""

    async def transaction(session: AsyncClientSession) -> bool:
        if await live.catalog_version(session) != catalog_version:
            raise CatalogChanged("the unit tree changed during the rebuild")
        if guard is not None:
            await guard(session)
        serving, counted_from = await live.serving(session)
        if counted_from > registry_version:
            raise RegistryChanged(
                f"the served totals were counted from registry version {counted_from}, "
                f"newer than this rebuild's {registry_version}"
            )
        served = live.in_generation(serving)
        old_next = await served.applied_offsets(topic, session)
        new_next = await new.next_offsets(topic, list(old_next), session)
        if any(new_next[p] < applied for p, applied in old_next.items()):
            return False
        await served.offsets.update_many(
            {"topic": topic},
            {"$set": {"retired_for": new.generation}, "$inc": {"switches": 1}},
            session=session,
        )
        await live.meta.update_one(
            {"_id": "generation"},
            {
                "$set": {
                    "name": new.generation,
                    "since": datetime.now(UTC),
                    "registry_version": registry_version,
                }
            },
            upsert=True,
            session=session,
        )
        return True

    async with live.client.start_session() as session:
        switched: bool = await session.with_transaction(transaction)
    return switched


async def rebuild(
    settings: Settings,
    live: Store,
    *,
    keep_old: bool = False,
    grace_s: float = 10.0,
    through_log_end: bool = False,
    on_generation: Callable[[str], Awaitable[None]] | None = None,
    on_batch: Callable[[], Awaitable[None]] | None = None,
    guard: Callable[[AsyncClientSession], Awaitable[None]] | None = None,
    progress: Progress | None = None,
) -> tuple[str, ReplayStats]:
    """Recompute every total from the log into a new generation and switch to it; returns the
    new generation's name. The old one is dropped after `grace_s` (requests that read it just
    before the switch finish first) unless `keep_old`.

    The switch comes as soon as the new generation has applied what the served one has, so
    with the aggregator stopped (a fix to the counting rules, say) the rebuild may end before
    the log does and leave the rest to the aggregator; `through_log_end` replays at least the
    whole log as it stood at the start. `on_generation` is told the new generation's name
    before anything is written to it, `on_batch` is called after every batch (a backfill
    keeps its lease with them), `guard` in the switch's transaction; `progress` is told the
    replay's records read (`replay`)."""
    catalog_version = await live.catalog_version()
    # Before the replay loads it (it may load a newer one, never an older one).
    registry_version = max(1, await live.stored_registry_version())
    old = await live.serving_generation()
    name = "r" + datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    new = live.in_generation(name)
    if on_generation is not None:
        await on_generation(name)

    async def try_switch() -> bool:
        if on_batch is not None:
            await on_batch()
        return await switch_generation(
            live, new, settings.events_topic, catalog_version, registry_version, guard
        )

    await new.mark_ledger_scheme()
    try:
        stats = await replay(
            settings,
            new,
            on_idle=try_switch,
            through_log_end=through_log_end,
            progress=progress,
        )
    except BaseException:
        await live.drop_generation(name)
        raise
    if progress is not None:
        progress.close(f"generation {name!r} now served")  # before the grace period
    log.warning("rebuilt %d records into generation %r, now served", stats.records, name)
    if not keep_old:
        await asyncio.sleep(grace_s)
        await live.drop_generation(old)
    return name, stats


async def reconcile(
    settings: Settings, live: Store, progress: Progress | None = None
) -> tuple[list[Difference], ReplayStats]:
    """Every (unit, metric, day or month) whose served total differs from a recount of the
    log up to exactly the offsets that total reflects."""
    generation, applied, served_docs = await _snapshot(live, settings.events_topic)
    scratch = live.in_generation(f"check{uuid.uuid4().hex[:8]}")
    try:
        stats = await replay(settings, scratch, stop_at=applied, progress=progress)
        recounted_docs = [doc async for doc in scratch.totals.find({})]
    finally:
        await live.drop_generation(scratch.generation)
    log.info("reconciled generation %r against %d records", generation, stats.records)
    return compare(served_docs, recounted_docs), stats


async def _snapshot(live: Store, topic: str) -> tuple[str, dict[int, int], list[Document]]:
    """The served generation's totals and the offsets they reflect, read in one transaction
    (one snapshot), so they belong together even while the aggregator writes."""

    async def transaction(
        session: AsyncClientSession,
    ) -> tuple[str, dict[int, int], list[Document]]:
        generation = await live.serving_generation(session)
        served = live.in_generation(generation)
        applied = await served.applied_offsets(topic, session)
        docs = [doc async for doc in served.totals.find({}, session=session)]
        return generation, applied, docs

    async with live.client.start_session() as session:
        result: tuple[str, dict[int, int], list[Document]] = await session.with_transaction(
            transaction
        )
    return result


def _cells(docs: Sequence[Document]) -> dict[tuple[str, str, str], int]:
    """Each non-zero (unit, metric, period) of month documents: the month and each day."""
    cells: dict[tuple[str, str, str], int] = {}
    for doc in docs:
        unit_id, month = doc["u"], doc["m"]
        for key, value in (doc.get("t") or {}).items():
            if value:
                cells[(unit_id, metric_name(key), f"month:{month}")] = int(value)
        for day_key, values in (doc.get("d") or {}).items():
            for key, value in values.items():
                if value:
                    cells[(unit_id, metric_name(key), f"day:{month}-{day_key}")] = int(value)
    return cells


def compare(served: Sequence[Document], recounted: Sequence[Document]) -> list[Difference]:
    """Pure: the differences between two sets of month documents (years and all time are sums
    of months, so they agree when the months do)."""
    stored_cells, recounted_cells = _cells(served), _cells(recounted)
    return [
        Difference(unit_id, metric, period, stored_cells.get(key, 0), recounted_cells.get(key, 0))
        for key in sorted(stored_cells.keys() | recounted_cells.keys())
        for unit_id, metric, period in [key]
        if stored_cells.get(key, 0) != recounted_cells.get(key, 0)
    ]
