"""The progress read's memos: range totals kept while the totals' version stays, a campaign's
targets while their version does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, cast

from shared.adapters.mongo import Position
from shared.domain.campaigns import Target
from shared.views import RangeTotalsMemo, TargetsMemo

RANGES = ((date(2025, 1, 1), date(2025, 10, 1)), (date(2025, 9, 25), date(2025, 10, 1)))


class CountingStore:
    def __init__(self) -> None:
        self.reads = 0

    async def range_totals_many(
        self, unit_ids: Sequence[str], ranges: Sequence[tuple[date, date]]
    ) -> list[dict[str, dict[str, int]]]:
        self.reads += 1
        return [{u: {"x": self.reads} for u in unit_ids} for _ in ranges]


async def test_read_once_per_version_and_units() -> None:
    store = CountingStore()
    memo = RangeTotalsMemo(cast(Any, store), max_entries=2)
    at = Position(datetime(2025, 10, 1, tzinfo=UTC), ("", ((0, 10, 0),)))
    first = await memo.get(at, ["a", "b"], RANGES)
    assert await memo.get(at, ["a", "b"], RANGES) == first and store.reads == 1
    # Another unit's progress is its own read; a newer heartbeat (as_of alone) changes nothing.
    await memo.get(at, ["b", "c"], RANGES)
    later = Position(datetime(2025, 10, 2, tzinfo=UTC), at.version)
    assert await memo.get(later, ["a", "b"], RANGES) == first and store.reads == 2
    # A batch moved an offset: read again.
    moved = Position(later.as_of, ("", ((0, 11, 0),)))
    assert (await memo.get(moved, ["a", "b"], RANGES))[0]["a"]["x"] == 3
    # A rebuild's switch (another generation, same offsets): read again.
    switched = Position(later.as_of, ("r2", ((0, 11, 0),)))
    await memo.get(switched, ["a", "b"], RANGES)
    assert store.reads == 4


class TargetsStore:
    def __init__(self) -> None:
        self.version = 0
        self.targets = [Target("p", "eid.activated", Decimal(10))]
        self.reads = 0

    async def targets_version(self, campaign_id: str) -> int:
        return self.version

    async def targets_of(self, campaign_id: str) -> list[Target]:
        self.reads += 1
        return list(self.targets)


async def test_targets_are_read_again_once_put() -> None:
    store = TargetsStore()
    memo = TargetsMemo(cast(Any, store))
    assert await memo.get("c") == await memo.get("c") == store.targets and store.reads == 1
    store.targets = [*store.targets, Target("d", "eid.activated", Decimal(5))]
    store.version += 1
    assert await memo.get("c") == store.targets and store.reads == 2
    await memo.get("other")
    assert store.reads == 3
