"""A batch whose transaction is redone (a write conflict, a failed commit, the database gone
for a moment) sends each of its dead letters once, not once per attempt."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from deploy.local.stack import REPO, LocalStack
from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import Store, metric_key
from shared.aggregation import BatchApplier, DeadLetter
from shared.domain.units import load_catalog
from tests.conftest import Record


class StoreThatConflicts(Store):
    """The real store, whose writes fail with a write conflict the first `conflicts` times:
    what a concurrent writer of the same documents causes, so the driver redoes the whole
    transaction."""

    def __init__(self, *args: Any, conflicts: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conflicts = conflicts

    async def apply(self, *args: Any, **kwargs: Any) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise OperationFailure(
                "WriteConflict", 112, {"errorLabels": ["TransientTransactionError"]}
            )
        await super().apply(*args, **kwargs)


def test_a_redone_batch_sends_each_dead_letter_once(infra: LocalStack) -> None:
    db = f"letters_{uuid.uuid4().hex[:8]}"
    catalog_data = json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text("utf-8"))
    good = {
        "event_id": "good-1",
        "type": "cccd.issued",
        "unit_id": "dong-xoai",
        "occurred_at": "2025-01-01T10:00:00+07:00",
    }
    records = [
        Record("events", 0, 0, 1_735_700_000_000, b"bad-1", b"{not json"),
        Record("events", 0, 1, 1_735_700_000_000, b"good-1", json.dumps(good).encode()),
        Record("events", 0, 2, 1_735_700_000_000, b"bad-2", b""),
    ]
    sent: list[tuple[str, int, int]] = []

    async def sink(letters: Sequence[DeadLetter]) -> None:
        sent.extend((x.record.topic, x.record.partition, x.record.offset) for x in letters)

    async def scenario() -> tuple[int, dict[str, Any] | None]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri)
        try:
            store = StoreThatConflicts(client, db, conflicts=2)
            await store.ensure_indexes()
            await store.upsert_units(load_catalog(catalog_data))
            applier = BatchApplier(store, CatalogCache(store), sink)
            report = await applier.apply(records)
            assert store.conflicts == 0  # the transaction did run three times
            # Redelivered after a restart of the consumer, say: nothing counted or sent again.
            again = await applier.apply(records)
            assert again.skipped_already_applied == len(records)
            total = await store.totals.find_one({"u": "binh-phuoc"})
            return report.dead_letters, total
        finally:
            await client.close()

    letters, province = asyncio.run(scenario())
    assert letters == 2
    assert sent == [("events", 0, 0), ("events", 0, 2)]
    assert province is not None and province["t"][metric_key("cccd.issued")] == 1
