"""Campaigns and targets: how far each unit is, what it should have by today, and whether it
will make it at its current pace."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from shared.domain.metrics import MetricKind, current_metrics

TWO_PLACES = Decimal("0.01")
PACE_WINDOW_DAYS = 7


class Status(StrEnum):
    DONE = "done"
    ON_TRACK = "on_track"
    LAGGING = "lagging"


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    name: str
    starts: date
    ends: date
    # A unit is lagging when its value is under this share of what it should have by today.
    lagging_threshold: float = 0.9

    @property
    def days(self) -> int:
        return (self.ends - self.starts).days + 1

    def elapsed_days(self, today: date) -> int:
        return min(max((today - self.starts).days + 1, 0), self.days)

    def counted_until(self, today: date) -> date:
        return min(self.ends, today)

    def pace_window(self, today: date) -> tuple[date, date] | None:
        last = self.counted_until(today)
        first = max(self.starts, last - timedelta(days=PACE_WINDOW_DAYS - 1))
        return (first, last) if first <= last else None


@dataclass(frozen=True, slots=True)
class Target:
    unit_id: str
    metric: str
    target: Decimal


def validate_target(metric: str, target: Decimal) -> str | None:
    """Why a target is not acceptable, or None."""
    definition = current_metrics().get(metric)
    if definition is None:
        return f"unknown metric {metric!r}"
    if definition.kind == MetricKind.STATE:
        return f"{metric} is a current state, not something a campaign can target"
    if not target.is_finite() or target <= 0:
        return "target must be a positive number"
    if definition.kind == MetricKind.RATE and target > 1:
        return "a rate's target is a share between 0 and 1 (0.5 for 50%)"
    return None


def percent(value: Decimal, target: Decimal) -> Decimal:
    """100 × value / target, rounded half-up to 2 decimals: 518,898 of 502,000 → 103.37."""
    return (value * 100 / target).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class MetricProgress:
    metric: str
    value: Decimal | None
    target: Decimal | None
    percent: Decimal | None
    expected: Decimal | None
    status: Status | None
    pace_ratio: Decimal | None = None  # value / expected
    pace_last_7_days: Decimal | None = None  # per day
    pace_needed_per_day: Decimal | None = None
    projected_completion: date | None = None
    numerator: int | None = None
    denominator: int | None = None


def count_progress(
    campaign: Campaign,
    metric: str,
    value: int,
    target: Decimal | None,
    today: date,
    last_window_value: int,
) -> MetricProgress:
    """Progress of a count or money metric over the campaign, as of the local day `today`."""
    if target is None:
        return MetricProgress(metric, Decimal(value), None, None, None, None)
    expected = (target * campaign.elapsed_days(today) / campaign.days).quantize(
        TWO_PLACES, rounding=ROUND_HALF_UP
    )
    window = campaign.pace_window(today)
    window_days = (window[1] - window[0]).days + 1 if window else 0
    pace = (
        (Decimal(last_window_value) / window_days).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)
        if window_days
        else None
    )
    remaining = target - value
    days_left = (
        (campaign.ends - max(today, campaign.starts)).days + 1 if today <= campaign.ends else 0
    )
    needed = (
        (remaining / days_left).quantize(TWO_PLACES, rounding=ROUND_HALF_UP)
        if remaining > 0 and days_left > 0
        else None
    )
    projected: date | None = None
    if remaining <= 0:
        status = Status.DONE
    else:
        if pace is not None and pace > 0:
            projected = max(today, campaign.starts) + timedelta(
                days=math.ceil(remaining / (Decimal(last_window_value) / window_days))
            )
        threshold = Decimal(str(campaign.lagging_threshold))
        if today > campaign.ends:
            status = Status.LAGGING  # over, and the target was missed
        elif today < campaign.starts or value >= expected * threshold:
            status = Status.ON_TRACK
        else:
            status = Status.LAGGING
    return MetricProgress(
        metric,
        Decimal(value),
        target,
        percent(Decimal(value), target),
        expected,
        status,
        pace_ratio=(Decimal(value) / expected).quantize(Decimal("0.0001")) if expected else None,
        pace_last_7_days=pace,
        pace_needed_per_day=needed,
        projected_completion=projected,
    )


def rate_progress(
    campaign: Campaign,
    metric: str,
    numerator: int,
    denominator: int,
    target: Decimal | None,
    today: date,
) -> MetricProgress:
    """A rate meets its target or does not: there is no pace to a share."""
    value = Decimal(numerator) / Decimal(denominator) if denominator else None
    if target is None:
        return MetricProgress(
            metric, value, None, None, None, None, numerator=numerator, denominator=denominator
        )
    if value is not None and value >= target:
        status = Status.DONE
    elif today < campaign.starts:
        status = Status.ON_TRACK
    else:
        status = Status.LAGGING
    return MetricProgress(
        metric,
        value,
        target,
        percent(value, target) if value is not None else None,
        target,
        status,
        pace_ratio=(value / target).quantize(Decimal("0.0001")) if value is not None else None,
        numerator=numerator,
        denominator=denominator,
    )


def competition_ranks(
    values: list[tuple[str, Decimal | None]],
) -> list[tuple[int, str, Decimal | None]]:
    """Units ordered by value, highest first, with 1224 ranking: ties share a rank, and a unit
    with no value (a rate with nothing to divide) comes last."""
    ordered = sorted(values, key=lambda item: (item[1] is None, -(item[1] or 0), item[0]))
    ranked: list[tuple[int, str, Decimal | None]] = []
    for position, (unit_id, value) in enumerate(ordered, start=1):
        if ranked and ranked[-1][2] == value:
            ranked.append((ranked[-1][0], unit_id, value))
        else:
            ranked.append((position, unit_id, value))
    return ranked
