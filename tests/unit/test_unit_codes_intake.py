"""Ingest names units by official code, and refuses events outside their unit's dates
(issue 21)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.domain.events import Event
from shared.domain.intake import outside_validity, parse_events, resolve_unit_codes
from tests.unit.test_official_catalog import _ended, _tree

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def _event(**fields: object) -> dict[str, object]:
    return {
        "event_id": "e1",
        "type": "cccd.issued",
        "occurred_at": "2024-04-22T10:00:00+07:00",
        **fields,
    }


def test_ingest_takes_a_unit_code_instead_of_an_id() -> None:
    tree = _tree()
    payload, by_code, problems = resolve_unit_codes(
        [_event(unit_code="25408"), _event(unit_id="bu-dop-tan-tien")], tree, NOW.date()
    )
    assert problems == [] and by_code == {0}
    events = parse_events(payload, NOW)
    assert [e.unit_id for e in events] == ["bu-dang-minh-hung", "bu-dop-tan-tien"]
    # The same code on a day after 1 July 2025 names the ward that took it.
    payload, _, _ = resolve_unit_codes(
        _event(unit_code="25217", occurred_at="2025-07-02T08:00:00+07:00"), tree, NOW.date()
    )
    assert parse_events(payload, NOW)[0].unit_id == "dong-nai-2025-phuoc-long"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"unit_code": "25408", "unit_id": "bu-dang-minh-hung"}, "not both"),
        ({"unit_code": "99999"}, "unknown unit code"),
        ({"unit_code": 25408}, "official code"),
        ({"unit_code": "2540８"}, "official code"),
    ],
)
def test_a_bad_unit_code_is_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    _, _, problems = resolve_unit_codes(
        [_event(unit_id="x"), _event(**fields)], _tree(), NOW.date()
    )
    assert [(p.index, p.field) for p in problems] == [(1, "unit_code")]
    assert message in problems[0].message


def test_an_event_outside_its_units_dates_is_refused() -> None:
    tree = _tree().with_unit(_ended("chon-thanh-minh-hung", _tree()))

    def check(unit_id: str, occurred_at: str, kind: str = "cccd.issued") -> list[str]:
        fields: dict[str, object] = {"unit_id": unit_id, "occurred_at": occurred_at, "type": kind}
        if kind == "event.voided":
            fields["attributes"] = {"voids": "e0"}
        event = Event.model_validate(_event(**fields))
        return [f"{p.field}: {p.message}" for p in outside_validity([event], tree, set())]

    late = check("chon-thanh-minh-hung", "2025-07-02T08:00:00+07:00")
    assert len(late) == 1 and "ended on 2025-06-30" in late[0]
    assert "'dong-nai-2025-minh-hung'" in late[0] and late[0].startswith("unit_id: ")
    # A late event dated before the end is taken, and so is a void whenever it comes.
    assert check("chon-thanh-minh-hung", "2025-06-30T23:59:00+07:00") == []
    assert check("chon-thanh-minh-hung", "2025-07-02T08:00:00+07:00", "event.voided") == []
    early = check("dong-nai-2025-minh-hung", "2025-06-30T23:00:00+07:00")
    assert len(early) == 1 and "began on 2025-07-01" in early[0]
    # The local day decides: 17:30 UTC on 30 June is 1 July in Asia/Ho_Chi_Minh.
    assert check("dong-nai-2025-minh-hung", "2025-06-30T17:30:00+00:00") == []
