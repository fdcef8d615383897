"""MongoDB for security: rate-limit counters shared by every instance, the admin audit log, and
the optional fields of a token (expiry, its own rate limit).

Kept beside `Store` (whose `tokens` collection it extends, never replaces) so the token
document's layout stays where it is defined: `Store.create_token` writes a token, and
`set_token_policy` adds what is optional to it before the token is handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from shared.adapters.mongo import Document, Store, hash_token
from shared.domain.access import Principal
from shared.domain.ratelimit import UNLIMITED, Window, granted, lease_size, window_at

AUDIT_DETAIL_ITEMS = 100


class SecurityStore:
    def __init__(self, store: Store) -> None:
        self.tokens = store.tokens
        # One node acknowledging is enough for a counter: a failover may forget a few counts
        # of the current window, and waiting for a majority would slow every request.
        self.rate_limits = store.db.get_collection("rate_limits", write_concern=WriteConcern(w=1))
        self.audit = store.db["audit"]

    async def ensure_indexes(self) -> None:
        # Windows past their end are deleted by the server; nothing else cleans them.
        await self.rate_limits.create_index("expires", expireAfterSeconds=0)
        await self.audit.create_index([("at", -1)])

    # -- rate limits -----------------------------------------------------------------------

    async def count_requests(self, key: str, window: Window, n: int = 1) -> int:
        """Add `n` requests of `key` to `window`'s count, atomically; returns the count after.

        Not one `$inc` upsert: when concurrent upserts race to create the document, the local
        server applies every increment but may return no document to some of them, and then
        neither retrying (counted twice) nor re-reading (another's count) is exact. A plain
        `$inc` on an existing document returns it or matched nothing (so nothing was counted
        and a retry is safe); the window's document is created once, in between."""
        doc_id = f"{key}:{window.index}"
        for _ in range(3):
            doc = await self.rate_limits.find_one_and_update(
                {"_id": doc_id},
                {"$inc": {"n": n}},
                projection={"n": 1},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return int(doc["n"])
            with contextlib.suppress(DuplicateKeyError):
                await self.rate_limits.insert_one(
                    {"_id": doc_id, "n": 0, "expires": datetime.fromtimestamp(window.ends_at, UTC)}
                )
        raise RuntimeError(f"rate-limit counter {doc_id} could not be created")

    # -- tokens ----------------------------------------------------------------------------

    async def set_token_policy(
        self, token: str, *, expires_at: datetime | None, rate_limit: int | None
    ) -> None:
        fields: Document = {}
        if expires_at is not None:
            fields["expires_at"] = expires_at
        if rate_limit is not None:
            fields["rate_limit"] = rate_limit
        if fields:
            await self.tokens.update_one({"_id": hash_token(token)}, {"$set": fields})

    # -- audit -----------------------------------------------------------------------------

    async def record(
        self,
        actor: Principal,
        action: str,
        target: str,
        details: Mapping[str, Any],
        client: str | None,
    ) -> None:
        """Who did what, when, from where. `details` must never hold a secret: callers pass
        what was asked for (a token's name, role and scope), never the token."""
        await self.audit.insert_one(
            {
                "at": datetime.now(UTC),
                "actor": actor.name,
                "role": actor.role.value,
                "client": client,
                "action": action,
                "target": target,
                "details": {key: _bounded(value) for key, value in details.items()},
            }
        )

    async def audit_entries(self, limit: int) -> list[Document]:
        cursor = self.audit.find({}, {"_id": 0}).sort("at", -1).limit(limit)
        return [doc async for doc in cursor]


def _bounded(value: Any) -> Any:
    # A batch of 10,000 targets is recorded by count and its first items: the log says what
    # was done without becoming a second copy of the data.
    if isinstance(value, list) and len(value) > AUDIT_DETAIL_ITEMS:
        return {"count": len(value), "first": value[:AUDIT_DETAIL_ITEMS]}
    return value


@dataclass(slots=True)
class _Lease:
    """What this process may still admit for one key in one window."""

    window: int
    left: int = 0
    exhausted: bool = False  # the shared count reached the limit: refuse until the window ends
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    """Fixed-window limits per key, shared by every instance through MongoDB: each process
    claims blocks of the window's limit (`lease_size`: 1 for limits under 40, so small limits
    are exact) with one atomic `$inc`, and admits requests from its block without a round trip.
    The limit is never exceeded across instances; a process may refuse up to one block early
    while another holds unused requests. Once the limit is reached, refusals cost nothing
    until the window ends."""

    def __init__(
        self, security: SecurityStore, window_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._security = security
        self._window_s = window_s
        self._clock = clock
        self._leases: dict[str, _Lease] = {}

    def _lease(self, key: str, window: Window) -> _Lease:
        lease = self._leases.get(key)
        if lease is None or lease.window != window.index:
            if len(self._leases) > 10_000:
                self._leases = {
                    k: held for k, held in self._leases.items() if held.window == window.index
                }
            lease = self._leases[key] = _Lease(window.index)
        return lease

    async def retry_after(self, key: str, limit: int) -> int | None:
        """Admit a request of `key`: None if within `limit`, else seconds until it may retry."""
        if limit == UNLIMITED:
            return None
        now = self._clock()
        window = window_at(now, self._window_s)
        lease = self._lease(key, window)
        # One claim at a time per key: concurrent requests wait for it instead of each
        # claiming a block of its own (which would waste the limit).
        async with lease.lock:
            if lease.left == 0 and not lease.exhausted:
                claim = lease_size(limit)
                count = await self._security.count_requests(key, window, claim)
                lease.left = granted(limit, count, claim)
                lease.exhausted = count >= limit
            if lease.left > 0:
                lease.left -= 1
                return None
        return window.retry_after(now)
