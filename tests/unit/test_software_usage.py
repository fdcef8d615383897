"""The software-usage table and the 1022 hotline: records of several types with states, the
report's rows, and the generators that replay the seed's figures."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from deploy.demo.seed_events import (
    HOTLINE_1022,
    hotline_events,
    load_table,
    rounds_to,
    software_usage_events,
    software_usage_fractions,
)
from shared.adapters.tables import software_usage_table
from shared.domain.certification import StatusEntry, SubjectState, states_on
from shared.domain.events import Event
from shared.domain.intake import foreign_records
from shared.domain.ledger import Known, fold, subjects_to_look_up
from shared.domain.registry import record_key, shipped_registry
from shared.domain.reports import ShareCell, software_usage_row, software_usage_total
from shared.domain.units import Unit, UnitLevel, UnitTree

ICT = timezone(timedelta(hours=7))
TREE = UnitTree(
    [
        Unit("p", "Tỉnh", UnitLevel.PROVINCE, None),
        Unit("s", "Sở", UnitLevel.DEPARTMENT, "p"),
        Unit("t", "Sở khác", UnitLevel.DEPARTMENT, "p"),
    ]
)
TABLE = load_table("ecabinet_2024-04-20.json")


def event(event_id: str, kind: str, day: int, unit: str = "s", **fields: Any) -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "type": kind,
            "unit_id": unit,
            "occurred_at": datetime(2024, 4, day, 9, tzinfo=ICT),
            **fields,
        }
    )


def iso(day: Any) -> str:
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def net(outcome: Any, unit: str = "p") -> dict[str, int]:
    result: Counter[str] = Counter()
    for (cell_unit, _), increments in outcome.cells.items():
        if cell_unit == unit:
            result.update(increments)
    return {k: v for k, v in result.items() if v}


def test_two_types_with_states_keep_two_records_of_one_subject_id() -> None:
    events = [
        event("c1", "certification.status", 1, subject_id="x", attributes={"status": "completed"}),
        event("m1", "staff.email_status", 2, subject_id="x", attributes={"status": "inactive"}),
        event("m2", "staff.email_status", 3, subject_id="x", attributes={"status": "active"}),
        event(
            "h1", "hotline.ticket_status", 4, subject_id="x", attributes={"status": "in_progress"}
        ),
    ]
    outcome = fold(events, Known(), TREE, shipped_registry())
    # Each type's latest status, not the latest of all three (which would be one record).
    assert net(outcome) == {
        "certification.completed": 1,
        "staff.email.active": 1,
        "hotline.in_progress": 1,
    }
    # Certification records keep the bare id they were stored under before.
    assert set(outcome.subjects) == {
        "x",
        record_key("staff.email_status", "x"),
        record_key("hotline.ticket_status", "x"),
    }
    assert record_key("certification.status", "x") == "x"
    assert subjects_to_look_up(events, Known(), shipped_registry()) == set(outcome.subjects)
    # A void takes back the e-mail status it names: the earlier one stands again.
    again = fold(
        [event("v", "event.voided", 5, attributes={"voids": "m2"})],
        Known(counted={r.key: r for r in outcome.counted}, subjects=dict(outcome.subjects)),
        TREE,
        shipped_registry(),
    )
    assert net(again) == {"staff.email.active": -1, "staff.email.inactive": 1}


def test_a_record_belongs_to_its_unit_per_type() -> None:
    mine = event("a", "staff.email_status", 1, subject_id="nv-1", attributes={"status": "active"})
    # The same id as another type's record, of another unit: not the same record.
    other = event(
        "b",
        "certification.status",
        1,
        unit="t",
        subject_id="nv-1",
        attributes={"status": "completed"},
    )
    theirs = event(
        "c", "staff.email_status", 2, unit="t", subject_id="nv-1", attributes={"status": "inactive"}
    )
    outcome = fold([mine, other, theirs], Known(), TREE, shipped_registry())
    assert [r.event.event_id for r in outcome.refused] == ["c"]
    assert net(outcome) == {"staff.email.active": 1, "certification.completed": 1}
    assert [p.index for p in foreign_records([mine, other, theirs], {})] == [2]
    owners = {record_key("staff.email_status", "nv-1"): "t"}
    assert [p.index for p in foreign_records([mine, other], owners)] == [0]


def test_the_shipped_entries_count_meetings_documents_and_tickets() -> None:
    events = [
        event("1", "meeting.held", 1, attributes={"paperless": True, "platform": "ecabinet"}),
        event("2", "meeting.held", 1, attributes={"paperless": False, "platform": "ecabinet"}),
        event("3", "meeting.held", 1, attributes={"paperless": True, "platform": "zoom"}),
        event("4", "meeting.held", 1, attributes={"paperless": True}),
        event("5", "document.issued", 1, attributes={"signed": True, "online": False}),
        event("6", "document.issued", 1, attributes={"signed": False, "online": True}),
        event(
            "7",
            "hotline.ticket_received",
            1,
            subject_id="k",
            attributes={"handled_by": "department"},
        ),
        event(
            "8", "hotline.ticket_status", 1, subject_id="k", attributes={"status": "in_progress"}
        ),
        event("9", "hotline.ticket_status", 2, subject_id="k", attributes={"status": "processed"}),
    ]
    assert net(fold(events, Known(), TREE, shipped_registry())) == {
        "meeting.paperless.ecabinet": 1,
        "document.issued": 2,
        "document.signed": 1,
        "document.online": 1,
        "hotline.received": 1,
        "hotline.forwarded": 1,
        "hotline.processed": 1,
    }
    indicators = shipped_registry().indicators
    assert indicators["staff.email_rate"].denominator == (
        "staff.email.active",
        "staff.email.inactive",
    )
    assert all(indicators[i].name_vi and indicators[i].name_en for i in HOTLINE_1022 if "." in i)


def test_rows_and_the_total_row_are_sums_over_sums() -> None:
    unit = Unit("s", "Sở", UnitLevel.DEPARTMENT, "p")
    row = software_usage_row(
        unit,
        {
            "meeting.paperless.ecabinet": 2,
            "document.issued": 3,
            "document.signed": 2,
            "document.online": 3,
        },
        {"meeting.paperless.ecabinet": 9, "staff.email.active": 52, "staff.email.inactive": 3},
    )
    assert (row.ecabinet_meetings_period, row.ecabinet_meetings_total) == (2, 9)
    assert row.signed_documents == ShareCell(2, 3, Decimal("66.67"))  # half-up to 2 decimals
    assert row.documents_online.percent == Decimal("100.00")
    assert row.official_email == ShareCell(52, 55, Decimal("94.55"))  # 94.5454…
    other = software_usage_row(unit, {"document.issued": 1}, {"staff.email.active": 1})
    total = software_usage_total([row, other])
    assert total.signed_documents == ShareCell(2, 4, Decimal("50.00"))  # not the rows' mean
    assert total.official_email == ShareCell(53, 56, Decimal("94.64"))
    assert total.ecabinet_meetings_total == 9 and total.name == "TỔNG"
    assert software_usage_row(unit, {}, {}).empty and not other.empty
    nothing = software_usage_row(unit, {}, {"meeting.paperless.ecabinet": 1})
    assert nothing.signed_documents.percent is None and not nothing.empty


def test_the_table_has_the_seed_headers() -> None:
    report = {
        "from": "2024-03-21",
        "to": "2024-04-20",
        "rows": [
            {
                "name": "Sở",
                "ecabinet_meetings_period": 1,
                "ecabinet_meetings_total": 2,
                **{
                    c: {"percent": p}
                    for c, p in (
                        ("signed_documents", 98),
                        ("documents_online", 100),
                        ("official_email", 94.55),
                    )
                },
            }
        ],
    }
    report["total"] = {**report["rows"][0], "name": "TỔNG"}
    title, header, rows = software_usage_table(report)
    assert header[2] == "Hợp không giấy qua phần mềm Ecabinet (từ 21/3- 20/4/2024)"
    assert rows == [[1, "Sở", 1, 2, 98, 100, 94.55], ["", "TỔNG", 1, 2, 98, 100, 94.55]]
    assert "21/3/2024 - 20/4/2024" in title


def test_the_replayed_fractions_show_as_the_seed_prints_them() -> None:
    signed, email = software_usage_fractions(TABLE)
    for row in TABLE["rows"]:
        k, n = signed[row["unit_id"]]
        assert ShareCell.of(k, n).percent == Decimal(row["signed_documents_percent"])
        active, staff = email[row["unit_id"]]
        assert ShareCell.of(active, staff).percent == Decimal(row["official_email_usage_percent"])
    total = TABLE["total"]
    assert rounds_to(
        sum(k for k, _ in signed.values()),
        sum(n for _, n in signed.values()),
        total["signed_documents_percent"],
    )
    assert rounds_to(
        sum(k for k, _ in email.values()),
        sum(n for _, n in email.values()),
        total["official_email_usage_percent"],
    )


def test_the_replayed_events_recount_to_the_table() -> None:
    places = {row["unit_id"]: [row["unit_id"]] for row in TABLE["rows"]}
    events = [Event.model_validate(e) for e in software_usage_events(TABLE, places, seed=1)]
    tree = UnitTree(
        [Unit("p", "Tỉnh", UnitLevel.PROVINCE, None)]
        + [Unit(u, u, UnitLevel.DEPARTMENT, "p") for u in places]
    )
    outcome = fold(events, Known(), tree, shipped_registry())
    first, last = TABLE["period"]["from"], TABLE["period"]["to"]
    in_range: Counter[str] = Counter()
    up_to: Counter[str] = Counter()
    for (unit, day), increments in outcome.cells.items():
        if unit == "p" and iso(day) <= last:
            up_to.update(increments)
            if iso(day) >= first:
                in_range.update(increments)
    total = software_usage_row(Unit("p", "Tỉnh", UnitLevel.PROVINCE, None), in_range, up_to)
    assert (total.ecabinet_meetings_period, total.ecabinet_meetings_total) == (139, 4145)
    assert total.signed_documents.percent == Decimal("88.80")
    assert total.documents_online.percent == Decimal("100")
    assert total.official_email.percent == Decimal("86.35")


def test_the_hotline_tickets_recount_to_the_seed_figures() -> None:
    events = [Event.model_validate(e) for e in hotline_events("s", seed=3)]
    outcome = fold(events, Known(), TREE, shipped_registry())
    counted: Counter[str] = Counter()
    for (unit, day), increments in outcome.cells.items():
        if unit == "p" and HOTLINE_1022["from"] <= iso(day) <= HOTLINE_1022["to"]:
            counted.update(increments)
    assert {k: counted[k] for k in HOTLINE_1022 if k.startswith("hotline.")} == {
        "hotline.received": 360,
        "hotline.processed": 351,
        "hotline.in_progress": 9,
        "hotline.answered_by_operator": 329,
        "hotline.forwarded": 31,
    }


def test_staff_are_counted_at_the_status_they_had_on_a_past_day() -> None:
    """states_on: each record at its latest status dated on or before the day (local), at
    that status's unit and every unit above; none before its first status."""
    tree = UnitTree(
        [
            Unit("p", "Tỉnh", UnitLevel.PROVINCE, None),
            Unit("d", "Huyện", UnitLevel.DISTRICT, "p"),
            Unit("c", "Xã", UnitLevel.COMMUNE, "d"),
        ]
    )
    ict = timezone(timedelta(hours=7))

    def entry(day: str, hour: int, status: str, n: int) -> StatusEntry:
        when = datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=ict)
        return StatusEntry(when, f"c/e{n}", status, "c", "staff.email_status")

    records = [
        # Active on 20/4, inactive from 25/4.
        SubjectState(
            "a", [entry("2024-04-01", 9, "active", 1), entry("2024-04-25", 9, "inactive", 2)]
        ),
        # Inactive at 23:30 local on 20/4 (16:30 UTC): that local day counts.
        SubjectState("b", [entry("2024-04-20", 23, "inactive", 3)]),
        # Its first status after the day: not counted on it.
        SubjectState("c", [entry("2024-04-21", 0, "active", 4)]),
    ]
    registry = shipped_registry()
    on_20 = states_on(records, date(2024, 4, 20), registry, tree)
    assert (
        on_20["c"]
        == on_20["d"]
        == on_20["p"]
        == {
            "staff.email.active": 1,
            "staff.email.inactive": 1,
        }
    )
    on_30 = states_on(records, date(2024, 4, 30), registry, tree)
    assert on_30["p"] == {"staff.email.active": 1, "staff.email.inactive": 2}
    assert states_on(records, date(2024, 3, 31), registry, tree) == {}
