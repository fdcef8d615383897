"""The administrative unit tree: data, not code, loaded from the catalog and changed by admins."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any


class UnitLevel(StrEnum):
    PROVINCE = "province"
    DISTRICT = "district"
    COMMUNE = "commune"
    DEPARTMENT = "department"


@dataclass(frozen=True, slots=True)
class Unit:
    id: str
    name: str
    level: UnitLevel
    parent_id: str | None
    aliases: tuple[str, ...] = field(default=())
    # Set when the unit was merged into another: it keeps its history (and stays under the
    # unit it joined, so that history rolls up there) but takes no new events.
    merged_into: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unit:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            level=UnitLevel(data["level"]),
            parent_id=data.get("parent_id"),
            aliases=tuple(data.get("aliases") or ()),
            merged_into=data.get("merged_into"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "level": self.level.value,
            "parent_id": self.parent_id,
            "aliases": list(self.aliases),
            "merged_into": self.merged_into,
        }


class InvalidCatalog(ValueError):
    pass


class UnitTree:
    """Units by id, with the chain of ancestors every count rolls up into."""

    def __init__(self, units: Iterable[Unit], version: int = 0) -> None:
        self.version = version  # bumped by every reorganisation, so stale copies are noticed
        self._units: dict[str, Unit] = {}
        for unit in units:
            if unit.id in self._units:
                raise InvalidCatalog(f"unit {unit.id!r} appears twice")
            self._units[unit.id] = unit
        self._children: dict[str, list[str]] = {unit_id: [] for unit_id in self._units}
        for unit in self._units.values():
            if unit.parent_id is None:
                continue
            if unit.parent_id not in self._units:
                raise InvalidCatalog(f"unit {unit.id!r} has unknown parent {unit.parent_id!r}")
            self._children[unit.parent_id].append(unit.id)
        self._lineage: dict[str, tuple[str, ...]] = {}
        for unit_id in self._units:
            self._lineage[unit_id] = self._walk_up(unit_id)

    def _walk_up(self, unit_id: str) -> tuple[str, ...]:
        chain: list[str] = []
        current: str | None = unit_id
        while current is not None:
            if current in chain:
                raise InvalidCatalog(f"unit {unit_id!r} is its own ancestor")
            chain.append(current)
            current = self._units[current].parent_id
        return tuple(chain)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._units

    def __len__(self) -> int:
        return len(self._units)

    def get(self, unit_id: str) -> Unit | None:
        return self._units.get(unit_id)

    def lineage(self, unit_id: str) -> tuple[str, ...]:
        """The unit itself, then its parent, up to the root: every unit its events count for."""
        return self._lineage[unit_id]

    def children(self, unit_id: str) -> list[Unit]:
        return [self._units[child] for child in self._children.get(unit_id, [])]

    def is_within(self, unit_id: str, scope: Iterable[str]) -> bool:
        """Whether a unit is one of `scope` or lies under one of them."""
        scope_set = set(scope)
        return any(ancestor in scope_set for ancestor in self._lineage.get(unit_id, ()))

    def units(self) -> list[Unit]:
        return list(self._units.values())

    def with_unit(self, unit: Unit) -> UnitTree:
        """The tree with `unit` added or replaced; raises InvalidCatalog if that breaks it."""
        units = dict(self._units)
        units[unit.id] = unit
        return UnitTree(units.values(), self.version)


def rollup_shift(before: UnitTree, after: UnitTree, unit_id: str) -> tuple[list[str], list[str]]:
    """When a unit changes place: the ancestors that must lose its totals and those that must
    gain them. Ancestors it keeps are untouched."""
    old = before.lineage(unit_id)[1:]
    new = after.lineage(unit_id)[1:]
    return [u for u in old if u not in new], [u for u in new if u not in old]


def load_catalog(data: Mapping[str, Any]) -> list[Unit]:
    return [Unit.from_dict(item) for item in data["units"]]


def bundled_catalog() -> dict[str, Any]:
    """The Bình Phước catalog shipped with the product."""
    text = resources.files("shared.data").joinpath("catalog_binh_phuoc.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
