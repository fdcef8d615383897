"""How large a total may grow, so that no input can overflow the store and stop the counting.

MongoDB keeps a total as a 64-bit integer (at most 9,223,372,036,854,775,807); an `$inc` past
that fails, and a batch that can never be written would be retried for ever, holding up every
unit behind it. So what one unit's own events add to a metric in one month is bounded by
`OWN_TOTAL_BOUND`, checked by the write itself (`shared.adapters.mongo`): an event that would
take its unit past it is refused, isolated from the rest of its batch, and sent to the
dead-letter topic with its reason, while the rest is counted.

10^14 (a hundred thousand billion VND, about 4 billion US dollars, in one month of one
commune or department) is a hundred times Bình Phước's whole budget revenue in a month and
some ten thousand times the seed report's monthly payments; as a count, far more events than
a unit could post. Bounding each unit's own share, rather than every total, keeps one unit's
events from filling a total its neighbours count into (the province's): any total, a sum over
at most `MAX_UNITS` units' own shares, stays below 2^63 by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from shared.domain.events import Event
from shared.domain.periods import LocalDate
from shared.domain.registry import VOID_TYPE, Registry, contributions, current_registry

OWN_TOTAL_BOUND = 10**14
# Units whose own shares a total can sum: the whole country has about 11,000.
MAX_UNITS = 90_000
assert MAX_UNITS * OWN_TOTAL_BOUND < 2**63

OwnCell = tuple[str, str]  # (unit_id, "YYYY-MM"): a unit's own share of a month


def own_increments(event: Event, registry: Registry | None = None) -> dict[str, int]:
    """At most what `event` adds to its own unit's totals (a status moves one record; a void
    only takes away), by `registry` (the one in use when not given)."""
    registry = registry or current_registry()
    if event.type == VOID_TYPE:
        return {}
    increments = contributions(event, registry)
    rule = registry.state_rule(event.type)
    metric = registry.state_metric(event.type, event.attributes[rule.attribute]) if rule else None
    if metric is not None:
        increments[metric] = increments.get(metric, 0) + 1
    return increments


def over_bound(
    events: Iterable[Event], current: Mapping[OwnCell, Mapping[str, int]]
) -> dict[int, str]:
    """The events (by position) that would take their unit's own month total of a metric past
    `OWN_TOTAL_BOUND`, counting the others in order from `current`, and why."""
    running: dict[OwnCell, dict[str, int]] = {}
    refused: dict[int, str] = {}
    for position, event in enumerate(events):
        cell = (event.unit_id, LocalDate.of(event.occurred_at).month_key)
        if cell not in running:
            running[cell] = dict(current.get(cell, {}))
        totals = running[cell]
        increments = own_increments(event)
        passing = [
            metric
            for metric, value in increments.items()
            if value > 0 and totals.get(metric, 0) + value > OWN_TOTAL_BOUND
        ]
        if passing:
            refused[position] = (
                f"would take {event.unit_id!r}'s own {passing[0]} for {cell[1]} past its bound "
                f"of {OWN_TOTAL_BOUND:,}"
            )
            continue
        for metric, value in increments.items():
            totals[metric] = totals.get(metric, 0) + value
    return refused
