"""Ingest's in-process memory of event ids: the recent ones, and the ones in flight.

The store's `accepted` collection is the durable answer to "was this id accepted?", but asking
it costs about half a millisecond per id it finds (measured on the local server), so a client
re-posting a large batch would make every request slow. Retries come soon after the original,
so a bounded memory of the ids this process accepted answers most of them; the store answers
the rest (another replica's ids, or ids older than the memory).

Two requests carrying the same new id at the same moment would both find it unknown and both
publish it; the aggregator would still count it once, but the response would be wrong and the
log would grow. `InFlightIds` makes the second wait for the first, then look again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class RecentIds:
    """The last `capacity` ids remembered, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def remember(self, ids: Iterable[str]) -> None:
        for event_id in ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class InFlightIds:
    """Claims on ids while a request publishes them; a second claim on any of them waits."""

    def __init__(self) -> None:
        self._owners: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._owners)

    @asynccontextmanager
    async def claim(self, ids: Iterable[str]) -> AsyncIterator[None]:
        wanted = set(ids)
        while True:
            busy = {self._owners[event_id] for event_id in wanted if event_id in self._owners}
            if not busy:
                break
            # Wait without holding anything, so two requests can never wait on each other.
            await asyncio.wait(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for event_id in wanted:
            self._owners[event_id] = done
        try:
            yield
        finally:
            for event_id in wanted:
                if self._owners.get(event_id) is done:
                    del self._owners[event_id]
            done.set_result(None)
