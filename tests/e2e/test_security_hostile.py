"""Hostile bodies against the real ingest (and hostile queries against the API): every one is
refused with a 4xx that names the problem without echoing secrets or traces, and none of it is
published or stored. Runs on the session pipeline: nothing here may leave a trace in it.

Hostile events are dated in 2003, a year no other test uses, so "nothing stored" is checked
on the totals too, after the aggregator has caught up.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from tests.conftest import Pipeline, at, make_event

COMMUNE = "bu-dang-minh-hung"
YEAR = "2003"
PREFIX = "hostile-"
SURROGATE = "\\ud800"  # as it travels: an escape in the JSON text


def hostile(**overrides: Any) -> dict[str, Any]:
    event = make_event(
        "payment.succeeded",
        COMMUNE,
        at(f"{YEAR}-03-03"),
        event_id=f"{PREFIX}{uuid.uuid4().hex}",
        amount_vnd=1000,
        attributes={"kind": "fee"},
    )
    event.update(overrides)
    return event


def raw(event: dict[str, Any], field: str, json_text: str) -> bytes:
    """`event` as JSON with `field` set to raw JSON text (what json.dumps cannot produce)."""
    marker = f"@@{uuid.uuid4().hex}@@"
    return json.dumps({**event, field: marker}).replace(f'"{marker}"', json_text).encode()


OPERATOR = {"$gt": ""}

# For each string field (and the numbers and attributes): hostile values, by label.
FIELD_CASES: dict[str, dict[str, Any]] = {
    "event_id": {
        "operator": OPERATOR,
        "array": ["a"],
        "empty": "",
        "129 chars": "x" * 129,
        "NUL": "a\x00b",
        "newline": "a\nb",
        "number": 12,
        "null": None,
    },
    "type": {"$where": "$where", "operator": OPERATOR, "NUL": "payment.succeeded\x00"},
    "unit_id": {
        "$where": "$where",
        "dotted path": f"{COMMUNE}.d.01",
        "operator": OPERATOR,
        "traversal": "../binh-phuoc",
        "upper": COMMUNE.upper(),
        "newline": COMMUNE + "\n",
    },
    "occurred_at": {
        "$where": "$where",
        "operator": OPERATOR,
        "no offset": f"{YEAR}-03-03T10:00:00",
        "future": "2999-01-01T00:00:00+07:00",
        "before the earliest day": "1999-12-31T23:59:59+07:00",
        "year 1": "0001-01-01T00:00:00+14:00",
        "year 9999": "9999-12-31T23:59:59-23:59",
        "number": 1_700_000_000,
        "digits": "1700000000",
    },
    "subject_id": {"operator": OPERATOR, "empty": "", "NUL": "s\x00"},
    "amount_vnd": {
        "negative": -1,
        "float": 1000.5,
        "float integral": 1000.0,
        "string": "1000",
        "bool": True,
        "over 10^15": 10**15 + 1,
        "2^64": 2**64,
        "huge": 10**300,
        "operator": {"$inc": 1},
    },
    "attributes": {
        "$where key": {"kind": "fee", "$where": "sleep(1000)"},
        "dotted key": {"kind": "fee", "t.payment:fee:count": 1},
        "operator value": {"kind": OPERATOR},
        "$in value": {"kind": {"$in": ["fee", "nvtc"]}},
        "nested": {"kind": "fee", "x": {"y": {"z": [1, [2, [3]]]}}},
        "17 attributes": {f"a{i}": i for i in range(17)},
        "long value": {"kind": "f" * 300},
        "not an object": "kind=fee",
        "array": [["kind", "fee"]],
    },
}

# (label, body as JSON-able value or raw bytes, expected status)
CASES: list[tuple[str, Any, int]] = [
    # every string field, with operators, paths, control characters, wrong types, sizes
    *[
        (f"{field}={label}", hostile(**{field: value}), 422)
        for field, cases in FIELD_CASES.items()
        for label, value in cases.items()
    ],
    ("unknown field", hostile(role="admin"), 422),
    ("unknown field $set", hostile(**{"$set": {"amount_vnd": 10**12}}), 422),
    ("event_id lone surrogate", raw(hostile(), "event_id", f'"{SURROGATE}"'), 422),
    ("attribute key lone surrogate", raw(hostile(), "attributes", f'{{"{SURROGATE}": 1}}'), 422),
    ("amount 5000 digits", raw(hostile(), "amount_vnd", "9" * 5000), 422),
    ("amount 1e400", raw(hostile(), "amount_vnd", "1e400"), 422),
    ("amount NaN", raw(hostile(), "amount_vnd", "NaN"), 422),
    ("amount -Infinity", raw(hostile(), "amount_vnd", "-Infinity"), 422),
    (
        "duplicate keys",
        raw(hostile(), "amount_vnd", '1000, "amount_vnd": 10000000000000'),
        422,
    ),
    ("duplicate attribute keys", raw(hostile(), "attributes", '{"kind": "fee", "kind": "x"}'), 422),
    (
        "invalid UTF-8",
        json.dumps(hostile(subject_id="X")).encode().replace(b'"X"', b'"\xc3\x28"'),
        422,
    ),
    (
        "latin-1 body",
        json.dumps(hostile(subject_id="café"), ensure_ascii=False).encode("latin-1"),
        422,
    ),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + json.dumps(hostile()).encode(), 422),
    ("deep arrays", b"[" * 200_000 + b"]" * 200_000, 422),
    ("deep objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 422),
    ("not JSON", b"event_id=1&type=cccd.issued", 422),
    ("a string", b'"hello"', 422),
    ("null", b"null", 422),
    ("empty body", b"", 422),
    ("empty array", [], 422),
    ("1,001 events", [hostile() for _ in range(1001)], 422),
    ("over 1 MiB", [hostile(subject_id="s" * 100) for _ in range(4000)], 413),
    ("over 1 MiB of whitespace", b" " * ((1 << 20) + 1), 413),
    # one bad event among good ones rejects them all
    ("bad last of 999", [*(hostile() for _ in range(998)), hostile(unit_id="$where")], 422),
]


def send(pipeline: Pipeline, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        pipeline.url("ingest", "/v1/events"),
        content=content,
        headers={"Content-Type": "application/json", **(headers or pipeline.headers())},
        timeout=60,
    )


def accepted_count(pipeline: Pipeline) -> float:
    text = httpx.get(pipeline.url("ingest", "/metrics"), timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("ingest_events_accepted_total "))
    return float(line.split()[1])


@pytest.fixture(scope="module")
def before(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "accepted": accepted_count(pipeline),
        "payments": pipeline.total(COMMUNE, "payment.fee.count", f"year:{YEAR}")["value"],
    }


@pytest.mark.parametrize(("label", "body", "status"), CASES, ids=[c[0] for c in CASES])
def test_hostile_body_is_refused(
    pipeline: Pipeline, before: dict[str, Any], label: str, body: Any, status: int
) -> None:
    answer = send(pipeline, body)
    assert answer.status_code == status, (label, answer.text[:500])
    problem = answer.json()
    assert problem["detail"]
    assert "Traceback" not in answer.text
    assert pipeline.admin_token not in answer.text
    if status == 422 and isinstance(body, dict):
        assert problem["errors"][0]["index"] == 0


def test_out_of_scope_events_are_refused_for_the_whole_batch(
    pipeline: Pipeline, before: dict[str, Any]
) -> None:
    _, field = pipeline.create_token("field", ["bu-dang"])
    batch = [hostile(), hostile(unit_id="bu-dop-tan-tien"), hostile()]
    answer = send(pipeline, batch, pipeline.headers(field))
    assert answer.status_code == 403
    assert [e["index"] for e in answer.json()["errors"]] == [1]


def test_nothing_hostile_was_published_or_stored(
    pipeline: Pipeline, before: dict[str, Any]
) -> None:
    assert accepted_count(pipeline) == before["accepted"]
    client: MongoClient[dict[str, Any]]
    with MongoClient(pipeline.env["MONGODB_URI"], serverSelectionTimeoutMS=5000) as client:
        db: Database[dict[str, Any]] = client[pipeline.env["MONGODB_DB"]]
        # Ids are remembered within their unit: `unit_id/event_id`.
        assert db["accepted"].count_documents({"_id": {"$regex": f"^[a-z0-9-]+/{PREFIX}"}}) == 0
        assert db["ledger"].count_documents({"ids": {"$regex": f"^[a-z0-9-]+/{PREFIX}"}}) == 0
    pipeline.wait_reflected()
    after = pipeline.total(COMMUNE, "payment.fee.count", f"year:{YEAR}")["value"]
    assert after == before["payments"]


def test_ids_that_look_like_operators_are_only_ever_values(pipeline: Pipeline) -> None:
    """The contract lets an event id be any 1-128 characters: ids that would be operators or
    field paths if they were ever parsed as such are accepted, counted once and deduplicated
    exactly, which they would not be if a query took them for anything but a value."""
    run = uuid.uuid4().hex[:8]
    ids = [f"$where-{run}", f"a.b.{run}", f'{{"$gt": ""}}{run}', f"$gt{run}", f"=1+1{run}"]
    events = [
        make_event("cccd.issued", COMMUNE, at("2002-06-06"), event_id=event_id) for event_id in ids
    ]
    before = pipeline.total(COMMUNE, "cccd.issued", "day:2002-06-06")["value"]
    first = pipeline.post(events)
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 5, "duplicates": 0}
    again = pipeline.post(events)
    assert again.json() == {"accepted": 0, "duplicates": 5}
    pipeline.wait_reflected()
    assert pipeline.total(COMMUNE, "cccd.issued", "day:2002-06-06")["value"] == before + 5


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/totals", {"unit_id": "$where", "metric": "cccd.issued", "period": "all"}, 422),
        ("/v1/totals", {"unit_id": "binh-phuoc.d", "metric": "cccd.issued", "period": "all"}, 422),
        ("/v1/totals", {"unit_id": "binh-phuoc", "metric": "$where", "period": "all"}, 404),
        (
            "/v1/totals",
            {"unit_id": "binh-phuoc", "metric": "cccd.issued.$gt", "period": "all"},
            404,
        ),
        ("/v1/totals", {"unit_id": "binh-phuoc", "metric": "t", "period": "all"}, 404),
        ("/v1/totals", {"unit_id": "binh-phuoc", "metric": "cccd.issued", "period": "$where"}, 422),
        (
            "/v1/totals",
            {"unit_id": "binh-phuoc", "metric": "cccd.issued", "period": "day:2024-02-30"},
            422,
        ),
        (
            "/v1/totals",
            {"unit_id": "binh-phuoc", "metric": "cccd.issued", "period": "year:99999"},
            422,
        ),
        ("/v1/totals", {"unit_id": "binh-phuoc", "metric": "x" * 10_000, "period": "all"}, 422),
        ("/v1/rankings", {"metric": "$where", "period": "all"}, 404),
        ("/v1/rankings", {"metric": "cccd.issued", "period": "all", "level": "$where"}, 422),
        (
            "/v1/series",
            {
                "unit_id": "$where",
                "metric": "cccd.issued",
                "from": "2024-01-01",
                "to": "2024-01-02",
            },
            422,
        ),
        (
            "/v1/series",
            {
                "unit_id": "binh-phuoc",
                "metric": "cccd.issued",
                "from": "0001-01-01",
                "to": "0001-01-02",
            },
            422,
        ),
        ("/v1/reports/payments", {"date": "9999-12-31"}, 422),
        ("/v1/reports/online-services", {"date": "2024-04-22", "campaign": "$where"}, 422),
        (
            "/v1/reports/online-services",
            {"date": "2024-04-22", "online_share_threshold": "NaN"},
            422,
        ),
        ("/v1/campaigns/a.b/progress", {"unit_id": "binh-phuoc"}, 422),
        ("/v1/campaigns/4-phu-2024/progress", {"unit_id": "binh-phuoc", "at": "0001-01-01"}, 422),
        ("/v1/stream", {"watch": "$where:$gt:all"}, 404),
        ("/v1/stream", {"watch": "binh-phuoc:cccd.issued:$where"}, 422),
    ],
)
def test_hostile_queries_are_refused_before_any_query(
    pipeline: Pipeline, path: str, params: dict[str, str], status: int
) -> None:
    answer = httpx.get(
        pipeline.url("api", path), params=params, headers=pipeline.headers(), timeout=30
    )
    assert answer.status_code == status, answer.text[:300]
    assert "Traceback" not in answer.text
