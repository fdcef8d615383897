"""Request and response models of the API's routers (`services/api/routes`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from shared.domain.events import SERVICE_ID_PATTERN, UNIT_ID_PATTERN
from shared.domain.safety import unsafe_text_reason
from shared.domain.units import Unit, UnitLevel

UnitId = Annotated[str, Field(pattern=UNIT_ID_PATTERN)]
ServiceId = Annotated[str, Field(pattern=SERVICE_ID_PATTERN)]


def _safe_name(value: str) -> str:
    reason = unsafe_text_reason(value)
    if reason:
        raise ValueError(reason)
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_safe_name)]
EnumValue = StrictBool | StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=256)]


class AttributeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "boolean"]
    enum: list[EnumValue] | None = Field(None, min_length=1, max_length=256)
    required: bool = False
    pattern: str | None = Field(
        None, max_length=200, description="strings only: a regular expression the value matches"
    )


class EventTypeIn(BaseModel):
    """An event type, as `PUT /v1/event-types/{type}` takes it."""

    model_config = ConfigDict(extra="forbid")

    attributes: dict[Annotated[str, Field(max_length=64)], AttributeIn] = Field(
        default_factory=dict, max_length=16
    )
    subject: Literal["none", "optional", "required"] = "optional"
    amount: bool = False
    amount_required: bool = Field(False, description="amount_vnd must be given (needs amount)")


class EventTypeOut(BaseModel):
    type: str
    attributes: dict[str, dict[str, object]]
    subject: str
    amount: bool
    amount_required: bool = False
    version: int
    status: Literal["ready", "backfilling"]


class RegistryChange(BaseModel):
    """What a registry change answers: the id, its new version, its status."""

    type: str | None = None
    id: str | None = None
    version: int
    status: Literal["ready", "backfilling"]


class IndicatorOut(BaseModel):
    """One indicator: its id, kind and names, and its kind's definition (`event_type`,
    `where`, `field`, `numerator`, `denominator`, `status_attribute`, `status`)."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    name_vi: str
    name_en: str
    unit: str
    version: int
    status: Literal["ready", "backfilling"]


WhereValue = StrictBool | StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=256)]
IndicatorId = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class IndicatorIn(BaseModel):
    """An indicator, as `PUT /v1/indicators/{id}` takes it: `kind` and that kind's fields
    (contract, "Indicators are data"), with its names and unit."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["count", "sum", "rate", "state"]
    name_vi: Annotated[StrictStr, Field(min_length=1, max_length=300)]
    name_en: Annotated[StrictStr, Field(min_length=1, max_length=300)]
    unit: Annotated[StrictStr, Field(min_length=1, max_length=32)]
    event_type: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        None, description="count, sum, state: the event type counted"
    )
    where: dict[Annotated[str, Field(max_length=64)], WhereValue | list[WhereValue]] | None = Field(
        None,
        max_length=16,
        description="count, sum: every attribute condition an event must match (a value or "
        "a list of values)",
    )
    field: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        None, description="sum: amount_vnd or an integer attribute"
    )
    numerator: list[IndicatorId] | None = Field(None, max_length=32, description="rate")
    denominator: list[IndicatorId] | None = Field(None, max_length=32, description="rate")
    status_attribute: Annotated[StrictStr, Field(max_length=64)] | None = Field(
        None, description="state: the attribute holding a record's status"
    )
    status: WhereValue | None = Field(None, description="state: the status counted")


class IndicatorChange(BaseModel):
    """What `PUT /v1/indicators/{id}` answers: `backfilling` while the log is counted for it."""

    id: str
    version: int
    status: Literal["ready", "backfilling"]


class UnitOut(BaseModel):
    id: str
    name: str
    level: str
    parent_id: str | None
    merged_into: str | None = Field(None, description="set once the unit was merged into another")
    code: str | None = Field(
        None,
        description="the General Statistics Office code of a province, district or commune "
        '(e.g. "25408"); null for a department. A unit formed on 1 July 2025 took a '
        "predecessor's code",
    )
    valid_from: date | None = Field(None, description="the first day of the unit (null: open)")
    valid_to: date | None = Field(None, description="the last day of the unit (null: open)")
    successors: list[str] = Field(
        default_factory=list, description="the units that took over from it once it ended"
    )

    @classmethod
    def of(cls, unit: Unit) -> UnitOut:
        return cls(
            id=unit.id,
            name=unit.name,
            level=unit.level.value,
            parent_id=unit.parent_id,
            merged_into=unit.merged_into,
            code=unit.code,
            valid_from=unit.valid_from,
            valid_to=unit.valid_to,
            successors=list(unit.successors),
        )


class UnitIn(BaseModel):
    id: UnitId
    name: SafeName
    level: UnitLevel
    parent_id: UnitId | None


class MoveIn(BaseModel):
    parent_id: UnitId


class MergeIn(BaseModel):
    into: UnitId


class ServicesIn(BaseModel):
    services: list[ServiceId] = Field(max_length=10_000)
