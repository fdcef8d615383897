"""Electronic certification records move between statuses; the latest status by `occurred_at`
wins, whatever order the events arrive in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.domain.periods import LocalDate


@dataclass(frozen=True, slots=True)
class StatusEntry:
    occurred_at: datetime
    event_id: str
    status: str
    unit_id: str

    @property
    def metric(self) -> str:
        return f"certification.{self.status}"

    @property
    def day(self) -> LocalDate:
        return LocalDate.of(self.occurred_at)


@dataclass(slots=True)
class SubjectState:
    """Every status event of one record that still counts (voided ones are removed)."""

    subject_id: str
    entries: list[StatusEntry] = field(default_factory=list)

    def current(self) -> StatusEntry | None:
        # Ties on occurred_at are broken by event id so every replay picks the same winner.
        return max(self.entries, key=lambda e: (e.occurred_at, e.event_id), default=None)

    def add(self, entry: StatusEntry) -> None:
        self.entries.append(entry)

    def remove(self, event_id: str) -> None:
        self.entries = [entry for entry in self.entries if entry.event_id != event_id]
