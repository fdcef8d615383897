"""Aborting the transaction a crashed aggregator left open.

A process killed mid-transaction leaves its transaction holding the documents it wrote until
the server's transaction lifetime runs out (`transactionLifetimeLimitSeconds`, 60 s by
default). Every batch writes its units' district and province totals, so meanwhile every
other batch, on any partition, conflicts and waits: a crash stalls the whole pipeline for
that long.

So each aggregator records the session it runs its transactions on, with a beat it raises
every second. A record whose beat has not moved for `stale_after_s` (timed by the observer's
own monotonic clock, so clocks on different hosts never need to agree) belongs to a process
that is gone or stalled, and its session is killed: the server aborts its open transaction at
once. Killing a stalled but living process's session is safe, only slower for it: its
transaction aborts and is redone, and the offsets stored with the totals make a redo count
nothing twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger(__name__)

COLLECTION = "transaction_sessions"


class TransactionSessions:
    def __init__(
        self,
        db: AsyncDatabase[Any],
        *,
        stale_after_s: float,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records = db[COLLECTION]
        self._admin = db.client.admin
        self.instance = instance or uuid.uuid4().hex
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._session_id: Mapping[str, Any] | None = None
        # Other instances' beats as last read, and when (our clock) each was first seen so.
        self._seen: dict[str, tuple[int, float]] = {}

    async def announce(self, session_id: Mapping[str, Any]) -> None:
        """Record the session the next transaction runs on, before it starts (a write only
        when the driver hands out a different session than last time)."""
        if session_id == self._session_id:
            return
        await self._beat(session_id)
        self._session_id = session_id

    async def _beat(self, session_id: Mapping[str, Any]) -> None:
        await self._records.update_one(
            {"_id": self.instance},
            {"$set": {"lsid": dict(session_id)}, "$inc": {"beat": 1}},
            upsert=True,
        )

    async def beat_and_reap(self) -> list[str]:
        """Raise this instance's beat; kill the sessions of instances whose beat stood still
        for `stale_after_s`. Returns the instances reaped."""
        if self._session_id is not None:
            await self._beat(self._session_id)
        now = self._clock()
        reaped: list[str] = []
        present: set[str] = set()
        async for record in self._records.find({"_id": {"$ne": self.instance}}):
            instance, beat = record["_id"], int(record.get("beat", 0))
            present.add(instance)
            last = self._seen.get(instance)
            if last is None or last[0] != beat:
                self._seen[instance] = (beat, now)
                continue
            if now - last[1] < self._stale_after_s:
                continue
            await self._admin.command({"killSessions": [record["lsid"]]})
            # Only if it did not beat meanwhile: a stalled process that woke keeps its record.
            await self._records.delete_one({"_id": instance, "beat": beat})
            log.warning(
                "aborted the open transaction of aggregator %s: no beat for %.1f s",
                instance,
                now - last[1],
            )
            reaped.append(instance)
        for instance in set(self._seen) - present | set(reaped):
            self._seen.pop(instance, None)
        return reaped

    async def leave(self) -> None:
        """On a clean stop: nothing to abort for this instance any more."""
        await self._records.delete_one({"_id": self.instance})
