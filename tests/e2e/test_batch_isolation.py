"""A batch the database refuses for a reason in its data is split until the refused records are
isolated: they go to the dead-letter topic with the reason, every other record of the batch is
counted exactly once, and only failures of the infrastructure reach the caller (to retry the
batch whole). On the real local database; the refusal is the database's own, for a document
written with a field the store cannot hold."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError

from deploy.local.stack import REPO, LocalStack
from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import Store
from shared.aggregation import BatchApplier, DeadLetter, data_error_reason
from shared.domain.ledger import Outcome
from shared.domain.units import load_catalog
from tests.conftest import Record, at, make_event

POISON = "poison-"


class PickyStore(Store):
    """Writes through the real store, and has the database itself refuse a batch holding a
    poison event: its outcome is first written into a document whose `t` is a number, which
    the database answers with a path error (code 28) inside the same transaction."""

    transactions = 0

    async def apply(self, outcome: Outcome, *rest: Any) -> int:
        session: AsyncClientSession = rest[-1]  # Store.apply's last argument
        self.transactions += 1
        if any(POISON in record.key for record in outcome.counted):
            await self.totals.update_one(
                {"_id": "not-a-month"}, {"$set": {"t": 1}}, upsert=True, session=session
            )
            into_a_number = UpdateOne({"_id": "not-a-month"}, {"$inc": {"t.x": 1}})
            await self.totals.bulk_write([into_a_number], ordered=False, session=session)
        return await super().apply(outcome, *rest)


async def test_refused_records_are_isolated_and_the_rest_is_counted(infra: LocalStack) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri)
    store = PickyStore(client, f"isolation_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    await store.upsert_units(
        load_catalog(json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text()))
    )
    letters: list[DeadLetter] = []

    async def sink(sent: Sequence[DeadLetter]) -> None:
        letters.extend(sent)

    applier = BatchApplier(store, CatalogCache(store), sink)
    events = [make_event("cccd.issued", "dong-xoai", at("2012-02-02")) for _ in range(1000)]
    for position in (17, 400, 401, 999):
        events[position]["event_id"] = f"{POISON}{position}"
    records = [
        Record("events", n % 2, n // 2, 1_766_000_000_000, None, json.dumps(e).encode())
        for n, e in enumerate(events)
    ]
    try:
        report = await applier.apply(records)
        assert report.records == 1000
        assert report.outcome.accepted == 996
        assert report.dead_letters == 4
        assert sorted(json.loads(letter.record.value or b"")["event_id"] for letter in letters) == [
            f"{POISON}{n}" for n in (17, 400, 401, 999)
        ]
        assert all("code 28" in letter.reason for letter in letters), letters[0].reason
        doc = await store.totals.find_one({"_id": "dong-xoai|2012-02"})
        assert doc is not None and doc["t"]["cccd:issued"] == 996
        # Halving: a few transactions per refused record, not one per record of the batch.
        assert store.transactions < 4 * 2 * 11
        # Redelivered whole, the batch counts nothing again and sends no letter twice.
        again = await applier.apply(records)
        assert again.skipped_already_applied == 1000 and len(letters) == 4
        doc = await store.totals.find_one({"_id": "dong-xoai|2012-02"})
        assert doc is not None and doc["t"]["cccd:issued"] == 996
    finally:
        await client.drop_database(store.db.name)
        await client.close()


def test_only_data_errors_are_isolated() -> None:
    refused = BulkWriteError({"writeErrors": [{"code": 2, "errmsg": "overflow"}]})
    assert data_error_reason(refused) is not None
    lost = BulkWriteError({"writeErrors": [{"code": 91, "errmsg": "shutting down"}]})
    assert data_error_reason(lost) is None
    assert data_error_reason(ConnectionError("gone")) is None
