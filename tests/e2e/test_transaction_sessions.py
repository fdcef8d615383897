"""A crashed aggregator's open transaction is aborted by a living one within seconds, instead of
holding its documents (and so every other batch) for the server's transaction lifetime."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from deploy.local.stack import LocalStack
from shared.adapters.sessions import TransactionSessions

STALE_AFTER_S = 1.0
# The local database aborts an abandoned transaction after 15 s (deploy/local/secantusd.py).
TRANSACTION_LIFETIME_S = 15.0


async def _write_in_transaction(client: AsyncMongoClient[Any], db: str, value: int) -> float:
    """Seconds it took to commit a transaction that sets the shared document."""
    started = time.monotonic()
    async with client.start_session() as session:

        async def set_value(session: Any) -> None:
            await client[db]["totals"].update_one(
                {"_id": "province"}, {"$set": {"v": value}}, upsert=True, session=session
            )

        await session.with_transaction(set_value)
    return time.monotonic() - started


async def _beat_until(
    sessions: TransactionSessions, done: asyncio.Future[Any], reaped: list[str]
) -> None:
    while not done.done():
        reaped += await sessions.beat_and_reap()
        await asyncio.sleep(0.2)


def test_a_dead_instances_transaction_is_aborted_and_a_live_one_is_left_alone(
    infra: LocalStack,
) -> None:
    db = f"sessions_{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        crashed = AsyncMongoClient(infra.mongodb_uri)
        living = AsyncMongoClient(infra.mongodb_uri)
        try:
            dead = TransactionSessions(crashed[db], stale_after_s=STALE_AFTER_S, instance="dead")
            alive = TransactionSessions(living[db], stale_after_s=STALE_AFTER_S, instance="alive")
            await living[db]["totals"].insert_one({"_id": "province", "v": 0})
            # The instance that will crash announces its session and opens a transaction
            # that writes the province total, then never commits nor beats again.
            session = crashed.start_session()
            await dead.announce(session.session_id)
            await dead.beat_and_reap()
            await session.start_transaction()
            await crashed[db]["totals"].update_one(
                {"_id": "province"}, {"$set": {"v": -1}}, session=session
            )
            # A living instance that beats all along is never taken for dead by the survivor.
            bystander_client = AsyncMongoClient(infra.mongodb_uri)
            bystander = TransactionSessions(
                bystander_client[db], stale_after_s=STALE_AFTER_S, instance="bystander"
            )
            async with bystander_client.start_session() as bystander_session:
                await bystander.announce(bystander_session.session_id)

            reaped: list[str] = []
            written: asyncio.Future[float] = asyncio.ensure_future(
                _write_in_transaction(living, db, 7)
            )
            bystander_reaped: list[str] = []
            beating = asyncio.gather(
                _beat_until(alive, written, reaped),
                _beat_until(bystander, written, bystander_reaped),
            )
            took = await asyncio.wait_for(written, TRANSACTION_LIFETIME_S * 2)
            await beating

            assert reaped == ["dead"] or bystander_reaped == ["dead"], (reaped, bystander_reaped)
            assert "bystander" not in reaped and "alive" not in bystander_reaped
            # Well before the server's lifetime would have let it through.
            assert took < TRANSACTION_LIFETIME_S - 5, took
            document = await living[db]["totals"].find_one({"_id": "province"})
            assert document is not None and document["v"] == 7
            # The dead instance's session can commit nothing any more.
            with pytest.raises(PyMongoError):
                await session.commit_transaction()
            remaining = {r["_id"] async for r in living[db]["transaction_sessions"].find()}
            # The survivor never ran a transaction of its own, so it has nothing to announce.
            assert remaining == {"bystander"}
            await bystander.leave()
            await bystander_client.close()
        finally:
            await crashed.close()
            await living.close()

    asyncio.run(scenario())


def test_a_stalled_instance_that_beats_again_keeps_its_record(infra: LocalStack) -> None:
    db = f"sessions_{uuid.uuid4().hex[:8]}"
    now = [0.0]

    async def scenario() -> None:
        client = AsyncMongoClient(infra.mongodb_uri)
        try:
            slow = TransactionSessions(client[db], stale_after_s=5, instance="slow")
            watcher = TransactionSessions(
                client[db], stale_after_s=5, instance="watcher", clock=lambda: now[0]
            )
            async with client.start_session() as first, client.start_session() as second:
                await slow.announce(first.session_id)
                await watcher.announce(second.session_id)
            assert await watcher.beat_and_reap() == []  # first sight of "slow"
            now[0] = 4.9
            assert await watcher.beat_and_reap() == []  # still within the bound
            await slow.beat_and_reap()  # it beats again: the wait starts over
            now[0] = 9.0
            assert await watcher.beat_and_reap() == []
            now[0] = 14.0
            assert await watcher.beat_and_reap() == ["slow"]
            remaining = {r["_id"] async for r in client[db]["transaction_sessions"].find()}
            assert remaining == {"watcher"}
            # Reaped and gone: it is not reaped a second time.
            now[0] = 30.0
            assert await watcher.beat_and_reap() == []
        finally:
            await client.close()

    asyncio.run(scenario())
