"""The registry: what events may say and what is counted from them, as data (contract,
"Indicators are data").

An event type declares its attributes (type, allowed values, required or not), whether it
names a record (`subject`) and whether it carries `amount_vnd`. An indicator is one of:
- `count`: events of a type matching every `where` condition;
- `sum`: the same, summing `amount_vnd` or an integer attribute;
- `rate`: sum(numerator) / sum(denominator) of other indicators, at every level;
- `state`: records (by `subject_id`) whose latest event of a type has an attribute's value;
- `online_services_share`: a built-in kind, the share of the online services a unit offers
  that received at least one matching filing (its value needs the units' service catalogs,
  see `shared.domain.services_share`).

`Registry` is validated once when built (`RegistryError` names the first problem) and is then
read-only; `contributions` interprets it for one event, with no code per event type. The
shipped registry (`shared/data/registry.json`) holds everything counted before indicators were
data, under the same ids and with the same values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # events.py validates through the registry, so no import at run time
    from shared.domain.events import Event

Increments = dict[str, int]

# The ledger's own event type: it takes back an earlier event of its unit (`voids`) and is
# never counted into an indicator.
VOID_TYPE = "event.voided"
# Status histories stored before they named their event type were all of this one.
LEGACY_STATE_TYPE = "certification.status"
# A record is one event type's history of one `subject_id` (`record_key`): a staff member's
# e-mail status and a certification of the same id are two records. This separator is a
# control character, which no id accepted at intake holds, so no two keys collide.
_RECORD_SEPARATOR = "\x1f"


def record_key(event_type: str, subject_id: str) -> str:
    """The key a record's history and owner are kept under. Certification records keep the
    bare `subject_id` they were stored under before other types had states."""
    if event_type == LEGACY_STATE_TYPE:
        return subject_id
    return f"{event_type}{_RECORD_SEPARATOR}{subject_id}"


def record_prefix(event_type: str) -> str | None:
    """What the keys of every record of `event_type` start with (None for the legacy type,
    whose keys are bare ids)."""
    return None if event_type == LEGACY_STATE_TYPE else f"{event_type}{_RECORD_SEPARATOR}"


# Online filings per (unit where filed, service): the distinct services that received at least
# one online filing in a period are the keys with a positive count (see services_share).
ONLINE_SERVICE_PREFIX = "@svc/"

# Ids and names that become parts of storage keys and Prometheus labels: a closed alphabet.
_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_NAME = 64
MAX_ATTRIBUTES = 16
MAX_ENUM = 256


class RegistryError(ValueError):
    """A definition the registry cannot hold, naming what is wrong."""


class AttributeType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"

    @property
    def python(self) -> type:
        return _PYTHON_TYPES[self]


_PYTHON_TYPES: dict[AttributeType, type] = {
    AttributeType.STRING: str,
    AttributeType.INTEGER: int,
    AttributeType.BOOLEAN: bool,
}


class Subject(StrEnum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


class IndicatorKind(StrEnum):
    COUNT = "count"
    SUM = "sum"
    RATE = "rate"
    STATE = "state"
    ONLINE_SERVICES_SHARE = "online_services_share"  # built in


# Patterns whose rule is worded for people (the messages events were refused with before the
# registry); any other pattern is named as it is.
_PATTERN_WORDS = {
    r"^[A-Za-z0-9_.\-]{1,64}$": "must be 1-64 letters, digits, '.', '_' or '-'",
}

AttributeValue = str | int | bool


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    # Checked for every event: compiled once, not looked up in `re`'s cache each time.
    return re.compile(pattern)


def _is_of(value: Any, kind: AttributeType) -> bool:
    # bool is an int in Python: check it first so `level: true` is not an integer.
    python = _PYTHON_TYPES[kind]
    return isinstance(value, bool) == (python is bool) and isinstance(value, python)


@dataclass(frozen=True, slots=True)
class AttributeRule:
    type: AttributeType
    required: bool
    enum: tuple[AttributeValue, ...] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type.value}
        if self.enum is not None:
            body["enum"] = list(self.enum)
        if self.pattern is not None:
            body["pattern"] = self.pattern
        body["required"] = self.required
        return body


@dataclass(frozen=True, slots=True)
class EventTypeDef:
    type: str
    attributes: Mapping[str, AttributeRule]
    subject: Subject = Subject.OPTIONAL
    amount: bool = False
    amount_required: bool = False
    version: int = 1  # moves with every change of this type

    def same_rules(self, other: EventTypeDef) -> bool:
        return (self.attributes, self.subject, self.amount, self.amount_required) == (
            other.attributes,
            other.subject,
            other.amount,
            other.amount_required,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "attributes": {name: rule.to_json() for name, rule in self.attributes.items()},
            "subject": self.subject.value,
            "amount": self.amount,
        }
        if self.amount_required:
            body["amount_required"] = True
        body["version"] = self.version
        return body

    def violation(
        self, attributes: Mapping[str, Any], amount_vnd: int | None, subject_id: str | None
    ) -> tuple[str, str] | None:
        """The first rule of this type an event breaks, as (field, message), or None."""
        rules = self.attributes
        for key in attributes:
            if key not in rules:
                allowed = ", ".join(sorted(rules)) or "none"
                return (
                    f"attributes.{key}",
                    f"not a known attribute of {self.type} (allowed: {allowed})",
                )
        for key, rule in rules.items():
            name = f"attributes.{key}"
            if key not in attributes:
                if rule.required:
                    return name, f"required for {self.type}"
                continue
            value = attributes[key]
            if not _is_of(value, rule.type):
                return name, f"must be a {rule.type.python.__name__}"
            if rule.enum is not None and value not in rule.enum:
                options = ", ".join(repr(v) for v in sorted(rule.enum, key=str))
                return name, f"must be one of {options}"
            if rule.type is AttributeType.STRING and not str(value):
                return name, "must not be empty"
            if rule.pattern is not None and not _compiled(rule.pattern).fullmatch(str(value)):
                return name, _PATTERN_WORDS.get(rule.pattern, f"must match {rule.pattern}")
        if self.amount:
            if self.amount_required and amount_vnd is None:
                return "amount_vnd", f"required for {self.type}"
        elif amount_vnd is not None:
            return "amount_vnd", f"for payments only, not {self.type}"
        if self.subject == Subject.REQUIRED and subject_id is None:
            return "subject_id", f"required for {self.type}"
        if self.subject == Subject.NONE and subject_id is not None:
            return "subject_id", f"not taken by {self.type}"
        return None


Where = Mapping[str, tuple[AttributeValue, ...]]


@dataclass(frozen=True, slots=True)
class Indicator:
    id: str
    kind: IndicatorKind
    name_vi: str
    name_en: str
    unit: str
    event_type: str | None = None
    where: Where = field(default_factory=dict)
    field: str | None = None  # sum
    numerator: tuple[str, ...] = ()  # rate
    denominator: tuple[str, ...] = ()
    status_attribute: str | None = None  # state
    status: AttributeValue | None = None
    service_attribute: str | None = None  # online_services_share
    version: int = 1
    # The registry version from which this indicator has counted what it counts now: set when
    # it is defined or its definition changes (a change of names alone keeps it). A generation
    # whose counting started from a registry at least this new holds its exact values
    # (`indicator_status`).
    since: int = 1

    def definition(self) -> dict[str, Any]:
        """The kind's own fields, as the contract words them."""
        body: dict[str, Any] = {"kind": self.kind.value}
        if self.kind in (IndicatorKind.RATE,):
            body["numerator"] = list(self.numerator)
            body["denominator"] = list(self.denominator)
            return body
        body["event_type"] = self.event_type
        if self.kind == IndicatorKind.SUM:
            body["field"] = self.field
        if self.kind == IndicatorKind.STATE:
            body["status_attribute"] = self.status_attribute
            body["status"] = self.status
        else:
            if self.where:
                body["where"] = {
                    a: values[0] if len(values) == 1 else list(values)
                    for a, values in self.where.items()
                }
            if self.kind == IndicatorKind.ONLINE_SERVICES_SHARE:
                body["service_attribute"] = self.service_attribute
        return body

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.definition(),
            "name_vi": self.name_vi,
            "name_en": self.name_en,
            "unit": self.unit,
        }


@dataclass(frozen=True, slots=True)
class _Condition:
    attribute: str
    values: frozenset[AttributeValue]
    type: type

    def holds(self, attributes: Mapping[str, Any]) -> bool:
        value = attributes.get(self.attribute)
        return type(value) is self.type and value in self.values


@dataclass(frozen=True, slots=True)
class _Additive:
    """A count or sum of one event type, ready to apply."""

    indicator: str
    conditions: tuple[_Condition, ...]
    field: str | None  # None: a count

    def value(self, event: Event) -> int:
        if self.field is None:
            return 1
        if self.field == "amount_vnd":
            return event.amount_vnd or 0
        value = event.attributes.get(self.field)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class _ServicesShare:
    conditions: tuple[_Condition, ...]
    attribute: str


@dataclass(frozen=True, slots=True)
class StateRule:
    """The state indicators over one event type: its status attribute, and the indicator of
    each status value that has one."""

    attribute: str
    indicators: Mapping[AttributeValue, str]


def online_service_key(unit_id: str, service_id: str) -> str:
    return f"{ONLINE_SERVICE_PREFIX}{unit_id}/{service_id}"


def parse_online_service_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(ONLINE_SERVICE_PREFIX):
        return None
    unit_id, _, service_id = key[len(ONLINE_SERVICE_PREFIX) :].partition("/")
    return unit_id, service_id


@dataclass(frozen=True)
class Registry:
    """Event types and indicators, validated; read-only once built."""

    event_types: Mapping[str, EventTypeDef]
    indicators: Mapping[str, Indicator]
    version: int = 1
    _additive: Mapping[str, tuple[_Additive, ...]] = field(init=False, repr=False, compare=False)
    _shares: Mapping[str, tuple[_ServicesShare, ...]] = field(init=False, repr=False, compare=False)
    _states: Mapping[str, StateRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_types", MappingProxyType(dict(self.event_types)))
        object.__setattr__(self, "indicators", MappingProxyType(dict(self.indicators)))
        _validate(self.event_types, self.indicators)
        additive: dict[str, list[_Additive]] = {}
        shares: dict[str, list[_ServicesShare]] = {}
        states: dict[str, tuple[str, dict[AttributeValue, str]]] = {}
        for indicator in self.indicators.values():
            kind, event_type = indicator.kind, indicator.event_type
            if event_type is None:
                continue
            rules = self.event_types[event_type].attributes
            conditions = tuple(
                _Condition(a, frozenset(values), rules[a].type.python)
                for a, values in indicator.where.items()
            )
            if kind in (IndicatorKind.COUNT, IndicatorKind.SUM):
                additive.setdefault(event_type, []).append(
                    _Additive(indicator.id, conditions, indicator.field)
                )
            elif kind == IndicatorKind.ONLINE_SERVICES_SHARE:
                assert indicator.service_attribute is not None
                shares.setdefault(event_type, []).append(
                    _ServicesShare(conditions, indicator.service_attribute)
                )
            elif kind == IndicatorKind.STATE:
                assert indicator.status_attribute is not None and indicator.status is not None
                _, by_value = states.setdefault(event_type, (indicator.status_attribute, {}))
                by_value[indicator.status] = indicator.id
        object.__setattr__(
            self, "_additive", MappingProxyType({t: tuple(r) for t, r in additive.items()})
        )
        object.__setattr__(
            self, "_shares", MappingProxyType({t: tuple(r) for t, r in shares.items()})
        )
        object.__setattr__(
            self,
            "_states",
            MappingProxyType(
                {t: StateRule(a, MappingProxyType(v)) for t, (a, v) in states.items()}
            ),
        )

    # -- reading ---------------------------------------------------------------------------

    def state_rule(self, event_type: str) -> StateRule | None:
        """How events of `event_type` move records between states, if any indicator says so."""
        return self._states.get(event_type)

    def record_of(self, event: Event) -> str | None:
        """The record (`record_key`) an event moves between states, if its type has states."""
        if event.subject_id is None or event.type not in self._states:
            return None
        return record_key(event.type, event.subject_id)

    def state_metric(self, event_type: str, status: AttributeValue) -> str | None:
        rule = self._states.get(event_type)
        return None if rule is None else rule.indicators.get(status)

    def violation(self, event: Event) -> tuple[str, str] | None:
        definition = self.event_types.get(event.type)
        if definition is None:
            return "type", self.unknown_type(event.type)
        return definition.violation(event.attributes, event.amount_vnd, event.subject_id)

    def unknown_type(self, event_type: str) -> str:
        known = ", ".join(repr(t) for t in self.event_types)
        return f"unknown event type {event_type!r} (known: {known})"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "event_types": [t.to_json() for t in self.event_types.values()],
            "indicators": [
                {**i.to_json(), "version": i.version, "since": i.since}
                for i in self.indicators.values()
            ],
        }

    # -- changing (each change is a new registry, validated as a whole) -----------------------

    def with_event_type(self, definition: EventTypeDef) -> Registry:
        """This registry with `definition` added or changed. A change may only widen what is
        accepted (new optional attributes, new enum values, ...): one that would refuse an
        event accepted before raises `IncompatibleChange`."""
        before = self.event_types.get(definition.type)
        if before is not None:
            reason = _narrowing(before, definition)
            if reason:
                raise IncompatibleChange(reason)
            definition = replace(definition, version=before.version + 1)
        else:
            definition = replace(definition, version=1)
        types = {**self.event_types, definition.type: definition}
        return Registry(types, self.indicators, self.version + 1)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Registry:
        try:
            types = {
                t["type"]: event_type_from_json(t["type"], t, int(t.get("version", 1)))
                for t in body["event_types"]
            }
            indicators = {
                i["id"]: replace(
                    indicator_from_json(i["id"], i, int(i.get("version", 1))),
                    since=int(i.get("since", 1)),
                )
                for i in body["indicators"]
            }
            version = int(body.get("version", 1))
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"malformed registry: {exc!r}") from exc
        return cls(types, indicators, version)

    def with_indicator(self, indicator: Indicator) -> Registry:
        """This registry with `indicator` added or changed (validated as a whole, so an unknown
        type, attribute or indicator, a rate of a rate, a cycle or a sum over a non-integer
        raises `RegistryError` naming it). Its `version` moves with every change; its `since`
        only when what it counts does (names alone do not need the log counted again)."""
        if indicator.kind == IndicatorKind.ONLINE_SERVICES_SHARE:
            raise RegistryError(
                f"indicator {indicator.id!r}: {indicator.kind.value} is a built-in kind, "
                "not one an indicator can be defined as"
            )
        version = self.version + 1
        before = self.indicators.get(indicator.id)
        if before is None:
            indicator = replace(indicator, version=1, since=version)
        elif before.kind == IndicatorKind.ONLINE_SERVICES_SHARE:
            raise RegistryError(f"indicator {indicator.id!r} is built in; it cannot be changed")
        else:
            same = before.definition() == indicator.definition()
            indicator = replace(
                indicator, version=before.version + 1, since=before.since if same else version
            )
        return Registry(self.event_types, {**self.indicators, indicator.id: indicator}, version)

    def without_indicator(self, indicator_id: str) -> Registry:
        """This registry without `indicator_id`; `IndicatorInUse` names a rate built on it."""
        if indicator_id not in self.indicators:
            raise KeyError(indicator_id)
        users = [
            i.id for i in self.indicators.values() if indicator_id in (*i.numerator, *i.denominator)
        ]
        if users:
            raise IndicatorInUse(
                f"indicator {indicator_id!r} is part of the rate {', '.join(map(repr, users))}"
            )
        indicators = {k: v for k, v in self.indicators.items() if k != indicator_id}
        return Registry(self.event_types, indicators, self.version + 1)

    def status(self, indicator_id: str, counted_from: int) -> str:
        """`ready` or `backfilling`, for a generation counted with registries from version
        `counted_from` on (see `indicator_status`)."""
        return indicator_status(self, indicator_id, counted_from)


class IncompatibleChange(RegistryError):
    """A change that would refuse events accepted before."""


class IndicatorInUse(RegistryError):
    """An indicator something else is built on (a rate, a campaign's target, a report)."""


READY = "ready"
BACKFILLING = "backfilling"


def indicator_status(registry: Registry, indicator_id: str, counted_from: int) -> str:
    """Whether the served generation holds an indicator's exact values.

    Every batch of a generation is counted with a registry at least as new as the one its
    replay started from (`counted_from`: the aggregator redoes a batch whose registry is older
    than the stored one, and registries only move forward). An indicator whose definition has
    not changed since `counted_from` (`since` at most it) was counted the same way by every one
    of them, so its values are exact; one defined or changed later is `backfilling` until a
    replay from a newer registry is served. A rate is read from its parts: it is as ready as
    they are, whenever it was defined."""
    indicator = registry.indicators[indicator_id]
    if indicator.kind == IndicatorKind.RATE:
        parts = (*indicator.numerator, *indicator.denominator)
        ready = all(registry.indicators[part].since <= counted_from for part in parts)
        return READY if ready else BACKFILLING
    return READY if indicator.since <= counted_from else BACKFILLING


def needs_backfill(registry: Registry, counted_from: int) -> bool:
    """Whether any indicator of `registry` waits for a replay of the log."""
    return any(i.since > counted_from for i in registry.indicators.values())


def contributions(event: Event, registry: Registry) -> Increments:
    """What one event adds to the additive indicators of its unit (and every unit above it).

    State indicators are not additive (a record moves between statuses) and voids remove
    contributions; both are handled by the ledger, not here.
    """
    increments: Increments = {}
    attributes = event.attributes
    for rule in registry._additive.get(event.type, ()):
        if all(condition.holds(attributes) for condition in rule.conditions):
            increments[rule.indicator] = increments.get(rule.indicator, 0) + rule.value(event)
    for share in registry._shares.get(event.type, ()):
        if all(condition.holds(attributes) for condition in share.conditions):
            key = online_service_key(event.unit_id, str(attributes[share.attribute]))
            increments[key] = increments.get(key, 0) + 1
    return increments


# -- building from JSON ------------------------------------------------------------------------


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise RegistryError(message)


def _check_name(kind: str, name: Any) -> str:
    _require(
        isinstance(name, str) and len(name) <= _MAX_NAME and bool(_NAME.fullmatch(name)),
        f"{kind} {name!r} must be lowercase words joined by '.' (letters, digits, '_'), "
        f"at most {_MAX_NAME} characters",
    )
    return str(name)


def _text(body: Mapping[str, Any], key: str, where: str, limit: int = 300) -> str:
    value = body.get(key)
    _require(
        isinstance(value, str) and 0 < len(value) <= limit,
        f"{where}: {key} must be a text of 1 to {limit} characters",
    )
    return str(value)


def event_type_from_json(name: str, body: Mapping[str, Any], version: int = 1) -> EventTypeDef:
    _check_name("event type", name)
    where = f"event type {name!r}"
    raw = body.get("attributes", {})
    _require(isinstance(raw, Mapping), f"{where}: attributes must be an object")
    _require(len(raw) <= MAX_ATTRIBUTES, f"{where}: at most {MAX_ATTRIBUTES} attributes")
    attributes: dict[str, AttributeRule] = {}
    for attribute, rule in raw.items():
        _require(
            isinstance(attribute, str) and bool(_ATTRIBUTE_NAME.fullmatch(attribute)),
            f"{where}: attribute {attribute!r} must be a lowercase name (letters, digits, '_')",
        )
        _require(isinstance(rule, Mapping), f"{where}: attribute {attribute!r} must be an object")
        try:
            kind = AttributeType(rule.get("type"))
        except ValueError:
            raise RegistryError(
                f"{where}: attribute {attribute!r} has type {rule.get('type')!r}, not one of "
                "'string', 'integer', 'boolean'"
            ) from None
        required = rule.get("required", False)
        _require(isinstance(required, bool), f"{where}: {attribute}.required must be a boolean")
        enum = rule.get("enum")
        if enum is not None:
            _require(
                isinstance(enum, list) and 0 < len(enum) <= MAX_ENUM,
                f"{where}: {attribute}.enum must be a list of 1 to {MAX_ENUM} values",
            )
            for value in enum:
                _require(
                    _is_of(value, kind),
                    f"{where}: {attribute}.enum holds {value!r}, not a {kind.value}",
                )
            enum = tuple(dict.fromkeys(enum))
        pattern = rule.get("pattern")
        if pattern is not None:
            _require(
                kind == AttributeType.STRING and isinstance(pattern, str) and len(pattern) <= 200,
                f"{where}: {attribute}.pattern must be a regular expression for a string",
            )
            try:
                re.compile(pattern)
            except re.error as exc:
                raise RegistryError(f"{where}: {attribute}.pattern: {exc}") from None
        attributes[attribute] = AttributeRule(kind, required, enum, pattern)
    try:
        subject = Subject(body.get("subject", "optional"))
    except ValueError:
        raise RegistryError(f"{where}: subject must be 'none', 'optional' or 'required'") from None
    amount = body.get("amount", False)
    amount_required = body.get("amount_required", False)
    _require(isinstance(amount, bool), f"{where}: amount must be a boolean")
    _require(isinstance(amount_required, bool), f"{where}: amount_required must be a boolean")
    _require(amount or not amount_required, f"{where}: amount_required needs amount")
    unexpected = set(body) - {
        "type",
        "attributes",
        "subject",
        "amount",
        "amount_required",
        "version",
    }
    _require(not unexpected, f"{where}: {sorted(unexpected)} not part of an event type")
    return EventTypeDef(
        name, MappingProxyType(attributes), subject, amount, amount_required, version
    )


_DEFINITION_FIELDS = {
    IndicatorKind.COUNT: {"event_type", "where"},
    IndicatorKind.SUM: {"event_type", "field", "where"},
    IndicatorKind.RATE: {"numerator", "denominator"},
    IndicatorKind.STATE: {"event_type", "status_attribute", "status"},
    IndicatorKind.ONLINE_SERVICES_SHARE: {"event_type", "where", "service_attribute"},
}
_COMMON_FIELDS = {"id", "kind", "name_vi", "name_en", "unit", "version", "since", "status_of"}


def indicator_from_json(name: str, body: Mapping[str, Any], version: int = 1) -> Indicator:
    """One indicator's definition, checked for its shape; whether what it names exists is
    checked by `Registry` as a whole."""
    _check_name("indicator", name)
    where = f"indicator {name!r}"
    try:
        kind = IndicatorKind(str(body.get("kind")))
    except ValueError:
        raise RegistryError(
            f"{where}: kind {body.get('kind')!r} is not one of "
            + ", ".join(repr(k.value) for k in IndicatorKind)
        ) from None
    unexpected = set(body) - _COMMON_FIELDS - _DEFINITION_FIELDS[kind]
    _require(not unexpected, f"{where}: {sorted(unexpected)} not part of a {kind.value}")
    names = (_text(body, "name_vi", where), _text(body, "name_en", where))
    unit = _text(body, "unit", where, 32)
    if kind == IndicatorKind.RATE:
        parts = []
        for side in ("numerator", "denominator"):
            ids: Any = body.get(side)
            _require(
                isinstance(ids, list)
                and 0 < len(ids) <= 32
                and all(isinstance(i, str) for i in ids),
                f"{where}: {side} must be a list of 1 to 32 indicator ids",
            )
            parts.append(tuple(ids))
        numerator, denominator = parts
        return Indicator(
            name, kind, *names, unit, numerator=numerator, denominator=denominator, version=version
        )
    event_type = body.get("event_type")
    _require(isinstance(event_type, str), f"{where}: event_type must be an event type")
    conditions: dict[str, tuple[AttributeValue, ...]] = {}
    raw_where = body.get("where", {})
    _require(isinstance(raw_where, Mapping), f"{where}: where must be an object")
    for attribute, values in raw_where.items():
        listed = values if isinstance(values, list) else [values]
        _require(
            0 < len(listed) <= MAX_ENUM and all(isinstance(v, str | int) for v in listed),
            f"{where}: where.{attribute} must be a value or a list of 1 to {MAX_ENUM} values",
        )
        conditions[str(attribute)] = tuple(dict.fromkeys(listed))
    field_name = body.get("field")
    status_attribute = body.get("status_attribute")
    status = body.get("status")
    service_attribute = body.get("service_attribute")
    if kind == IndicatorKind.SUM:
        _require(isinstance(field_name, str), f"{where}: field must name what is summed")
    if kind == IndicatorKind.STATE:
        _require(
            isinstance(status_attribute, str), f"{where}: status_attribute must be an attribute"
        )
        _require(isinstance(status, str | int), f"{where}: status must be a value")
    if kind == IndicatorKind.ONLINE_SERVICES_SHARE:
        _require(
            isinstance(service_attribute, str), f"{where}: service_attribute must be an attribute"
        )
    return Indicator(
        name,
        kind,
        *names,
        unit,
        event_type=str(event_type),
        where=MappingProxyType(conditions),
        field=field_name,
        status_attribute=status_attribute,
        status=status,
        service_attribute=service_attribute,
        version=version,
    )


# -- validating the whole ------------------------------------------------------------------------


def _validate(types: Mapping[str, EventTypeDef], indicators: Mapping[str, Indicator]) -> None:
    void = types.get(VOID_TYPE)
    _require(
        void is not None and "voids" in void.attributes, f"{VOID_TYPE} must be a type with voids"
    )
    for name, declared in types.items():
        _check_name("event type", name)
        _require(declared.type == name, f"event type {name!r} is filed under another name")
    state_attributes: dict[str, str] = {}
    state_values: dict[tuple[str, AttributeValue], str] = {}
    for name, indicator in indicators.items():
        _check_name("indicator", name)
        _require(indicator.id == name, f"indicator {name!r} is filed under another name")
        where = f"indicator {name!r}"
        if indicator.kind == IndicatorKind.RATE:
            continue
        event_type = indicator.event_type
        definition = types.get(event_type or "")
        _require(definition is not None, f"{where}: unknown event type {event_type!r}")
        assert definition is not None
        _require(
            event_type != VOID_TYPE, f"{where}: {VOID_TYPE} takes events back; it counts nothing"
        )
        rules = definition.attributes
        for attribute, values in indicator.where.items():
            rule = rules.get(attribute)
            _require(
                rule is not None, f"{where}: where names {attribute!r}, not an attribute of "
                f"{event_type}"
            )  # fmt: skip
            assert rule is not None
            for value in values:
                _require(
                    _is_of(value, rule.type),
                    f"{where}: where.{attribute} = {value!r} is not a {rule.type.value}",
                )
                _require(
                    rule.enum is None or value in rule.enum,
                    f"{where}: where.{attribute} = {value!r} is not one of its values "
                    f"{list(rule.enum or ())}",
                )
        if indicator.kind == IndicatorKind.SUM:
            if indicator.field == "amount_vnd":
                _require(definition.amount, f"{where}: {event_type} carries no amount_vnd")
            else:
                rule = rules.get(indicator.field or "")
                _require(
                    rule is not None and rule.type == AttributeType.INTEGER,
                    f"{where}: a sum is over amount_vnd or an integer attribute, not "
                    f"{indicator.field!r}",
                )
        if indicator.kind == IndicatorKind.STATE:
            attribute = indicator.status_attribute or ""
            rule = rules.get(attribute)
            _require(
                rule is not None, f"{where}: {attribute!r} is not an attribute of {event_type}"
            )
            assert rule is not None and event_type is not None
            _require(rule.required, f"{where}: a state's attribute must be required ({attribute})")
            _require(
                _is_of(indicator.status, rule.type)
                and (rule.enum is None or indicator.status in rule.enum),
                f"{where}: status {indicator.status!r} is not a value of {attribute}",
            )
            _require(
                definition.subject == Subject.REQUIRED,
                f"{where}: a state needs an event type whose subject is required",
            )
            first = state_attributes.setdefault(event_type, attribute)
            _require(
                first == attribute,
                f"{where}: the states of {event_type} are by {first!r}, not {attribute!r}",
            )
            assert indicator.status is not None
            other = state_values.setdefault((event_type, indicator.status), name)
            _require(other == name, f"{where}: {other!r} already counts that status")
        if indicator.kind == IndicatorKind.ONLINE_SERVICES_SHARE:
            rule = rules.get(indicator.service_attribute or "")
            _require(
                rule is not None and rule.required and rule.type == AttributeType.STRING,
                f"{where}: service_attribute must be a required string attribute of {event_type}",
            )
            _require(
                rule is not None and rule.pattern is not None,
                f"{where}: service_attribute must have a pattern (it becomes a storage key)",
            )
    _check_rates(indicators)


def _check_rates(indicators: Mapping[str, Indicator]) -> None:
    # Cycles first, so a rate naming itself (or a ring of rates) is named as one.
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            ring = " → ".join((*path[path.index(name) :], name))
            raise RegistryError(f"indicator {path[0]!r}: a cycle {ring}")
        indicator = indicators.get(name)
        if indicator is None or name in done:
            return
        for part in (*indicator.numerator, *indicator.denominator):
            visit(part, (*path, name))
        done.add(name)

    for name in indicators:
        visit(name, ())
    for name, indicator in indicators.items():
        for part in (*indicator.numerator, *indicator.denominator):
            other = indicators.get(part)
            _require(other is not None, f"indicator {name!r}: unknown indicator {part!r}")
            assert other is not None
            _require(
                other.kind != IndicatorKind.RATE,
                f"indicator {name!r}: a rate of a rate ({part!r} is a rate)",
            )
            _require(
                other.kind != IndicatorKind.ONLINE_SERVICES_SHARE,
                f"indicator {name!r}: {part!r} is a share, not a count",
            )


def _narrowing(before: EventTypeDef, after: EventTypeDef) -> str | None:
    """Why `after` would refuse an event `before` accepted, or None."""
    name = before.type
    for attribute, old in before.attributes.items():
        new = after.attributes.get(attribute)
        if new is None:
            return f"{name}: attribute {attribute!r} would be removed"
        if new.type != old.type:
            return f"{name}: attribute {attribute!r} would change from {old.type} to {new.type}"
        if new.required and not old.required:
            return f"{name}: attribute {attribute!r} would become required"
        if new.enum is not None and (old.enum is None or not set(old.enum) <= set(new.enum)):
            return f"{name}: attribute {attribute!r} would lose allowed values"
        if new.pattern is not None and new.pattern != old.pattern:
            return f"{name}: attribute {attribute!r} would change its pattern"
    for attribute, new in after.attributes.items():
        if attribute not in before.attributes and new.required:
            return f"{name}: a new attribute {attribute!r} cannot be required"
    # Only widening: a subject no longer refused (none → optional) or no longer required.
    widened = {(Subject.NONE, Subject.OPTIONAL), (Subject.REQUIRED, Subject.OPTIONAL)}
    if before.subject != after.subject and (before.subject, after.subject) not in widened:
        return f"{name}: subject would change from {before.subject} to {after.subject}"
    if before.amount and not after.amount:
        return f"{name}: amount_vnd would no longer be taken"
    if after.amount_required and not before.amount_required:
        return f"{name}: amount_vnd would become required"
    return None


# -- the shipped registry and the one in use -----------------------------------------------------


@lru_cache(maxsize=1)
def shipped_registry() -> Registry:
    """The registry shipped with the product (loaded into the store by `init` when absent)."""
    text = resources.files("shared.data").joinpath("registry.json").read_text("utf-8")
    return Registry.from_json(json.loads(text))


_in_use: list[Registry] = []


def current_registry() -> Registry:
    """The registry this process validates and counts with: the shipped one until a service
    installs the stored one (`use_registry`). A process-wide value, so that an event decoded
    anywhere (`Event.model_validate`, the aggregator's decode of the log) is judged by it."""
    return _in_use[-1] if _in_use else shipped_registry()


def use_registry(registry: Registry) -> None:
    _in_use[:] = [registry]
