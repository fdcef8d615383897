"""Share of the online public services a unit offers that received at least one online filing.

A service belongs to the unit whose catalog lists it; a filing made at a unit counts for the
nearest unit up its lineage that offers the service. The share rolls up as sum/sum: the
province's share is all active services over all services offered, never an average of shares.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.metrics import parse_online_service_key
from shared.domain.units import UnitTree

ServiceCatalogs = Mapping[str, frozenset[str]]  # unit id -> ids of the services it offers


def online_service_share(
    unit_id: str, tree: UnitTree, catalogs: ServiceCatalogs, totals: Mapping[str, int]
) -> tuple[int, int]:
    """(services with an online filing, services offered) for the unit and everything under it.

    `totals` are the unit's totals over the period, holding the online-filing counts per
    (filing unit, service) that the aggregator keeps.
    """
    offered = sum(
        len(services)
        for owner, services in catalogs.items()
        if owner in tree and tree.is_within(owner, [unit_id])
    )
    active: set[tuple[str, str]] = set()
    for key, count in totals.items():
        parsed = parse_online_service_key(key)
        if parsed is None or count <= 0:
            continue
        filed_at, service_id = parsed
        if filed_at not in tree:
            continue
        owner = next(
            (u for u in tree.lineage(filed_at) if service_id in catalogs.get(u, frozenset())),
            None,
        )
        if owner is not None and tree.is_within(owner, [unit_id]):
            active.add((owner, service_id))
    return len(active), offered
