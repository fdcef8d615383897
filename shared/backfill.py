"""Backfill: a new or changed indicator counted over the whole log, past events included
(contract, "Indicators are data").

An indicator defined or changed at registry version N (its `since`) is `backfilling` until the
served generation was counted from a registry at least that new (`indicator_status`). The
backfill is a rebuild (`shared.replay.rebuild`): the whole log replayed through the
aggregator's own code, with the stored registry, into a new generation, while the live
aggregator goes on counting everything in the served one; the switch hands over in one
transaction, as every rebuild does, so no event is counted twice or missed. A whole
generation rather than the indicator's own fields: the ledger then keeps what each past event
contributed to the new indicator, so a later void of it takes that back too, and the served
totals stay one consistent count.

Each aggregator runs a `Backfiller` as a task; a lease in `meta` (`_id: "backfill"`) lets one
of them at a time do the work. The lease only spares the machine a second replay: two
backfills at once would both be exact, and the later switch would be refused or be as new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError

from shared.adapters.mongo import Store
from shared.adapters.registry_store import RegistryCache
from shared.domain.registry import needs_backfill
from shared.replay import CatalogChanged, RegistryChanged, rebuild
from shared.settings import Settings

log = logging.getLogger("backfill")

LEASE_ID = "backfill"
# Renewed after every replayed batch: a backfiller that dies leaves it for this long.
LEASE_S = 60.0
# Records per replay transaction inside the aggregator's process: a batch is folded in the
# event loop, and the live consumer's heartbeats must go on meanwhile.
BATCH_RECORDS = 10_000
# Requests that read the old generation just before the switch finish before it is dropped.
GRACE_S = 10.0


class LeaseLost(RuntimeError):
    """This backfiller's lease expired and another one took it: it must not switch."""


class Backfiller:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: RegistryCache,
        *,
        grace_s: float = GRACE_S,
    ) -> None:
        self._settings = settings.model_copy(
            update={"replay_batch_records": min(settings.replay_batch_records, BATCH_RECORDS)}
        )
        self._store = store
        self._registry = registry
        self._grace_s = grace_s
        self._owner = uuid.uuid4().hex
        self._drops: set[asyncio.Task[None]] = set()

    async def pending(self) -> bool:
        """Whether an indicator waits for the log to be counted for it."""
        registry = await self._registry.fresh(now=True)
        _, counted_from = await self._store.serving()
        return needs_backfill(registry, counted_from)

    async def run_once(self) -> str | None:
        """Backfill if anything waits and no one else is at it; the generation now served, or
        None. A reorganisation or another rebuild switching meanwhile ends this one without a
        switch; the next call starts again from the log's first offset."""
        if not await self.pending():
            return None
        previous = await self._take_lease()
        if previous is None:
            return None
        try:
            unfinished = previous.get("generation")
            if unfinished and unfinished != await self._store.serving_generation():
                # A backfiller that died mid-replay (kill -9) left its generation behind.
                await self._store.drop_generation(str(unfinished))
            old = await self._store.serving_generation()
            try:
                name, stats = await rebuild(
                    self._settings,
                    self._store,
                    keep_old=True,
                    on_generation=self._record,
                    on_batch=self._renew,
                    guard=self._still_mine,
                )
            except (CatalogChanged, RegistryChanged, LeaseLost) as exc:
                log.warning("backfill ended without a switch (%s); starting again", exc)
                return None
            log.warning("backfilled: %d records replayed into %r, now served", stats.records, name)
            task = asyncio.create_task(self._drop_later(old))
            self._drops.add(task)
            task.add_done_callback(self._drops.discard)
            return name
        finally:
            await self._release()

    async def _drop_later(self, generation: str) -> None:
        await asyncio.sleep(self._grace_s)
        try:
            await self._store.drop_generation(generation)
        except Exception:
            log.warning("could not drop generation %r", generation, exc_info=True)

    async def _take_lease(self) -> dict[str, Any] | None:
        """The lease document as it was before this backfiller took it, or None if another
        one holds it."""
        meta = self._store.meta
        now = datetime.now(UTC)
        with contextlib.suppress(DuplicateKeyError):
            await meta.insert_one({"_id": LEASE_ID, "owner": None, "until": now})
        before = await meta.find_one_and_update(
            {"_id": LEASE_ID, "$or": [{"owner": None}, {"until": {"$lt": now}}]},
            {"$set": {"owner": self._owner, "until": now + timedelta(seconds=LEASE_S)}},
            return_document=ReturnDocument.BEFORE,
        )
        return before

    async def _record(self, generation: str) -> None:
        await self._store.meta.update_one(
            {"_id": LEASE_ID, "owner": self._owner}, {"$set": {"generation": generation}}
        )

    async def _renew(self) -> None:
        until = datetime.now(UTC) + timedelta(seconds=LEASE_S)
        await self._store.meta.update_one(
            {"_id": LEASE_ID, "owner": self._owner}, {"$set": {"until": until}}
        )

    async def _still_mine(self, session: AsyncClientSession) -> None:
        """In the switch's transaction: a write to the lease, so that a backfiller taking it
        over (and dropping this one's generation as left behind) conflicts with the switch."""
        until = datetime.now(UTC) + timedelta(seconds=LEASE_S)
        result = await self._store.meta.update_one(
            {"_id": LEASE_ID, "owner": self._owner}, {"$set": {"until": until}}, session=session
        )
        if result.matched_count != 1:
            raise LeaseLost("another backfiller took the lease over")

    async def _release(self) -> None:
        await self._store.meta.update_one(
            {"_id": LEASE_ID, "owner": self._owner},
            {"$set": {"owner": None, "generation": None, "until": datetime.now(UTC)}},
        )


async def backfill_forever(backfiller: Backfiller, every_s: float = 1.0) -> None:
    """Look for indicators waiting for the log every `every_s`, and backfill them."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await backfiller.run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("backfill failed; trying again", exc_info=True)
