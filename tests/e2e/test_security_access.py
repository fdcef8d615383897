"""Who may do what, proved on the real services: the authorisation matrix over every endpoint,
revocation and expiry taking effect at once on every instance (open streams included), the
admin audit log, rate limits shared by two ingest instances under concurrent requests, and
hostile input on the admin side (ids that would be operators or paths, formula cells,
Prometheus labels).

A pipeline of its own: the matrix adds units and campaigns, and the rate limits need a short
window (RATE_LIMIT_WINDOW_S) so a test can see one end.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook
from prometheus_client.parser import text_string_to_metric_families

from deploy.local.stack import LocalStack, free_port
from tests.conftest import Pipeline, at, make_event, running_pipeline

PROVINCE = "binh-phuoc"
DISTRICT = "bu-dang"
COMMUNE = "bu-dang-minh-hung"
OUTSIDE = "bu-dop-tan-tien"
WINDOW_S = 4
STREAM_REAUTH_S = 1.0


@pytest.fixture(scope="module")
def line(infra: LocalStack) -> Iterator[Pipeline]:
    """The pipeline, its rate-limit window short, and a second ingest instance (`ingest2`)
    on the same database: what one instance decides, the other must honour."""
    with running_pipeline(infra) as pipeline:
        pipeline.env["RATE_LIMIT_WINDOW_S"] = str(WINDOW_S)
        pipeline.env["STREAM_REAUTH_S"] = str(STREAM_REAUTH_S)
        for name in ("ingest", "api"):
            pipeline.stop(name)
            pipeline.start(name)
        pipeline.ports["ingest2"] = free_port()
        second = infra.start_service(
            "ingest",
            pipeline.ports["ingest2"],
            {**pipeline.env, "INGEST_PORT": str(pipeline.ports["ingest2"])},
        )
        try:
            yield pipeline
        finally:
            infra.stop(second)


def call(
    line: Pipeline, method: str, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    service = "ingest" if path == "/v1/events" else "api"
    headers = line.headers(token) if token != "" else {}
    return httpx.request(method, line.url(service, path), headers=headers, timeout=30, **kwargs)


def admin(line: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return call(line, method, path, None, **kwargs)


def new_token(
    line: Pipeline, role: str, scope: list[str] | None = None, **policy: Any
) -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "role": role, "scope": scope or [], **policy}
    answer = admin(line, "POST", "/v1/tokens", json=body)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return name, token


def event(unit: str = COMMUNE, **fields: Any) -> dict[str, Any]:
    return make_event("cccd.issued", unit, at("2002-02-02"), **fields)


# -- the matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as the OpenAPI schema names it
    kind: str  # "read", "admin" or "events"
    # (concrete path, httpx arguments) for the principal of a column
    request: Callable[[str], tuple[str, dict[str, Any]]]


def slug(column: str) -> str:
    return column.replace("_", "-")


def _fixed(path: str, **kwargs: Any) -> Callable[[str], tuple[str, dict[str, Any]]]:
    return lambda _column: (path, kwargs)


ENDPOINTS = [
    Endpoint("GET", "/v1/units", "read", _fixed("/v1/units")),
    Endpoint(
        "GET", "/v1/units/{unit_id}/services", "read", _fixed(f"/v1/units/{COMMUNE}/services")
    ),
    Endpoint(
        "GET",
        "/v1/totals",
        "read",
        _fixed(
            "/v1/totals", params={"unit_id": PROVINCE, "metric": "eid.activated", "period": "all"}
        ),
    ),
    Endpoint(
        "GET",
        "/v1/rankings",
        "read",
        _fixed("/v1/rankings", params={"metric": "eid.activated", "period": "year:2024"}),
    ),
    Endpoint("GET", "/v1/campaigns", "read", _fixed("/v1/campaigns")),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/targets",
        "read",
        _fixed("/v1/campaigns/4-phu-2024/targets"),
    ),
    Endpoint(
        "GET",
        "/v1/campaigns/{campaign_id}/progress",
        "read",
        _fixed("/v1/campaigns/4-phu-2024/progress", params={"unit_id": PROVINCE}),
    ),
    Endpoint(
        "GET",
        "/v1/reports/payments",
        "read",
        _fixed("/v1/reports/payments", params={"date": "2024-04-22"}),
    ),
    Endpoint(
        "GET",
        "/v1/reports/online-services",
        "read",
        _fixed("/v1/reports/online-services", params={"date": "2024-04-22"}),
    ),
    Endpoint(
        "GET",
        "/v1/reports/software-usage",
        "read",
        _fixed("/v1/reports/software-usage", params={"from": "2024-03-21", "to": "2024-04-20"}),
    ),
    Endpoint(
        "GET",
        "/v1/series",
        "read",
        _fixed(
            "/v1/series",
            params={
                "unit_id": PROVINCE,
                "metric": "eid.activated",
                "from": "2024-04-01",
                "to": "2024-04-30",
            },
        ),
    ),
    Endpoint(
        "GET",
        "/v1/stream",
        "read",
        _fixed("/v1/stream", params={"watch": f"{PROVINCE}:eid.activated:all"}),
    ),
    Endpoint(
        "POST",
        "/v1/units",
        "admin",
        lambda column: (
            "/v1/units",
            {
                "json": {
                    "id": f"matrix-added-{slug(column)}",
                    "name": f"Xã {column}",
                    "level": "commune",
                    "parent_id": DISTRICT,
                }
            },
        ),
    ),
    Endpoint(
        "POST",
        "/v1/units/{unit_id}/move",
        "admin",
        _fixed("/v1/units/matrix-movable/move", json={"parent_id": "bu-dop"}),
    ),
    Endpoint(
        "POST",
        "/v1/units/{unit_id}/merge",
        "admin",
        lambda column: (
            f"/v1/units/matrix-merged-{slug(column)}/merge",
            {"json": {"into": COMMUNE}},
        ),
    ),
    Endpoint(
        "PUT",
        "/v1/units/{unit_id}/services",
        "admin",
        lambda column: (f"/v1/units/{COMMUNE}/services", {"json": {"services": [f"svc-{column}"]}}),
    ),
    Endpoint(
        "PUT",
        "/v1/campaigns/{campaign_id}",
        "admin",
        lambda column: (
            f"/v1/campaigns/matrix-{slug(column)}",
            {"json": {"name": column, "starts": "2002-01-01", "ends": "2002-12-31"}},
        ),
    ),
    Endpoint(
        "PUT",
        "/v1/campaigns/{campaign_id}/targets",
        "admin",
        lambda column: (
            "/v1/campaigns/matrix-campaign/targets",
            {"json": [{"unit_id": COMMUNE, "metric": "cccd.issued", "target": len(column)}]},
        ),
    ),
    Endpoint(
        "POST",
        "/v1/tokens",
        "admin",
        lambda column: (
            "/v1/tokens",
            {"json": {"name": f"matrix-made-{column}", "role": "viewer", "scope": []}},
        ),
    ),
    Endpoint(
        "DELETE",
        "/v1/tokens/{name}",
        "admin",
        lambda column: (f"/v1/tokens/matrix-doomed-{column}", {}),
    ),
    Endpoint("GET", "/v1/audit", "admin", _fixed("/v1/audit")),
    Endpoint("GET", "/v1/event-types", "read", _fixed("/v1/event-types")),
    Endpoint("GET", "/v1/indicators", "read", _fixed("/v1/indicators")),
    Endpoint(
        "PUT",
        "/v1/event-types/{event_type}",
        "admin",
        lambda column: (
            f"/v1/event-types/matrix.{column.replace('_', '-')}",
            {"json": {"attributes": {}, "subject": "none", "amount": False}},
        ),
    ),
    Endpoint(
        "PUT",
        "/v1/indicators/{indicator_id}",
        "admin",
        lambda column: (f"/v1/indicators/matrix.made.{column}", {"json": MATRIX_RATE}),
    ),
    Endpoint(
        "DELETE",
        "/v1/indicators/{indicator_id}",
        "admin",
        lambda column: (f"/v1/indicators/matrix.doomed.{column}", {}),
    ),
    Endpoint(
        "POST",
        "/v1/events",
        "events",
        lambda column: (
            "/v1/events",
            {"json": [event(), event(OUTSIDE if column == "field_out_of_scope" else COMMUNE)]},
        ),
    ),
]

# A rate over ready indicators: defined without a replay of the log.
MATRIX_RATE = {
    "kind": "rate",
    "numerator": ["cccd.issued"],
    "denominator": ["eid.activated"],
    "name_vi": "Thử",
    "name_en": "Matrix",
    "unit": "%",
}

DENIED_COLUMNS = [
    "no_token",
    "wrong_scheme",
    "bad_token",
    "revoked",
    "expired",
    "viewer",
    "field_in_scope",
    "field_out_of_scope",
]
EXPECTED: dict[str, dict[str, set[int]]] = {
    **{
        column: {"read": {401}, "admin": {401}, "events": {401}}
        for column in ("no_token", "wrong_scheme", "bad_token", "revoked", "expired")
    },
    "viewer": {"read": {200}, "admin": {403}, "events": {403}},
    "field_in_scope": {"read": {200}, "admin": {403}, "events": {202}},
    "field_out_of_scope": {"read": {200}, "admin": {403}, "events": {403}},
    "admin": {"read": {200}, "admin": {200, 201, 204}, "events": {202}},
}


def send(line: Pipeline, endpoint: Endpoint, column: str, headers: dict[str, str]) -> int:
    path, kwargs = endpoint.request(column)
    service = "ingest" if endpoint.kind == "events" else "api"
    url = line.url(service, path)
    if endpoint.path == "/v1/stream":
        with httpx.stream("GET", url, headers=headers, timeout=10, **kwargs) as answer:
            return answer.status_code
    answer = httpx.request(endpoint.method, url, headers=headers, timeout=30, **kwargs)
    if answer.status_code in (401, 403, 429):
        assert "detail" in answer.json()
    if endpoint.kind == "events" and column == "field_out_of_scope":
        # The whole request is refused, naming the event outside the scope.
        assert answer.json()["errors"] == [
            {
                "index": 1,
                "field": "unit_id",
                "message": f"unit '{OUTSIDE}' is outside this token's scope",
            }
        ]
    return answer.status_code


def headers_of(line: Pipeline) -> dict[str, dict[str, str]]:
    _, viewer = new_token(line, "viewer")
    _, field = new_token(line, "field", [DISTRICT])
    revoked_name, revoked = new_token(line, "field", [DISTRICT])
    assert admin(line, "DELETE", f"/v1/tokens/{revoked_name}").status_code == 204
    expiry = datetime.now(UTC) + timedelta(seconds=1)
    _, expired = new_token(line, "field", [DISTRICT], expires_at=expiry.isoformat())
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.2)
    bearer = {"Authorization": "Bearer {}"}
    return {
        "no_token": {},
        "wrong_scheme": {"Authorization": f"Basic {line.admin_token}"},
        "bad_token": {"Authorization": f"Bearer {uuid.uuid4().hex}{uuid.uuid4().hex}"},
        "revoked": {"Authorization": bearer["Authorization"].format(revoked)},
        "expired": {"Authorization": bearer["Authorization"].format(expired)},
        "viewer": line.headers(viewer),
        "field_in_scope": line.headers(field),
        "field_out_of_scope": line.headers(field),
        "admin": line.headers(),
    }


def snapshot(line: Pipeline) -> dict[str, Any]:
    """What an admin action could change, as the admin reads it."""
    return {
        "units": admin(line, "GET", "/v1/units").json(),
        "campaigns": admin(line, "GET", "/v1/campaigns").json(),
        "targets": admin(line, "GET", "/v1/campaigns/matrix-campaign/targets").json(),
        "services": admin(line, "GET", f"/v1/units/{COMMUNE}/services").json(),
        "audit": admin(line, "GET", "/v1/audit", params={"limit": 1000}).json(),
        "indicators": admin(line, "GET", "/v1/indicators").json(),
    }


def test_the_matrix_covers_every_endpoint_of_both_services(line: Pipeline) -> None:
    documented = set()
    for service in ("api", "ingest"):
        schema = httpx.get(line.url(service, "/openapi.json"), timeout=10).json()
        for path, operations in schema["paths"].items():
            documented |= {(method.upper(), path) for method in operations}
    assert documented == {(e.method, e.path) for e in ENDPOINTS}, (
        "a new endpoint needs its row in ENDPOINTS"
    )


def test_authorisation_matrix(line: Pipeline) -> None:
    assert admin(
        line,
        "PUT",
        "/v1/campaigns/matrix-campaign",
        json={"name": "matrix", "starts": "2002-01-01", "ends": "2002-12-31"},
    ).status_code in (200, 201)
    movable = {"id": "matrix-movable", "name": "Xã M", "level": "commune", "parent_id": DISTRICT}
    assert admin(line, "POST", "/v1/units", json=movable).status_code == 201
    for column in [*DENIED_COLUMNS, "admin"]:
        victim = {
            "id": f"matrix-merged-{slug(column)}",
            "name": "Xã V",
            "level": "commune",
            "parent_id": DISTRICT,
        }
        assert admin(line, "POST", "/v1/units", json=victim).status_code == 201
        doomed = {"name": f"matrix-doomed-{column}", "role": "viewer", "scope": []}
        assert admin(line, "POST", "/v1/tokens", json=doomed).status_code == 201
        doomed_indicator = f"/v1/indicators/matrix.doomed.{column}"
        assert admin(line, "PUT", doomed_indicator, json=MATRIX_RATE).status_code == 201
    headers = headers_of(line)
    before = snapshot(line)
    answers: dict[tuple[str, str], int] = {}
    for column in DENIED_COLUMNS:
        for endpoint in ENDPOINTS:
            answers[(column, f"{endpoint.method} {endpoint.path}")] = send(
                line, endpoint, column, headers[column]
            )
    # Nothing a refused request asked for happened.
    assert snapshot(line) == before
    for endpoint in ENDPOINTS:
        answers[("admin", f"{endpoint.method} {endpoint.path}")] = send(
            line, endpoint, "admin", headers["admin"]
        )
    wrong = {
        cell: status
        for cell, status in answers.items()
        if status
        not in EXPECTED[cell[0]][
            next(e.kind for e in ENDPOINTS if f"{e.method} {e.path}" == cell[1])
        ]
    }
    assert not wrong, wrong


def test_public_endpoints_hold_no_data(line: Pipeline) -> None:
    for service in ("api", "ingest", "aggregator"):
        assert httpx.get(line.url(service, "/healthz"), timeout=10).status_code == 200
        assert httpx.get(line.url(service, "/metrics"), timeout=10).status_code == 200
    for path in ("/", "/dashboard/app.js", "/docs", "/openapi.json"):
        assert httpx.get(line.url("api", path), timeout=10).status_code == 200


def test_security_headers_and_closed_cors(line: Pipeline) -> None:
    page = httpx.get(line.url("api", "/"), timeout=10)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in page.headers  # plain HTTP
    # Behind the TLS proxy (trusted from 127.0.0.1 by default: FORWARDED_ALLOW_IPS).
    proxied = httpx.get(line.url("api", "/"), headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert proxied.headers["strict-transport-security"].startswith("max-age=")
    origin = {"Origin": "https://evil.example"}
    for service, path in (("api", "/v1/units"), ("ingest", "/v1/events")):
        answer = httpx.get(
            line.url(service, path), headers={**line.headers(), **origin}, timeout=10
        )
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "access-control-allow-origin" not in answer.headers
        preflight = httpx.options(
            line.url(service, path),
            headers={**origin, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_admin_actions_are_audited_without_secrets(line: Pipeline) -> None:
    started = datetime.now(UTC)
    name, token = new_token(line, "viewer")
    assert admin(line, "DELETE", f"/v1/tokens/{name}").status_code == 204
    entries = admin(line, "GET", "/v1/audit", params={"limit": 1000}).json()
    recent = [
        e for e in entries if datetime.fromisoformat(e["at"]) >= started - timedelta(seconds=1)
    ]
    assert [(e["action"], e["target"]) for e in recent[:2]] == [
        ("token.revoke", name),
        ("token.create", name),
    ]
    created = recent[1]
    assert created["actor"] == "admin" and created["role"] == "admin"
    assert created["client"] == "127.0.0.1"
    assert created["details"]["role"] == "viewer"
    # The matrix's admin column left one entry per kind of admin action.
    actions = {e["action"] for e in entries}
    assert {
        "unit.add",
        "unit.move",
        "unit.merge",
        "unit.services",
        "campaign.put",
        "campaign.targets",
        "token.create",
        "token.revoke",
    } <= actions
    assert {e["actor"] for e in entries} == {"admin"}
    # Never a token, never its hash.
    text = str(entries)
    assert token not in text and line.admin_token not in text
    _, viewer = new_token(line, "viewer")
    assert call(line, "GET", "/v1/audit", viewer).status_code == 403


# -- revocation and expiry ----------------------------------------------------------------------


def post_to(line: Pipeline, instance: str, token: str, events: Any) -> httpx.Response:
    return httpx.post(
        line.url(instance, "/v1/events"), json=events, headers=line.headers(token), timeout=30
    )


def test_revocation_is_immediate_on_every_instance(line: Pipeline) -> None:
    name, token = new_token(line, "field", [DISTRICT])
    for instance in ("ingest", "ingest2"):
        assert post_to(line, instance, token, event()).status_code == 202
    assert admin(line, "DELETE", f"/v1/tokens/{name}").status_code == 204
    for instance in ("ingest", "ingest2"):
        refused = post_to(line, instance, token, event())
        assert refused.status_code == 401, refused.text
        assert token not in refused.text
    assert call(line, "GET", "/v1/units", token).status_code == 401


def test_tokens_expire_on_every_instance(line: Pipeline) -> None:
    expiry = datetime.now(UTC) + timedelta(seconds=2)
    _, token = new_token(line, "field", [DISTRICT], expires_at=expiry.isoformat())
    assert post_to(line, "ingest2", token, event()).status_code == 202
    assert call(line, "GET", "/v1/units", token).status_code == 200
    time.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()) + 0.2)
    for instance in ("ingest", "ingest2"):
        assert post_to(line, instance, token, event()).status_code == 401
    assert call(line, "GET", "/v1/units", token).status_code == 401
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    refused = admin(
        line,
        "POST",
        "/v1/tokens",
        json={"name": "already-expired", "role": "viewer", "expires_at": past},
    )
    assert refused.status_code == 422


async def test_an_open_stream_ends_when_its_token_is_revoked(line: Pipeline) -> None:
    name, token = new_token(line, "viewer")
    url = line.url("api", "/v1/stream")
    params = {"watch": f"{PROVINCE}:eid.activated:all"}
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", url, params=params, headers=line.headers(token)) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        while not (await anext(lines)).startswith("event: total"):
            pass
        revoked_at = time.monotonic()
        async with httpx.AsyncClient(timeout=10) as other:
            deleted = await other.delete(
                line.url("api", f"/v1/tokens/{name}"), headers=line.headers()
            )
        assert deleted.status_code == 204
        rest = [text async for text in lines]
        ended_after = time.monotonic() - revoked_at
    assert "event: revoked" in rest
    # Within the re-check interval and the per-token cache, not at the next heartbeat (15 s).
    assert ended_after < STREAM_REAUTH_S + 3, ended_after


# -- rate limits ------------------------------------------------------------------------------


async def wait_for_a_fresh_window() -> None:
    """Until just after a window boundary, so a burst fits in one window."""
    await asyncio.sleep(WINDOW_S - time.time() % WINDOW_S + 0.05)


def rate_limited(line: Pipeline, instance: str) -> float:
    exposition = httpx.get(line.url(instance, "/metrics"), timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "ingest_events_rejected"
        for sample in family.samples
        if sample.name == "ingest_events_rejected_total"
        and sample.labels.get("reason") == "rate_limited"
    )


async def burst(requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.request(method, url, **kwargs) for method, url, kwargs in requests)
        )


async def test_rate_limits_are_exact_across_instances_under_concurrency(line: Pipeline) -> None:
    _, field = new_token(line, "field", [DISTRICT], rate_limit=10)
    _, viewer = new_token(line, "viewer", rate_limit=5)
    posts = [
        (
            "POST",
            line.url("ingest" if i % 2 else "ingest2", "/v1/events"),
            {"json": event(), "headers": line.headers(field)},
        )
        for i in range(30)
    ]
    reads = [("GET", line.url("api", "/v1/units"), {"headers": line.headers(viewer)})] * 15
    await wait_for_a_fresh_window()
    started = time.time()
    answers = await burst(posts + reads)
    assert time.time() - started < WINDOW_S - 0.5, "the burst did not fit in one window"
    by_kind = Counter(
        ("events" if "/v1/events" in str(a.request.url) else "reads", a.status_code)
        for a in answers
    )
    assert by_kind == {
        ("events", 202): 10,
        ("events", 429): 20,
        ("reads", 200): 5,
        ("reads", 429): 10,
    }
    waits = [int(a.headers["Retry-After"]) for a in answers if a.status_code == 429]
    assert all(1 <= wait <= WINDOW_S for wait in waits), waits
    refused = next(a for a in answers if a.status_code == 429)
    assert "rate limit" in refused.json()["detail"]
    assert sum(rate_limited(line, instance) for instance in ("ingest", "ingest2")) == 20
    # Refused events were not published: exactly the ten accepted ones are counted later.
    await asyncio.sleep(max(waits))
    assert post_to(line, "ingest", field, event()).status_code == 202
    assert call(line, "GET", "/v1/units", viewer).status_code == 200
    # The admin token is not limited by default.
    admin_posts = [
        ("POST", line.url("ingest", "/v1/events"), {"json": event(), "headers": line.headers()})
    ] * 40
    assert {a.status_code for a in await burst(admin_posts)} == {202}


# -- hostile input on the admin side ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/v1/units",
            {"id": "$where", "name": "x", "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "a.b", "name": "x", "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": {"$gt": ""}, "name": "x", "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "ok-id-1", "name": "x\u0000", "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "ok-id-2", "name": "x\ny", "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "ok-id-3", "name": {"$gt": ""}, "level": "commune", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "ok-id-4", "name": "x", "level": "$where", "parent_id": DISTRICT},
        ),
        (
            "POST",
            "/v1/units",
            {"id": "ok-id-5", "name": "x", "level": "commune", "parent_id": {"$ne": None}},
        ),
        ("POST", "/v1/units/$where/move", {"parent_id": DISTRICT}),
        ("POST", f"/v1/units/{COMMUNE}/move", {"parent_id": "a.b"}),
        ("POST", f"/v1/units/{COMMUNE}/merge", {"into": {"$gt": ""}}),
        ("PUT", f"/v1/units/{COMMUNE}/services", {"services": ["$where"]}),
        ("PUT", f"/v1/units/{COMMUNE}/services", {"services": [{"$gt": ""}]}),
        (
            "PUT",
            "/v1/campaigns/$where",
            {"name": "x", "starts": "2002-01-01", "ends": "2002-02-01"},
        ),
        ("PUT", "/v1/campaigns/a.b", {"name": "x", "starts": "2002-01-01", "ends": "2002-02-01"}),
        (
            "PUT",
            "/v1/campaigns/ok-campaign",
            {"name": {"$gt": ""}, "starts": "2002-01-01", "ends": "2002-02-01"},
        ),
        (
            "PUT",
            "/v1/campaigns/ok-campaign",
            {"name": "x", "starts": "0001-01-01", "ends": "2002-02-01"},
        ),
        (
            "PUT",
            "/v1/campaigns/ok-campaign",
            {"name": "x", "starts": "2002-01-01", "ends": "9999-12-31"},
        ),
        (
            "PUT",
            "/v1/campaigns/matrix-campaign/targets",
            [{"unit_id": COMMUNE, "metric": "$where", "target": 1}],
        ),
        (
            "PUT",
            "/v1/campaigns/matrix-campaign/targets",
            [{"unit_id": "a.b", "metric": "cccd.issued", "target": 1}],
        ),
        (
            "PUT",
            "/v1/campaigns/matrix-campaign/targets",
            [{"unit_id": COMMUNE, "metric": "cccd.issued", "target": -5}],
        ),
        (
            "PUT",
            "/v1/campaigns/matrix-campaign/targets",
            [{"unit_id": COMMUNE, "metric": "cccd.issued", "target": {"$gt": 0}}],
        ),
        ("POST", "/v1/tokens", {"name": "$where", "role": "viewer"}),
        ("POST", "/v1/tokens", {"name": "a.b", "role": "viewer"}),
        ("POST", "/v1/tokens", {"name": "escalate", "role": "admin"}),
        ("POST", "/v1/tokens", {"name": "scoped", "role": "field", "scope": ["$where"]}),
        ("POST", "/v1/tokens", {"name": "scoped", "role": "field", "scope": [{"$gt": ""}]}),
        ("POST", "/v1/tokens", {"name": "scoped", "role": "field", "scope": []}),
        ("POST", "/v1/tokens", {"name": "limited", "role": "viewer", "rate_limit": -1}),
    ],
)
def test_hostile_admin_input_is_refused(line: Pipeline, method: str, path: str, body: Any) -> None:
    answer = admin(line, method, path, json=body)
    assert answer.status_code in (404, 422), answer.text
    assert "Traceback" not in answer.text


def test_hostile_raw_admin_bodies_are_refused(line: Pipeline) -> None:
    raw = {"Content-Type": "application/json", **line.headers()}
    cases = {
        b'{"name": "dup", "role": "viewer", "role": "admin"}': 422,
        b'{"name": "nan", "role": "viewer", "rate_limit": NaN}': 422,
        b'{"name": "\\ud800", "role": "viewer"}': 422,
        b'{"name": "bad-utf8-\xff", "role": "viewer"}': 422,
        b"[" * 50_000 + b"]" * 50_000: 422,
        b'{"name": "big", "role": "viewer", "scope": ["' + b"a" * (1 << 20) + b'"]}': 413,
    }
    for body, status in cases.items():
        answer = httpx.post(line.url("api", "/v1/tokens"), content=body, headers=raw, timeout=30)
        assert answer.status_code == status, (body[:60], answer.text)
    assert call(line, "DELETE", "/v1/tokens/$where").status_code == 422
    assert (
        call(line, "GET", "/v1/campaigns/$where/progress", params={"unit_id": PROVINCE}).status_code
        == 422
    )


def test_names_that_look_like_operators_are_stored_as_text(line: Pipeline) -> None:
    unit = {
        "id": "operator-named",
        "name": "$where: {'$gt': ''} a.b",
        "level": "commune",
        "parent_id": DISTRICT,
    }
    assert admin(line, "POST", "/v1/units", json=unit).status_code == 201
    (stored,) = [u for u in admin(line, "GET", "/v1/units").json() if u["id"] == "operator-named"]
    assert stored["name"] == unit["name"]


def test_report_cells_and_metric_labels_neutralise_hostile_unit_names(line: Pipeline) -> None:
    formula = '=HYPERLINK("http://evil.example","Bấm vào")'
    label = 'Huyện "X"} evil_total 1 # \\'
    for unit_id, name in (("formula-district", formula), ("label-district", label)):
        unit = {"id": unit_id, "name": name, "level": "district", "parent_id": PROVINCE}
        assert admin(line, "POST", "/v1/units", json=unit).status_code == 201
    # CSV and XLSX: the formula is text, never evaluated.
    report = admin(
        line, "GET", "/v1/reports/payments", params={"date": "2002-02-02", "format": "csv"}
    )
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert ["'" + formula] == [row[1] for row in rows if formula in row[1]]
    report = admin(
        line, "GET", "/v1/reports/payments", params={"date": "2002-02-02", "format": "xlsx"}
    )
    sheet = load_workbook(io.BytesIO(report.content)).active
    assert sheet is not None
    cells = [c for row in sheet.iter_rows() for c in row if c.value and formula in str(c.value)]
    assert [(c.value, c.data_type) for c in cells] == [("'" + formula, "s")]
    # Prometheus: a running campaign's gauges carry the unit name as a label value.
    today = date.today()
    campaign = {
        "name": "live",
        "starts": str(today - timedelta(days=1)),
        "ends": str(today + timedelta(days=30)),
    }
    assert admin(line, "PUT", "/v1/campaigns/label-campaign", json=campaign).status_code in (
        200,
        201,
    )
    target = [{"unit_id": "label-district", "metric": "cccd.issued", "target": 10}]
    assert (
        admin(line, "PUT", "/v1/campaigns/label-campaign/targets", json=target).status_code == 200
    )
    exposition = httpx.get(line.url("api", "/metrics"), timeout=30).text
    targets = [
        sample
        for family in text_string_to_metric_families(exposition)
        if family.name == "campaign_unit_target"
        for sample in family.samples
        if sample.labels.get("campaign") == "label-campaign"
    ]
    assert [
        (s.labels["unit_name"], s.value) for s in targets if s.labels["unit_id"] == "label-district"
    ] == [(label, 10)]
    assert "evil_total" not in {f.name for f in text_string_to_metric_families(exposition)}
