"""A replay folds its next batch ahead, as if the store knew none of its ids
(`BatchApplier.prepare`). Whatever the batch meets (ids counted in an earlier batch, voids
before and after their targets, certification histories, records not events, units not in
the catalog, records redelivered), applying it prepared must leave exactly what applying it
unprepared leaves. A replay also asks the store only about ids its filter of what it recorded
may hold (`RecordedIds`): that too must leave exactly the same."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from deploy.local.stack import REPO, LocalStack
from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import Store
from shared.aggregation import BatchApplier, DeadLetter, Prepared
from shared.domain.certification import SubjectState
from shared.domain.events import Event
from shared.domain.ledger import CountedEvent, Known, fold
from shared.domain.periods import LocalDate
from shared.domain.units import UnitTree, load_catalog
from shared.replay import recorded_in
from tests.conftest import Record, at, certification_and_voids, make_event
from tests.faults.harness import UNITS, realistic_events


def log_of_trouble(kind: str, seed: int) -> list[list[dict[str, Any] | bytes]]:
    """Six batches of a log where one kind of prior knowledge comes up (`mixed`: all)."""
    rng = random.Random(seed)
    plain: list[dict[str, Any] | bytes] = list(realistic_events(600, seed, span_days=40))
    first_half = plain[:300]

    def voids_of(events: list[dict[str, Any] | bytes]) -> list[dict[str, Any] | bytes]:
        return [
            make_event(
                "event.voided", e["unit_id"], e["occurred_at"], attributes={"voids": e["event_id"]}
            )
            for e in events
            if isinstance(e, dict)
        ]

    # Each record's statuses in time order, so that its history spans batches.
    certifications: list[dict[str, Any] | bytes] = sorted(
        certification_and_voids([]), key=lambda e: str(e["occurred_at"])
    )
    if kind == "duplicates":  # counted in an earlier batch, posted again
        log = plain + rng.sample(first_half, 100)
    elif kind == "voids_after":  # voids of events an earlier batch counted
        log = plain + voids_of(rng.sample(first_half, 100))
    elif kind == "voids_first":  # voids whose targets come in a later batch
        log = voids_of(rng.sample(plain[300:], 100)) + plain
    elif kind == "certifications":  # a record's history, over several batches
        log = certifications
    else:
        log = [*plain, *certifications, *voids_of(rng.sample(plain, 150))]
        rng.shuffle(log)
        log += rng.sample(plain, 200)
        log += [b"{not json", b"", make_event("cccd.issued", "no-such-unit", at("2025-12-01"))]
        rng.shuffle(log)
    size = -(-len(log) // 6)
    return [log[i : i + size] for i in range(0, len(log), size)]


def as_records(batches: list[list[dict[str, Any] | bytes]]) -> list[list[Record]]:
    offsets = [0, 0]
    out = []
    for batch in batches:
        records = []
        for n, item in enumerate(batch):
            partition = n % 2
            value = item if isinstance(item, bytes) else json.dumps(item).encode()
            records.append(
                Record("events", partition, offsets[partition], 1_766_000_000_000, None, value)
            )
            offsets[partition] += 1
        out.append(records)
    return out


async def state(store: Store) -> dict[str, list[dict[str, Any]]]:
    def plain(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k != "at"}  # the ledger's write time

    return {
        name: [plain(doc) async for doc in collection.find({}).sort("_id", 1)]
        for name, collection in (
            ("totals", store.totals),
            ("ledger", store.ledger),
            ("subjects", store.subjects),
            ("offsets", store.offsets),
        )
    }


class AskedStore(Store):
    """A store that counts the ids (events' and subjects') it is asked about."""

    asked = 0

    async def known(
        self,
        ids: Iterable[str],
        subjects_of: Callable[[Known], Iterable[str]] = lambda _: (),
        session: Any = None,
    ) -> Known:
        ids = list(ids)
        self.asked += len(ids)

        def subjects_asked(partial: Known) -> list[str]:
            subject_ids = list(subjects_of(partial))
            self.asked += len(subject_ids)
            return subject_ids

        return await super().known(ids, subjects_asked, session)


async def apply_all(
    client: AsyncMongoClient[Any], batches: list[list[Record]], prepared: bool, filtered: bool
) -> tuple[dict[str, list[dict[str, Any]]], int, int, int]:
    catalog = load_catalog(json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text()))
    store = AskedStore(client, f"prepared_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    await store.upsert_units(catalog)

    async def count_letters(letters: Sequence[DeadLetter]) -> None:
        pass

    applier = BatchApplier(store, CatalogCache(store), count_letters)
    used = folded_again = 0
    try:
        for number, batch in enumerate([*batches, batches[2]]):  # the last one redelivered
            if filtered and number in (0, 3):
                # A replay's applier, and at the fourth batch a resumed replay's: its filter
                # starts from what the store holds.
                recorded = await recorded_in(store)
                applier = BatchApplier(store, CatalogCache(store), count_letters, recorded=recorded)
            ahead = await applier.prepare(batch) if prepared else None
            report = await applier.apply(batch, ahead)
            if ahead is not None:
                used += report.outcome is ahead.outcome
                folded_again += report.outcome is not ahead.outcome
        return await state(store), used, folded_again, store.asked
    finally:
        await client.drop_database(store.db.name)


@pytest.mark.parametrize(
    "kind", ["duplicates", "voids_after", "voids_first", "certifications", "mixed"]
)
def test_a_prepared_batch_counts_what_an_unprepared_one_counts(
    infra: LocalStack, kind: str
) -> None:
    batches = as_records(log_of_trouble(kind, seed=3))

    async def scenario() -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
        try:
            unprepared, _, _, all_asked = await apply_all(client, batches, False, False)
            prepared, used, folded_again, _ = await apply_all(client, batches, True, False)
            filtered, _, _, filtered_asked = await apply_all(client, batches, True, True)
        finally:
            await client.close()
        assert prepared == unprepared
        assert filtered == unprepared
        assert unprepared["totals"] and len(unprepared["ledger"]) == len(batches)
        # The first batch finds nothing known and takes the fold made ahead; later ones meet
        # what earlier batches wrote, and are folded again.
        assert used >= 1 and folded_again >= 1
        # The filter passes on the ids the store holds, and not the rest.
        assert 0 < filtered_asked < all_asked / 2

    asyncio.run(scenario())


def test_a_fold_made_ahead_holds_only_for_its_tree_its_events_and_nothing_known() -> None:
    data = json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text())
    tree, other_tree = UnitTree(load_catalog(data), 1), UnitTree(load_catalog(data), 1)
    events = [Event.model_validate(e) for e in realistic_events(20, 1, span_days=3)]
    ahead = Prepared({}, tree, events, fold(events, Known(), tree))
    assert ahead.holds_for(tree, list(events), Known())
    assert not ahead.holds_for(other_tree, events, Known())  # an equal tree, not the same one
    assert not ahead.holds_for(tree, events[:-1], Known())
    copies = [Event.model_validate(e.model_dump()) for e in events]
    assert not ahead.holds_for(tree, copies, Known())  # equal events, not the same ones
    counted = CountedEvent(events[0].key, UNITS[0], LocalDate(2025, 1, 1), {})
    assert not ahead.holds_for(tree, events, Known(counted={counted.key: counted}))
    assert not ahead.holds_for(tree, events, Known(voided=frozenset({events[1].key})))
    subject = SubjectState("dossier-1", [])
    assert not ahead.holds_for(tree, events, Known(subjects={"dossier-1": subject}))
