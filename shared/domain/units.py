"""The administrative unit tree: data, not code, loaded from the catalog and changed by admins."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
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
    # The official (General Statistics Office) code of a province, district or commune; None
    # for a department. Codes are reused: a ward of 1 July 2025 took a predecessor's.
    code: str | None = None
    # The days the unit existed, both included (None: open-ended); an event is dated within.
    valid_from: date | None = None
    valid_to: date | None = None
    # The units that took over from it once it ended.
    successors: tuple[str, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unit:
        code = data.get("code")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            level=UnitLevel(data["level"]),
            parent_id=data.get("parent_id"),
            aliases=tuple(data.get("aliases") or ()),
            merged_into=data.get("merged_into"),
            code=None if code is None else str(code),
            valid_from=_day(data.get("valid_from")),
            valid_to=_day(data.get("valid_to")),
            successors=tuple(data.get("successors") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "level": self.level.value,
            "parent_id": self.parent_id,
            "aliases": list(self.aliases),
            "merged_into": self.merged_into,
            "code": self.code,
            "valid_from": None if self.valid_from is None else self.valid_from.isoformat(),
            "valid_to": None if self.valid_to is None else self.valid_to.isoformat(),
            "successors": list(self.successors),
        }

    def valid_on(self, day: date) -> bool:
        """Whether the unit existed on that day."""
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day <= self.valid_to
        )


def _day(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


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
        self._by_code: dict[str, list[Unit]] = {}
        for unit in self._units.values():
            if unit.code is not None:
                self._by_code.setdefault(unit.code, []).append(unit)

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

    def with_code(self, code: str, day: date | None = None) -> Unit | None:
        """The unit an official code names on `day` (None: any day). A code names more than
        one unit where a unit of 1 July 2025 took a predecessor's: the one valid on the day,
        and of those (before the reform is applied the old one has not ended) the latest to
        begin, the unit that held the code that day by the official map."""
        candidates = self._by_code.get(code, [])
        if day is not None:
            candidates = [unit for unit in candidates if unit.valid_on(day)]
        if not candidates:
            return None
        return max(candidates, key=lambda unit: unit.valid_from or date.min)

    def on(self, day: date) -> list[Unit]:
        """The tree as it stood on `day`: the units valid then (with every ancestor valid)."""
        return [
            unit
            for unit in self._units.values()
            if all(self._units[a].valid_on(day) for a in self._lineage[unit.id])
        ]

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
