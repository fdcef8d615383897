"""HTTP hygiene and the rate limiter, without servers: CORS closed unless configured, bodies
bounded and strictly parsed, errors that echo neither input nor internals, exact fixed-window
counting, label values that cannot break the Prometheus exposition."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from shared.adapters.auth import Authenticator
from shared.adapters.http_security import harden
from shared.adapters.security_store import RateLimiter, SecurityStore
from shared.domain.access import Role
from shared.domain.ratelimit import RateLimits, Window, granted, lease_size, window_at
from shared.live import until_revoked
from shared.settings import Settings

SECRET = "s3cr3t-token-value-that-must-not-come-back"


class Body(BaseModel):
    name: str = Field(max_length=8)
    count: int


def app_with(cors: list[str] | None = None, max_body: int | None = 1 << 16) -> httpx.AsyncClient:
    app = FastAPI()
    harden(app, "test", cors or [], max_body)

    @app.post("/things")
    async def things(body: Body) -> dict[str, Any]:
        return body.model_dump()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"internal detail {SECRET}")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_cors_is_closed_by_default() -> None:
    client = app_with()
    answer = await client.post(
        "/things", json={"name": "a", "count": 1}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options(
        "/things",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_opens_only_to_configured_origins() -> None:
    client = app_with(cors=["https://portal.example"])
    allowed = await client.options(
        "/things",
        headers={
            "Origin": "https://portal.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://portal.example"
    assert "access-control-allow-credentials" not in allowed.headers
    other = await client.options(
        "/things",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


async def test_every_answer_says_nosniff() -> None:
    client = app_with()
    posted = await client.post("/things", json={"name": "a", "count": 1})
    assert posted.headers["x-content-type-options"] == "nosniff"
    missing = await client.get("/nowhere")
    assert missing.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"name": "a", "count": 1, "count": 2}', 422),
        (b'{"name": "a", "count": NaN}', 422),
        (b"[" * 30_000 + b"]" * 30_000, 422),
        (b'{"name": "\\ud800", "count": 1}', 422),
        (b'{"name": "\xff", "count": 1}', 422),
        (b'{"name": "a", "count": ' + b"9" * 5000 + b"}", 422),
        (b'{"name": "' + b"a" * 70_000 + b'", "count": 1}', 413),
    ],
)
async def test_bodies_are_bounded_and_strict(body: bytes, status: int) -> None:
    answer = await app_with().post(
        "/things", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    if status == 422:
        # Refused by the guard, before FastAPI parsed anything.
        assert detail[0]["type"] == "json_invalid", detail


async def test_a_body_without_content_length_is_bounded_too() -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1000

    answer = await app_with().post(
        "/things", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413


async def test_validation_errors_do_not_echo_the_input() -> None:
    answer = await app_with().post("/things", json={"name": SECRET, "count": SECRET})
    assert answer.status_code == 422
    assert SECRET not in answer.text
    assert {tuple(p["loc"]) for p in answer.json()["detail"]} == {
        ("body", "name"),
        ("body", "count"),
    }


async def test_an_unhandled_error_answers_without_internals() -> None:
    answer = await app_with().get("/boom")
    assert answer.status_code == 500
    assert SECRET not in answer.text
    assert "Traceback" not in answer.text
    assert answer.json() == {"detail": "internal error; it has been logged"}


# -- rate limits --------------------------------------------------------------------------------


def test_windows_and_retry_after() -> None:
    assert window_at(119.5, 60) == Window(1, 120)
    assert window_at(120.0, 60) == Window(2, 180)
    assert window_at(119.5, 60).retry_after(119.5) == 1
    assert window_at(60.0, 60).retry_after(60.0) == 60
    limits = RateLimits(window_s=60, field=10, viewer=20, admin=0)
    assert limits.limit_for(Role.FIELD) == 10
    assert limits.limit_for(Role.VIEWER) == 20
    assert limits.limit_for(Role.ADMIN) == 0
    assert limits.limit_for(Role.ADMIN, own=5) == 5
    assert limits.limit_for(Role.FIELD, own=0) == 0


class CountingStore:
    """The shared counter as MongoDB keeps it, in memory; counts its round trips."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.calls = 0

    async def count_requests(self, key: str, window: Window, n: int = 1) -> int:
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other requests run meanwhile
        self.counts[f"{key}:{window.index}"] += n
        return self.counts[f"{key}:{window.index}"]


def limiter(store: CountingStore, now: list[float]) -> RateLimiter:
    return RateLimiter(store, window_s=60, clock=lambda: now[0])  # type: ignore[arg-type]


async def test_small_limits_are_exact_and_a_flood_costs_no_round_trip() -> None:
    now = [1000.0]
    store = CountingStore()
    limits = limiter(store, now)
    results = [await limits.retry_after("token-a", 3) for _ in range(10)]
    assert results[:3] == [None, None, None]
    assert results[3:] == [20] * 7  # the window [960, 1020) ends in 20 s
    # One claim per admitted request (limits under 40 claim one at a time); the last one
    # reached the limit, so the seven refusals cost no round trip at all.
    assert store.calls == 3
    assert await limits.retry_after("token-b", 3) is None  # other tokens are not affected
    now[0] = 1020.0
    assert await limits.retry_after("token-a", 3) is None  # a new window
    assert await limits.retry_after("token-a", 0) is None  # unlimited: never counted
    assert store.calls == 5


async def test_large_limits_are_claimed_in_blocks() -> None:
    now = [1000.0]
    store = CountingStore()
    limits = limiter(store, now)
    results = [await limits.retry_after("portal", 1200) for _ in range(1201)]
    assert results.count(None) == 1200 and results[-1] == 20
    assert lease_size(1200) == 60
    assert store.calls == 1200 // 60


async def test_instances_sharing_a_limit_never_exceed_it() -> None:
    now = [1000.0]
    store = CountingStore()
    instances = [limiter(store, now) for _ in range(3)]
    admitted = 0
    for i in range(400):
        admitted += await instances[i % 3].retry_after("portal", 100) is None
    # Never more than the limit; fewer by at most one unused block per other instance.
    assert 100 - 2 * lease_size(100) <= admitted <= 100
    assert granted(100, 105, 5) == 0 and granted(100, 102, 5) == 3 and granted(100, 5, 5) == 5


async def test_concurrent_requests_share_one_claim() -> None:
    now = [1000.0]
    store = CountingStore()
    limits = limiter(store, now)
    results = await asyncio.gather(*(limits.retry_after("portal", 100) for _ in range(50)))
    assert results.count(None) == 50
    assert store.calls == 50 // lease_size(100)  # no block claimed and left unused


def test_the_admin_token_must_not_be_guessable() -> None:
    with pytest.raises(ValueError, match="shorter than 16"):
        Authenticator(None, "admin")  # type: ignore[arg-type]


def test_the_admin_token_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "admin_token"
    secret.write_text("from-a-mounted-secret-file\n")
    assert Settings(admin_token_file=str(secret)).admin_token == "from-a-mounted-secret-file"
    # ADMIN_TOKEN wins when both are set.
    assert Settings(admin_token="x" * 20, admin_token_file=str(secret)).admin_token == "x" * 20


def test_security_store_is_importable_without_a_server() -> None:
    assert SecurityStore.count_requests.__doc__


# -- Prometheus labels ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        'Huyện "Bù Đăng"',
        'x"} 1\n# TYPE evil counter\nevil_total 1\n',
        "back\\slash\\",
        "=cmd|' /C calc'!A0",
        "$where",
    ],
)
def test_label_values_cannot_break_the_exposition(hostile: str) -> None:
    registry = CollectorRegistry()
    gauge = Gauge("campaign_unit_value", "value", ["unit_name"], registry=registry)
    gauge.labels(hostile).set(7)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert [f.name for f in families] == ["campaign_unit_value"]
    (sample,) = families[0].samples
    assert sample.labels == {"unit_name": hostile}
    assert sample.value == 7


# -- open streams -------------------------------------------------------------------------------


async def test_a_stream_ends_when_its_token_is_no_longer_valid() -> None:
    closed = asyncio.Event()

    async def chunks() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.sleep(3600)  # idle: only the periodic check can end it
            yield "never"
        finally:
            closed.set()

    valid = [True]

    async def still_valid() -> bool:
        return valid[0]

    stream = until_revoked(chunks(), still_valid, every_s=0.05)
    assert await anext(stream) == "first"
    valid[0] = False
    started = time.monotonic()
    rest = [chunk async for chunk in stream]
    assert rest == ['event: revoked\ndata: {"detail": "the token was revoked or expired"}\n\n']
    assert time.monotonic() - started < 1
    assert closed.is_set()  # the hub's subscription is released at once


async def test_a_stream_outlives_a_database_that_cannot_answer() -> None:
    async def chunks() -> AsyncIterator[str]:
        for i in range(3):
            await asyncio.sleep(0.02)
            yield str(i)

    async def unreachable() -> bool:
        raise ConnectionError("database down")

    assert [c async for c in until_revoked(chunks(), unreachable, every_s=0.01)] == ["0", "1", "2"]
