"""`GET /v1/stream` under load: 200 clients each get every change, and a client that stops
reading holds nobody back (it gets the latest value when it reads again)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from urllib.parse import urlencode

import httpx

from tests.conftest import Pipeline, at, make_event

CLIENTS = 200
CHANGES = 3
UNIT, METRIC, DAY = "bu-gia-map", "smartphone.replaced", "2003-03-03"
KEY = f"{UNIT}:{METRIC}:day:{DAY}"


async def _slow_client(pipeline: Pipeline) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection with a tiny receive buffer that sends its request and then reads
    nothing until the end of the test, as a phone on a stalled network would."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pipeline.ports["api"]))
    reader, writer = await asyncio.open_connection(sock=sock)
    query = urlencode({"watch": KEY})
    writer.write(
        f"GET /v1/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {pipeline.admin_token}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def test_every_client_gets_every_change_and_a_slow_one_holds_nobody_back(
    pipeline: Pipeline,
) -> None:
    url = pipeline.url("api", "/v1/stream")
    arrivals: list[dict[int, float]] = [{} for _ in range(CLIENTS)]
    order: list[list[int]] = [[] for _ in range(CLIENTS)]

    async def listen(client: httpx.AsyncClient, index: int) -> None:
        async with client.stream(
            "GET", url, params={"watch": KEY}, headers=pipeline.headers()
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    value = json.loads(line[len("data: ") :])["value"]
                    arrivals[index][value] = time.monotonic()
                    order[index].append(value)

    async def all_have(value: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(value in a for a in arrivals):
            missing = sum(value not in a for a in arrivals)
            assert time.monotonic() < deadline, f"{missing} clients never got {value}"
            await asyncio.sleep(0.02)

    slow_reader, slow_writer = await _slow_client(pipeline)
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(30, read=60)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(listen(client, i)) for i in range(CLIENTS)]
        try:
            await all_have(0, 60)  # everyone connected and got the current total
            latencies = []
            async with httpx.AsyncClient(timeout=30) as poster:
                for expected in range(1, CHANGES + 1):
                    event = make_event(METRIC, UNIT, at(DAY, 8 + expected))
                    response = await poster.post(
                        pipeline.url("ingest", "/v1/events"),
                        json=event,
                        headers=pipeline.headers(),
                    )
                    accepted = time.monotonic()
                    assert response.status_code == 202, response.text
                    await all_have(expected, 10)
                    latencies.append(max(a[expected] for a in arrivals) - accepted)
            # Every client saw every change, in order; the last of 200 within 2 s of the 202.
            assert all(o == list(range(CHANGES + 1)) for o in order)
            assert max(latencies) < 2.0, latencies
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # The slow client, reading at last: its first total, then straight to the latest one.
    received = b""
    deadline = time.monotonic() + 10
    values: list[int] = []
    while CHANGES not in values and time.monotonic() < deadline:
        chunk = await asyncio.wait_for(slow_reader.read(65536), 10)
        received += chunk
        values = [
            json.loads(line[len(b"data: ") :])["value"]
            for line in received.split(b"\n")
            if line.startswith(b"data: ")
        ]
    slow_writer.close()
    assert values[0] == 0 and values[-1] == CHANGES, values
    assert values == sorted(values)
