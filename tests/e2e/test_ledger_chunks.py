"""A batch bigger than one ledger document holds, on the real database: its entries are split
over documents of `LEDGER_CHUNK`, and every counted and voided id is still found."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bson import encode

from deploy.local.stack import LocalStack
from shared.adapters.mongo import LEDGER_CHUNK, PartitionBatch, Store, connect
from shared.domain.ledger import CountedEvent, Outcome
from shared.domain.periods import LocalDate


async def test_a_batch_of_many_ledger_documents_is_remembered_whole(infra: LocalStack) -> None:
    client = connect(infra.mongodb_uri, app_name="test")
    store = Store(client, f"test_ledger_{uuid.uuid4().hex[:8]}")
    await store.ensure_indexes()
    counted_ids = [f"event-{n:06d}-{'x' * 100}" for n in range(2 * LEDGER_CHUNK + 1)]
    voided_ids = [f"voided-{n:06d}-{'y' * 110}" for n in range(LEDGER_CHUNK + 1)]
    outcome = Outcome(
        counted=[
            CountedEvent(event_id, "dong-xoai", LocalDate(2025, 3, 1 + n % 28), {"cccd.issued": 1})
            for n, event_id in enumerate(counted_ids)
        ],
        newly_voided=voided_ids,
    )
    try:
        async with client.start_session() as session:
            await session.with_transaction(
                lambda s: store.apply(
                    outcome,
                    [PartitionBatch("events", 2, 40, 40 + len(counted_ids))],
                    {2: datetime.now(UTC)},
                    s,
                )
            )
        documents = [doc async for doc in store.ledger.find({}).sort("_id", 1)]
        assert [doc["_id"] for doc in documents] == [
            "events:2:40",
            "events:2:40+1",
            "events:2:40+2",
        ]
        assert [len(doc["ids"]) for doc in documents] == [LEDGER_CHUNK, LEDGER_CHUNK, 1]
        assert [len(doc["voided"]) for doc in documents] == [LEDGER_CHUNK, 1, 0]
        # Each far below MongoDB's 16 MB limit, with ids near the contract's 128 characters.
        assert max(len(encode(doc)) for doc in documents) < 4 << 20

        # A later batch asking about ids from every chunk, and one the ledger never saw.
        asked = [counted_ids[0], counted_ids[LEDGER_CHUNK + 7], counted_ids[-1]]
        asked += [voided_ids[3], voided_ids[-1], "never-seen"]
        known = await store.known(asked)
        assert sorted(known.counted) == sorted(asked[:3])
        assert known.counted[counted_ids[-1]].day == LocalDate(
            2025, 3, 1 + (len(counted_ids) - 1) % 28
        )
        assert known.counted[counted_ids[-1]].increments == {"cccd.issued": 1}
        assert known.voided == frozenset(asked[3:5])
    finally:
        await client.drop_database(store.db.name)
        await client.close()
