"""Ingest's in-process memory of ids: bounded, and two requests never publish one id twice."""

from __future__ import annotations

import asyncio

from shared.dedup import InFlightIds, RecentIds


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentIds(3)
    recent.remember(["a", "b", "c"])
    recent.remember(["a", "d"])  # "a" is fresh again; "b" is now the oldest
    assert len(recent) == 3
    assert "b" not in recent
    assert all(event_id in recent for event_id in ("a", "c", "d"))


async def test_a_claim_on_an_id_in_flight_waits_for_the_first_to_finish() -> None:
    in_flight = InFlightIds()
    order: list[str] = []
    first_holds = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with in_flight.claim(["x", "y"]):
            first_holds.set()
            await release_first.wait()
            order.append("first done")

    async def second() -> None:
        await first_holds.wait()
        async with in_flight.claim(["y", "z"]):
            order.append("second holds")

    async def disjoint() -> None:
        await first_holds.wait()
        async with in_flight.claim(["w"]):
            order.append("disjoint holds")

    tasks = [asyncio.create_task(job()) for job in (first, second, disjoint)]
    await first_holds.wait()
    await asyncio.sleep(0.05)
    assert order == ["disjoint holds"]  # "second" is still waiting for "y"
    release_first.set()
    await asyncio.gather(*tasks)
    assert order == ["disjoint holds", "first done", "second holds"]
    assert len(in_flight) == 0
