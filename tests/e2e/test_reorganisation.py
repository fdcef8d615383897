"""Reorganising the unit tree while events stream in: totals stay exact at every level."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import BackgroundPoster, Pipeline, at, make_event


def admin(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, pipeline.url("api", path), headers=pipeline.headers(), timeout=60, **kwargs
    )


def value(pipeline: Pipeline, unit: str, period: str = "year:2007") -> int:
    result: int = pipeline.total(unit, "cccd.issued", period)["value"]
    return result


def test_add_move_and_merge_in_the_middle_of_a_stream(own_pipeline: Pipeline) -> None:
    pipeline = own_pipeline
    added = admin(
        pipeline,
        "POST",
        "/v1/units",
        json={
            "id": "bu-dop-xa-moi",
            "name": "Xã Mới",
            "level": "commune",
            "parent_id": "bu-dop",
        },
    )
    assert added.status_code == 201, added.text
    assert admin(pipeline, "POST", "/v1/units", json=added.json()).status_code == 409

    def stream(unit: str, n: int, day: str) -> list[dict[str, Any]]:
        return [make_event("cccd.issued", unit, at(day)) for _ in range(n)]

    # Events flow to the new commune (and to Lộc Ninh) while it is moved to Lộc Ninh.
    first = stream("bu-dop-xa-moi", 3000, "2007-02-02") + stream("loc-ninh", 500, "2007-02-02")
    second = stream("bu-dop-xa-moi", 3000, "2007-03-03")
    poster = BackgroundPoster(pipeline, first + second, 2)
    time.sleep(0.5)
    moved = admin(pipeline, "POST", "/v1/units/bu-dop-xa-moi/move", json={"parent_id": "loc-ninh"})
    assert moved.status_code == 200, moved.text
    poster.join()
    pipeline.wait_reflected()
    assert value(pipeline, "bu-dop-xa-moi") == 6000
    assert value(pipeline, "bu-dop") == 0
    assert value(pipeline, "loc-ninh") == 6500
    assert value(pipeline, "binh-phuoc") == 6500
    assert value(pipeline, "loc-ninh", "day:2007-02-02") == 3500

    # Lộc Ninh merges into Bù Gia Mập mid-stream: its history now counts there too.
    more = stream("bu-gia-map", 700, "2007-04-04")
    poster = BackgroundPoster(pipeline, more, 1)
    merged = admin(pipeline, "POST", "/v1/units/loc-ninh/merge", json={"into": "bu-gia-map"})
    assert merged.status_code == 200, merged.text
    assert merged.json()["merged_into"] == "bu-gia-map"
    poster.join()
    pipeline.wait_reflected()
    assert value(pipeline, "bu-gia-map") == 7200
    assert value(pipeline, "loc-ninh") == 6500  # the old unit still answers for its history
    assert value(pipeline, "bu-dop-xa-moi") == 6000
    assert value(pipeline, "binh-phuoc") == 7200
    assert value(pipeline, "bu-gia-map", "month:2007-03") == 3000
    refused = pipeline.post(stream("loc-ninh", 1, "2007-05-05"))
    assert refused.status_code == 422
    assert "merged into 'bu-gia-map'" in refused.json()["errors"][0]["message"]
    units = {u["id"]: u for u in admin(pipeline, "GET", "/v1/units").json()}
    assert units["loc-ninh"]["merged_into"] == "bu-gia-map"
    assert units["bu-dop-xa-moi"]["parent_id"] == "loc-ninh"
    # A cycle is refused.
    cycle = admin(pipeline, "POST", "/v1/units/bu-gia-map/move", json={"parent_id": "loc-ninh"})
    assert cycle.status_code == 422
