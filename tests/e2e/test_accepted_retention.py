"""Ingest's memory of accepted ids may be given a window (ACCEPTED_RETENTION_DAYS): a TTL
index. Totals never depend on it: an id forgotten by ingest is still in the ledger."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from deploy.local.stack import LocalStack
from shared.adapters.mongo import ACCEPTED_TTL_INDEX, Store
from tests.conftest import at, make_event, running_pipeline


def _ttl(client: MongoClient[Any], db: str) -> int | None:
    for index in client[db]["accepted"].list_indexes():
        if index["name"] == ACCEPTED_TTL_INDEX:
            return int(index["expireAfterSeconds"])
    return None


def test_the_window_is_set_changed_and_removed_in_place(infra: LocalStack) -> None:
    db = f"retention_{uuid.uuid4().hex[:8]}"

    async def set_window(days: int) -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri)
        try:
            await Store(client, db).keep_accepted_for(days)
        finally:
            await client.close()

    with MongoClient(infra.mongodb_uri) as client:
        asyncio.run(set_window(0))
        assert _ttl(client, db) is None
        asyncio.run(set_window(30))
        assert _ttl(client, db) == 30 * 86_400
        asyncio.run(set_window(30))  # again: nothing to change
        asyncio.run(set_window(7))
        assert _ttl(client, db) == 7 * 86_400
        asyncio.run(set_window(0))
        assert _ttl(client, db) is None


def test_an_event_reposted_after_ingest_forgot_it_is_counted_once(infra: LocalStack) -> None:
    # No memory in the process either, so the database's record is all ingest has.
    env = {"ACCEPTED_RETENTION_DAYS": "30", "INGEST_RECENT_IDS": "0"}
    with running_pipeline(infra, env) as line, MongoClient(infra.mongodb_uri) as client:
        db = client[line.env["MONGODB_DB"]]
        assert _ttl(client, line.env["MONGODB_DB"]) == 30 * 86_400
        event = make_event("eid.activated", "bu-dang-minh-hung", at("2024-03-01"))
        first = line.post([event])
        assert first.json() == {"accepted": 1, "duplicates": 0}
        # Remembered by its id within its unit (contract: events belong to their unit).
        key = f"{event['unit_id']}/{event['event_id']}"
        record = db["accepted"].find_one({"_id": key})
        assert record is not None and record["at"] is not None  # what the index expires by
        assert line.post([event]).json() == {"accepted": 0, "duplicates": 1}

        db["accepted"].delete_one({"_id": key})  # what the TTL monitor does
        again = line.post([event])
        assert again.json() == {"accepted": 1, "duplicates": 0}  # published a second time
        line.wait_reflected()
        for unit in ("bu-dang-minh-hung", "bu-dang", "binh-phuoc"):
            assert line.total(unit, "eid.activated", "day:2024-03-01")["value"] == 1
