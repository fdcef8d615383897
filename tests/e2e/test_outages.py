"""Ingest against a broker that goes away and comes back: never a 202 for an event that
could be lost, 503 with Retry-After meanwhile, and recovery without a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from deploy.local.stack import LocalStack, free_port
from tests.conftest import Pipeline, at, make_event


@pytest.fixture()
def own_broker(infra: LocalStack, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(
        data_dir=tmp_path / "data",
        log_dir=tmp_path / "logs",
        kafka_port=free_port(),
        mongo_port=infra.mongo_port,
        s3_port=free_port(),
    )
    try:
        stack.start_broker()
        yield stack
    finally:
        stack.stop_all()


def _topic_ids(bootstrap: str, topic: str) -> list[str]:
    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        ids: list[str] = []
        try:
            idle = 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=500)
                if not any(batch.values()):
                    idle += 1
                for records in batch.values():
                    ids.extend(json.loads(r.value)["event_id"] for r in records)
        finally:
            await consumer.stop()
        return ids

    return asyncio.run(read())


def test_broker_down_gives_503_and_ingest_recovers_when_it_returns(
    pipeline: Pipeline, own_broker: LocalStack
) -> None:
    port = free_port()
    env = {
        **pipeline.env,
        "KAFKA_BOOTSTRAP": own_broker.kafka_bootstrap,
        "EVENTS_TOPIC": "outage-events",
        "INGEST_PORT": str(port),
        "PUBLISH_TIMEOUT_S": "2",
    }
    init = subprocess.run(
        [sys.executable, "-m", "shared.admin", "init"], env=env, capture_output=True, timeout=60
    )
    assert init.returncode == 0, init.stderr
    own_broker.start_service("ingest", port, env)
    url = f"http://127.0.0.1:{port}/v1/events"
    acknowledged: list[str] = []

    def post(n: int) -> httpx.Response:
        events = [
            make_event("cccd.issued", "bu-dang-minh-hung", at("2012-01-01")) for _ in range(n)
        ]
        response = httpx.post(url, json=events, headers=pipeline.headers(), timeout=30)
        if response.status_code == 202:
            acknowledged.extend(e["event_id"] for e in events)
        return response

    assert post(50).status_code == 202
    own_broker.kill(own_broker.process("tansu"))
    down = post(10)
    assert down.status_code == 503
    assert int(down.headers["Retry-After"]) > 0
    assert "retry" in down.json()["detail"]
    own_broker.start_tansu()
    deadline = time.monotonic() + 60
    while (response := post(20)).status_code != 202:
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "ingest did not recover after the broker returned"
        time.sleep(1)
    stored = set(_topic_ids(own_broker.kafka_bootstrap, "outage-events"))
    assert set(acknowledged) <= stored
    assert len(acknowledged) == 70
