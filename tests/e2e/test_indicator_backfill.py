"""Indicators defined and changed at run time, through the real services (contract,
"Indicators are data"): an indicator over 20,000 events counted before it existed is backfilled
from the log while events keep streaming in, reaches `ready` with exactly what an independent
recount of every posted event says, and is recounted exactly when its `where` changes; bad
definitions are `422` naming the problem and change nothing; a target's indicator cannot be
deleted; a backfilling indicator's totals are `409` naming the status."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import httpx

from tests.conftest import BackgroundPoster, Pipeline, post_many
from tests.faults.harness import UNITS, lineage

FIRST_DAY = date(2024, 3, 1)
DAYS = 40


def api(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, pipeline.url("api", path), headers=pipeline.headers(), timeout=30, **kwargs
    )


def totals_answer(pipeline: Pipeline, metric: str, period: str) -> httpx.Response:
    """The province's `/v1/totals` answer, whatever its status."""
    return httpx.get(
        pipeline.url("api", "/v1/totals"),
        params={"unit_id": "binh-phuoc", "metric": metric, "period": period},
        headers=pipeline.headers(),
        timeout=10,
    )


def activations(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        events.append(
            {
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "type": "eid.activated",
                "unit_id": rng.choice(UNITS),
                "occurred_at": f"{day.isoformat()}T{rng.randint(0, 23):02d}:00:00+07:00",
                "attributes": {"level": rng.choice((1, 2))},
            }
        )
    return events


def recount(events: list[dict[str, Any]], levels: set[int]) -> dict[tuple[str, str], int]:
    """(unit, period) → events of those levels, for the unit and everything under it (each
    event id once, a voided one not at all), over all time and each local day."""
    voided = {e["attributes"]["voids"] for e in events if e["type"] == "event.voided"}
    seen: set[tuple[str, str]] = set()
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        key = (event["unit_id"], event["event_id"])
        if event["type"] != "eid.activated" or key in seen:
            continue
        seen.add(key)
        if event["event_id"] in voided or event["attributes"]["level"] not in levels:
            continue
        for unit in lineage(event["unit_id"]):
            totals[(unit, "all")] += 1
            totals[(unit, f"day:{event['occurred_at'][:10]}")] += 1
    return totals


def status_of(pipeline: Pipeline, indicator: str) -> str:
    listed = {i["id"]: i for i in api(pipeline, "GET", "/v1/indicators").json()}
    return str(listed[indicator]["status"])


def wait_ready(pipeline: Pipeline, indicator: str, timeout_s: float = 300) -> float:
    started = time.monotonic()
    while status_of(pipeline, indicator) != "ready":
        assert time.monotonic() - started < timeout_s, f"{indicator} still backfilling"
        time.sleep(0.5)
    return time.monotonic() - started


def assert_exact(pipeline: Pipeline, indicator: str, expected: dict[tuple[str, str], int]) -> None:
    wrong = {}
    for unit in UNITS:
        got = pipeline.total(unit, indicator, "all")["value"]
        if got != expected.get((unit, "all"), 0):
            wrong[(unit, "all")] = (got, expected.get((unit, "all"), 0))
    for offset in range(DAYS):
        period = f"day:{(FIRST_DAY + timedelta(days=offset)).isoformat()}"
        got = pipeline.total("binh-phuoc", indicator, period)["value"]
        if got != expected.get(("binh-phuoc", period), 0):
            wrong[("binh-phuoc", period)] = (got, expected.get(("binh-phuoc", period), 0))
    assert not wrong, wrong


LEVEL_ONE = {
    "kind": "count",
    "event_type": "eid.activated",
    "where": {"level": 1},
    "name_vi": "Tài khoản định danh mức 1 được kích hoạt",
    "name_en": "Level 1 e-ID accounts activated",
    "unit": "lượt",
}


def test_an_indicator_is_backfilled_exactly_while_events_stream_in(
    own_pipeline: Pipeline,
) -> None:
    pipeline = own_pipeline
    posted = activations(20_000, seed=20)
    asyncio.run(post_many(pipeline, posted))
    pipeline.wait_reflected(timeout_s=120)
    assert pipeline.total("binh-phuoc", "eid.activated", "all")["value"] == 20_000

    # Defined while more events stream in, some of them posted twice.
    streaming = activations(6_000, seed=21)
    streaming += random.Random(22).sample(posted, 500)
    poster = BackgroundPoster(pipeline, streaming, concurrency=2)
    created = api(pipeline, "PUT", "/v1/indicators/eid.level1", json=LEVEL_ONE)
    assert created.status_code == 201, created.text
    assert created.json() == {"id": "eid.level1", "version": 1, "status": "backfilling"}
    refused = totals_answer(pipeline, "eid.level1", "all")
    assert refused.status_code == 409, refused.text
    assert "backfilling" in refused.json()["detail"]
    poster.join()
    posted += streaming
    took = wait_ready(pipeline, "eid.level1")
    pipeline.wait_reflected(timeout_s=120)
    assert_exact(pipeline, "eid.level1", recount(posted, {1}))
    # Everything else went on being counted, each event once.
    assert pipeline.total("binh-phuoc", "eid.activated", "all")["value"] == 26_000
    print(f"backfill of 20,000+ events ready after {took:.1f} s")

    # Past events voided after the backfill take their share of the new indicator back too
    # (the backfill's ledger holds what each contributed).
    voids = [
        {
            "event_id": f"void-{e['event_id']}",
            "type": "event.voided",
            "unit_id": e["unit_id"],
            "occurred_at": e["occurred_at"],
            "attributes": {"voids": e["event_id"]},
        }
        for e in posted[:300]
    ]
    asyncio.run(post_many(pipeline, voids))
    posted += voids
    pipeline.wait_reflected(timeout_s=120)
    assert_exact(pipeline, "eid.level1", recount(posted, {1}))

    # Its `where` changed, twice in a row, while events stream in: recounted exactly by the
    # last definition.
    more = activations(3_000, seed=23)
    poster = BackgroundPoster(pipeline, more, concurrency=2)
    both = api(pipeline, "PUT", "/v1/indicators/eid.level1", json={**LEVEL_ONE, "where": {}})
    assert both.status_code == 200 and both.json()["status"] == "backfilling", both.text
    level_two = {**LEVEL_ONE, "where": {"level": [2]}}
    two = api(pipeline, "PUT", "/v1/indicators/eid.level1", json=level_two)
    assert two.status_code == 200, two.text
    assert two.json() == {"id": "eid.level1", "version": 3, "status": "backfilling"}
    poster.join()
    posted += more
    wait_ready(pipeline, "eid.level1")
    pipeline.wait_reflected(timeout_s=120)
    assert_exact(pipeline, "eid.level1", recount(posted, {2}))
    assert_exact(pipeline, "eid.activated", recount(posted, {1, 2}))

    # A change of names alone counts nothing again: ready at once, a new version.
    renamed = api(
        pipeline,
        "PUT",
        "/v1/indicators/eid.level1",
        json={**LEVEL_ONE, "where": {"level": [2]}, "name_en": "Level 2 e-ID accounts"},
    )
    assert renamed.json() == {"id": "eid.level1", "version": 4, "status": "ready"}, renamed.text
    audit = [e for e in api(pipeline, "GET", "/v1/audit").json() if e["target"] == "eid.level1"]
    assert [e["action"] for e in audit] == ["indicator.put"] * 4


def test_a_backfilling_indicator_answers_409_until_it_is_ready(own_pipeline: Pipeline) -> None:
    pipeline = own_pipeline
    pipeline.stop("aggregator")  # no backfill meanwhile
    try:
        body = {**LEVEL_ONE, "event_type": "cccd.issued", "where": {}, "name_en": "CCCD"}
        created = api(pipeline, "PUT", "/v1/indicators/cccd.again", json=body)
        assert created.status_code == 201 and created.json()["status"] == "backfilling"
        for period in ("all", "day:2024-03-02"):
            refused = totals_answer(pipeline, "cccd.again", period)
            assert refused.status_code == 409, refused.text
            assert refused.json()["status"] == "backfilling"
            assert "'cccd.again' is backfilling" in refused.json()["detail"]
        # A rate over it is backfilling too; everything else answers as before.
        rate = {**body, "kind": "rate", "numerator": ["cccd.again"], "denominator": ["cccd.issued"]}
        for key in ("event_type", "where"):
            rate.pop(key)
        assert (
            api(pipeline, "PUT", "/v1/indicators/cccd.again_rate", json=rate).json()["status"]
            == "backfilling"
        )
        assert pipeline.total("binh-phuoc", "cccd.issued", "all")["value"] == 0
    finally:
        pipeline.start("aggregator")
    wait_ready(pipeline, "cccd.again")
    assert status_of(pipeline, "cccd.again_rate") == "ready"
    assert pipeline.total("binh-phuoc", "cccd.again", "all")["value"] == 0


def test_bad_definitions_are_422_naming_the_problem_and_change_nothing(
    own_pipeline: Pipeline,
) -> None:
    pipeline = own_pipeline
    before = api(pipeline, "GET", "/v1/indicators").json()
    audited = len(api(pipeline, "GET", "/v1/audit", params={"limit": 1000}).json())
    names = {"name_vi": "Thử", "name_en": "Test", "unit": "lượt"}
    for body, words in [
        ({"kind": "count", "event_type": "no.such"}, "unknown event type 'no.such'"),
        ({"kind": "count", "event_type": "eid.activated", "where": {"colour": 1}}, "'colour'"),
        ({"kind": "rate", "numerator": ["payment.success_rate"], "denominator": ["cccd.issued"]},
         "a rate of a rate"),
        ({"kind": "rate", "numerator": ["no.such"], "denominator": ["cccd.issued"]},
         "unknown indicator 'no.such'"),
        ({"kind": "rate", "numerator": ["bad.one"], "denominator": ["cccd.issued"]}, "a cycle"),
        ({"kind": "sum", "event_type": "filing.submitted", "field": "channel"}, "'channel'"),
        ({"kind": "sum", "event_type": "eid.activated", "field": "amount_vnd"}, "amount_vnd"),
    ]:  # fmt: skip
        refused = api(pipeline, "PUT", "/v1/indicators/bad.one", json={**body, **names})
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["detail"], (words, refused.text)
    assert api(pipeline, "GET", "/v1/indicators").json() == before
    assert len(api(pipeline, "GET", "/v1/audit", params={"limit": 1000}).json()) == audited


def test_an_indicator_a_target_uses_cannot_be_deleted(own_pipeline: Pipeline) -> None:
    pipeline = own_pipeline
    body = {**LEVEL_ONE, "event_type": "sim.registered", "where": {}, "name_en": "SIMs"}
    assert api(pipeline, "PUT", "/v1/indicators/sim.targeted", json=body).status_code == 201
    assert api(pipeline, "PUT", "/v1/indicators/sim.spare", json=body).status_code == 201
    campaign = {"name": "Thử", "starts": "2024-04-04", "ends": "2024-07-03"}
    assert api(pipeline, "PUT", "/v1/campaigns/sims", json=campaign).status_code in (200, 201)
    targets = [{"unit_id": "bu-dang", "metric": "sim.targeted", "target": 100}]
    set_targets = api(pipeline, "PUT", "/v1/campaigns/sims/targets", json=targets)
    assert set_targets.status_code == 200, set_targets.text

    refused = api(pipeline, "DELETE", "/v1/indicators/sim.targeted")
    assert refused.status_code == 409, refused.text
    assert "campaign 'sims'" in refused.json()["detail"]
    assert api(pipeline, "DELETE", "/v1/indicators/payment.fee.count").status_code == 409
    assert "sim.targeted" in {i["id"] for i in api(pipeline, "GET", "/v1/indicators").json()}

    deleted = api(pipeline, "DELETE", "/v1/indicators/sim.spare")
    assert deleted.status_code == 204, deleted.text
    assert "sim.spare" not in {i["id"] for i in api(pipeline, "GET", "/v1/indicators").json()}
    gone = totals_answer(pipeline, "sim.spare", "all")
    assert gone.status_code == 404, gone.text
    assert api(pipeline, "DELETE", "/v1/indicators/sim.spare").status_code == 404
    actions = [e["action"] for e in api(pipeline, "GET", "/v1/audit").json()]
    assert "indicator.delete" in actions


def test_a_reorganisation_during_a_backfill_ends_exact(own_pipeline: Pipeline) -> None:
    """A commune moved to another district while its indicator backfills: the backfill's
    switch is refused (its replay used the old tree), it starts again, and the indicator ends
    ready with the history where the move put it."""
    pipeline = own_pipeline
    rng = random.Random(30)
    sims = [
        {
            "event_id": f"sim-{n}",
            "type": "sim.registered",
            "unit_id": rng.choice(UNITS),
            "occurred_at": f"2024-04-{rng.randint(1, 28):02d}T09:00:00+07:00",
        }
        for n in range(8_000)
    ]
    asyncio.run(post_many(pipeline, sims))
    pipeline.wait_reflected(timeout_s=120)
    body = {**LEVEL_ONE, "event_type": "sim.registered", "where": {}, "name_en": "SIMs moved"}
    assert api(pipeline, "PUT", "/v1/indicators/sim.moved", json=body).status_code == 201
    time.sleep(1.2)  # the backfill has started (the aggregator looks once a second)
    moved = api(
        pipeline, "POST", "/v1/units/bu-dang-minh-hung/move", json={"parent_id": "dong-xoai"}
    )
    assert moved.status_code == 200, moved.text
    assert status_of(pipeline, "sim.moved") == "backfilling"
    wait_ready(pipeline, "sim.moved")
    pipeline.wait_reflected(timeout_s=120)

    parent = {unit: (lineage(unit)[1:] or [None])[0] for unit in UNITS}
    parent["bu-dang-minh-hung"] = "dong-xoai"
    expected: dict[str, int] = defaultdict(int)
    for event in sims:
        unit: str | None = event["unit_id"]
        while unit is not None:
            expected[unit] += 1
            unit = parent[unit]
    for metric in ("sim.moved", "sim.registered"):
        got = {u: pipeline.total(u, metric, "all")["value"] for u in UNITS}
        assert got == {u: expected.get(u, 0) for u in UNITS}, metric
