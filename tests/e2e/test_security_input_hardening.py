"""Issue 19, findings 5-8, on the real services: periods and days outside 1900-2199 or in other
digits (`422`, not `500`), ids in NFD or with invisible and bidirectional characters (refused,
never counted twice), formula cells behind whitespace in report files, and the HTTP edges
(bounded error bodies, header and body deadlines on a raw socket, `/docs` with no external
URL, relative redirects, ingest's JSON content type).

A pipeline of its own: short header and body deadlines (HTTP_HEADER_TIMEOUT_S,
HTTP_BODY_TIMEOUT_S), and a catalog with hostile unit names loaded the way an operator's
catalog file is.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from deploy.local.stack import LocalStack
from shared.domain.units import bundled_catalog
from tests.conftest import Pipeline, at, make_event, running_pipeline

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
PROVINCE, COMMUNE = "binh-phuoc", "bu-dang-minh-hung"


@pytest.fixture(scope="module")
def line(infra: LocalStack) -> Iterator[Pipeline]:
    """A pipeline whose services cut slow clients off after a second or two."""
    deadlines = {"HTTP_HEADER_TIMEOUT_S": "1", "HTTP_BODY_TIMEOUT_S": "2"}
    with running_pipeline(infra, deadlines) as pipeline:
        yield pipeline


def api(line: Pipeline, path: str, **params: Any) -> httpx.Response:
    return httpx.get(line.url("api", path), params=params, headers=line.headers(), timeout=30)


def assert_short_and_clean(answer: httpx.Response, *never: str) -> None:
    assert len(answer.content) < 600, answer.text[:300]
    assert "Traceback" not in answer.text
    for text in never:
        assert text not in answer.text


# -- finding 5: periods and days --------------------------------------------------------------

BAD_PERIODS = ["day:0001-01-01", "day:9999-12-31", "year:0001", "year:２０２４", "month:2200-01"]


@pytest.mark.parametrize("period", BAD_PERIODS)
def test_periods_outside_the_days_or_in_other_digits_are_422(line: Pipeline, period: str) -> None:
    for path, params in (
        ("/v1/totals", {"unit_id": PROVINCE, "metric": "cccd.issued", "period": period}),
        ("/v1/rankings", {"metric": "cccd.issued", "period": period}),
        ("/v1/stream", {"watch": f"{PROVINCE}:cccd.issued:{period}"}),
    ):
        answer = api(line, path, **params)
        assert answer.status_code == 422, (path, period, answer.text[:300])
        assert_short_and_clean(answer)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/campaigns/4-phu-2024/progress", {"unit_id": PROVINCE, "at": "1713744000"}),
        ("/v1/campaigns/4-phu-2024/progress", {"unit_id": PROVINCE, "at": "２０２４-04-22"}),
        ("/v1/reports/payments", {"date": "1713744000"}),
        ("/v1/reports/online-services", {"date": "２０２４-04-22"}),
        (
            "/v1/series",
            {
                "unit_id": PROVINCE,
                "metric": "cccd.issued",
                "from": "1713744000",
                "to": "2024-04-23",
            },
        ),
    ],
)
def test_days_are_yyyy_mm_dd_in_ascii_digits(
    line: Pipeline, path: str, params: dict[str, str]
) -> None:
    answer = api(line, path, **params)
    assert answer.status_code == 422, answer.text[:300]


def test_the_bounds_themselves_answer(line: Pipeline) -> None:
    for period in ("day:1900-01-01", "day:2199-12-31", "year:2199"):
        assert line.total(PROVINCE, "cccd.issued", period)["value"] == 0


# -- finding 6: ids ---------------------------------------------------------------------------


def test_an_id_in_nfd_is_refused_and_the_nfc_one_counted_once(line: Pipeline) -> None:
    run = uuid.uuid4().hex[:8]
    nfc = f"hồ-sơ-Đắk-Ơ-{run}"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    day = "2004-05-05"
    before = line.total(COMMUNE, "cccd.issued", f"day:{day}")["value"]
    first = line.post(make_event("cccd.issued", COMMUNE, at(day), event_id=nfc))
    assert first.json() == {"accepted": 1, "duplicates": 0}
    refused = line.post(make_event("cccd.issued", COMMUNE, at(day), event_id=nfd))
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["errors"]
    assert problem["field"] == "event_id"
    assert "must be in Unicode NFC form" in problem["message"]
    line.wait_reflected()
    assert line.total(COMMUNE, "cccd.issued", f"day:{day}")["value"] == before + 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject_id": unicodedata.normalize("NFD", "hồ-sơ-1")}, "subject_id"),
        (
            {
                "type": "event.voided",
                "attributes": {"voids": unicodedata.normalize("NFD", "hồ-sơ-1")},
            },
            "attributes.voids",
        ),
    ],
)
def test_subjects_and_voids_in_nfd_are_refused_naming_the_field(
    line: Pipeline, fields: dict[str, Any], field: str
) -> None:
    event = make_event(
        "certification.status", COMMUNE, at("2004-05-06"), attributes={"status": "completed"}
    )
    event.update(fields)
    answer = line.post(event)
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["errors"]
    assert (problem["field"], "must be in Unicode NFC form" in problem["message"]) == (field, True)


@pytest.mark.parametrize(
    "event_id",
    [
        "a\u200bb",  # zero-width space
        "a\ufeffb",  # BOM
        "abc\u202e",  # right-to-left override
        "\u2067abc\u2069",  # right-to-left isolate
        "a\u200eb",  # left-to-right mark
        "a\u00a0b",  # no-break space
        "a\u3000b",  # ideographic space
        " ab",
        "ab ",
    ],
)
def test_ids_with_invisible_or_bidirectional_characters_are_refused(
    line: Pipeline, event_id: str
) -> None:
    answer = line.post(make_event("cccd.issued", COMMUNE, at("2004-05-07"), event_id=event_id))
    assert answer.status_code == 422, answer.text
    assert [p["field"] for p in answer.json()["errors"]] == ["event_id"]


@pytest.mark.parametrize("name", ["Xã \u202eevil", " Xã Mới", "Xã\u00a0Mới", "Xã\u200bMới"])
def test_names_follow_the_same_rule(line: Pipeline, name: str) -> None:
    unit = {"id": "named-badly", "name": name, "level": "commune", "parent_id": "bu-dang"}
    answer = httpx.post(line.url("api", "/v1/units"), json=unit, headers=line.headers(), timeout=30)
    assert answer.status_code == 422, answer.text
    campaign = {"name": name, "starts": "2004-01-01", "ends": "2004-02-01"}
    answer = httpx.put(
        line.url("api", "/v1/campaigns/named-badly"),
        json=campaign,
        headers=line.headers(),
        timeout=30,
    )
    assert answer.status_code == 422, answer.text


# -- finding 7: formula cells behind whitespace -----------------------------------------------

HOSTILE_NAMES = {
    "formula-space": " =1+1",
    "formula-nbsp": '\u00a0=HYPERLINK("http://evil.example","Bấm")',
    "formula-zwsp": "\u200b@SUM(A1)",
}


def test_report_files_escape_formulas_behind_whitespace(
    line: Pipeline, infra: LocalStack, tmp_path: Path
) -> None:
    # Names that the API refuses now (finding 6), as an operator's catalog file may still hold.
    catalog = bundled_catalog()
    for unit_id, name in HOSTILE_NAMES.items():
        catalog["units"].append(
            {"id": unit_id, "name": name, "level": "district", "parent_id": PROVINCE}
        )
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog, ensure_ascii=False))
    init = infra.spawn(
        "init-hostile",
        [sys.executable, "-m", "shared.admin", "init", "--catalog", str(path)],
        env=line.env,
    )
    assert init.popen.wait(60) == 0, Path(init.log_path).read_text()
    infra.processes.remove(init)

    report = api(line, "/v1/reports/payments", date="2004-02-02", format="csv")
    assert report.status_code == 200, report.text
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    names = {row[1] for row in rows}
    for name in HOSTILE_NAMES.values():
        assert "'" + name in names, (name, sorted(names)[:5])
        assert name not in names

    report = api(line, "/v1/reports/payments", date="2004-02-02", format="xlsx")
    sheet = load_workbook(io.BytesIO(report.content)).active
    assert sheet is not None
    cells = {c.value: c.data_type for row in sheet.iter_rows() for c in row if c.value}
    for name in HOSTILE_NAMES.values():
        assert cells.get("'" + name) == "s"
    assert "f" not in cells.values()


# -- finding 8: bounded errors ----------------------------------------------------------------


def test_a_huge_watch_value_is_refused_in_a_few_hundred_bytes(line: Pipeline) -> None:
    huge = "q" * 60_000
    for watch in (f"{PROVINCE}:cccd.issued:{huge}", f"{huge}:cccd.issued:all"):
        answer = api(line, "/v1/stream", watch=watch)
        assert answer.status_code in (404, 422), answer.text[:300]
        assert_short_and_clean(answer, "q" * 100)


def test_ingest_problems_are_bounded_too(line: Pipeline) -> None:
    key = "k" * 5000
    event = make_event("cccd.issued", COMMUNE, at("2004-05-08"), attributes={key: 1})
    answer = line.post(event)
    assert answer.status_code == 422, answer.text[:300]
    assert_short_and_clean(answer, "k" * 100)


# -- finding 8: slow clients ------------------------------------------------------------------


def closed_after(port: int, data: bytes) -> tuple[bytes, float]:
    """Send `data` and nothing more; what comes back until the server closes, and when."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(data)
        sent = time.monotonic()
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received, time.monotonic() - sent


@pytest.mark.parametrize("service", ["ingest", "api"])
def test_half_a_header_line_is_cut_off(line: Pipeline, service: str) -> None:
    answer, after = closed_after(line.ports[service], b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Sl")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert HEADER_TIMEOUT_S * 0.5 < after < HEADER_TIMEOUT_S + 3


def test_half_a_body_is_cut_off(line: Pipeline) -> None:
    body = json.dumps(make_event("cccd.issued", COMMUNE, at("2004-05-09"))).encode()
    head = (
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {line.admin_token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer, after = closed_after(line.ports["ingest"], head + body[: len(body) // 2])
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert BODY_TIMEOUT_S * 0.5 < after < BODY_TIMEOUT_S + 3
    # The handler that was reading the body saw the client leave: no error, no trace logged.
    time.sleep(0.5)
    log = line.services["ingest"].log_path.read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log


# -- finding 8: docs, redirects, content type -------------------------------------------------


@pytest.mark.parametrize("service", ["ingest", "api"])
def test_docs_load_with_no_external_url(line: Pipeline, service: str) -> None:
    page = httpx.get(line.url(service, "/docs"), timeout=30)
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page.text)
    assert len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(line.url(service, url), timeout=30)
        assert asset.status_code == 200, url
    assert not re.search(r"https?://", page.text), page.text
    schema = httpx.get(line.url(service, "/openapi.json"), timeout=30)
    assert schema.status_code == 200


@pytest.mark.parametrize(
    ("service", "path"),
    [("api", "/v1/units/"), ("api", "/dashboard/app.js/"), ("ingest", "/v1/events/")],
)
def test_redirects_never_follow_the_host_header(line: Pipeline, service: str, path: str) -> None:
    answer = httpx.request(
        "POST" if service == "ingest" else "GET",
        line.url(service, path),
        headers={**line.headers(), "Host": "evil.example"},
        timeout=30,
    )
    assert answer.status_code in (307, 308), answer.text[:200]
    location = answer.headers["location"]
    assert location.startswith("/") and not location.startswith("//"), location
    assert "evil.example" not in location


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_ingest_refuses_what_is_not_json(line: Pipeline, content_type: str | None) -> None:
    event = make_event("cccd.issued", COMMUNE, at("2004-05-10"))
    headers = line.headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = httpx.post(
        line.url("ingest", "/v1/events"),
        content=json.dumps(event).encode(),
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["detail"]
    assert_short_and_clean(answer)


def test_ingest_takes_json_with_its_charset(line: Pipeline) -> None:
    event = make_event("cccd.issued", COMMUNE, at("2004-05-11"))
    answer = httpx.post(
        line.url("ingest", "/v1/events"),
        content=json.dumps(event).encode(),
        headers={**line.headers(), "Content-Type": "application/json; charset=utf-8"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    schema = httpx.get(line.url("ingest", "/openapi.json"), timeout=30).json()
    assert "415" in schema["paths"]["/v1/events"]["post"]["responses"]
