"""Request and response models of the API's routers (`services/api/routes`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

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
