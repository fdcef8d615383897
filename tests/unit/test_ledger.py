from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from shared.domain.events import Event
from shared.domain.ledger import CountedEvent, Known, RecordedIds, fold, ids_to_look_up
from shared.domain.metrics import METRICS, contributions
from shared.domain.periods import LocalDate
from shared.domain.units import Unit, UnitLevel, UnitTree

ICT = timezone(timedelta(hours=7))
TREE = UnitTree(
    [
        Unit("p", "Tỉnh", UnitLevel.PROVINCE, None),
        Unit("d", "Huyện", UnitLevel.DISTRICT, "p"),
        Unit("c", "Xã", UnitLevel.COMMUNE, "d"),
        Unit("c2", "Xã 2", UnitLevel.COMMUNE, "d"),
        Unit("s", "Sở", UnitLevel.DEPARTMENT, "p"),
    ]
)
DAY = LocalDate(2024, 4, 22)


def ev(event_id: str, kind: str = "eid.activated", **fields: Any) -> Event:
    data: dict[str, Any] = {
        "event_id": event_id,
        "type": kind,
        "unit_id": "c",
        "occurred_at": datetime(2024, 4, 22, 9, 0, tzinfo=ICT),
        "attributes": {"level": 1},
    }
    data.update(fields)
    return Event.model_validate(data)


def pay(event_id: str, amount: int, kind: str = "nvtc", **fields: Any) -> Event:
    return ev(event_id, "payment.succeeded", attributes={"kind": kind}, amount_vnd=amount, **fields)


def void(event_id: str, target: str) -> Event:
    return ev(event_id, "event.voided", attributes={"voids": target})


def test_a_count_rolls_up_to_every_ancestor() -> None:
    outcome = fold([ev("a")], Known(), TREE)
    assert outcome.cells == {
        ("c", DAY): {"eid.activated": 1},
        ("d", DAY): {"eid.activated": 1},
        ("p", DAY): {"eid.activated": 1},
    }


def test_money_is_summed_as_exact_integers() -> None:
    amounts = [102_308_552, 33_224_853_808, 1, 999_999_999_999]
    outcome = fold([pay(str(i), a) for i, a in enumerate(amounts)], Known(), TREE)
    cell = outcome.cells[("p", DAY)]
    assert cell["payment.nvtc.amount_vnd"] == sum(amounts)
    assert isinstance(cell["payment.nvtc.amount_vnd"], int)
    assert cell["payment.nvtc.count"] == 4


def test_local_day_decides_the_cell() -> None:
    late = ev("late", occurred_at=datetime(2024, 4, 22, 16, 30, tzinfo=UTC))  # 23:30 local
    after = ev("after", occurred_at=datetime(2024, 4, 22, 17, 0, tzinfo=UTC))  # 00:00 on 23/4
    outcome = fold([late, after], Known(), TREE)
    assert outcome.cells[("c", DAY)] == {"eid.activated": 1}
    assert outcome.cells[("c", LocalDate(2024, 4, 23))] == {"eid.activated": 1}


def test_duplicates_in_a_batch_and_from_the_store_count_once() -> None:
    earlier = CountedEvent("c/b", "c", DAY, {"eid.activated": 1})
    outcome = fold([ev("a"), ev("a"), ev("b")], Known(counted={"c/b": earlier}), TREE)
    assert outcome.cells[("p", DAY)] == {"eid.activated": 1}
    assert (outcome.accepted, outcome.duplicates) == (1, 2)
    assert [c.key for c in outcome.counted] == ["c/a"]


def test_void_after_event_in_same_batch_cancels_it() -> None:
    outcome = fold([pay("a", 500), void("v", "a")], Known(), TREE)
    assert outcome.cells[("p", DAY)] == {"payment.nvtc.count": 0, "payment.nvtc.amount_vnd": 0}
    assert outcome.newly_voided == ["c/a"]


def test_void_of_event_counted_earlier_subtracts_its_contribution() -> None:
    earlier = CountedEvent(
        "c/a", "c", LocalDate(2024, 3, 1), {"payment.fee.count": 1, "payment.fee.amount_vnd": 700}
    )
    outcome = fold([void("v", "a")], Known(counted={"c/a": earlier}), TREE)
    assert outcome.cells[("c", LocalDate(2024, 3, 1))] == {
        "payment.fee.count": -1,
        "payment.fee.amount_vnd": -700,
    }
    assert ("c", DAY) not in outcome.cells
    assert outcome.voids_applied == 1


def test_a_void_takes_back_only_an_event_of_its_own_unit() -> None:
    elsewhere = CountedEvent("c2/a", "c2", DAY, {"eid.activated": 1})
    outcome = fold([void("v", "a")], Known(counted={"c2/a": elsewhere}), TREE)
    assert outcome.cells == {}
    assert outcome.voids_applied == 0 and outcome.newly_voided == ["c/a"]
    # The same id in another unit is another event: voided ahead in "c", still counted in "c2".
    later = fold([ev("a", unit_id="c2")], Known(voided=frozenset({"c/a"})), TREE)
    assert later.cells[("c2", DAY)] == {"eid.activated": 1}


def test_void_before_event_makes_it_count_for_nothing() -> None:
    first = fold([void("v", "a")], Known(), TREE)
    assert first.voids_pending == 1 and first.newly_voided == ["c/a"]
    later = fold([pay("a", 500)], Known(voided=frozenset({"c/a"})), TREE)
    assert later.cells == {}
    assert [c.key for c in later.counted] == ["c/a"]


def test_voided_event_posted_again_stays_voided() -> None:
    counted = {"c/a": CountedEvent("c/a", "c", DAY, {"eid.activated": 1})}
    outcome = fold([ev("a")], Known(counted=counted, voided=frozenset({"c/a"})), TREE)
    assert outcome.cells == {}
    assert outcome.duplicates == 1


def test_a_second_void_of_the_same_event_does_nothing() -> None:
    outcome = fold([ev("a"), void("v1", "a"), void("v2", "a")], Known(), TREE)
    assert outcome.cells[("p", DAY)] == {"eid.activated": 0}
    assert outcome.voids_applied == 1


def test_ids_to_look_up_include_void_targets() -> None:
    assert ids_to_look_up([ev("a"), void("v", "z")]) == {"c/a", "c/v", "c/z"}


def test_the_same_id_in_two_units_is_two_events() -> None:
    outcome = fold([ev("a"), ev("a", unit_id="c2"), ev("a")], Known(), TREE)
    assert outcome.cells[("p", DAY)] == {"eid.activated": 2}
    assert (outcome.accepted, outcome.duplicates) == (2, 1)


def test_contributions_by_type() -> None:
    filing = ev("f", "filing.processed", attributes={"channel": "online", "on_time": False})
    assert contributions(filing) == {"filing.processed": 1, "filing.processed.online": 1}
    offline = ev("g", "filing.submitted", attributes={"channel": "offline", "service_id": "s1"})
    assert contributions(offline) == {"filing.submitted": 1}
    failed = ev("h", "payment.failed", attributes={"kind": "fee"})
    assert contributions(failed) == {"payment.failed.count": 1}
    level2 = ev("i", attributes={"level": 2})
    assert contributions(level2) == {"eid.activated": 1, "eid.activated.level2": 1}
    for event in (filing, offline, failed, level2):
        assert all(metric in METRICS for metric in contributions(event))


def test_recorded_ids_hold_every_id_added_and_few_others() -> None:
    recorded = RecordedIds()
    added = [f"event-{n}" for n in range(200_000)]
    for key in added:
        recorded.add(key)
    assert all(key in recorded for key in added)  # never a false negative
    others = [f"other-{n}" for n in range(200_000)]
    false_positives = sum(key in recorded for key in others)
    # Two bits of 2^28 per id: about (2 * 200,000 / 2^28)^2 of others, a few at most.
    assert false_positives < 20
    assert 42 not in recorded


def test_recorded_ids_take_what_an_outcome_has_the_store_record() -> None:
    certified = ev(
        "s1",
        "certification.status",
        subject_id="dossier-1",
        attributes={"status": "completed"},
    )
    outcome = fold([ev("a"), void("v", "later"), certified], Known(), TREE)
    assert outcome.counted and outcome.newly_voided == ["c/later"] and outcome.subjects
    recorded = RecordedIds()
    recorded.add_outcome(outcome)
    for key in ["c/a", "c/v", "c/later", "c/s1", "dossier-1"]:
        assert key in recorded, key
    assert "never-seen" not in recorded
