"""Totals over any range of days, read from month documents on the real database: whole months
from the month total, the cut months from their days; checked against a sum of the days, alone
and several ranges in one read."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

from deploy.local.stack import LocalStack
from shared.adapters.mongo import Store, connect


async def test_any_range_equals_the_sum_of_its_days(infra: LocalStack) -> None:
    client = connect(infra.mongodb_uri, app_name="test")
    store = Store(client, f"test_range_{uuid.uuid4().hex[:8]}")
    rng = random.Random(3)
    days = [date(2024, 11, 1) + timedelta(n) for n in range(120)]  # Nov 2024 to Feb 2025
    counts = {day: rng.randint(0, 9) for day in days}
    months: dict[str, dict[str, object]] = {}
    for day, n in counts.items():
        doc = months.setdefault(day.strftime("%Y-%m"), {"t": {"x": 0}, "d": {}})
        doc["t"]["x"] += n  # type: ignore[index]
        doc["d"][f"{day.day:02d}"] = {"x": n}  # type: ignore[index]
    await store.totals.insert_many(
        [{"_id": f"u|{m}", "u": "u", "m": m, "y": m[:4], **doc} for m, doc in months.items()]
    )
    try:
        ranges = [(days[0], days[-1]), (date(2024, 12, 1), date(2024, 12, 31))]
        ranges += [tuple(sorted(rng.sample(days, 2))) for _ in range(60)]
        ranges += [(day, day) for day in rng.sample(days, 10)]
        for first, last in ranges:
            expected = sum(n for day, n in counts.items() if first <= day <= last)
            got = (await store.range_totals(["u"], first, last))["u"].get("x", 0)
            assert got == expected, (first, last)
        assert (await store.range_totals(["u"], None, None))["u"]["x"] == sum(counts.values())
        # Several ranges in one read (months they share read once; an empty range, first >
        # last, counts nothing): each the same as its own `range_totals`, a unit without
        # documents included.
        groups = [ranges[i : i + 3] for i in range(0, len(ranges), 3)]
        groups += [[(days[40], days[39]), (days[10], days[70])]]
        groups += [[(date(2019, 1, 1), date(2025, 12, 31)), (days[5], days[50])]]  # years
        for group in groups:
            many = await store.range_totals_many(["u", "nothing"], group)
            for (first, last), got_all in zip(group, many, strict=True):
                assert got_all == await store.range_totals(["u", "nothing"], first, last)
                expected = sum(n for day, n in counts.items() if first <= day <= last)
                assert got_all["u"].get("x", 0) == expected, (first, last)
    finally:
        await client.drop_database(store.db.name)
        await client.close()
