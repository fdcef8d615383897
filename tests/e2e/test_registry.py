"""The registry through the real services: the shipped event types and indicators as
`GET /v1/event-types` and `GET /v1/indicators` list them, and a new event type defined by the
admin, posted to by a field team and taken by the aggregator, never dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx

from shared.admin import read_dead_letters
from shared.domain.metrics import METRICS
from tests.conftest import Pipeline, at, make_event


def api(pipeline: Pipeline, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
    return httpx.request(
        method, pipeline.url("api", path), headers=pipeline.headers(token), timeout=30, **kwargs
    )


def test_the_shipped_registry_is_listed(pipeline: Pipeline) -> None:
    _, viewer = pipeline.create_token("viewer")
    types = api(pipeline, "GET", "/v1/event-types", viewer)
    assert types.status_code == 200, types.text
    by_type = {t["type"]: t for t in types.json()}
    assert set(by_type) >= {
        "eid.activated",
        "cccd.issued",
        "filing.submitted",
        "payment.succeeded",
        "certification.status",
        "event.voided",
    }
    assert by_type["eid.activated"]["attributes"] == {
        "level": {"type": "integer", "enum": [1, 2], "required": True}
    }
    assert by_type["certification.status"]["subject"] == "required"
    assert by_type["payment.succeeded"]["amount"] is True
    assert by_type["cccd.issued"]["amount"] is False
    assert all(t["status"] == "ready" and t["version"] >= 1 for t in types.json())

    indicators = api(pipeline, "GET", "/v1/indicators", viewer)
    assert indicators.status_code == 200, indicators.text
    by_id = {i["id"]: i for i in indicators.json()}
    assert list(by_id) == list(METRICS)
    assert by_id["eid.activated"]["name_vi"] == "Tài khoản định danh điện tử được kích hoạt"
    assert by_id["eid.activated.level2"]["where"] == {"level": 2}
    assert by_id["payment.nvtc.amount_vnd"] | {"version": 1} == {
        "id": "payment.nvtc.amount_vnd",
        "kind": "sum",
        "event_type": "payment.succeeded",
        "field": "amount_vnd",
        "where": {"kind": "nvtc"},
        "name_vi": "Số tiền thanh toán trực tuyến nghĩa vụ tài chính",
        "name_en": "VND paid online for financial obligations",
        "unit": "VND",
        "version": 1,
        "status": "ready",
    }
    assert by_id["payment.success_rate"]["numerator"] == ["payment.nvtc.count", "payment.fee.count"]
    assert by_id["certification.completed"]["status_attribute"] == "status"
    assert by_id["filing.services_with_online_share"]["kind"] == "online_services_share"


def test_a_new_event_type_is_defined_posted_and_taken(pipeline: Pipeline) -> None:
    kind = f"meeting.held_{uuid.uuid4().hex[:6]}"
    definition = {
        "attributes": {
            "paperless": {"type": "boolean", "required": True},
            "platform": {"type": "string", "required": False},
        },
        "subject": "optional",
        "amount": False,
    }
    _, field = pipeline.create_token("field", ["bu-dang"])
    event = make_event(kind, "bu-dang-minh-hung", at("2024-04-20"), attributes={"paperless": True})
    before = pipeline.post([event], field)
    assert before.status_code == 422, before.text
    assert before.json()["errors"][0]["field"] == "type"

    _, viewer = pipeline.create_token("viewer")
    assert (
        api(pipeline, "PUT", f"/v1/event-types/{kind}", viewer, json=definition).status_code == 403
    )
    created = api(pipeline, "PUT", f"/v1/event-types/{kind}", json=definition)
    assert created.status_code == 201, created.text
    assert created.json() == {"type": kind, "version": 1, "status": "ready"}
    same = api(pipeline, "PUT", f"/v1/event-types/{kind}", json=definition)
    assert same.status_code == 200 and same.json()["version"] == 1, same.text

    # Ingest takes it within 5 s of the PUT (it looks at the stored registry once a second).
    deadline = time.monotonic() + 5
    while True:
        posted = pipeline.post(
            [
                {**event, "event_id": f"m-{n}", "attributes": {"paperless": True, "platform": "e"}}
                for n in range(20)
            ],
            field,
        )
        if posted.status_code == 202 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert posted.status_code == 202, posted.text
    assert posted.json() == {"accepted": 20, "duplicates": 0}
    # The same strictness as for the shipped types.
    wrong = pipeline.post({**event, "event_id": "m-x", "attributes": {"paperless": "yes"}}, field)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "attributes.paperless"
    unknown = pipeline.post({**event, "event_id": "m-y", "attributes": {"paperless": True, "x": 1}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "attributes.x"

    # The aggregator, which had the registry of its start, takes them: none is dead-lettered.
    pipeline.wait_reflected()
    letters = asyncio.run(read_dead_letters(pipeline.settings()))
    assert not [letter for letter in letters if kind in letter["raw"].decode(errors="replace")], (
        letters
    )

    # Widening is a change (200, a new version); narrowing would refuse events accepted before.
    wider = json.loads(json.dumps(definition))
    wider["attributes"]["room"] = {"type": "integer", "required": False}
    changed = api(pipeline, "PUT", f"/v1/event-types/{kind}", json=wider)
    assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
    for narrower, words in [
        ({"attributes": {"paperless": {"type": "boolean", "required": True}}}, "removed"),
        (
            {
                "attributes": {
                    **wider["attributes"],
                    "platform": {"type": "string", "required": True},
                }
            },
            "required",
        ),
        (
            {"attributes": {**wider["attributes"], "room": {"type": "string"}}},
            "would change from",
        ),
    ]:
        refused = api(pipeline, "PUT", f"/v1/event-types/{kind}", json=narrower)
        assert refused.status_code == 409, refused.text
        assert words in refused.json()["detail"]
    bad = api(
        pipeline,
        "PUT",
        f"/v1/event-types/{kind}",
        json={"attributes": {"level": {"type": "integer", "enum": ["one"]}}},
    )
    assert bad.status_code == 422, bad.text
    listed = {t["type"]: t for t in api(pipeline, "GET", "/v1/event-types").json()}
    assert listed[kind]["version"] == 2 and "room" in listed[kind]["attributes"]

    audit = api(pipeline, "GET", "/v1/audit").json()
    puts = [entry for entry in audit if entry["action"] == "event_type.put"]
    assert [entry["target"] for entry in puts[:2]] == [kind, kind]
