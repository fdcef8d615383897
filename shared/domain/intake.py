"""Turning a posted body into events, or into a list of what is wrong, by index and field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from shared.domain.events import MAX_EVENTS_PER_REQUEST, Event
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
    """New events (first occurrence of each id) and how many were duplicates."""
    fresh: list[Event] = []
    seen = set(already_accepted)
    duplicates = 0
    for event in events:
        if event.event_id in seen:
            duplicates += 1
            continue
        seen.add(event.event_id)
        fresh.append(event)
    return fresh, duplicates
