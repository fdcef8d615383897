"""The database goes away and comes back: ingest answers 503 meanwhile, the aggregator pauses and
retries its batch with backoff, and every acknowledged event is counted exactly once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.stack import LocalStack, free_port
from tests.conftest import Pipeline, at, make_event, running_pipeline


@pytest.fixture()
def own_database(infra: LocalStack, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(
        data_dir=tmp_path / "data",
        log_dir=tmp_path / "logs",
        kafka_port=infra.kafka_port,  # the session's broker; only the database is our own
        mongo_port=free_port(),
        s3_port=free_port(),
    )
    try:
        stack.start_database()
        yield stack
    finally:
        stack.stop_all()


def _produce(bootstrap: str, topic: str, events: list[dict[str, object]]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    topic, json.dumps(event).encode(), key=str(event["event_id"]).encode()
                )
        finally:
            await producer.stop()

    asyncio.run(send())


def test_database_restart_mid_stream(own_database: LocalStack) -> None:
    with running_pipeline(own_database) as pipeline:
        _run(pipeline, own_database)


def _run(pipeline: Pipeline, stack: LocalStack) -> None:
    acknowledged = 0

    def post(n: int) -> httpx.Response:
        nonlocal acknowledged
        events = [
            make_event("cccd.issued", "bu-dang-minh-hung", at("2006-06-06")) for _ in range(n)
        ]
        response = httpx.post(
            pipeline.url("ingest", "/v1/events"),
            json=events,
            headers=pipeline.headers(),
            timeout=60,
        )
        if response.status_code == 202:
            acknowledged += n
        return response

    assert post(1000).status_code == 202
    pipeline.wait_reflected()
    stack.kill(stack.process("secantusd"))
    down = post(100)
    assert down.status_code == 503, down.text
    assert int(down.headers["Retry-After"]) > 0
    # Another ingest instance had already published these: they reach the aggregator while the
    # database is down, so it must hold them and retry.
    in_flight = [
        make_event("cccd.issued", "bu-dang-minh-hung", at("2006-06-06")) for _ in range(500)
    ]
    _produce(pipeline.env["KAFKA_BOOTSTRAP"], pipeline.env["EVENTS_TOPIC"], in_flight)
    time.sleep(8)  # longer than a driver's server selection timeout (5 s): the batch fails
    stack.start_database()
    deadline = time.monotonic() + 60
    while post(100).status_code != 202:
        assert time.monotonic() < deadline, "ingest did not recover after the database returned"
        time.sleep(1)
    assert post(1000).status_code == 202
    pipeline.wait_reflected(timeout_s=90)
    expected = acknowledged + len(in_flight)
    for unit in ("bu-dang-minh-hung", "bu-dang", "binh-phuoc"):
        assert pipeline.total(unit, "cccd.issued", "day:2006-06-06")["value"] == expected
    metrics = httpx.get(pipeline.url("aggregator", "/metrics")).text
    retries = [
        line for line in metrics.splitlines() if line.startswith("aggregator_batch_retries_total ")
    ]
    assert retries and float(retries[0].split()[1]) >= 1, retries
