"""The unit tree as each service sees it: loaded from MongoDB, reloaded when it may have changed."""

from __future__ import annotations

import time
from collections.abc import Iterable

from shared.adapters.mongo import Store
from shared.domain.units import UnitTree


class CatalogCache:
    """Keeps a tree in memory; an id it does not know triggers a reload (at most once a second),
    so a unit an admin just added is usable at once without restarting anything."""

    def __init__(self, store: Store, min_reload_interval_s: float = 1.0) -> None:
        self._store = store
        self._min_interval = min_reload_interval_s
        self._loaded_at = float("-inf")
        self.tree = UnitTree([])

    async def reload(self) -> UnitTree:
        version = await self._store.catalog_version()
        self.tree = UnitTree(await self._store.load_units(), version)
        self._loaded_at = time.monotonic()
        return self.tree

    async def covering(self, unit_ids: Iterable[str]) -> UnitTree:
        """The current tree: reloaded first if a reorganisation bumped the catalog version
        (checked at once for an id it lacks, else at most once a second), or if it lacks an id
        and has not been reloaded for a second."""
        tree = self.tree
        missing = any(unit_id not in tree for unit_id in unit_ids)
        due = time.monotonic() - self._loaded_at >= self._min_interval
        if not missing and not due:
            return tree
        if (missing and due) or await self._store.catalog_version() != tree.version:
            return await self.reload()
        if due:
            self._loaded_at = time.monotonic()
        return tree
