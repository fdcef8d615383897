"""The whole pipeline over HTTP, Kafka and MongoDB: ingest → log → aggregator → totals → API."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.conftest import Pipeline, at, make_event

COMMUNE, DISTRICT, PROVINCE = "bu-dang-minh-hung", "bu-dang", "binh-phuoc"


def totals(pipeline: Pipeline, metric: str, period: str) -> tuple[Any, Any, Any]:
    return tuple(pipeline.total(u, metric, period)["value"] for u in (COMMUNE, DISTRICT, PROVINCE))


def test_single_event_and_batch_of_1000_roll_up_to_every_level_and_period(
    pipeline: Pipeline,
) -> None:
    before_all = totals(pipeline, "cccd.issued", "all")
    single = make_event("cccd.issued", COMMUNE, at("2019-03-05", 23, 30))
    response = pipeline.post(single)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    batch = [
        make_event("cccd.issued", COMMUNE, at(f"2019-03-{5 + i % 3:02d}", i % 24, i % 60))
        for i in range(1000)
    ]
    response = pipeline.post(batch)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1000, "duplicates": 0}
    pipeline.wait_reflected()
    on_5th = 1 + sum(1 for i in range(1000) if i % 3 == 0)
    assert totals(pipeline, "cccd.issued", "day:2019-03-05") == (on_5th,) * 3
    assert totals(pipeline, "cccd.issued", "month:2019-03") == (1001,) * 3
    assert totals(pipeline, "cccd.issued", "year:2019") == (1001,) * 3
    after_all = totals(pipeline, "cccd.issued", "all")
    assert tuple(a - b for a, b in zip(after_all, before_all, strict=True)) == (1001,) * 3
    # A sibling district saw none of it.
    assert pipeline.total("bu-dop", "cccd.issued", "year:2019")["value"] == 0


def test_local_midnight_decides_the_day(pipeline: Pipeline) -> None:
    events = [
        make_event("sim.registered", COMMUNE, "2018-04-22T23:30:00+07:00"),
        make_event("sim.registered", COMMUNE, "2018-04-22T16:45:00Z"),  # 23:45 local
        make_event("sim.registered", COMMUNE, "2018-04-22T17:00:00Z"),  # 00:00 on 23/4 local
        make_event("sim.registered", COMMUNE, "2018-04-21T23:59:59-05:00"),  # 11:59:59 on 22/4
    ]
    assert pipeline.post(events).status_code == 202
    pipeline.wait_reflected()
    assert pipeline.total(PROVINCE, "sim.registered", "day:2018-04-22")["value"] == 3
    assert pipeline.total(PROVINCE, "sim.registered", "day:2018-04-23")["value"] == 1


def test_money_is_exact_and_every_count_metric_is_served(pipeline: Pipeline) -> None:
    amounts = [random.randint(0, 5_000_000_000) for _ in range(300)]
    events = [
        make_event(
            "payment.succeeded", COMMUNE, at("2017-04-22", 8), amount_vnd=a, attributes={"kind": k}
        )
        for a, k in zip(amounts, ["nvtc", "fee"] * 150, strict=True)
    ]
    events += [make_event("payment.failed", COMMUNE, at("2017-04-22")) for _ in range(7)]
    events += [make_event("smartphone.replaced", COMMUNE, at("2017-04-22")) for _ in range(3)]
    events += [make_event("eid.activated", COMMUNE, at("2017-04-22")) for _ in range(5)]
    events += [
        make_event(
            "filing.submitted",
            "so-y-te",
            at("2017-04-22"),
            attributes={"channel": channel, "service_id": "svc-9"},
        )
        for channel in ["online"] * 4 + ["offline"] * 2
    ]
    events += [
        make_event(
            "filing.processed",
            "so-y-te",
            at("2017-04-22"),
            attributes={"channel": channel, "on_time": on_time},
        )
        for channel, on_time in [("online", True), ("online", False), ("offline", True)]
    ]
    assert pipeline.post(events).status_code == 202
    pipeline.wait_reflected()
    day = "day:2017-04-22"
    nvtc = sum(amounts[0::2])
    fee = sum(amounts[1::2])
    expected = {
        "payment.nvtc.count": 150,
        "payment.nvtc.amount_vnd": nvtc,
        "payment.fee.count": 150,
        "payment.fee.amount_vnd": fee,
        "payment.failed.count": 7,
        "smartphone.replaced": 3,
        "eid.activated": 5,
        "filing.submitted": 6,
        "filing.submitted.online": 4,
        "filing.processed": 3,
        "filing.processed.online": 2,
        "filing.processed.on_time": 2,
    }
    for metric, value in expected.items():
        body = pipeline.total(PROVINCE, metric, day)
        assert body["value"] == value, metric
        assert isinstance(body["value"], int)
        assert "numerator" not in body
    assert pipeline.total("so-y-te", "filing.submitted", day)["value"] == 6
    assert pipeline.total(DISTRICT, "filing.submitted", day)["value"] == 0
    rate = pipeline.total(PROVINCE, "filing.processed.online_rate", day)
    assert (rate["numerator"], rate["denominator"]) == (2, 3)
    assert abs(rate["value"] - 2 / 3) < 1e-12


def test_duplicates_count_once_within_and_across_requests(pipeline: Pipeline) -> None:
    ids = [uuid.uuid4().hex for _ in range(10)]
    events = [make_event("eid.activated", COMMUNE, at("2016-01-10"), event_id=i) for i in ids]
    first = pipeline.post([*events, *events[:3]])
    assert first.json() == {"accepted": 10, "duplicates": 3}
    again = pipeline.post([*events[5:], make_event("eid.activated", COMMUNE, at("2016-01-10"))])
    assert again.json() == {"accepted": 1, "duplicates": 5}
    pipeline.wait_reflected()
    assert totals(pipeline, "eid.activated", "year:2016") == (11, 11, 11)


def test_a_request_with_one_bad_event_is_rejected_whole(pipeline: Pipeline) -> None:
    good = [make_event("cccd.issued", COMMUNE, at("2015-06-01")) for _ in range(5)]
    bad = make_event("cccd.issued", COMMUNE, at("2015-06-01"), amount_vnd=5)
    response = pipeline.post([*good[:2], bad, *good[2:]])
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"index": 2, "field": "amount_vnd", "message": "for payments only, not cccd.issued"}
    ]
    unknown = make_event("cccd.issued", "no-such-commune", at("2015-06-01"))
    response = pipeline.post([*good, unknown])
    assert response.status_code == 422
    assert response.json()["errors"][0]["index"] == 5
    assert response.json()["errors"][0]["field"] == "unit_id"
    pipeline.wait_reflected()
    assert pipeline.total(PROVINCE, "cccd.issued", "year:2015")["value"] == 0
    # The good events were not remembered as accepted either: posting them now counts them.
    assert pipeline.post(good).json() == {"accepted": 5, "duplicates": 0}


def test_body_limits(pipeline: Pipeline) -> None:
    padding = {f"k{i}": "x" * 256 for i in range(16)}
    big = [make_event("cccd.issued", COMMUNE, at("2015-06-02"), attributes=padding)] * 300
    response = pipeline.post(big)
    assert response.status_code == 413
    assert "1 MiB" in response.json()["detail"]
    too_many = [make_event("cccd.issued", COMMUNE, at("2015-06-02")) for _ in range(1001)]
    assert pipeline.post(too_many).status_code == 422
    not_json = httpx.post(
        pipeline.url("ingest", "/v1/events"),
        content=b"{not json",
        headers={**pipeline.headers(), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422
    assert "JSON" in not_json.json()["errors"][0]["message"]


def test_tokens_scopes_and_revocation(pipeline: Pipeline) -> None:
    event = make_event("cccd.issued", COMMUNE, at("2014-02-02"))
    assert httpx.post(pipeline.url("ingest", "/v1/events"), json=event).status_code == 401
    assert pipeline.post(event, token="not-a-token").status_code == 401
    name, field_token = pipeline.create_token("field", [DISTRICT])
    outside = make_event("cccd.issued", "bu-dop-tan-tien", at("2014-02-02"))
    response = pipeline.post([event, outside], token=field_token)
    assert response.status_code == 403
    assert response.json()["errors"] == [
        {
            "index": 1,
            "field": "unit_id",
            "message": "unit 'bu-dop-tan-tien' is outside this token's scope",
        }
    ]
    assert pipeline.post(event, token=field_token).status_code == 202
    _, viewer = pipeline.create_token("viewer")
    assert pipeline.post(event, token=viewer).status_code == 403
    assert pipeline.total(PROVINCE, "cccd.issued", "all", token=viewer)["unit_id"] == PROVINCE
    # Only the admin manages tokens.
    denied = httpx.post(
        pipeline.url("api", "/v1/tokens"),
        json={"name": "x", "role": "viewer", "scope": []},
        headers=pipeline.headers(viewer),
    )
    assert denied.status_code == 403
    revoked = httpx.delete(pipeline.url("api", f"/v1/tokens/{name}"), headers=pipeline.headers())
    assert revoked.status_code == 204
    assert pipeline.post(event, token=field_token).status_code == 401
    assert (
        httpx.get(
            pipeline.url("api", "/v1/units"), headers=pipeline.headers(field_token)
        ).status_code
        == 401
    )


def test_units_and_totals_errors(pipeline: Pipeline) -> None:
    units = httpx.get(pipeline.url("api", "/v1/units"), headers=pipeline.headers()).json()
    by_id = {u["id"]: u for u in units}
    assert by_id["bu-dang"] == {
        "id": "bu-dang",
        "name": "Huyện Bù Đăng",
        "level": "district",
        "parent_id": "binh-phuoc",
        "merged_into": None,  # an extension of the contract's four fields
        # The December 2026 addition "Units of the real map" (issue 21).
        "code": "696",
        "valid_from": None,
        "valid_to": None,
        "successors": [],
    }
    assert by_id["so-y-te"]["level"] == "department"
    assert by_id["dong-xoai"]["name"] == "Thành phố Đồng Xoài"

    def get(**params: str) -> httpx.Response:
        return httpx.get(
            pipeline.url("api", "/v1/totals"), params=params, headers=pipeline.headers()
        )

    assert get(unit_id="nowhere", metric="cccd.issued", period="all").status_code == 404
    assert get(unit_id=PROVINCE, metric="cccd.lost", period="all").status_code == 404
    assert get(unit_id=PROVINCE, metric="cccd.issued", period="week:2024-01").status_code == 422
    assert get(unit_id=PROVINCE, metric="cccd.issued", period="day:2024-02-30").status_code == 422


def test_operational_endpoints(pipeline: Pipeline) -> None:
    for service in ("ingest", "api", "aggregator"):
        assert httpx.get(pipeline.url(service, "/healthz")).json()["status"] == "ok"
        metrics = httpx.get(pipeline.url(service, "/metrics"))
        assert metrics.status_code == 200
        assert "# TYPE" in metrics.text
    assert "ingest_events_accepted_total" in httpx.get(pipeline.url("ingest", "/metrics")).text
    assert "aggregator_events_total" in httpx.get(pipeline.url("aggregator", "/metrics")).text
    for service in ("ingest", "api"):
        assert httpx.get(pipeline.url(service, "/docs")).status_code == 200
        schema = httpx.get(pipeline.url(service, "/openapi.json")).json()
        assert schema["paths"]
    assert "/v1/events" in httpx.get(pipeline.url("ingest", "/openapi.json")).json()["paths"]


def test_aggregator_stopped_and_killed_mid_stream_leaves_totals_exact(pipeline: Pipeline) -> None:
    def batch() -> list[dict[str, Any]]:
        return [make_event("eid.activated", COMMUNE, at("2013-07-07")) for _ in range(1000)]

    sent = 0
    for round_ in range(3):
        assert pipeline.post(batch()).status_code == 202
        sent += 1000
        if round_ == 0:
            pipeline.stop("aggregator")  # graceful
        elif round_ == 1:
            pipeline.start("aggregator")
    for _ in range(3):
        assert pipeline.post(batch()).status_code == 202
        sent += 1000
    pipeline.kill("aggregator")  # crash, wherever it was
    assert pipeline.post(batch()).status_code == 202
    sent += 1000
    pipeline.start("aggregator")
    pipeline.wait_reflected(datetime.now(UTC), timeout_s=60)
    assert totals(pipeline, "eid.activated", "day:2013-07-07") == (sent, sent, sent)
