"""Turning a posted body into events, or into a list of what is wrong, by index and field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.domain.events import MAX_EVENTS_PER_REQUEST, Event, event_key
from shared.domain.registry import current_registry
from shared.domain.units import UnitTree


@dataclass(frozen=True, slots=True)
class Problem:
    index: int | None
    field: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


class RejectedBatch(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems[:5]))
        self.problems = problems


def _field_of(error: Any) -> str | None:
    ctx = error.get("ctx") or {}
    if "field" in ctx:
        return str(ctx["field"])
    loc = [str(part) for part in error.get("loc", ())]
    return ".".join(loc) or None


def _message_of(error: Any) -> str:
    ctx = error.get("ctx") or {}
    if error.get("type") == "event_rule":
        return str(ctx.get("message", error.get("msg", "invalid")))
    return str(error.get("msg", "invalid"))


def parse_events(payload: Any, now: datetime, not_before: datetime | None = None) -> list[Event]:
    """Validate one event object or an array of them; reject the whole body on any problem.
    `not_before`: the earliest `occurred_at` accepted (none when None)."""
    if isinstance(payload, dict):
        items: list[Any] = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise RejectedBatch([Problem(None, None, "body must be an event object or an array")])
    if not items:
        raise RejectedBatch([Problem(None, None, "the array holds no events")])
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise RejectedBatch(
            [Problem(None, None, f"at most {MAX_EVENTS_PER_REQUEST} events per request")]
        )
    events: list[Event] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(Problem(index, None, "an event must be a JSON object"))
            continue
        try:
            events.append(
                Event.model_validate(item, context={"now": now, "not_before": not_before})
            )
        except ValidationError as exc:
            problems.extend(
                Problem(index, _field_of(error), _message_of(error)) for error in exc.errors()
            )
    if problems:
        raise RejectedBatch(problems)
    return events


def unknown_units(events: list[Event], tree: UnitTree) -> list[Problem]:
    """Events for units that do not exist, or that were merged into another and take no new
    events (their history stays; new events belong to the unit they joined)."""
    problems = []
    for index, event in enumerate(events):
        unit = tree.get(event.unit_id)
        if unit is None:
            problems.append(Problem(index, "unit_id", f"unknown unit {event.unit_id!r}"))
        elif unit.merged_into is not None:
            problems.append(
                Problem(
                    index,
                    "unit_id",
                    f"unit {event.unit_id!r} was merged into {unit.merged_into!r}; post there",
                )
            )
    return problems


def out_of_scope(events: list[Event], tree: UnitTree, scope: tuple[str, ...]) -> list[Problem]:
    return [
        Problem(index, "unit_id", f"unit {event.unit_id!r} is outside this token's scope")
        for index, event in enumerate(events)
        if not tree.is_within(event.unit_id, scope)
    ]


def split_duplicates(events: list[Event], already_accepted: set[str]) -> tuple[list[Event], int]:
    """New events (first occurrence of each key, `Event.key`: an id within its unit) and how
    many were duplicates. `already_accepted` holds keys."""
    fresh: list[Event] = []
    seen = set(already_accepted)
    duplicates = 0
    for event in events:
        if event.key in seen:
            duplicates += 1
            continue
        seen.add(event.key)
        fresh.append(event)
    return fresh, duplicates


def foreign_records(events: list[Event], owners: Mapping[str, str]) -> list[Problem]:
    """Events about a record (`subject_id`) that another unit owns: the unit of the record's
    first event, as the store knows it (`owners`, by `record_key`) or as this request itself
    names it."""
    claimed = dict(owners)
    problems = []
    registry = current_registry()
    for index, event in enumerate(events):
        record = registry.record_of(event)
        if record is None:
            continue
        owner = claimed.setdefault(record, event.unit_id)
        if owner != event.unit_id:
            problems.append(
                Problem(
                    index,
                    "subject_id",
                    "this record belongs to another unit; its events are posted by that unit",
                )
            )
    return problems


def foreign_voids(events: list[Event], targets_elsewhere: Mapping[str, str]) -> list[Problem]:
    """Voids whose target is an event of another unit (`targets_elsewhere`: the target's id ->
    the unit that holds it, among the units the poster may see). A void takes back only an
    event of its own unit: posted as it is, it would count nothing."""
    problems = []
    for index, event in enumerate(events):
        target = event.voids
        if target is not None and target in targets_elsewhere:
            problems.append(
                Problem(
                    index,
                    "attributes.voids",
                    f"names an event of unit {targets_elsewhere[target]!r}, not of "
                    f"{event.unit_id!r}: a void takes back its own unit's events only; post "
                    "it with that unit_id",
                )
            )
    return problems


# Keys asked of the store per request to find voids of other units' events: one per void and
# unit the poster may see. A correction names a few events; a larger request of voids is only
# checked by the rule that makes it count nothing outside its unit.
MAX_VOID_PROBES = 2_000


def void_probes(events: list[Event], visible_units: list[str]) -> dict[str, tuple[str, str]]:
    """The keys under which the voids' targets would be events of other units the poster may
    see: key -> (target id, unit). Empty when there would be more than `MAX_VOID_PROBES`."""
    voids = [(event.unit_id, event.voids) for event in events if event.voids is not None]
    if not voids or len(voids) * len(visible_units) > MAX_VOID_PROBES:
        return {}
    return {
        event_key(unit, target): (target, unit)
        for own_unit, target in voids
        for unit in visible_units
        if unit != own_unit
    }
