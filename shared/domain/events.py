"""The event contract, version 1: what field apps and portals post.

Validation is pure: the clock is passed in (as validation context) so the same rules can be
tested without waiting for time to pass.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain.registry import VOID_TYPE, Registry, current_registry
from shared.domain.safety import occurred_at_reason, unsafe_id_reason, unsafe_text_reason

MAX_FUTURE_SKEW = timedelta(minutes=5)
# The largest `amount_vnd` one payment may carry: 1,000 billion VND (about 40 million USD).
# The seed report's largest figure is a province's whole year, tens of billions of VND; no
# single tax or fee paid online comes near this bound. Checked at intake only, so a record
# already in the log is never refused by a rule it predates (the totals' own bound still
# holds for it, see `shared.domain.bounds`).
MAX_AMOUNT_VND = 10**12
MAX_EVENTS_PER_REQUEST = 1000
UNIT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
# Ids and keys that end up in MongoDB documents and Prometheus labels: no `$`, no `.`, no spaces.
SAFE_TOKEN_PATTERN = r"^[A-Za-z0-9_\-:]{1,128}$"


class EventType(StrEnum):
    """The event types shipped with the product, by name (the registry holds their rules; an
    admin may add more, so an event's `type` is a plain string checked against it)."""

    EID_ACTIVATED = "eid.activated"
    CCCD_ISSUED = "cccd.issued"
    SIM_REGISTERED = "sim.registered"
    SMARTPHONE_REPLACED = "smartphone.replaced"
    FILING_SUBMITTED = "filing.submitted"
    FILING_PROCESSED = "filing.processed"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    CERTIFICATION_STATUS = "certification.status"
    EVENT_VOIDED = VOID_TYPE


class CertificationStatus(StrEnum):
    PENDING_SIGNATURE = "pending_signature"
    PENDING_SEAL = "pending_seal"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


AttributeValue = StrictBool | StrictInt | Annotated[StrictStr, Field(max_length=256)]
# The closed alphabet of attributes that become parts of storage keys (`service_id`): the
# shipped registry gives it as their pattern.
SERVICE_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


def _registry(info: ValidationInfo) -> Registry:
    """The registry an event is judged by: the validation context's (`{"registry": ...}`),
    else the one this process uses."""
    given = (info.context or {}).get("registry")
    return given if isinstance(given, Registry) else current_registry()


# RFC 3339's date-time with its offset; pydantic alone would also take a Unix timestamp (as a
# number or as digits), which the contract does not allow and whose offset is unknown.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date-time with an offset, e.g. 2024-04-22T23:30:00+07:00"
        )
    return value


class Event(BaseModel):
    """One transaction, as posted. Unknown fields and unknown attributes are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Annotated[
        str,
        Field(
            min_length=1,
            max_length=64,
            description="one of the registry's event types (`GET /v1/event-types`)",
        ),
    ]
    unit_id: Annotated[str, Field(pattern=UNIT_ID_PATTERN)]
    occurred_at: Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
    amount_vnd: Annotated[StrictInt, Field(ge=0, le=10**15)] | None = None
    subject_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    attributes: Annotated[dict[str, AttributeValue], Field(max_length=16)] = Field(
        default_factory=dict
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
        registry = _registry(info)
        if value not in registry.event_types:
            raise ValueError(registry.unknown_type(value))
        return value

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        context = info.context or {}
        now = context.get("now")
        if isinstance(now, datetime) and value - now > MAX_FUTURE_SKEW:
            raise ValueError("occurred_at is more than 5 minutes in the future")
        not_before = context.get("not_before")
        reason = occurred_at_reason(value, not_before if isinstance(not_before, datetime) else None)
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("event_id", "subject_id")
    @classmethod
    def _safe_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Only at intake (a clock in the context): a record already in the log is never
        # refused later by a rule it predates.
        if value is not None and info.context:
            reason = unsafe_id_reason(value)
            if reason:
                raise ValueError(reason)
        return value

    @model_validator(mode="after")
    def _type_rules(self, info: ValidationInfo) -> Event:
        violation = type_rule_violation(self, _registry(info))
        if violation is None and info.context:
            violation = _unsafe_attribute(self) or _amount_over_bound(self)
        if violation is not None:
            field, message = violation
            # The field travels in ctx so an API can name it, as the contract asks.
            raise PydanticCustomError(
                "event_rule", "{field}: {message}", {"field": field, "message": message}
            )
        return self

    @property
    def voids(self) -> str | None:
        value = self.attributes.get("voids") if self.type == VOID_TYPE else None
        return value if isinstance(value, str) else None

    @property
    def key(self) -> str:
        """The event's identity: its id within its unit (contract, "Events belong to their
        unit"). The same id for another unit is another event, so no team can squat or probe
        another's ids."""
        return event_key(self.unit_id, self.event_id)

    @property
    def voids_key(self) -> str | None:
        """The identity of the event this void takes back: one of its own unit's, always."""
        target = self.voids
        return None if target is None else event_key(self.unit_id, target)

    def partition_key(self) -> bytes:
        """Kafka key. A record's events share one partition, so the first of them (the one
        whose unit owns the record) is first in every replay too; a void travels with the
        event it voids, so one consumer sees both in order."""
        return (self.voids or self.subject_id or self.event_id).encode()


def event_key(unit_id: str, event_id: str) -> str:
    # Unit ids are slugs without "/", so the first "/" always ends the unit.
    return f"{unit_id}/{event_id}"


def _amount_over_bound(event: Event) -> tuple[str, str] | None:
    if event.amount_vnd is not None and event.amount_vnd > MAX_AMOUNT_VND:
        return "amount_vnd", f"must be at most {MAX_AMOUNT_VND:,} VND for one payment"
    return None


# Attributes that name an event by its id: the id rule (NFC too), not only the text rule.
_ID_REFERENCE_ATTRIBUTES = frozenset({"voids"})


def _unsafe_attribute(event: Event) -> tuple[str, str] | None:
    for key, value in event.attributes.items():
        if not isinstance(value, str):
            continue
        rule = unsafe_id_reason if key in _ID_REFERENCE_ATTRIBUTES else unsafe_text_reason
        reason = rule(value)
        if reason:
            return f"attributes.{key}", reason
    return None


def type_rule_violation(event: Event, registry: Registry | None = None) -> tuple[str, str] | None:
    """The first rule of its type (in `registry`, else the one in use) the event breaks, as
    (field, message), or None."""
    return (registry or current_registry()).violation(event)
