"""`as_of` is a promise that everything accepted before it is in the totals: it must not be
given while any partition of the topic has not been read, even one the aggregator never saw."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from deploy.local.stack import LocalStack
from shared.adapters.mongo import PartitionBatch, Store, connect
from shared.domain.ledger import Outcome
from shared.domain.units import Unit, UnitLevel


async def test_as_of_waits_for_every_partition(infra: LocalStack) -> None:
    client = connect(infra.mongodb_uri, app_name="test")
    store = Store(client, f"test_as_of_{uuid.uuid4().hex[:8]}")
    topic = "events"
    noon = datetime(2026, 11, 23, 5, tzinfo=UTC)
    try:
        # Partition 0 is applied; partitions 1-3 have not been read at all.
        async with client.start_session() as session:
            await store.apply(
                Outcome(), [PartitionBatch(topic, 0, 0, 9)], {0: noon}, session=session
            )
        assert await store.as_of(topic, 4) is None
        # The aggregator's heartbeat finds 1 and 2 caught up (2 never had a record); 3 lags.
        await store.mark_caught_up(topic, {1: noon + timedelta(seconds=5), 2: noon}, 4)
        assert await store.partition_count(topic, 1) == 4
        assert await store.as_of(topic, 4) is None
        await store.mark_caught_up(topic, {3: noon - timedelta(seconds=3)}, 4)
        assert await store.as_of(topic, 4) == noon - timedelta(seconds=3)
        # The heartbeat never moves a partition's time backwards.
        await store.mark_caught_up(topic, {3: noon - timedelta(seconds=60)}, 4)
        assert await store.as_of(topic, 4) == noon - timedelta(seconds=3)
        await store.mark_caught_up(topic, {3: noon + timedelta(seconds=1)}, 4)
        assert await store.as_of(topic, 4) == noon
    finally:
        await client.drop_database(store.db.name)
        await client.close()


async def test_the_totals_version_moves_with_every_write_of_the_totals_only(
    infra: LocalStack,
) -> None:
    """`Position.version` (what the progress read remembers totals by) changes with a batch
    and a reorganisation, not with the heartbeat's `as_of`."""
    client = connect(infra.mongodb_uri, app_name="test")
    store = Store(client, f"test_version_{uuid.uuid4().hex[:8]}")
    topic = "events"
    noon = datetime(2026, 11, 23, 5, tzinfo=UTC)
    try:
        empty = (await store.position(topic, 4)).version
        async with client.start_session() as session:
            await store.apply(
                Outcome(), [PartitionBatch(topic, 0, 0, 9)], {0: noon}, session=session
            )
        applied = (await store.position(topic, 4)).version
        assert applied != empty
        await store.mark_caught_up(topic, {p: noon for p in range(4)}, 4)
        caught_up = await store.position(topic, 4)
        assert caught_up.as_of == noon and caught_up.version == applied
        unit = Unit("u", "U", UnitLevel.COMMUNE, None)
        await store.reorganise(unit, [], [], topic, 4)
        assert (await store.position(topic, 4)).version not in (empty, applied)
    finally:
        await client.drop_database(store.db.name)
        await client.close()
