from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.domain.events import Event, EventType
from shared.domain.intake import (
    RejectedBatch,
    foreign_records,
    foreign_voids,
    parse_events,
    split_duplicates,
    void_probes,
)

NOW = datetime(2024, 4, 22, 10, 0, tzinfo=UTC)


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "type": "eid.activated",
        "unit_id": "bu-dang-minh-hung",
        "occurred_at": "2024-04-22T16:00:00+07:00",
        "attributes": {"level": 2},
    }
    base.update(overrides)
    return base


def test_a_valid_event_parses() -> None:
    parsed = Event.model_validate(event(), context={"now": NOW})
    assert parsed.type == EventType.EID_ACTIVATED
    assert parsed.partition_key() == b"e-1"


def test_a_void_is_keyed_by_the_event_it_voids() -> None:
    void = Event.model_validate(
        event(event_id="v-1", type="event.voided", attributes={"voids": "e-9"})
    )
    assert void.voids == "e-9"
    assert void.partition_key() == b"e-9"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"type": "eid.deleted"}, "type"),
        ({"unit_id": "Bù Đăng"}, "unit_id"),
        ({"occurred_at": "2024-04-22T16:00:00"}, "occurred_at"),
        ({"occurred_at": "2024-04-22T10:06:00+00:00"}, "occurred_at"),
        ({"attributes": {}}, "attributes.level"),
        ({"attributes": {"level": 3}}, "attributes.level"),
        ({"attributes": {"level": True}}, "attributes.level"),
        ({"attributes": {"level": "2"}}, "attributes.level"),
        ({"attributes": {"level": 2, "$where": "1"}}, "attributes.$where"),
        ({"amount_vnd": 5}, "amount_vnd"),
        ({"surprise": 1}, "surprise"),
        ({"type": "payment.succeeded", "attributes": {"kind": "nvtc"}}, "amount_vnd"),
        (
            {"type": "payment.succeeded", "attributes": {"kind": "nvtc"}, "amount_vnd": -1},
            "amount_vnd",
        ),
        (
            {"type": "payment.succeeded", "attributes": {"kind": "nvtc"}, "amount_vnd": 1.5},
            "amount_vnd",
        ),
        (
            {"type": "payment.succeeded", "attributes": {"kind": "cash"}, "amount_vnd": 1},
            "attributes.kind",
        ),
        ({"type": "certification.status", "attributes": {"status": "completed"}}, "subject_id"),
        (
            {"type": "filing.submitted", "attributes": {"channel": "online"}},
            "attributes.service_id",
        ),
    ],
)
def test_bad_events_are_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(RejectedBatch) as rejected:
        parse_events([event(event_id="ok"), event(**overrides)], NOW)
    problems = rejected.value.problems
    assert [p.index for p in problems] == [1]
    assert problems[0].field == field


def test_future_within_five_minutes_is_accepted() -> None:
    soon = (NOW + timedelta(minutes=4)).isoformat()
    assert parse_events(event(occurred_at=soon), NOW)[0].occurred_at == NOW + timedelta(minutes=4)


def test_every_bad_event_of_a_batch_is_named() -> None:
    with pytest.raises(RejectedBatch) as rejected:
        parse_events([event(event_id=""), event(), "not an object", event(type="x")], NOW)
    assert [p.index for p in rejected.value.problems] == [0, 2, 3]


def test_batch_limits() -> None:
    with pytest.raises(RejectedBatch):
        parse_events([], NOW)
    with pytest.raises(RejectedBatch):
        parse_events([event(event_id=str(i)) for i in range(1001)], NOW)
    assert len(parse_events([event(event_id=str(i)) for i in range(1000)], NOW)) == 1000
    with pytest.raises(RejectedBatch):
        parse_events("an event", NOW)


def test_duplicates_within_and_across_requests() -> None:
    events = parse_events([event(event_id="a"), event(event_id="b"), event(event_id="a")], NOW)
    fresh, duplicates = split_duplicates(events, {events[1].key})
    assert [e.event_id for e in fresh] == ["a"]
    assert duplicates == 2


def test_ids_are_told_apart_within_their_unit() -> None:
    other_unit = event(event_id="a", unit_id="dong-xoai")
    events = parse_events([event(event_id="a"), other_unit, event(event_id="a")], NOW)
    fresh, duplicates = split_duplicates(events, set())
    assert [(e.unit_id, e.event_id) for e in fresh] == [
        ("bu-dang-minh-hung", "a"),
        ("dong-xoai", "a"),
    ]
    assert duplicates == 1
    assert events[0].key == "bu-dang-minh-hung/a" and events[1].key == "dong-xoai/a"


def test_a_record_event_is_keyed_by_its_record() -> None:
    certified = Event.model_validate(
        event(
            event_id="c-1",
            type="certification.status",
            subject_id="dossier-7",
            attributes={"status": "completed"},
        )
    )
    assert certified.partition_key() == b"dossier-7"


def test_one_payment_is_bounded_at_intake() -> None:
    largest = event(type="payment.succeeded", attributes={"kind": "fee"}, amount_vnd=10**12)
    assert parse_events([largest], NOW)[0].amount_vnd == 10**12
    with pytest.raises(RejectedBatch) as refused:
        parse_events([{**largest, "amount_vnd": 10**12 + 1}], NOW)
    problems = refused.value.problems
    assert [(p.field, "at most 1,000,000,000,000" in p.message) for p in problems] == [
        ("amount_vnd", True)
    ]


def test_records_of_another_unit_and_voids_of_its_events_are_named() -> None:
    mine = event(
        event_id="c-1",
        type="certification.status",
        subject_id="dossier-7",
        attributes={"status": "completed"},
    )
    theirs = {**mine, "event_id": "c-2", "unit_id": "dong-xoai"}
    events = parse_events([mine, theirs], NOW)
    assert [(p.index, p.field) for p in foreign_records(events, {})] == [(1, "subject_id")]
    assert [p.index for p in foreign_records(events[:1], {"dossier-7": "dong-xoai"})] == [0]
    void = parse_events(
        [event(event_id="v", type="event.voided", attributes={"voids": "t-1"})], NOW
    )
    probes = void_probes(void, ["bu-dang-minh-hung", "dong-xoai"])
    assert probes == {"dong-xoai/t-1": ("t-1", "dong-xoai")}
    problems = foreign_voids(void, {"t-1": "dong-xoai"})
    assert [(p.field, "'dong-xoai'" in p.message) for p in problems] == [("attributes.voids", True)]
    assert foreign_voids(void, {}) == []


def test_model_is_strict_about_money() -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(
            event(type="payment.succeeded", attributes={"kind": "fee"}, amount_vnd="100")
        )
