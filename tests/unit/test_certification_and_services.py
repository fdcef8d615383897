from datetime import datetime, timedelta, timezone
from typing import Any

from shared.domain.certification import StatusEntry, SubjectState
from shared.domain.events import Event
from shared.domain.ledger import Known, fold, subjects_to_look_up
from shared.domain.metrics import contributions
from shared.domain.periods import LocalDate
from shared.domain.services_share import online_service_share
from shared.domain.units import Unit, UnitLevel, UnitTree

ICT = timezone(timedelta(hours=7))
TREE = UnitTree(
    [
        Unit("p", "Tỉnh", UnitLevel.PROVINCE, None),
        Unit("d", "Huyện", UnitLevel.DISTRICT, "p"),
        Unit("c", "Xã", UnitLevel.COMMUNE, "d"),
        Unit("s", "Sở", UnitLevel.DEPARTMENT, "p"),
    ]
)


def status(
    event_id: str, subject: str, value: str, day: int, hour: int = 9, unit: str = "c"
) -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "type": "certification.status",
            "unit_id": unit,
            "subject_id": subject,
            "occurred_at": datetime(2024, 4, day, hour, tzinfo=ICT),
            "attributes": {"status": value},
        }
    )


def void(event_id: str, target: str) -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "type": "event.voided",
            "unit_id": "c",
            "occurred_at": datetime(2024, 4, 22, tzinfo=ICT),
            "attributes": {"voids": target},
        }
    )


def net(outcome: Any, unit: str = "p") -> dict[str, int]:
    result: dict[str, int] = {}
    for (cell_unit, _), increments in outcome.cells.items():
        if cell_unit == unit:
            for metric, value in increments.items():
                result[metric] = result.get(metric, 0) + value
    return {k: v for k, v in result.items() if v}


def test_latest_status_by_occurred_at_wins_in_any_arrival_order() -> None:
    events = [
        status("e1", "r1", "pending_signature", 20),
        status("e3", "r1", "completed", 22),
        status("e2", "r1", "pending_seal", 21),  # arrives last, happened in between
        status("e4", "r2", "rejected", 21),
    ]
    outcome = fold(events, Known(), TREE)
    assert net(outcome) == {"certification.completed": 1, "certification.rejected": 1}
    # The count sits on the day of the record's latest status.
    assert outcome.cells[("c", LocalDate(2024, 4, 22))]["certification.completed"] == 1
    assert len(outcome.subjects["r1"].entries) == 3


def test_status_history_from_the_store_is_continued() -> None:
    prior = SubjectState(
        "r1",
        [StatusEntry(datetime(2024, 4, 21, 9, tzinfo=ICT), "e2", "pending_seal", "c")],
    )
    outcome = fold([status("e5", "r1", "completed", 22)], Known(subjects={"r1": prior}), TREE)
    assert net(outcome) == {"certification.completed": 1, "certification.pending_seal": -1}
    stale = fold([status("e0", "r1", "pending_signature", 19)], Known(subjects={"r1": prior}), TREE)
    assert net(stale) == {}


def test_voiding_the_latest_status_restores_the_one_before() -> None:
    outcome = fold(
        [
            status("e1", "r1", "pending_seal", 20),
            status("e2", "r1", "completed", 21),
            void("v1", "e2"),
        ],
        Known(),
        TREE,
    )
    assert net(outcome) == {"certification.pending_seal": 1}
    assert [e.event_key for e in outcome.subjects["r1"].entries] == ["c/e1"]


def test_a_record_belongs_to_the_unit_of_its_first_event() -> None:
    events = [
        status("e1", "r1", "completed", 20),
        # Another unit, later: would move the record out of `completed` into its own count.
        status("x1", "r1", "cancelled", 22, unit="s"),
    ]
    outcome = fold(events, Known(), TREE)
    assert net(outcome) == {"certification.completed": 1}
    assert net(outcome, "s") == {}
    assert [(r.event.event_id, "belongs to unit 'c'" in r.reason) for r in outcome.refused] == [
        ("x1", True)
    ]
    assert outcome.accepted == 1 and outcome.subjects["r1"].owner == "c"
    # Across batches: the owner comes with the history from the store.
    later = fold(
        [status("x2", "r1", "rejected", 23, unit="s")],
        Known(subjects={"r1": outcome.subjects["r1"]}),
        TREE,
    )
    assert net(later) == {} and len(later.refused) == 1


def test_a_record_stored_before_owners_were_kept_belongs_to_its_first_entry() -> None:
    legacy = SubjectState(
        "r1", [StatusEntry(datetime(2024, 4, 21, 9, tzinfo=ICT), "e2", "pending_seal", "c")]
    )
    assert legacy.owner == "c"
    intruder = status("x", "r1", "completed", 22, unit="s")
    outcome = fold([intruder], Known(subjects={"r1": legacy}), TREE)
    assert net(outcome) == {} and len(outcome.refused) == 1


def test_subjects_of_voided_targets_are_looked_up() -> None:
    first = fold([status("e1", "r9", "completed", 20)], Known(), TREE)
    counted = {c.key: c for c in first.counted}
    assert subjects_to_look_up([void("v", "e1")], Known(counted=counted)) == {"r9"}


def filing(event_id: str, unit: str, service: str, channel: str = "online") -> Event:
    return Event.model_validate(
        {
            "event_id": event_id,
            "type": "filing.submitted",
            "unit_id": unit,
            "occurred_at": datetime(2024, 4, 20, tzinfo=ICT),
            "attributes": {"channel": channel, "service_id": service},
        }
    )


def test_online_service_share_is_sum_over_sum() -> None:
    catalogs = {"s": frozenset({"a", "b", "c", "d"}), "d": frozenset({"x", "y"})}
    events = [
        filing("1", "s", "a"),
        filing("2", "s", "a"),
        filing("3", "s", "b"),
        filing("4", "s", "z"),  # not in the catalog: counts as a filing, not as a service
        filing("5", "c", "x"),  # filed at a commune: the district offers it
        filing("6", "d", "y", channel="offline"),
    ]
    outcome = fold(events, Known(), TREE)
    totals = {unit: net(outcome, unit) for unit in ("p", "d", "s", "c")}
    assert online_service_share("s", TREE, catalogs, totals["s"]) == (2, 4)
    assert online_service_share("d", TREE, catalogs, totals["d"]) == (1, 2)
    assert online_service_share("p", TREE, catalogs, totals["p"]) == (3, 6)
    assert online_service_share("c", TREE, catalogs, totals["c"]) == (0, 0)
    assert contributions(events[5]) == {"filing.submitted": 1}
