"""Hostile input, without servers: strict JSON, hostile strings in every string field of an
event, numbers of the wrong kind, times out of range. All refused, none crashing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.intake import RejectedBatch, parse_events
from shared.domain.safety import (
    UnsafeInput,
    day_reason,
    local_day_start,
    strict_json,
    unsafe_text_reason,
)

NOW = datetime(2024, 4, 22, 10, 0, tzinfo=UTC)
NOT_BEFORE = local_day_start(datetime(2000, 1, 1).date())


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "type": "certification.status",
        "unit_id": "bu-dang-minh-hung",
        "occurred_at": "2024-04-22T16:00:00+07:00",
        "subject_id": "cert-1",
        "attributes": {"status": "completed"},
    }
    base.update(overrides)
    return base


def refused(payload: Any) -> list[dict[str, Any]]:
    with pytest.raises(RejectedBatch) as rejected:
        parse_events(payload, NOW, NOT_BEFORE)
    return [problem.to_dict() for problem in rejected.value.problems]


# -- strict JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"event_id": "a", "event_id": "b"}', "duplicate key"),
        (b'[{"attributes": {"level": 1, "level": 2}}]', "duplicate key"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'{"event_id": "caf\xe9"}', "not valid UTF-8"),
        (b'{"amount_vnd": NaN}', "NaN is not a JSON number"),
        (b'{"amount_vnd": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"amount_vnd": ' + b"9" * 5000 + b"}", "number too long"),
        (b'{"event_id": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b'{"event_id": "x"', "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b"{'single': 'quotes'}", "not valid JSON"),
    ],
)
def test_strict_json_refuses(body: bytes, reason: str) -> None:
    with pytest.raises(UnsafeInput, match=reason) as refused_body:
        strict_json(body)
    # The reason never carries the input itself along.
    assert len(str(refused_body.value)) < 200


def test_strict_json_accepts_what_json_is() -> None:
    # An escaped surrogate pair is a character outside the BMP, not a lone surrogate.
    assert strict_json(b'{"name": "\\ud83d\\ude00 T\xe1\xbb\x89nh"}') == {"name": "😀 Tỉnh"}
    assert strict_json(b'[{"a": 1}, {"a": 1}]') == [{"a": 1}, {"a": 1}]
    assert strict_json(b"[" * 200 + b"]" * 200) is not None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("bu-dang-minh-hung", True),
        ("Huyện Bù Đăng", True),
        ("$where", True),  # a value, never an operator: not refused for its look
        ("a\x00b", False),
        ("line\nbreak", False),
        ("esc\x1b[31m", False),
        ("c1\x85", False),
        ("del\x7f", False),
        ("\ud800", False),
    ],
)
def test_unsafe_text(text: str, ok: bool) -> None:
    assert (unsafe_text_reason(text) is None) == ok


def test_days_a_request_may_name() -> None:
    assert day_reason(datetime(2024, 4, 22).date()) is None
    assert day_reason(datetime(1, 1, 1).date()) is not None
    assert day_reason(datetime(9999, 12, 31).date()) is not None


# -- every string field of an event -----------------------------------------------------------

OPERATOR = {"$gt": ""}
SURROGATE = json.loads('"\\ud800"')


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", OPERATOR),
        ("event_id", ["a"]),
        ("event_id", ""),
        ("event_id", "x" * 129),
        ("event_id", "a\x00b"),
        ("event_id", "new\nline"),
        ("event_id", SURROGATE),
        ("event_id", 7),
        ("type", "$where"),
        ("type", OPERATOR),
        ("type", "cccd.issued\x00"),
        ("unit_id", "$where"),
        ("unit_id", "bu-dang.minh-hung"),
        ("unit_id", "bu-dang-minh-hung\n"),
        ("unit_id", "../binh-phuoc"),
        ("unit_id", OPERATOR),
        ("unit_id", "x" * 65),
        ("occurred_at", "$where"),
        ("occurred_at", OPERATOR),
        ("occurred_at", "2024-04-22T16:00:00"),  # no offset
        ("occurred_at", "2099-01-01T00:00:00+07:00"),  # the future
        ("occurred_at", "1999-12-31T23:59:59+07:00"),  # before the earliest day
        ("occurred_at", "0001-01-01T00:00:00+14:00"),
        ("occurred_at", "9999-12-31T23:59:59-23:59"),
        ("occurred_at", "2024-04-22T16:00:00+07:00" + " " * 100),
        ("occurred_at", 1_713_776_400),  # a Unix timestamp: pydantic alone would take it
        ("occurred_at", "1713776400"),
        ("occurred_at", 1_713_776_400.5),
        ("occurred_at", "2024-04-22"),
        ("occurred_at", "22/04/2024 16:00 +07:00"),
        ("subject_id", OPERATOR),
        ("subject_id", ""),
        ("subject_id", "x" * 129),
        ("subject_id", "cert\x00"),
        ("subject_id", SURROGATE),
    ],
)
def test_a_hostile_string_field_rejects_the_event(field: str, value: Any) -> None:
    problems = refused(event(**{field: value}))
    assert problems and all(p["index"] == 0 for p in problems)
    assert any(p["field"] and p["field"].split(".")[0] == field for p in problems), problems


@pytest.mark.parametrize(
    "attributes",
    [
        {"status": "completed", "$where": "1"},
        {"status": "completed", "a.b": "1"},
        {"status.$gt": ""},
        {"status": OPERATOR},
        {"status": {"$in": ["completed"]}},
        {"status": ["completed"]},
        {"status": "completed\x00"},
        {"status": SURROGATE},
        {"status": "x" * 257},
        {"status": None},
        {f"k{i}": "v" for i in range(17)},
        {"status": "completed", "nested": {"a": {"b": {"c": 1}}}},
    ],
)
def test_hostile_attributes_reject_the_event(attributes: Any) -> None:
    problems = refused(event(attributes=attributes))
    assert any(p["field"] and p["field"].startswith("attributes") for p in problems), problems


def test_attributes_must_be_an_object() -> None:
    assert refused(event(attributes="status=completed"))
    assert refused(event(attributes=[["status", "completed"]]))


@pytest.mark.parametrize(
    "amount",
    [-1, 1.5, 100.0, float("inf"), "100", True, 10**15 + 1, 2**64, -(2**63), None],
)
def test_amounts_must_be_non_negative_integers(amount: Any) -> None:
    payment = event(
        type="payment.succeeded", subject_id=None, attributes={"kind": "fee"}, amount_vnd=amount
    )
    problems = refused(payment)
    assert any(p["field"] and p["field"].startswith("amount_vnd") for p in problems), problems


@pytest.mark.parametrize("level", [1.0, 2.0, True, "2", 10**30, -1, [2], None])
def test_integers_must_be_integers(level: Any) -> None:
    activation = event(type="eid.activated", subject_id=None, attributes={"level": level})
    assert refused(activation)


def test_one_hostile_event_rejects_the_whole_batch_naming_it() -> None:
    batch = [event(event_id=f"e-{i}") for i in range(5)]
    batch[3]["unit_id"] = {"$ne": None}
    problems = refused(batch)
    assert {p["index"] for p in problems} == {3}


def test_ids_that_look_like_operators_are_plain_values() -> None:
    # The contract lets an event id be any 1-128 characters: these are accepted, and stay
    # values (they never become a query's operator or field path, see the e2e tests).
    for event_id in ["$where", "a.b", "$gt", "{'$gt': ''}", "=1+1", "../x"]:
        (parsed,) = parse_events(event(event_id=event_id), NOW, NOT_BEFORE)
        assert parsed.event_id == event_id


def test_intake_rules_do_not_apply_to_records_already_in_the_log() -> None:
    # The aggregator re-validates without a clock: a record accepted before a rule existed is
    # never refused by it later.
    (parsed,) = parse_events(event(occurred_at="1999-01-01T00:00:00+07:00"), NOW)
    assert parsed.occurred_at.year == 1999
