"""Issue 19, findings 5-8, without servers: periods and days in ASCII digits and within
1900-2199, the id rule (NFC, no invisible or bidirectional characters), formula cells behind
whitespace, and the HTTP rules that need no server (bounded error bodies, relative
redirects, the JSON content type, the offline docs)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import re
import time
import unicodedata
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from openpyxl import load_workbook
from pydantic import TypeAdapter, ValidationError

from deploy.local.stack import free_port
from shared.adapters.docs import add_offline_docs
from shared.adapters.http_security import Day, _relative_location, harden, is_json_utf8
from shared.adapters.serve import DeadlineProtocol
from shared.adapters.tables import safe_cell, to_csv, to_xlsx
from shared.domain.events import Event
from shared.domain.intake import RejectedBatch, parse_events
from shared.domain.periods import InvalidPeriod, Period
from shared.domain.safety import (
    _UNSAFE_CHAR,
    EARLIEST_DAY,
    LATEST_DAY,
    unsafe_id_reason,
    unsafe_text_reason,
)
from tests.unit.test_security_input import NOT_BEFORE, NOW, event

# -- finding 5: periods and days --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "day:0001-01-01",
        "day:9999-12-31",
        "day:1899-12-31",
        "day:2200-01-01",
        "month:1899-12",
        "month:2200-01",
        "year:0001",
        "year:1899",
        "year:2200",
        "year:9999",
        "year:２０２４",  # fullwidth digits
        "day:２０２４-04-22",
        "month:2024-０４",
        "year:٢٠٢٤",  # Arabic-Indic digits
        "day:2024-04-2\u0662",
    ],
)
def test_periods_outside_the_bounds_or_in_other_digits_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse(text)
    assert text not in str(refused.value)  # never echoed


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("day:1900-01-01", EARLIEST_DAY, EARLIEST_DAY),
        ("day:2199-12-31", LATEST_DAY, LATEST_DAY),
        ("month:1900-01", date(1900, 1, 1), date(1900, 1, 31)),
        ("year:2199", date(2199, 1, 1), LATEST_DAY),
    ],
)
def test_the_bounds_themselves_are_periods(text: str, first: date, last: date) -> None:
    assert Period.parse(text).date_range() == (first, last)
    assert (date(1900, 1, 1), date(2199, 12, 31)) == (EARLIEST_DAY, LATEST_DAY)


def test_a_long_period_is_refused_without_being_repeated() -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse("day:" + "9" * 60_000)
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    "value",
    ["２０２４-04-22", "1713744000", 1_713_744_000, "2024-4-22", "0001-01-01", "9999-12-31", ""],
)
def test_days_are_ascii_iso_days_within_the_bounds(value: Any) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Day).validate_python(value)


def test_a_day_as_the_contract_writes_it() -> None:
    assert TypeAdapter(Day).validate_python("2024-04-22") == date(2024, 4, 22)
    assert TypeAdapter(Day).validate_python(date(2199, 12, 31)) == LATEST_DAY


# -- finding 6: ids ---------------------------------------------------------------------------

NFD = unicodedata.normalize("NFD", "hồ-sơ-Đăk-Ơ-1")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a\u200bb", "format or bidirectional"),  # zero-width space
        ("a\u200db", "format or bidirectional"),  # zero-width joiner
        ("\ufeffa", "format or bidirectional"),  # BOM
        ("a\u00adb", "format or bidirectional"),  # soft hyphen
        ("abc\u202e", "format or bidirectional"),  # right-to-left override
        ("\u2066abc\u2069", "format or bidirectional"),  # isolate
        ("a\u200fb", "format or bidirectional"),  # right-to-left mark
        ("a\u061cb", "format or bidirectional"),  # Arabic letter mark
        ("a\u00a0b", "separators other than the space"),  # no-break space
        ("a\u3000b", "separators other than the space"),  # ideographic space
        ("a\u2028b", "separators other than the space"),  # line separator
        ("a\u2029b", "separators other than the space"),  # paragraph separator
        ("a\u202fb", "separators other than the space"),  # narrow no-break space
        (" a", "start or end with a space"),
        ("a ", "start or end with a space"),
        (" ", "start or end with a space"),
        ("a\tb", "control characters"),
        ("a\x85b", "control characters"),
    ],
)
def test_invisible_and_bidirectional_characters_are_refused(text: str, reason: str) -> None:
    found = unsafe_text_reason(text)
    assert found is not None and reason in found
    id_found = unsafe_id_reason(text)
    assert id_found is not None and reason in id_found


def test_ids_must_be_nfc_names_need_not() -> None:
    assert unicodedata.normalize("NFC", NFD) != NFD
    assert unsafe_id_reason(NFD) == "must be in Unicode NFC form"
    assert unsafe_id_reason(unicodedata.normalize("NFC", NFD)) is None
    # Names are display text, never compared as keys: the character rule only.
    assert unsafe_text_reason(NFD) is None


@pytest.mark.parametrize(
    "text", ["e-1", "HS 000.12/2024", "Huyện Bù Đăng", "$where", "=1+1", "😀", "ab\u0301"[:1]]
)
def test_ordinary_ids_pass(text: str) -> None:
    assert unsafe_id_reason(text) is None


def test_the_character_class_is_exactly_the_refused_categories() -> None:
    """The precompiled class against unicodedata, every code point: Cc, Cf, Cs, Zl, Zp, and Zs
    but the space, and nothing else."""
    refused_categories = {"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"}
    wrong = [
        code
        for code in range(0x110000)
        if (unicodedata.category(chr(code)) in refused_categories and code != 0x20)
        != bool(_UNSAFE_CHAR.match(chr(code)))
    ]
    assert wrong == [], [f"U+{code:04X}" for code in wrong[:10]]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": NFD}, "event_id"),
        ({"subject_id": NFD}, "subject_id"),
        (
            {"type": "event.voided", "subject_id": None, "attributes": {"voids": NFD}},
            "attributes.voids",
        ),
    ],
)
def test_intake_refuses_non_nfc_ids_naming_the_field(overrides: Any, field: str) -> None:
    with pytest.raises(RejectedBatch) as rejected:
        parse_events(event(**overrides), NOW, NOT_BEFORE)
    (problem,) = rejected.value.problems
    assert problem.field == field
    assert "must be in Unicode NFC form" in problem.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"event_id": "e\u200b1"},
        {"event_id": "e-1 "},
        {"event_id": "e\u00a01"},
        {"subject_id": "\u202ecert"},
        {"type": "event.voided", "subject_id": None, "attributes": {"voids": "e-1\u2066"}},
    ],
)
def test_intake_refuses_invisible_characters_in_ids(overrides: Any) -> None:
    with pytest.raises(RejectedBatch):
        parse_events(event(**overrides), NOW, NOT_BEFORE)


def test_records_already_in_the_log_are_not_judged_again() -> None:
    # The aggregator validates without a context: an NFD id accepted before the rule stays.
    parsed = Event.model_validate(event(event_id=NFD, subject_id="cert\u00a01"))
    assert parsed.event_id == NFD


# -- finding 7: formula cells -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        " =1+1",
        "\u00a0=1+1",
        "\u3000+1",
        "\u200b-1",
        "\ufeff@SUM(A1)",
        "\u202e=1",
        "\n=1",
        "  \t =1",
        "\tanything",
        "\ranything",
        "＝1+1",
    ],
)
def test_formulas_behind_whitespace_are_escaped(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Huyện Bù Đăng", "a=1", "Sở Y tế - Bình Phước", "1 + 1", 7])
def test_ordinary_cells_are_left_alone(value: Any) -> None:
    assert safe_cell(value) == value


def test_no_report_cell_is_a_formula() -> None:
    hostile = [" =1+1", '\u00a0=HYPERLINK("http://evil.example")', "=cmd|' /C calc'!A0"]
    header = ["TT", *hostile]
    rows: list[list[Any]] = [[1, *hostile], ["#", "Tổng", 3, None]]
    lines = list(csv.reader(io.StringIO(to_csv(header, rows).decode("utf-8-sig"))))
    assert lines[0][1:] == lines[1][1:] == ["'" + value for value in hostile]
    sheet = load_workbook(io.BytesIO(to_xlsx(hostile[0], header, rows))).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value is not None]
    assert all(cell.data_type != "f" for cell in cells)
    texts = [cell.value for cell in cells if isinstance(cell.value, str)]
    assert all(not str(t).lstrip(" \u00a0").startswith("=") for t in texts), texts


# -- finding 8: HTTP --------------------------------------------------------------------------


def hardened_app() -> httpx.AsyncClient:
    app = FastAPI()
    harden(app, "test", [], 1 << 16)

    @app.get("/things")
    async def things(name: str = Query(max_length=8)) -> dict[str, str]:
        raise HTTPException(404, f"no thing named {name!r}")

    @app.get("/quoting")
    async def quoting(text: str) -> dict[str, str]:
        raise HTTPException(422, [{"field": text, "message": f"bad {text}"}])

    @app.get("/dashboard/{name}")
    async def asset(name: str) -> dict[str, str]:
        return {"name": name}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_error_answers_are_bounded_and_do_not_echo() -> None:
    client = hardened_app()
    huge = "x" * 60_000
    answers = [
        await client.get("/things", params={"name": huge}),
        await client.get("/quoting", params={"text": huge}),
    ]
    for answer in answers:
        assert answer.status_code in (404, 422)
        assert len(answer.content) < 600, answer.text[:200]
        assert "x" * 300 not in answer.text


async def test_a_client_leaving_mid_body_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    harden(app, "test", [], None)

    @app.post("/read")
    async def read(request: Request) -> dict[str, int]:
        return {"bytes": len(b"".join([chunk async for chunk in request.stream()]))}

    incoming = [{"type": "http.request", "body": b"ab", "more_body": True}]
    incoming.append({"type": "http.disconnect"})
    sent: list[Any] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/read", "headers": [], "query_string": b""}
    with caplog.at_level(logging.INFO):
        await app({**scope, "asgi": {"version": "3.0"}, "http_version": "1.1"}, receive, send)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "client left" in caplog.text
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(
    ("path", "host", "location"),
    [
        ("/things/", "evil.example", "/things"),
        ("/dashboard/app.js/", "evil.example:8080", "/dashboard/app.js"),
        ("/things/?name=a", "evil.example", "/things?name=a"),
    ],
)
async def test_redirects_are_relative_whatever_the_host_says(
    path: str, host: str, location: str
) -> None:
    answer = await hardened_app().get(path, headers={"Host": host})
    assert answer.status_code in (307, 308), answer.text
    assert answer.headers["location"] == location


@pytest.mark.parametrize(
    ("location", "relative"),
    [
        ("http://evil.example/v1/units", "/v1/units"),
        ("http://evil.example//other.example/x", "/other.example/x"),
        ("http://evil.example/\\\\other.example/x", "/other.example/x"),
        ("//evil.example/x", "/x"),
        ("/v1/units?a=1", "/v1/units?a=1"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
    ],
)
def test_a_location_on_this_host_becomes_a_path(location: str, relative: str) -> None:
    assert _relative_location(location, "evil.example") == relative


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=utf-8", True),
        ('application/json;charset="UTF-8"', True),
        (None, False),
        ("", False),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("application/json; charset=latin-1", False),
        ("application/jsonx", False),
        ("application/problem+json", False),
    ],
)
def test_ingest_reads_json_only(content_type: str | None, ok: bool) -> None:
    assert is_json_utf8(content_type) == ok


async def test_docs_load_with_no_external_url() -> None:
    app = FastAPI(docs_url=None, redoc_url=None)
    add_offline_docs(app)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    page = await client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(urls) == 3, urls
    for url in urls:
        assert url.startswith("/docs/static/"), url
        asset = await client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert "https://" not in page.text and "http://" not in page.text
    assert '"validatorUrl": null' in page.text
    assert (await client.get("/docs/static/..%2F__init__.py")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404


# -- finding 8: header and body deadlines, on a real uvicorn ----------------------------------


async def echo_body(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"got %d" % len(body)})


@contextlib.asynccontextmanager
async def served(header_s: float, body_s: float) -> AsyncIterator[int]:
    port = free_port()
    config = uvicorn.Config(
        echo_body,
        host="127.0.0.1",
        port=port,
        http=DeadlineProtocol.with_timeouts(header_s, body_s),
        ws="none",
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn's Server has only this flag)
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def until_closed(port: int, *parts: bytes, pause_s: float = 0) -> tuple[bytes, float]:
    """What the server answers to `parts` (sent `pause_s` apart) until it closes the
    connection, and how long after the last part it did."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i, part in enumerate(parts):
        if i:
            await asyncio.sleep(pause_s)
        writer.write(part)
        await writer.drain()
    sent = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    closed_after = time.monotonic() - sent
    writer.close()
    return answer, closed_after


async def test_half_a_header_line_is_cut_off_at_the_deadline() -> None:
    async with served(0.5, 1.0) as port:
        answer, after = await until_closed(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ab")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.3 < after < 3


async def test_a_silent_connection_is_cut_off_at_the_header_deadline() -> None:
    async with served(0.5, 1.0) as port:
        answer, after = await until_closed(port)
    assert answer == b""
    assert after < 3


async def test_half_a_body_is_cut_off_at_the_body_deadline() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    async with served(0.5, 1.0) as port:
        answer, after = await until_closed(port, head + b"x" * 10)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 0.8 < after < 4


async def test_the_next_request_on_a_kept_connection_has_the_deadline_too() -> None:
    first = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    async with served(0.5, 1.0) as port:
        answer, after = await until_closed(port, first, b"GET / HTTP/1.1\r\nHo", pause_s=0.2)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer
    assert after < 3


async def test_slow_but_timely_clients_are_served() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
    async with served(1.0, 1.5) as port:
        answer, _ = await until_closed(port, head[:20], head[20:], b"ab", b"cd", pause_s=0.3)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"got 4" in answer
