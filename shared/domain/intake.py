"""Turning a posted body into events, or into a list of what is wrong, by index and field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from shared.domain.events import MAX_EVENTS_PER_REQUEST, Event, EventType, event_key
from shared.domain.periods import LOCAL_TZ
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


def _local_day(value: Any) -> date | None:
    """The local day of an `occurred_at` as posted, or None if it is not a date-time (the
    event's validation says why)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(LOCAL_TZ).date() if moment.tzinfo is not None else None


def resolve_unit_codes(
    payload: Any, tree: UnitTree, today: date
) -> tuple[Any, set[int], list[Problem]]:
    """An event names its unit by `unit_id` or by its official `unit_code`, exactly one of
    them. Each code becomes the id of the unit it named on the event's local day (the event is
    published with `unit_id`). Returns the payload as `parse_events` takes it, the indexes of
    the events that named a code, and what is wrong."""
    items = [payload] if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not any(
        isinstance(item, dict) and "unit_code" in item for item in items
    ):
        return payload, set(), []
    resolved: list[Any] = []
    by_code: set[int] = set()
    problems: list[Problem] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "unit_code" not in item:
            resolved.append(item)
            continue
        rest = {key: value for key, value in item.items() if key != "unit_code"}
        code = item["unit_code"]
        unit = None
        if "unit_id" in item:
            problems.append(
                Problem(index, "unit_code", "name the unit by unit_id or by unit_code, not both")
            )
        elif not isinstance(code, str) or not (code.isascii() and code.isdigit()) or len(code) > 8:
            problems.append(Problem(index, "unit_code", "must be an official code, e.g. 25408"))
        else:
            day = _local_day(item.get("occurred_at")) or today
            unit = tree.with_code(code, day) or tree.with_code(code)
            if unit is None:
                problems.append(Problem(index, "unit_code", f"unknown unit code {code!r}"))
        if unit is None:
            resolved.append(rest)  # the same indexes as posted, whatever is wrong
            continue
        resolved.append({**rest, "unit_id": unit.id})
        by_code.add(index)
    if isinstance(payload, dict):
        return (resolved[0] if resolved else payload), by_code, problems
    return resolved, by_code, problems


def outside_validity(events: list[Event], tree: UnitTree, by_code: set[int]) -> list[Problem]:
    """Events dated on a day their unit did not exist: after it ended (post to its successors)
    or before it began. Voids are taken whenever they come: they take back an event the unit
    took."""
    problems = []
    for index, event in enumerate(events):
        unit = tree.get(event.unit_id)
        if unit is None or event.type == EventType.EVENT_VOIDED:
            continue
        day = event.occurred_at.astimezone(LOCAL_TZ).date()
        field = "unit_code" if index in by_code else "unit_id"
        if unit.valid_to is not None and day > unit.valid_to:
            successors = ", ".join(repr(s) for s in unit.successors)
            where = f"; post it to its successors: {successors}" if successors else ""
            problems.append(
                Problem(
                    index,
                    field,
                    f"unit {unit.id!r} ended on {unit.valid_to.isoformat()}, before the event's "
                    f"day {day.isoformat()}{where}",
                )
            )
        elif unit.valid_from is not None and day < unit.valid_from:
            problems.append(
                Problem(
                    index,
                    field,
                    f"unit {unit.id!r} began on {unit.valid_from.isoformat()}, after the event's "
                    f"day {day.isoformat()}: post it to the unit of that day",
                )
            )
    return problems


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
