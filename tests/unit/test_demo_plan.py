"""`make demo`'s events, without servers: the same on every run, and the seed's figures when
recounted independently (the e2e run through the real stack is tests/demo/)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from typing import Any

import pytest

from deploy.demo import DEMO_DAY, DemoPlan, demo_plan
from deploy.demo.seed_events import EID_ACTIVATED_BY_Q1_2024, communes_of, load_table
from deploy.local.stack import REPO as REPO_ROOT
from shared.domain.periods import LocalDate
from shared.domain.units import UnitTree, bundled_catalog, load_catalog

UNITS = [
    {"id": u.id, "level": u.level.value, "parent_id": u.parent_id}
    for u in UnitTree(load_catalog(bundled_catalog())).on(date.fromisoformat(DEMO_DAY))
]
SHIPPED = {
    "4-phu-2024": json.loads(
        (REPO_ROOT / "shared/data/campaigns/4-phu-2024.json").read_text("utf-8")
    )["targets"]
}


@pytest.fixture(scope="module")
def plan() -> DemoPlan:
    return demo_plan(UNITS, SHIPPED)


def section(plan: DemoPlan, prefix: str) -> list[dict[str, Any]]:
    [events] = [events for name, events in plan.sections if name.startswith(prefix)]
    return events


def local_day(event: dict[str, Any]) -> date:
    day = LocalDate.of(datetime.fromisoformat(event["occurred_at"]))
    return date(day.year, day.month, day.day)


def test_a_second_plan_is_the_same_events_with_the_same_ids(plan: DemoPlan) -> None:
    again = demo_plan(UNITS, SHIPPED)
    assert again.sections == plan.sections
    assert again.targets == plan.targets and again.services == plan.services
    ids = [e["event_id"] for _, events in plan.sections for e in events]
    assert len(ids) == len(set(ids)) == plan.events


def test_the_eid_activations_are_518898_by_the_end_of_the_first_quarter(plan: DemoPlan) -> None:
    eid = section(plan, "e-ID")
    assert len(eid) == EID_ACTIVATED_BY_Q1_2024 == 518_898
    communes = set(communes_of(UNITS, "binh-phuoc"))
    assert {e["unit_id"] for e in eid} <= communes
    days = [local_day(e) for e in eid]
    assert min(days) >= date(2022, 1, 1) and max(days) == date(2024, 3, 31)
    # Nothing else of the demo activates an e-ID before April: the campaign's figure on
    # 31 March is exactly the seed's.
    others = [e for name, events in plan.sections if not name.startswith("e-ID") for e in events]
    assert not [
        e for e in others if e["type"] == "eid.activated" and local_day(e) < date(2024, 4, 4)
    ]


def test_the_certification_records_stand_at_the_seed_figures(plan: DemoPlan) -> None:
    table = load_table("certification_2024-04-22.json")["rows"][0]
    latest: dict[str, tuple[datetime, str]] = {}
    for event in section(plan, "certification"):
        seen = latest.get(event["subject_id"])
        when = datetime.fromisoformat(event["occurred_at"])
        if seen is None or seen[0] < when:
            latest[event["subject_id"]] = (when, event["attributes"]["status"])
    counted = Counter(status for _, status in latest.values())
    for status in ("pending_signature", "pending_seal", "completed", "cancelled", "rejected"):
        assert counted[status] == table[status], status
    assert len(latest) == table["total"] == 140_278


def test_four_coverages_targets_every_commune_and_keeps_the_seed_ones(plan: DemoPlan) -> None:
    targets = plan.targets["4-phu-2024"]
    keyed = {(t["unit_id"], t["metric"]): t["target"] for t in targets}
    for shipped in SHIPPED["4-phu-2024"]:
        assert keyed[(shipped["unit_id"], shipped["metric"])] == shipped["target"]
    communes = communes_of(UNITS, "binh-phuoc")
    assert {u for u, _ in keyed} >= set(communes) and len(communes) > 100
    # The districts' and the province's targets are their communes' sums.
    for metric in ("cccd.issued", "eid.activated", "sim.registered", "smartphone.replaced"):
        assert keyed[("binh-phuoc", metric)] == sum(keyed[(c, metric)] for c in communes)
        bu_dang = [u["id"] for u in UNITS if u["parent_id"] == "bu-dang"]
        assert keyed[("bu-dang", metric)] == sum(keyed[(c, metric)] for c in bu_dang)
    keyed = {key: target for key, target in keyed.items() if key[0] in communes}
    events = section(plan, "4 phủ")
    done = Counter((e["unit_id"], e["type"]) for e in events)
    assert all(done[key] <= target for key, target in keyed.items())
    # Some communes are ahead of the pace by 22 April (19 of 91 days) and some behind it.
    pace = {key: done[key] / target for key, target in keyed.items() if target >= 50}
    assert min(pace.values()) < 19 / 91 * 0.9 < 19 / 91 < max(pace.values())
    assert {local_day(e) for e in events} <= {date(2024, 4, d) for d in range(4, 23)}
