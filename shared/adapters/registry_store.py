"""The registry in MongoDB: one current document, versioned, and every version kept.

`registry` holds `{"_id": "current", "version": N, "body": <registry JSON>}` and, for every
version ever current, `{"_id": "v<N>", ...}` with when it became so. A change replaces the
current document only if its version is still the one the change was made from, so two admins
editing at once cannot lose each other's change (the later one is refused and retried).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.adapters.mongo import Store
from shared.domain.registry import Registry, current_registry, shipped_registry, use_registry

_CURRENT = "current"


class RegistryStore:
    def __init__(self, store: Store) -> None:
        self.collection = store.db["registry"]

    async def version(self) -> int | None:
        doc = await self.collection.find_one({"_id": _CURRENT}, {"version": 1})
        return None if doc is None else int(doc["version"])

    async def load(self) -> Registry | None:
        doc = await self.collection.find_one({"_id": _CURRENT})
        if doc is None:
            return None
        return Registry.from_json({**doc["body"], "version": doc["version"]})

    async def install_shipped(self) -> bool:
        """Store the shipped registry if none is stored yet (`init`); True if it did."""
        shipped = shipped_registry()
        try:
            await self.collection.insert_one(_document(_CURRENT, shipped))
        except DuplicateKeyError:
            return False
        await self._keep(shipped)
        return True

    async def replace(self, registry: Registry, previous_version: int) -> bool:
        """Make `registry` current if the stored one is still at `previous_version`."""
        result = await self.collection.replace_one(
            {"_id": _CURRENT, "version": previous_version}, _document(_CURRENT, registry)
        )
        if result.matched_count != 1:
            return False
        await self._keep(registry)
        return True

    async def _keep(self, registry: Registry) -> None:
        await self.collection.replace_one(
            {"_id": f"v{registry.version}"},
            _document(f"v{registry.version}", registry),
            upsert=True,
        )


def _document(doc_id: str, registry: Registry) -> dict[str, Any]:
    body = registry.to_json()
    return {
        "_id": doc_id,
        "version": body.pop("version"),
        "body": body,
        "at": datetime.now(UTC),
    }


class RegistryCache:
    """Keeps this process's registry (`current_registry`) the stored one: checked at most once
    per `min_interval_s` when asked (`fresh`), reloaded when the stored version moved."""

    def __init__(self, registry_store: RegistryStore, min_interval_s: float = 1.0) -> None:
        self._store = registry_store
        self._min_interval = min_interval_s
        self._checked_at = float("-inf")

    async def reload(self) -> Registry:
        """The stored registry (the shipped one while none is stored), now in use."""
        registry = await self._store.load() or shipped_registry()
        use_registry(registry)
        self._checked_at = time.monotonic()
        return registry

    async def fresh(self, *, now: bool = False) -> Registry:
        """The registry in use, reloaded first if the stored one changed (looked at when
        `now`, else at most once per interval)."""
        if not now and time.monotonic() - self._checked_at < self._min_interval:
            return current_registry()
        self._checked_at = time.monotonic()
        version = await self._store.version()
        if version is not None and version != current_registry().version:
            return await self.reload()
        return current_registry()

    async def newer(self) -> bool:
        """Whether a newer registry was stored than the one in use (and is now in use)."""
        before = current_registry()
        return await self.fresh(now=True) is not before
