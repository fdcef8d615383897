"""The registry as data: the shipped one counts exactly what the code counted before it, and
for random registries and events the interpreter agrees with a straightforward recount."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.events import Event
from shared.domain.ledger import Known, fold
from shared.domain.metrics import METRICS, MetricKind
from shared.domain.registry import (
    IncompatibleChange,
    Registry,
    RegistryError,
    contributions,
    event_type_from_json,
    shipped_registry,
)
from shared.domain.units import Unit, UnitLevel, UnitTree

ICT = timezone(timedelta(hours=7))
TREE = UnitTree(
    [Unit("p", "Tỉnh", UnitLevel.PROVINCE, None), Unit("c", "Xã", UnitLevel.COMMUNE, "p")]
)


# -- today's rule, frozen as it was before the registry (shared/domain/metrics.py) -------------


def contributions_before_the_registry(event: Event) -> dict[str, int]:
    attributes = event.attributes
    match event.type:
        case "eid.activated":
            increments = {"eid.activated": 1}
            if attributes.get("level") == 2:
                increments["eid.activated.level2"] = 1
            return increments
        case "cccd.issued" | "sim.registered" | "smartphone.replaced":
            return {event.type: 1}
        case "filing.submitted":
            increments = {"filing.submitted": 1}
            if attributes.get("channel") == "online":
                increments["filing.submitted.online"] = 1
                increments[f"@svc/{event.unit_id}/{attributes['service_id']}"] = 1
            return increments
        case "filing.processed":
            increments = {"filing.processed": 1}
            if attributes.get("channel") == "online":
                increments["filing.processed.online"] = 1
            if attributes.get("on_time") is True:
                increments["filing.processed.on_time"] = 1
            return increments
        case "payment.succeeded":
            kind = attributes["kind"]
            return {f"payment.{kind}.count": 1, f"payment.{kind}.amount_vnd": event.amount_vnd or 0}
        case "payment.failed":
            return {"payment.failed.count": 1}
        case _:
            return {}


# The event types there were before the registry (the shipped one has more since).
TYPES_BEFORE_THE_REGISTRY = (
    "cccd.issued",
    "certification.status",
    "eid.activated",
    "event.voided",
    "filing.processed",
    "filing.submitted",
    "payment.failed",
    "payment.succeeded",
    "sim.registered",
    "smartphone.replaced",
)


def shipped_event(rng: random.Random, number: int) -> Event:
    kind = rng.choice(TYPES_BEFORE_THE_REGISTRY)
    body: dict[str, Any] = {
        "event_id": f"e{number}",
        "type": kind,
        "unit_id": rng.choice(["c", "p"]),
        "occurred_at": datetime(2024, 4, 1, tzinfo=ICT) + timedelta(minutes=rng.randrange(10**5)),
    }
    channel = rng.choice(["online", "offline"])
    match kind:
        case "eid.activated":
            body["attributes"] = {"level": rng.choice([1, 2])}
        case "filing.submitted":
            body["attributes"] = {
                "channel": channel,
                "service_id": rng.choice(["s1", "s-2", "a.b"]),
            }
        case "filing.processed":
            body["attributes"] = {"channel": channel, "on_time": rng.random() < 0.5}
            if rng.random() < 0.3:
                body["attributes"]["service_id"] = "s1"
        case "payment.succeeded" | "payment.failed":
            body["attributes"] = {"kind": rng.choice(["nvtc", "fee"])}
            if kind == "payment.succeeded" or rng.random() < 0.3:
                body["amount_vnd"] = rng.choice([0, 1, rng.randrange(10**12)])
        case "certification.status":
            body["attributes"] = {"status": rng.choice(["completed", "rejected", "pending_seal"])}
            body["subject_id"] = f"r{rng.randrange(50)}"
        case "event.voided":
            body["attributes"] = {"voids": f"e{rng.randrange(number + 1)}"}
    if kind != "certification.status" and rng.random() < 0.1:
        body["subject_id"] = "any-record"
    return Event.model_validate(body)


def test_the_shipped_registry_counts_exactly_what_the_code_did() -> None:
    rng = random.Random(20)
    registry = shipped_registry()
    for number in range(20_000):
        event = shipped_event(rng, number)
        assert contributions(event, registry) == contributions_before_the_registry(event), event


def test_the_shipped_registry_holds_todays_catalog() -> None:
    registry = shipped_registry()
    assert list(registry.indicators) == list(METRICS)
    assert METRICS["payment.success_rate"].denominator == (
        "payment.nvtc.count",
        "payment.fee.count",
        "payment.failed.count",
    )
    assert METRICS["filing.services_with_online_share"].kind == MetricKind.RATE
    assert METRICS["certification.completed"].kind == MetricKind.STATE
    assert METRICS["payment.fee.amount_vnd"].kind == MetricKind.MONEY
    assert registry.indicators["eid.activated"].name_vi == (
        "Tài khoản định danh điện tử được kích hoạt"
    )
    assert Registry.from_json(registry.to_json()).to_json() == registry.to_json()


# -- random registries -------------------------------------------------------------------------


def random_registry(rng: random.Random) -> dict[str, Any]:
    types: list[dict[str, Any]] = [
        {"type": "event.voided", "attributes": {"voids": {"type": "string", "required": True}}}
    ]
    indicators: list[dict[str, Any]] = []
    for t in range(rng.randint(1, 4)):
        attributes: dict[str, Any] = {}
        for a in range(rng.randint(0, 4)):
            kind = rng.choice(["string", "integer", "boolean"])
            rule: dict[str, Any] = {"type": kind, "required": rng.random() < 0.6}
            if kind == "string" and rng.random() < 0.7:
                rule["enum"] = rng.sample(["x", "y", "z", "w"], rng.randint(1, 4))
            if kind == "integer" and rng.random() < 0.5:
                rule["enum"] = rng.sample([0, 1, 2, 3, 7], rng.randint(1, 5))
            attributes[f"a{a}"] = rule
        subject = rng.choice(["none", "optional", "required"])
        amount = rng.random() < 0.5
        types.append(
            {"type": f"t{t}.ev", "attributes": attributes, "subject": subject, "amount": amount}
        )
    for i in range(rng.randint(1, 8)):
        definition = rng.choice(types[1:])
        attributes = definition["attributes"]
        where: dict[str, Any] = {}
        for name, rule in attributes.items():
            if rng.random() < 0.4:
                pool = rule.get("enum") or values_of(rule["type"])
                picked = rng.sample(pool, rng.randint(1, len(pool)))
                where[name] = picked[0] if len(picked) == 1 and rng.random() < 0.5 else picked
        kinds = ["count", "sum"]
        status_attributes = [
            n
            for n, r in attributes.items()
            if r["required"] and r["type"] == "string" and definition["subject"] == "required"
        ]
        if status_attributes:  # any number of types may have states, each its own records
            kinds.append("state")
        kind = rng.choice(kinds)
        body: dict[str, Any] = {"id": f"i{i}", "kind": kind, "event_type": definition["type"]}
        if kind == "sum":
            fields = [n for n, r in attributes.items() if r["type"] == "integer"]
            if definition["amount"]:
                fields.append("amount_vnd")
            if not fields:
                body["kind"] = "count"
            else:
                body["field"] = rng.choice(fields)
        if kind == "state":
            # One status attribute per type, one indicator per status.
            attribute = sorted(status_attributes)[0]
            taken = {
                x["status"]
                for x in indicators
                if x["kind"] == "state" and x["event_type"] == definition["type"]
            }
            free = [v for v in attributes[attribute].get("enum") or ["x", "y"] if v not in taken]
            if not free:
                continue
            body.update(status_attribute=attribute, status=rng.choice(free))
        elif where:
            body["where"] = where
        indicators.append(body)
    additive = [x["id"] for x in indicators if x["kind"] in ("count", "sum", "state")]
    for r in range(rng.randint(0, 3)):
        indicators.append(
            {
                "id": f"r{r}.rate",
                "kind": "rate",
                "numerator": rng.sample(additive, rng.randint(1, len(additive))),
                "denominator": rng.sample(additive, rng.randint(1, len(additive))),
            }
        )
    for x in indicators:
        x.update(name_vi="Chỉ tiêu", name_en="indicator", unit="lượt")
    return {"event_types": types, "indicators": indicators}


def values_of(kind: str) -> list[Any]:
    return {"string": ["x", "y", "q"], "integer": [0, 1, 5], "boolean": [True, False]}[kind]


def random_events(rng: random.Random, spec: dict[str, Any], count: int) -> list[Event]:
    events = []
    types = spec["event_types"]
    for number in range(count):
        definition = rng.choice(types)
        body: dict[str, Any] = {
            "event_id": f"e{number}",
            "type": definition["type"],
            "unit_id": "c",
            "occurred_at": datetime(2024, 4, 1, tzinfo=ICT) + timedelta(minutes=rng.randrange(500)),
        }
        attributes: dict[str, Any] = {}
        for name, rule in definition["attributes"].items():
            if name == "voids":
                attributes[name] = f"e{rng.randrange(number + 1)}"
            elif rule["required"] or rng.random() < 0.5:
                attributes[name] = rng.choice(rule.get("enum") or values_of(rule["type"]))
        body["attributes"] = attributes
        if definition.get("amount") and rng.random() < 0.7:
            body["amount_vnd"] = rng.randrange(10**9)
        if definition.get("subject") == "required" or (
            definition.get("subject") == "optional" and rng.random() < 0.3
        ):
            body["subject_id"] = f"rec{rng.randrange(6)}"
        events.append(Event.model_validate(body, context={"registry": spec["registry"]}))
    return events


def recount(spec: dict[str, Any], events: list[Event]) -> dict[str, int]:
    """Every indicator's total over `events`, from the definitions as written: in log order, a
    repeated key counts once, a void takes back its target (before or after it), and a state
    counts each record by its latest event that still counts."""
    first: dict[str, Event] = {}
    for event in events:
        first.setdefault(event.key, event)
    voided = {f"c/{e.attributes['voids']}" for e in first.values() if e.type == "event.voided"}
    counting = [e for k, e in first.items() if k not in voided and e.type != "event.voided"]
    totals: dict[str, int] = defaultdict(int)

    def matches(event: Event, definition: dict[str, Any]) -> bool:
        if event.type != definition["event_type"]:
            return False
        for name, wanted in definition.get("where", {}).items():
            options = wanted if isinstance(wanted, list) else [wanted]
            value = event.attributes.get(name, None)
            if not any(type(value) is type(o) and value == o for o in options):
                return False
        return True

    definitions = {x["id"]: x for x in spec["indicators"]}
    # A record belongs to the unit of its first event; all events here are of one unit.
    for name, definition in definitions.items():
        if definition["kind"] == "count":
            totals[name] = sum(1 for e in counting if matches(e, definition))
        elif definition["kind"] == "sum":
            field = definition["field"]
            totals[name] = sum(
                (e.amount_vnd or 0) if field == "amount_vnd" else int(e.attributes.get(field, 0))
                for e in counting
                if matches(e, definition)
            )
        elif definition["kind"] == "state":
            latest: dict[str, Event] = {}
            for e in counting:
                if e.type != definition["event_type"] or e.subject_id is None:
                    continue
                best = latest.get(e.subject_id)
                if best is None or (e.occurred_at, e.key) > (best.occurred_at, best.key):
                    latest[e.subject_id] = e
            attribute = definition["status_attribute"]
            totals[name] = sum(
                1 for e in latest.values() if e.attributes[attribute] == definition["status"]
            )
    return totals


@pytest.mark.parametrize("seed", range(300))
def test_random_registries_count_as_a_recount_does(seed: int) -> None:
    rng = random.Random(seed)
    spec = random_registry(rng)
    registry = Registry.from_json(spec)
    spec["registry"] = registry
    events = random_events(rng, spec, rng.randint(1, 120))
    counted: dict[str, int] = defaultdict(int)
    # In batches, each knowing what the ones before recorded, as the aggregator folds.
    known_counted: dict[str, Any] = {}
    voided: set[str] = set()
    subjects: dict[str, Any] = {}
    cut = rng.randint(0, len(events))
    for batch in (events[:cut], events[cut:]):
        outcome = fold(batch, Known(known_counted, frozenset(voided), subjects), TREE, registry)
        for (unit, _), increments in outcome.cells.items():
            if unit == "c":
                for metric, value in increments.items():
                    counted[metric] += value
        known_counted.update({r.key: r for r in outcome.counted})
        voided.update(outcome.newly_voided)
        subjects.update(outcome.subjects)
    expected = recount(spec, events)
    for indicator in spec["indicators"]:
        if indicator["kind"] != "rate":
            assert counted.get(indicator["id"], 0) == expected[indicator["id"]], indicator
    assert set(counted) <= set(expected)


# -- bad definitions are named ------------------------------------------------------------------


def shipped_with(*indicators: dict[str, Any]) -> dict[str, Any]:
    body = shipped_registry().to_json()
    for indicator in indicators:
        indicator.setdefault("name_vi", "Chỉ tiêu")
        indicator.setdefault("name_en", "indicator")
        indicator.setdefault("unit", "lượt")
    body["indicators"] += list(indicators)
    return body


@pytest.mark.parametrize(
    ("indicator", "words"),
    [
        ({"id": "x.n", "kind": "count", "event_type": "eid.deleted"}, "unknown event type"),
        (
            {"id": "x.n", "kind": "count", "event_type": "eid.activated", "where": {"lvl": 2}},
            "'lvl', not an attribute",
        ),
        (
            {"id": "x.n", "kind": "count", "event_type": "eid.activated", "where": {"level": 3}},
            "not one of its values",
        ),
        (
            {"id": "x.n", "kind": "sum", "event_type": "filing.processed", "field": "on_time"},
            "a sum is over amount_vnd or an integer attribute",
        ),
        (
            {"id": "x.n", "kind": "sum", "event_type": "cccd.issued", "field": "amount_vnd"},
            "carries no amount_vnd",
        ),
        (
            {
                "id": "x.n",
                "kind": "rate",
                "numerator": ["payment.success_rate"],
                "denominator": ["eid.activated"],
            },
            "a rate of a rate",
        ),
        (
            {"id": "x.n", "kind": "rate", "numerator": ["x.n"], "denominator": ["eid.activated"]},
            "a cycle x.n → x.n",
        ),
        (
            {"id": "x.n", "kind": "rate", "numerator": ["nope"], "denominator": ["eid.activated"]},
            "unknown indicator 'nope'",
        ),
        (
            {
                "id": "x.n",
                "kind": "state",
                "event_type": "filing.processed",
                "status_attribute": "channel",
                "status": "online",
            },
            "subject is required",
        ),
        ({"id": "x.n", "kind": "median", "event_type": "eid.activated"}, "kind 'median'"),
        ({"id": "X N", "kind": "count", "event_type": "eid.activated"}, "lowercase words"),
    ],
)
def test_bad_definitions_are_named(indicator: dict[str, Any], words: str) -> None:
    with pytest.raises(RegistryError) as refused:
        Registry.from_json(shipped_with(indicator))
    assert words in str(refused.value)


def test_a_ring_of_rates_is_a_cycle() -> None:
    a = {"id": "a.rate", "kind": "rate", "numerator": ["b.rate"], "denominator": ["cccd.issued"]}
    b = {"id": "b.rate", "kind": "rate", "numerator": ["a.rate"], "denominator": ["cccd.issued"]}
    with pytest.raises(RegistryError, match="cycle"):
        Registry.from_json(shipped_with(a, b))


def test_event_type_changes_may_only_widen() -> None:
    registry = shipped_registry()
    wider = event_type_from_json(
        "payment.failed",
        {
            "attributes": {
                "kind": {"type": "string", "enum": ["nvtc", "fee", "other"], "required": True},
                "reason": {"type": "string", "required": False},
            },
            "amount": True,
        },
    )
    changed = registry.with_event_type(wider)
    assert changed.event_types["payment.failed"].same_rules(wider)
    assert changed.event_types["payment.failed"].version == 2
    assert changed.version == registry.version + 1
    for attributes, words in [
        ({}, "would be removed"),
        ({"kind": {"type": "integer", "required": True}}, "would change from"),
        ({"kind": {"type": "string", "enum": ["nvtc"], "required": True}}, "lose allowed"),
        (
            {
                "kind": {"type": "string", "enum": ["nvtc", "fee"], "required": True},
                "new": {"type": "string", "required": True},
            },
            "cannot be required",
        ),
    ]:
        narrower = event_type_from_json(
            "payment.failed", {"attributes": attributes, "amount": True}
        )
        with pytest.raises(IncompatibleChange, match=words):
            registry.with_event_type(narrower)


def test_events_are_validated_by_the_registry_given() -> None:
    registry = shipped_registry().with_event_type(
        event_type_from_json(
            "training.held",
            {
                "attributes": {
                    "paperless": {"type": "boolean", "required": True},
                    "platform": {"type": "string", "required": False},
                }
            },
        )
    )
    body = {
        "event_id": "m1",
        "type": "training.held",
        "unit_id": "c",
        "occurred_at": "2024-04-22T09:00:00+07:00",
        "attributes": {"paperless": True, "platform": "ecabinet"},
    }
    assert Event.model_validate(body, context={"registry": registry}).type == "training.held"
    with pytest.raises(ValueError, match=r"unknown event type 'training\.held'"):
        Event.model_validate(body)
    with pytest.raises(ValueError, match=r"attributes\.paperless"):
        Event.model_validate(
            {**body, "attributes": {"paperless": "yes"}}, context={"registry": registry}
        )
