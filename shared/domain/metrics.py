"""What is counted: the metric catalog and the pure rule that turns an event into increments."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.domain.events import CertificationStatus, Event, EventType


class MetricKind(StrEnum):
    COUNT = "count"
    MONEY = "money"  # integer VND
    RATE = "rate"  # sum(numerator) / sum(denominator), at every level
    STATE = "state"  # how many records are in a status now


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: MetricKind
    description: str
    numerator: tuple[str, ...] = ()
    denominator: tuple[str, ...] = ()


_COUNTS = {
    "eid.activated": "e-ID accounts activated (VNeID level 1 or 2)",
    "eid.activated.level2": "e-ID accounts activated at level 2",
    "cccd.issued": "chip ID cards issued",
    "sim.registered": "SIMs registered to their owner with a digital signature",
    "smartphone.replaced": "4G smartphones replacing 2G phones",
    "filing.submitted": "public-service filings submitted",
    "filing.submitted.online": "public-service filings submitted online",
    "filing.processed": "public-service filings processed",
    "filing.processed.online": "public-service filings processed online",
    "filing.processed.on_time": "public-service filings processed on time",
    "payment.nvtc.count": "online payments of financial obligations (taxes, registration fees)",
    "payment.fee.count": "online payments of fees and charges",
    "payment.failed.count": "failed online payments",
}
_MONEY = {
    "payment.nvtc.amount_vnd": "VND paid online for financial obligations",
    "payment.fee.amount_vnd": "VND paid online for fees and charges",
}
_RATES = {
    "filing.processed.online_rate": (
        "share of processed filings processed online",
        ("filing.processed.online",),
        ("filing.processed",),
    ),
    "filing.submitted.online_rate": (
        "share of submitted filings submitted online",
        ("filing.submitted.online",),
        ("filing.submitted",),
    ),
    "filing.processed.on_time_rate": (
        "share of processed filings processed on time",
        ("filing.processed.on_time",),
        ("filing.processed",),
    ),
    "payment.success_rate": (
        "share of online payments that succeeded",
        ("payment.nvtc.count", "payment.fee.count"),
        ("payment.nvtc.count", "payment.fee.count", "payment.failed.count"),
    ),
}

METRICS: dict[str, Metric] = {
    **{name: Metric(name, MetricKind.COUNT, text) for name, text in _COUNTS.items()},
    **{name: Metric(name, MetricKind.MONEY, text) for name, text in _MONEY.items()},
    **{
        name: Metric(name, MetricKind.RATE, text, numerator, denominator)
        for name, (text, numerator, denominator) in _RATES.items()
    },
    "filing.services_with_online_share": Metric(
        "filing.services_with_online_share",
        MetricKind.RATE,
        "share of the online public services a unit offers that received at least one online "
        "filing in the period (numerator: such services; denominator: services offered)",
    ),
    **{
        f"certification.{status.value}": Metric(
            f"certification.{status.value}",
            MetricKind.STATE,
            f"electronic certification records whose latest status is {status.value}",
        )
        for status in CertificationStatus
    },
}

Increments = dict[str, int]

# Online filings per (unit where filed, service): the distinct services that received at least
# one online filing in a period are the keys with a positive count (see services_share).
ONLINE_SERVICE_PREFIX = "@svc/"


def online_service_key(unit_id: str, service_id: str) -> str:
    return f"{ONLINE_SERVICE_PREFIX}{unit_id}/{service_id}"


def parse_online_service_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(ONLINE_SERVICE_PREFIX):
        return None
    unit_id, _, service_id = key[len(ONLINE_SERVICE_PREFIX) :].partition("/")
    return unit_id, service_id


def contributions(event: Event) -> Increments:
    """What one event adds to the additive metrics of its unit (and every unit above it).

    Certification statuses are not additive (a record moves between statuses) and voids remove
    contributions; both are handled by the ledger, not here.
    """
    attributes = event.attributes
    match event.type:
        case EventType.EID_ACTIVATED:
            increments = {"eid.activated": 1}
            if attributes.get("level") == 2:
                increments["eid.activated.level2"] = 1
            return increments
        case EventType.CCCD_ISSUED | EventType.SIM_REGISTERED | EventType.SMARTPHONE_REPLACED:
            return {event.type.value: 1}
        case EventType.FILING_SUBMITTED:
            increments = {"filing.submitted": 1}
            if attributes.get("channel") == "online":
                increments["filing.submitted.online"] = 1
                increments[online_service_key(event.unit_id, str(attributes["service_id"]))] = 1
            return increments
        case EventType.FILING_PROCESSED:
            increments = {"filing.processed": 1}
            if attributes.get("channel") == "online":
                increments["filing.processed.online"] = 1
            if attributes.get("on_time") is True:
                increments["filing.processed.on_time"] = 1
            return increments
        case EventType.PAYMENT_SUCCEEDED:
            kind = attributes["kind"]
            return {f"payment.{kind}.count": 1, f"payment.{kind}.amount_vnd": event.amount_vnd or 0}
        case EventType.PAYMENT_FAILED:
            return {"payment.failed.count": 1}
        case EventType.CERTIFICATION_STATUS | EventType.EVENT_VOIDED:
            return {}


def negate(increments: Increments) -> Increments:
    return {metric: -value for metric, value in increments.items()}
