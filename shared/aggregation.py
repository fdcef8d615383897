"""The aggregator's use case: apply one consumed batch to the totals, exactly once.

It wires the pure ledger (`shared.domain.ledger`) to the store, and sends records that cannot
be counted to the dead-letter topic, so a poison record never stops the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pydantic import ValidationError
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, OperationFailure

from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import OverBound, PartitionBatch, Store
from shared.adapters.sessions import TransactionSessions
from shared.domain.bounds import OWN_TOTAL_BOUND, over_bound
from shared.domain.events import Event
from shared.domain.ledger import (
    Known,
    Outcome,
    RecordedIds,
    fold,
    ids_to_look_up,
    subjects_to_look_up,
)
from shared.domain.periods import LocalDate
from shared.domain.registry import Registry, current_registry
from shared.domain.units import UnitTree

log = logging.getLogger(__name__)


class LogRecord(Protocol):
    """The parts of a Kafka record the aggregator needs (aiokafka's ConsumerRecord has them)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: LogRecord
    reason: str


DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]


@dataclass(slots=True)
class BatchReport:
    records: int = 0
    skipped_already_applied: int = 0
    dead_letters: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    # Every record of the batch by event type ("invalid" if it is not an event), redeliveries
    # included, and the newest `occurred_at` among them: read by the metrics, decoded once here.
    by_type: dict[str, int] = field(default_factory=dict)
    newest_occurred_at: datetime | None = None


def decode(record: LogRecord) -> Event | DeadLetter:
    """A record's event, or why it cannot be an event at all."""
    if not record.value:
        return DeadLetter(record, "empty record")
    try:
        payload = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return DeadLetter(record, f"not JSON: {exc}")
    try:
        event = Event.model_validate(payload)
    except ValidationError as exc:
        return DeadLetter(record, f"not a valid event: {exc.errors()[:3]}")
    return event


Decoded = dict[int, Event | DeadLetter]  # by id() of the record


async def decode_yielding(records: Sequence[LogRecord], every: int = 250) -> Decoded:
    """`decode` of every record, letting other tasks run every `every` records: a replay
    decodes its next batch while the database works on the current one."""
    decoded: Decoded = {}
    for start in range(0, len(records), every):
        for record in records[start : start + every]:
            decoded[id(record)] = decode(record)
        await asyncio.sleep(0)
    return decoded


def countable(record: LogRecord, decoded: Event | DeadLetter, tree: UnitTree) -> Event | DeadLetter:
    """A decoded event is countable if the tree knows its unit."""
    if isinstance(decoded, Event) and decoded.unit_id not in tree:
        return DeadLetter(record, f"unknown unit {decoded.unit_id!r}")
    return decoded


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch decoded ahead of its transaction, and `fold`ed as if the store knew none of
    its ids."""

    decoded: Decoded
    tree: UnitTree
    events: list[Event]
    outcome: Outcome
    # What `outcome` was folded by (the registry in use then, by default).
    registry: Registry = field(default_factory=current_registry)

    def holds_for(
        self,
        tree: UnitTree,
        events: Sequence[Event],
        known: Known,
        registry: Registry | None = None,
    ) -> bool:
        """Whether `outcome` is `fold(events, known, tree, registry)`: `fold` is a pure
        function of its arguments, and reads nothing of `known` but its counted ids, voided ids
        and subjects."""
        return (
            tree is self.tree
            and (registry or current_registry()) is self.registry
            and not known.counted
            and not known.voided
            and not known.subjects
            and len(events) == len(self.events)
            and all(a is b for a, b in zip(events, self.events, strict=True))
        )


class StaleCatalog(RuntimeError):
    """The unit tree changed since this process loaded it: reload, then count."""


class StaleRegistry(RuntimeError):
    """A newer registry is stored than the one this process counts with: reload, then count
    (a generation's counting never goes back to a registry older than the one it started
    from, which is what makes a backfilled indicator exact: see `indicator_status`)."""


class BatchApplier:
    def __init__(
        self,
        store: Store,
        catalog: CatalogCache,
        dead_letters: DeadLetterSink,
        sessions: TransactionSessions | None = None,
        recorded: RecordedIds | None = None,
        newer_registry: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        # Asked before a record is dead-lettered as not an event: ingest accepts an event of a
        # new type (or attribute) only once the registry holding it is stored, so a registry
        # reloaded then knows every event the log can hold.
        self._newer_registry = newer_registry
        self._catalog = catalog
        self._dead_letters = dead_letters
        # Where a live aggregator announces the session of its transactions, so that another
        # one can abort them if this process dies mid-batch (the rebuild needs no such thing).
        self._sessions = sessions
        # Every id the store's generation holds, when this applier is its only writer (a
        # replay): the store is then asked only about ids it may hold.
        self._recorded = recorded
        # The next offset applied per (topic, partition), as this process last committed it.
        self.applied: dict[tuple[str, int], int] = {}
        # Records this process already sent as dead letters: a batch redone after a conflict
        # or a failure (the transaction runs again) does not send them twice. Only a crash
        # between the send and the commit can repeat a letter (coordinates make it visible).
        self._lettered: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    def _may_be_recorded(self, ids: set[str]) -> set[str]:
        if self._recorded is None:
            return ids
        return {key for key in ids if key in self._recorded}

    async def prepare(self, records: Sequence[LogRecord]) -> Prepared:
        """Decode `records` and fold them as if the store knew none of their ids, letting other
        tasks run meanwhile: a replay prepares its next batch while the database applies the
        current one, and a replay's batches nearly always find nothing known."""
        decoded = await decode_yielding(records)
        tree = await self._catalog.covering(
            {d.unit_id for d in decoded.values() if isinstance(d, Event)}
        )
        events = [
            item
            for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
            if isinstance(item := countable(record, decoded[id(record)], tree), Event)
        ]
        # In the event loop, not a thread: a thread sharing the interpreter lock with the loop
        # held up the current batch's writes more than it saved (400k-event rebuilds, A/B).
        registry = current_registry()
        outcome = fold(events, Known(), tree, registry)
        return Prepared(decoded, tree, events, outcome, registry)

    async def apply(
        self, records: Sequence[LogRecord], prepared: Prepared | None = None
    ) -> BatchReport:
        """Count `records` in one transaction; `prepared`: `prepare(records)`, if the caller
        has it already.

        A batch that the store refuses for a reason in its data (a total pushed past its
        bound, say) is split until the records that cause it are isolated; those go to the
        dead-letter topic with the reason, the rest is counted. Only failures of the
        infrastructure (the database down, a time-out) reach the caller, to retry it whole."""
        try:
            return await self._apply_once(records, prepared)
        except Exception as exc:
            reason = data_error_reason(exc)
            if reason is None:
                raise
            log.warning("a batch of %d records was refused (%s): isolating", len(records), reason)
        # Most often a unit's own share past its bound: found in one read, whatever the number
        # of events past it (an attack posts thousands). Splitting finds anything else.
        poisoned = await self._over_bound(records)
        if poisoned:
            try:
                return await self._apply_once(records, poisoned=poisoned)
            except Exception as exc:
                if data_error_reason(exc) is None:
                    raise
        return await self._isolate(records)

    async def _over_bound(self, records: Sequence[LogRecord]) -> dict[int, str]:
        """The records (by `id()`) whose events would take their unit's own share of a month
        past `OWN_TOTAL_BOUND`, and why."""
        ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
        pairs = [(r, e) for r in ordered if isinstance(e := decode(r), Event)]
        cells = {(e.unit_id, LocalDate.of(e.occurred_at).month_key) for _, e in pairs}
        current = await self._store.own_totals(cells)
        refused = over_bound([e for _, e in pairs], current)
        return {id(pairs[position][0]): reason for position, reason in refused.items()}

    async def _isolate(self, records: Sequence[LogRecord]) -> BatchReport:
        ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
        if len(ordered) == 1:
            # Once more alone, so that a cause that has passed meanwhile dead-letters nothing.
            try:
                return await self._apply_once(ordered)
            except Exception as exc:
                reason = data_error_reason(exc)
                if reason is None:
                    raise
            return await self._apply_once(ordered, poisoned={id(ordered[0]): reason})
        # In log order: the first half's offsets are committed before the second is tried.
        half = len(ordered) // 2
        reports = []
        for part in (ordered[:half], ordered[half:]):
            try:
                reports.append(await self._apply_once(part))
            except Exception as exc:
                if data_error_reason(exc) is None:
                    raise
                reports.append(await self._isolate(part))
        return _merged(reports)

    async def _apply_once(
        self,
        records: Sequence[LogRecord],
        prepared: Prepared | None = None,
        poisoned: Mapping[int, str] | None = None,
    ) -> BatchReport:
        """`apply` in one transaction; `poisoned`: records (by `id()`) to send to the
        dead-letter topic with their reason instead of counting them."""
        if not records:
            return BatchReport()
        # Decoded once, outside the transaction, which may run more than once.
        by_record = (
            prepared.decoded
            if prepared is not None
            else {id(record): decode(record) for record in records}
        )
        if (
            self._newer_registry is not None
            and any(isinstance(item, DeadLetter) for item in by_record.values())
            and await self._newer_registry()
        ):
            earlier = by_record
            by_record = {}
            for record in records:
                item = earlier[id(record)]
                by_record[id(record)] = decode(record) if isinstance(item, DeadLetter) else item
            prepared = None
        tree = await self._catalog.covering(
            {d.unit_id for d in by_record.values() if isinstance(d, Event)}
        )
        report = BatchReport(records=len(records))
        for item in by_record.values():
            kind = item.type if isinstance(item, Event) else "invalid"
            report.by_type[kind] = report.by_type.get(kind, 0) + 1
            if isinstance(item, Event) and (
                report.newest_occurred_at is None or item.occurred_at > report.newest_occurred_at
            ):
                report.newest_occurred_at = item.occurred_at

        async def transaction(session: AsyncClientSession) -> list[DeadLetter]:
            await self._store.follow_generation(session)
            topics_partitions = sorted({(r.topic, r.partition) for r in records})
            next_offsets: dict[tuple[str, int], int] = {}
            for topic in {topic for topic, _ in topics_partitions}:
                partitions = [p for t, p in topics_partitions if t == topic]
                stored = await self._store.next_offsets(topic, partitions, session)
                next_offsets.update({(topic, p): offset for p, offset in stored.items()})
            stale_at = await self._store.newest_catalog_version(
                topics_partitions[0][0], [p for _, p in topics_partitions], session
            )
            if stale_at > tree.version:
                raise StaleCatalog(f"catalog version {stale_at} > {tree.version}")
            # In the transaction, after the generation: a batch that sees a generation switched
            # to by a backfill sees the registry that backfill counted with, or a newer one.
            registry = current_registry()
            stored_registry = await self._store.stored_registry_version(session)
            if self._newer_registry is not None and stored_registry > registry.version:
                raise StaleRegistry(f"registry version {stored_registry} > {registry.version}")
            fresh = sorted(
                (r for r in records if r.offset >= next_offsets[(r.topic, r.partition)]),
                key=lambda r: (r.topic, r.partition, r.offset),
            )
            report.skipped_already_applied = len(records) - len(fresh)
            if not fresh:
                return []
            events: list[Event] = []
            letters: list[DeadLetter] = []
            record_of: dict[int, LogRecord] = {}
            for record in fresh:
                outcome = countable(record, by_record[id(record)], tree)
                if poisoned and id(record) in poisoned:
                    letters.append(DeadLetter(record, poisoned[id(record)]))
                elif isinstance(outcome, DeadLetter):
                    letters.append(outcome)
                else:
                    events.append(outcome)
                    record_of[id(outcome)] = record
            known = await self._store.known(
                sorted(self._may_be_recorded(ids_to_look_up(events))),
                lambda partial_known: self._may_be_recorded(
                    subjects_to_look_up(events, partial_known, registry)
                ),
                session,
            )
            report.outcome = (
                prepared.outcome
                if prepared is not None and prepared.holds_for(tree, events, known, registry)
                else fold(events, known, tree, registry)
            )
            letters.extend(
                DeadLetter(record_of[id(refusal.event)], refusal.reason)
                for refusal in report.outcome.refused
            )
            report.dead_letters = len(letters)
            parts = _partition_batches(fresh)
            as_of = {
                part.partition: datetime.fromtimestamp(
                    max(r.timestamp for r in fresh if r.partition == part.partition) / 1000, UTC
                )
                for part in parts
            }
            unsent = [letter for letter in letters if _coordinates(letter) not in self._lettered]
            if unsent:
                # Before the commit, so a crash can only repeat a dead letter, never lose one;
                # a letter is keyed by its record's coordinates, which makes repeats visible.
                await self._dead_letters(unsent)
                for letter in unsent:
                    self._lettered[_coordinates(letter)] = None
                while len(self._lettered) > LETTERS_REMEMBERED:
                    self._lettered.popitem(last=False)
            await self._store.apply(report.outcome, parts, as_of, session)
            if self._recorded is not None:
                # Before the commit: should it fail, the filter holds ids the store does not,
                # which only costs a lookup.
                self._recorded.add_outcome(report.outcome)
            return letters

        for _ in range(5):
            try:
                async with self._store.client.start_session() as session:
                    if self._sessions is not None:
                        await self._sessions.announce(session.session_id)
                    await session.with_transaction(transaction)
                break
            except StaleCatalog:
                tree = await self._catalog.reload()
            except StaleRegistry:
                assert self._newer_registry is not None
                await self._newer_registry()
        else:
            raise StaleCatalog("the catalog or the registry kept changing under the batch")
        for record in records:
            key = (record.topic, record.partition)
            self.applied[key] = max(self.applied.get(key, 0), record.offset + 1)
        return report


# Server error codes that mean the data cannot be written, whatever the retries: a duplicate
# key (a total's bound, see `_total_updates`), a bad value (an integer overflow), a type
# mismatch or a path that cannot exist, a document too large.
DATA_ERROR_CODES = frozenset({2, 14, 28, 11000, 10334, 16837, 17419, 17420})


def data_error_reason(exc: BaseException) -> str | None:
    """Why the store refused a batch for its data, or None for a failure of the infrastructure
    (which retrying the same batch may cure)."""
    if isinstance(exc, OverBound):
        return str(exc)
    if isinstance(exc, BulkWriteError):
        errors = (exc.details or {}).get("writeErrors") or []
        codes = {int(error.get("code", 0)) for error in errors}
        if not errors or not codes <= DATA_ERROR_CODES:
            return None
        first = errors[0]
        if int(first.get("code", 0)) == 11000:
            total = (first.get("keyValue") or {}).get("_id")
            return f"would take a unit's own share of {total!r} past {OWN_TOTAL_BOUND:,}"
        return f"refused by the database (code {first.get('code')}): {first.get('errmsg', '')}"[
            :300
        ]
    if isinstance(exc, OperationFailure) and exc.code in DATA_ERROR_CODES:
        if exc.has_error_label("TransientTransactionError"):
            return None
        return f"refused by the database (code {exc.code}): {exc}"[:300]
    return None


def _merged(reports: Sequence[BatchReport]) -> BatchReport:
    merged = BatchReport()
    for report in reports:
        merged.records += report.records
        merged.skipped_already_applied += report.skipped_already_applied
        merged.dead_letters += report.dead_letters
        merged.outcome.accepted += report.outcome.accepted
        merged.outcome.duplicates += report.outcome.duplicates
        merged.outcome.voids_applied += report.outcome.voids_applied
        merged.outcome.voids_pending += report.outcome.voids_pending
        for kind, count in report.by_type.items():
            merged.by_type[kind] = merged.by_type.get(kind, 0) + count
        newest = report.newest_occurred_at
        if newest is not None and (
            merged.newest_occurred_at is None or newest > merged.newest_occurred_at
        ):
            merged.newest_occurred_at = newest
    return merged


# More than any batch holds: a redo of the batch never finds its letters forgotten.
LETTERS_REMEMBERED = 100_000


def _coordinates(letter: DeadLetter) -> tuple[str, int, int]:
    return (letter.record.topic, letter.record.partition, letter.record.offset)


def _partition_batches(records: Sequence[LogRecord]) -> list[PartitionBatch]:
    parts: dict[tuple[str, int], PartitionBatch] = {}
    for record in records:
        key = (record.topic, record.partition)
        current = parts.get(key)
        if current is None:
            parts[key] = PartitionBatch(
                record.topic, record.partition, record.offset, record.offset
            )
        else:
            parts[key] = PartitionBatch(
                record.topic,
                record.partition,
                min(current.first_offset, record.offset),
                max(current.last_offset, record.offset),
            )
    return list(parts.values())
