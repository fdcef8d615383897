"""Records (electronic certifications, by `subject_id`) move between statuses; the latest
status by `occurred_at` wins, whatever order the events arrive in. Which event types move
records, and which statuses count into which indicator, is the registry's (`state`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from shared.domain.periods import LocalDate
from shared.domain.registry import LEGACY_STATE_TYPE, Registry
from shared.domain.units import UnitTree


@dataclass(frozen=True, slots=True)
class StatusEntry:
    occurred_at: datetime
    event_key: str  # the event's id within its unit (`Event.key`)
    status: str | int | bool  # the value of the type's status attribute
    unit_id: str
    event_type: str = LEGACY_STATE_TYPE  # the registry's state indicators say what it counts

    def metric(self, registry: Registry) -> str | None:
        """The state indicator this entry counts into, if the registry has one for it."""
        return registry.state_metric(self.event_type, self.status)

    @property
    def day(self) -> LocalDate:
        return LocalDate.of(self.occurred_at)


@dataclass(slots=True)
class SubjectState:
    """Every status event of one record that still counts (voided ones are removed), and the
    unit the record belongs to: the unit of its first event, for good (contract, "Events
    belong to their unit"), so another unit's events can never move it between statuses."""

    subject_id: str
    entries: list[StatusEntry] = field(default_factory=list)
    owner: str | None = None

    def __post_init__(self) -> None:
        # A record stored before owners were kept: its first entry's unit owns it.
        if self.owner is None and self.entries:
            self.owner = self.entries[0].unit_id

    def current(self) -> StatusEntry | None:
        # Ties on occurred_at are broken by event key so every replay picks the same winner.
        return max(self.entries, key=lambda e: (e.occurred_at, e.event_key), default=None)

    def as_of(self, last_day: date) -> StatusEntry | None:
        """The status the record stood at on `last_day`: its latest entry dated (local day) on
        or before it."""
        return max(
            (e for e in self.entries if e.day.as_date() <= last_day),
            key=lambda e: (e.occurred_at, e.event_key),
            default=None,
        )

    def add(self, entry: StatusEntry) -> None:
        if self.owner is None:
            self.owner = entry.unit_id
        self.entries.append(entry)

    def remove(self, event_key: str) -> None:
        self.entries = [entry for entry in self.entries if entry.event_key != event_key]


def states_on(
    records: Iterable[SubjectState], last_day: date, registry: Registry, tree: UnitTree
) -> dict[str, dict[str, int]]:
    """Records by the status each stood at on `last_day`, counted into the registry's state
    indicators for the unit of that status and every unit above it. The state totals count a
    record at its latest status only, on that status's day, so a range's total up to a past day
    leaves out a record whose status changed after it; this counts it at the status it had."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        entry = record.as_of(last_day)
        metric = None if entry is None else entry.metric(registry)
        if entry is None or metric is None or entry.unit_id not in tree:
            continue
        for unit_id in tree.lineage(entry.unit_id):
            counts[unit_id][metric] += 1
    return {unit_id: dict(by_metric) for unit_id, by_metric in counts.items()}
