"""A real Prometheus scraping the running services with the shipped rules: a campaign where
one district lags makes `UnitBehindTargetPace` fire for that district and for no other unit.

Only the alerts' `for:` and the scrape/evaluation interval are shortened; the expressions are
the shipped ones (deploy/prometheus/rules)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.prometheus import start_prometheus, write_config
from deploy.local.stack import REPO, free_port
from shared.domain.periods import today_local
from tests.conftest import Pipeline, at, make_event

CAMPAIGN = "prom-lag-test"
# Each district's target is 30 e-ID activations over a 30-day campaign in its 10th day, so
# 10 are expected by today; the campaign lags under 0.9 × expected.
DISTRICT_EVENTS = {"dong-xoai": 12, "loc-ninh": 10, "bu-dang": 2}
LAGGING = "bu-dang"


@pytest.fixture(scope="module")
def prometheus(own_pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("prometheus")
    config = write_config(root / "config", own_pipeline.ports, interval="1s", alert_for="3s")
    port = free_port()
    process = start_prometheus(own_pipeline.stack, config, port, root / "data")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/-/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, Path(process.log_path).read_text()
            time.sleep(0.2)
        yield url
    finally:
        own_pipeline.stack.stop(process)


def api(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, pipeline.url("api", path), headers=pipeline.headers(), timeout=30, **kwargs
    )


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def alerts(prometheus: str, name: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10)
    assert response.status_code == 200, response.text
    return [
        a
        for a in response.json()["data"]["alerts"]
        if a["labels"]["alertname"] == name and a["labels"].get("campaign") == CAMPAIGN
    ]


def test_unit_behind_target_pace_fires_for_the_lagging_district_only(
    own_pipeline: Pipeline, prometheus: str
) -> None:
    today = today_local(datetime.now(UTC))
    starts, ends = today - timedelta(days=9), today + timedelta(days=20)
    response = api(
        own_pipeline,
        "PUT",
        f"/v1/campaigns/{CAMPAIGN}",
        json={
            "name": "Prometheus test",
            "starts": starts.isoformat(),
            "ends": ends.isoformat(),
            "lagging_threshold": 0.9,
        },
    )
    assert response.status_code in (200, 201), response.text
    targets = [
        {"unit_id": unit_id, "metric": "eid.activated", "target": 30} for unit_id in DISTRICT_EVENTS
    ]
    # The province (24 of 60: 20 expected) is on pace; a commune target is not exported.
    targets.append({"unit_id": "binh-phuoc", "metric": "eid.activated", "target": 60})
    targets.append({"unit_id": "bu-dang-minh-hung", "metric": "eid.activated", "target": 1000})
    response = api(own_pipeline, "PUT", f"/v1/campaigns/{CAMPAIGN}/targets", json=targets)
    assert response.status_code == 200, response.text
    events = [
        make_event("eid.activated", unit_id, at((starts + timedelta(days=n % 9)).isoformat()))
        for unit_id, count in DISTRICT_EVENTS.items()
        for n in range(count)
    ]
    response = own_pipeline.post(events)
    assert response.status_code == 202, response.text
    own_pipeline.wait_reflected()

    deadline = time.monotonic() + 90
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        firing = [a for a in alerts(prometheus, "UnitBehindTargetPace") if a["state"] == "firing"]
        if firing:
            break
        time.sleep(0.5)
    assert [a["labels"]["unit_id"] for a in firing] == [LAGGING], firing
    [alert] = firing
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["level"] == "district"
    assert alert["annotations"]["summary"].startswith("Huyện Bù Đăng chậm tiến độ: eid.activated")
    assert "20%" in alert["annotations"]["summary"]  # 2 of the 10 expected

    # The others are exported and evaluated, with the numbers the API serves, and stay quiet
    # (not even pending) over several more evaluations.
    time.sleep(5)
    pace = {
        s["metric"]["unit_id"]: float(s["value"][1])
        for s in query(prometheus, f'campaign_unit_pace_ratio{{campaign="{CAMPAIGN}"}}')
    }
    assert pace == {"dong-xoai": 1.2, "loc-ninh": 1.0, "bu-dang": 0.2, "binh-phuoc": 1.2}
    assert [a["labels"]["unit_id"] for a in alerts(prometheus, "UnitBehindTargetPace")] == [LAGGING]
    expected = query(prometheus, f'campaign_unit_expected{{campaign="{CAMPAIGN}"}}')
    assert {s["metric"]["unit_id"]: float(s["value"][1]) for s in expected} == {
        "dong-xoai": 10.0,
        "loc-ninh": 10.0,
        "bu-dang": 10.0,
        "binh-phuoc": 20.0,
    }
    [days_left] = query(prometheus, f'campaign_days_left{{campaign="{CAMPAIGN}"}}')
    assert float(days_left["value"][1]) == 21


def test_prometheus_scrapes_the_pipeline_metrics(own_pipeline: Pipeline, prometheus: str) -> None:
    events = [make_event("sim.registered", "dong-phu", at("2024-05-02")) for _ in range(5)]
    response = own_pipeline.post(events)
    assert response.status_code == 202, response.text
    own_pipeline.wait_reflected()
    deadline = time.monotonic() + 30
    while True:
        up = {s["metric"]["job"]: s["value"][1] for s in query(prometheus, "up")}
        processed = query(
            prometheus, 'sum(aggregator_events_processed_total{type="sim.registered"})'
        )
        lag = query(prometheus, "aggregator_consumer_lag_records")
        # A scrape taken before the aggregator caught up still shows lag: wait for a newer one.
        if (
            up == {"ingest": "1", "api": "1", "aggregator": "1"}
            and processed
            and float(processed[0]["value"][1]) >= 5
            and lag
            and all(float(s["value"][1]) == 0 for s in lag)
        ):
            break
        assert time.monotonic() < deadline, (up, processed)
        time.sleep(0.5)
    accepted = query(prometheus, "sum(ingest_events_accepted_total)")
    assert float(accepted[0]["value"][1]) >= 5
    assert lag, "no consumer lag series"
    assert {s["metric"]["partition"] for s in lag} <= {"0", "1", "2", "3"}
    assert all(float(s["value"][1]) == 0 for s in lag)  # caught up
    # Only the aggregator exports it (ingest and the API do not show a 0 of their own).
    [newest] = query(prometheus, "aggregator_newest_event_time_seconds")
    assert newest["metric"]["job"] == "aggregator"
    assert float(newest["value"][1]) > (datetime.now(UTC) - timedelta(days=30)).timestamp()
    latency = query(prometheus, 'http_request_duration_seconds_count{route="/v1/events"}')
    assert {s["metric"]["status"] for s in latency} >= {"202"}
    writes = query(prometheus, "sum(aggregator_db_write_duration_seconds_count)")
    assert float(writes[0]["value"][1]) >= 1
    # Every counted event lands in its commune's, district's and province's month documents.
    documents = query(prometheus, "sum(aggregator_totals_document_writes_total)")
    assert float(documents[0]["value"][1]) >= 3
    # The recording rules evaluate on the real series.
    assert query(prometheus, 'service:http_requests:rate5m{service="ingest"}')
    assert query(prometheus, "job:aggregator_consumer_lag_seconds:max")


def test_campaign_gauges_come_back_after_an_api_restart(own_pipeline: Pipeline) -> None:
    """Computed from the stored totals, not counted in memory: a fresh API process exports the
    same numbers at once. Runs after the campaign test (its campaign and events)."""
    own_pipeline.stop("api")
    own_pipeline.start("api")
    body = httpx.get(own_pipeline.url("api", "/metrics"), timeout=30).text
    lines = [
        line
        for line in body.splitlines()
        if line.startswith("campaign_unit_value{") and f'campaign="{CAMPAIGN}"' in line
    ]
    values = {
        unit.group(1): float(line.rsplit(" ", 1)[1])
        for line in lines
        if (unit := re.search(r'unit_id="([^"]+)"', line))
    }
    assert values == {"binh-phuoc": 24.0, "dong-xoai": 12.0, "loc-ninh": 10.0, "bu-dang": 2.0}
    assert "campaign_gauges_up 1.0" in body


def test_dashboard_queries_are_valid_promql(prometheus: str) -> None:
    """Every query of the Grafana dashboard parses and runs on the real Prometheus."""
    dashboard = json.loads((REPO / "deploy/grafana/campaign-tracker.json").read_text("utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) > 15
    for expr in exprs:
        promql = expr.replace("$campaign", CAMPAIGN).replace("$metric", ".*")
        response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        assert response.status_code == 200, (expr, response.text)
    pace = (
        'max without (instance) (campaign_unit_pace_ratio{campaign="$campaign",metric=~"$metric"})'
    )
    assert pace in exprs
    # The test before restarts the API: its series return with the next scrape (1 s interval).
    promql = pace.replace("$campaign", CAMPAIGN).replace("$metric", ".*")
    deadline = time.monotonic() + 15
    while not query(prometheus, promql) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert query(prometheus, promql)
