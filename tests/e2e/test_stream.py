"""`GET /v1/stream`: Server-Sent Events for the totals a client watches."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx

from tests.conftest import Pipeline, at, make_event

WATCH = [
    "bu-dop:cccd.issued:day:2004-04-04",
    "binh-phuoc:filing.processed.online_rate:year:2004",
]


def _listen(
    pipeline: Pipeline, received: queue.Queue[dict[str, Any]], client: httpx.Client
) -> None:
    try:
        with client.stream(
            "GET",
            pipeline.url("api", "/v1/stream"),
            params=[("watch", w) for w in WATCH],
            headers=pipeline.headers(),
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    received.put(json.loads(line[len("data: ") :]))
    except (httpx.HTTPError, RuntimeError):
        return  # the test closed the connection


def _next(received: queue.Queue[dict[str, Any]], timeout: float) -> dict[str, Any]:
    return received.get(timeout=timeout)


def test_stream_sends_watched_totals_and_each_change(pipeline: Pipeline) -> None:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    client = httpx.Client(timeout=httpx.Timeout(10, read=30))
    listener = threading.Thread(target=_listen, args=(pipeline, received, client), daemon=True)
    listener.start()
    first = {body["metric"]: body for body in (_next(received, 10), _next(received, 10))}
    assert first["cccd.issued"]["value"] == 0
    assert first["filing.processed.online_rate"]["denominator"] == 0

    events = [make_event("cccd.issued", "bu-dop-tan-tien", at("2004-04-04")) for _ in range(3)]
    started = time.monotonic()
    assert pipeline.post(events).status_code == 202
    # The three may land in different batches (partitions): each change is a message.
    seen = [_next(received, 5)]
    while seen[-1]["value"] != 3:
        seen.append(_next(received, 5))
    assert time.monotonic() - started < 2.0  # visible live within 2 s of the 202
    assert {(u["unit_id"], u["metric"]) for u in seen} == {("bu-dop", "cccd.issued")}
    assert [u["value"] for u in seen] == sorted({u["value"] for u in seen})
    filing = make_event(
        "filing.processed",
        "so-y-te",
        at("2004-07-07"),
        attributes={"channel": "online", "on_time": True},
    )
    assert pipeline.post(filing).status_code == 202
    rate = _next(received, 5)
    assert (rate["metric"], rate["numerator"], rate["denominator"]) == (
        "filing.processed.online_rate",
        1,
        1,
    )
    client.close()  # the server notices the client left and forgets it
    listener.join(5)


def test_stream_refuses_bad_watches(pipeline: Pipeline) -> None:
    url = pipeline.url("api", "/v1/stream")
    assert httpx.get(url, params={"watch": WATCH[0]}).status_code == 401
    bad = httpx.get(url, params={"watch": "nowhere:cccd.issued:all"}, headers=pipeline.headers())
    assert bad.status_code == 404
    bad = httpx.get(url, params={"watch": "bu-dop:cccd.issued:week:1"}, headers=pipeline.headers())
    assert bad.status_code == 422
    assert httpx.get(url, headers=pipeline.headers()).status_code == 422
