"""What is counted, as the views and campaigns see it: the metric catalog, derived from the
registry (`shared.domain.registry`), and the rule that turns an event into increments."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from shared.domain.registry import (
    ONLINE_SERVICE_PREFIX,
    Increments,
    IndicatorKind,
    Registry,
    current_registry,
    online_service_key,
    parse_online_service_key,
    shipped_registry,
)
from shared.domain.registry import contributions as _interpret

if TYPE_CHECKING:
    from shared.domain.events import Event

__all__ = [
    "METRICS",
    "ONLINE_SERVICE_PREFIX",
    "Increments",
    "Metric",
    "MetricKind",
    "contributions",
    "current_metrics",
    "metric_catalog",
    "negate",
    "online_service_key",
    "parse_online_service_key",
]


class MetricKind(StrEnum):
    COUNT = "count"
    MONEY = "money"  # an integer sum (VND, or an integer attribute)
    RATE = "rate"  # sum(numerator) / sum(denominator), at every level
    STATE = "state"  # how many records are in a status now


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: MetricKind
    description: str
    numerator: tuple[str, ...] = ()
    denominator: tuple[str, ...] = ()
    # A built-in kind computes its own value (`IndicatorKind.ONLINE_SERVICES_SHARE`).
    builtin: IndicatorKind | None = None


_KINDS = {
    IndicatorKind.COUNT: MetricKind.COUNT,
    IndicatorKind.SUM: MetricKind.MONEY,
    IndicatorKind.RATE: MetricKind.RATE,
    IndicatorKind.STATE: MetricKind.STATE,
    IndicatorKind.ONLINE_SERVICES_SHARE: MetricKind.RATE,
}


def metric_catalog(registry: Registry) -> dict[str, Metric]:
    """Every indicator of `registry` as the read side answers for it."""
    return {
        indicator.id: Metric(
            indicator.id,
            _KINDS[indicator.kind],
            indicator.name_en,
            indicator.numerator,
            indicator.denominator,
            indicator.kind if indicator.kind == IndicatorKind.ONLINE_SERVICES_SHARE else None,
        )
        for indicator in registry.indicators.values()
    }


# The shipped registry's catalog; the read side asks `current_metrics` (a registry changed at
# run time has its own).
METRICS: dict[str, Metric] = metric_catalog(shipped_registry())
_last: list[tuple[Registry, dict[str, Metric]]] = []


def current_metrics() -> dict[str, Metric]:
    """The catalog of the registry in use (built once per registry)."""
    registry = current_registry()
    if registry is shipped_registry():
        return METRICS
    if not _last or _last[0][0] is not registry:
        _last[:] = [(registry, metric_catalog(registry))]
    return _last[0][1]


def contributions(event: Event, registry: Registry | None = None) -> Increments:
    """What one event adds to the additive metrics of its unit (and every unit above it), by
    `registry` (the one in use when not given). See `shared.domain.registry.contributions`."""
    return _interpret(event, registry or current_registry())


def negate(increments: Increments) -> Increments:
    return {metric: -value for metric, value in increments.items()}
