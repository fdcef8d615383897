"""Units of the real map (issue 21, step 1): the official catalog through the API, units named
by official code at ingest, and events refused outside their unit's dates."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from deploy.local.stack import REPO, LocalStack
from shared.adapters.mongo import Store
from shared.domain.units import Unit, UnitLevel, UnitTree, load_catalog
from tests.conftest import Pipeline, at, make_event


def get(pipeline: Pipeline, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        pipeline.url("api", path), params=params, headers=pipeline.headers(), timeout=60
    )


def test_units_carry_codes_and_dates_and_answer_by_code_and_by_day(
    own_pipeline: Pipeline,
) -> None:
    pipeline = own_pipeline
    units = get(pipeline, "/v1/units").json()
    by_id = {u["id"]: u for u in units}
    assert len(units) == 413  # every unit the catalog holds, old and new
    assert by_id["bu-dang-minh-hung"] == {
        "id": "bu-dang-minh-hung",
        "name": "Xã Minh Hưng",
        "level": "commune",
        "parent_id": "bu-dang",
        "merged_into": None,
        "code": "25408",
        "valid_from": None,
        "valid_to": None,
        "successors": [],
    }
    assert by_id["so-tu-phap"]["code"] is None
    assert by_id["dong-nai-2025"]["valid_from"] == "2025-07-01"

    # 25441 was Phường Minh Hưng of Chơn Thành's, then the ward of 2025 that took its place.
    found = get(pipeline, "/v1/units", code="25441")
    assert found.status_code == 200, found.text
    assert [u["id"] for u in found.json()] == ["dong-nai-2025-minh-hung"]  # today's holder
    found = get(pipeline, "/v1/units", code="25441", at="2024-04-22")
    assert [u["id"] for u in found.json()] == ["chon-thanh-minh-hung"]
    assert [u["id"] for u in get(pipeline, "/v1/units", code="25408").json()] == [
        "bu-dang-minh-hung"
    ]
    assert get(pipeline, "/v1/units", code="25411", at="2024-04-22").json()[0]["name"] == (
        "Xã Đoàn Kết"
    )
    assert get(pipeline, "/v1/units", code="99999").status_code == 404
    assert get(pipeline, "/v1/units", code="25411", at="2025-07-01").status_code == 200
    assert get(pipeline, "/v1/units", code="x").status_code == 422
    assert get(pipeline, "/v1/units", at="2024-13-01").status_code == 422

    before = {u["id"] for u in get(pipeline, "/v1/units", at="2024-04-22").json()}
    assert "dong-nai-2025" not in before and "bu-dang-minh-hung" in before
    assert len(before) == 413 - 96
    after = {u["id"] for u in get(pipeline, "/v1/units", at="2025-07-01").json()}
    assert "dong-nai-2025-minh-hung" in after


def test_ingest_takes_official_codes_and_refuses_events_outside_a_units_dates(
    own_pipeline: Pipeline,
) -> None:
    pipeline = own_pipeline
    by_code = make_event("cccd.issued", "x", at("2009-03-03"))
    del by_code["unit_id"]
    by_code["unit_code"] = "25408"
    accepted = pipeline.post(
        [by_code, make_event("cccd.issued", "bu-dang-minh-hung", at("2009-03-03"))]
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"accepted": 2, "duplicates": 0}
    # The same event by id is a duplicate: the code became the unit's id before anything else.
    again = pipeline.post(
        {**{k: v for k, v in by_code.items() if k != "unit_code"}, "unit_id": "bu-dang-minh-hung"}
    )
    assert again.json() == {"accepted": 0, "duplicates": 1}
    pipeline.wait_reflected()
    assert pipeline.total("bu-dang-minh-hung", "cccd.issued", "year:2009")["value"] == 2
    assert pipeline.total("binh-phuoc", "cccd.issued", "year:2009")["value"] == 2

    def refused(event: dict[str, Any]) -> dict[str, Any]:
        response = pipeline.post([make_event("cccd.issued", "dong-xoai", at("2009-03-03")), event])
        assert response.status_code == 422, response.text
        errors: list[dict[str, Any]] = response.json()["errors"]
        assert [e["index"] for e in errors] == [1]
        return errors[0]

    both = {**by_code, "event_id": "both", "unit_id": "bu-dang-minh-hung"}
    assert refused(both)["field"] == "unit_code"
    unknown = refused({**by_code, "event_id": "unknown", "unit_code": "99999"})
    assert (unknown["field"], unknown["message"]) == ("unit_code", "unknown unit code '99999'")
    early = refused(make_event("cccd.issued", "dong-nai-2025-minh-hung", at("2025-06-30")))
    assert early["field"] == "unit_id" and "began on 2025-07-01" in early["message"]

    # The reform ends Phường Minh Hưng of Chơn Thành on 30 June 2025 (what the vn-2025 plan
    # writes, here by hand).
    asyncio.run(_end(pipeline, "chon-thanh-minh-hung", "2025-06-30", ["dong-nai-2025-minh-hung"]))
    ended = refused(make_event("cccd.issued", "chon-thanh-minh-hung", at("2025-07-02")))
    assert ended["field"] == "unit_id"
    assert "ended on 2025-06-30" in ended["message"]
    assert "'dong-nai-2025-minh-hung'" in ended["message"]
    # By its code, an event is the unit's of its day: the old ward's before, the new one's after.
    codes = [
        {**by_code, "event_id": f"code-{day}", "unit_code": "25441", "occurred_at": at(day)}
        for day in ("2025-06-30", "2025-07-02")
    ]
    assert pipeline.post(codes).json() == {"accepted": 2, "duplicates": 0}
    pipeline.wait_reflected()
    assert pipeline.total("chon-thanh-minh-hung", "cccd.issued", "year:2025")["value"] == 1
    assert pipeline.total("dong-nai-2025-minh-hung", "cccd.issued", "year:2025")["value"] == 1
    assert pipeline.total("dong-nai-2025", "cccd.issued", "year:2025")["value"] == 1
    # Late events dated before the end, and voids, are still taken.
    taken = pipeline.post(
        [
            make_event("cccd.issued", "chon-thanh-minh-hung", at("2025-06-30"), "on-the-last-day"),
            make_event(
                "event.voided",
                "chon-thanh-minh-hung",
                datetime.now(UTC).isoformat(),
                attributes={"voids": "on-the-last-day"},
            ),
        ]
    )
    assert taken.status_code == 202, taken.text


async def _end(pipeline: Pipeline, unit_id: str, valid_to: str, successors: list[str]) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(pipeline.env["MONGODB_URI"])
    try:
        db = client[pipeline.env["MONGODB_DB"]]
        await db["units"].update_one(
            {"_id": unit_id}, {"$set": {"valid_to": valid_to, "successors": successors}}
        )
        await db["meta"].update_one({"_id": "catalog"}, {"$inc": {"version": 1}}, upsert=True)
    finally:
        await client.close()


def test_init_over_a_database_of_the_old_excerpt_adds_units_and_codes_keeping_moves(
    infra: LocalStack,
) -> None:
    excerpt = json.loads((REPO / "deploy/catalog/excerpt_2024.json").read_text("utf-8"))
    catalog = load_catalog(
        json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text("utf-8"))
    )

    async def scenario() -> UnitTree:
        client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri)
        try:
            store = Store(client, f"units_{uuid.uuid4().hex[:8]}")
            # A database initialised before units had codes: the documents lack the fields.
            for item in excerpt["units"]:
                doc = {k: v for k, v in item.items() if k != "id"}
                await store.units.insert_one({"_id": item["id"], **doc, "merged_into": None})
            # An admin moved a commune since.
            await store.units.update_one(
                {"_id": "bu-dop-tan-tien"}, {"$set": {"parent_id": "loc-ninh"}}
            )
            await store.upsert_units(catalog)
            await store.upsert_units(catalog)  # twice changes nothing
            return UnitTree(await store.load_units())
        finally:
            await client.close()

    tree = asyncio.run(scenario())
    assert len(tree) == len(catalog)
    moved = tree.get("bu-dop-tan-tien")
    assert moved == Unit(
        "bu-dop-tan-tien",
        "Xã Tân Tiến",
        UnitLevel.COMMUNE,
        "loc-ninh",
        ("xã Tân Tiến",),
        code="25321",
    )
    assert {u.id: u.code for u in tree.units()} == {u.id: u.code for u in catalog}


def test_init_loads_the_provinces_catalog_provinces_names(infra: LocalStack) -> None:
    run = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongodb_uri,
        "MONGODB_DB": f"provinces_{run}",
        "EVENTS_TOPIC": f"events-{run}",
        "DEADLETTER_TOPIC": f"events-{run}-dead",
        "PYTHONPATH": str(REPO),
        "CATALOG_PROVINCES": "74",  # old Bình Dương, in Hồ Chí Minh City since 1 July 2025
    }
    init = infra.spawn("init-74", [sys.executable, "-m", "shared.admin", "init"], env=env)
    assert init.popen.wait(120) == 0, Path(init.log_path).read_text()
    infra.processes.remove(init)

    async def units() -> UnitTree:
        client: AsyncMongoClient[Any] = AsyncMongoClient(infra.mongodb_uri)
        try:
            return UnitTree(await Store(client, env["MONGODB_DB"]).load_units())
        finally:
            await client.close()

    tree = asyncio.run(units())
    assert sorted(u.id for u in tree.units() if u.parent_id is None) == [
        "binh-duong",
        "ho-chi-minh-2025",
    ]
    assert "binh-phuoc" not in tree
    unit = tree.with_code("74")
    assert unit is not None and unit.name == "Tỉnh Bình Dương"
