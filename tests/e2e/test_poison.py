"""Poison records written straight to the topic, between good ones: they go to the dead-letter
topic with their reason and bytes, the good ones are counted exactly, and after a fix a
re-drive counts what became valid."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
from aiokafka import AIOKafkaProducer

from shared.admin import read_dead_letters
from tests.conftest import Pipeline, at, make_event


def test_poison_goes_to_dead_letters_and_never_stops_counting(pipeline: Pipeline) -> None:
    good = [
        make_event("smartphone.replaced", "bu-dang-minh-hung", at("2005-05-05")) for _ in range(200)
    ]
    orphan = make_event("smartphone.replaced", "bu-dang-xa-moi", at("2005-05-05"))
    poison = [
        b"not json at all",
        b"\xff\xfe invalid utf-8",
        json.dumps({"event_id": "p1", "type": "eid.deleted"}).encode(),
        json.dumps(orphan).encode(),
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP"], acks="all")
        await producer.start()
        try:
            for i, event in enumerate(good):
                await producer.send(
                    pipeline.env["EVENTS_TOPIC"],
                    json.dumps(event).encode(),
                    key=event["event_id"].encode(),
                )
                if i % 50 == 0:
                    await producer.send(pipeline.env["EVENTS_TOPIC"], poison[i // 50])
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    pipeline.wait_reflected()
    assert pipeline.total("binh-phuoc", "smartphone.replaced", "day:2005-05-05")["value"] == 200
    letters = asyncio.run(read_dead_letters(pipeline.settings()))
    mine = [letter for letter in letters if letter["raw"] in poison]
    assert sorted(letter["raw"] for letter in mine) == sorted(poison)
    reasons = {letter["raw"]: letter["reason"] for letter in mine}
    assert reasons[b"not json at all"].startswith("not JSON")
    assert reasons[poison[2]].startswith("not a valid event")
    assert reasons[poison[3]] == "unknown unit 'bu-dang-xa-moi'"
    assert all(letter["source"].startswith(pipeline.env["EVENTS_TOPIC"]) for letter in mine)
    metrics = httpx.get(pipeline.url("aggregator", "/metrics")).text
    assert "aggregator_dead_letters_total" in metrics

    # The fix: the commune is added. A re-drive counts the orphan; the rest come back.
    added = httpx.post(
        pipeline.url("api", "/v1/units"),
        json={"id": "bu-dang-xa-moi", "name": "Xã Mới", "level": "commune", "parent_id": "bu-dang"},
        headers=pipeline.headers(),
    )
    assert added.status_code == 201, added.text
    redrive = subprocess.run(
        [sys.executable, "-m", "shared.admin", "dead-letters", "redrive"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert redrive.returncode == 0, redrive.stderr
    pipeline.wait_reflected()
    assert pipeline.total("bu-dang-xa-moi", "smartphone.replaced", "day:2005-05-05")["value"] == 1
    assert pipeline.total("binh-phuoc", "smartphone.replaced", "day:2005-05-05")["value"] == 201
    again = asyncio.run(read_dead_letters(pipeline.settings()))
    assert sum(1 for letter in again if letter["raw"] in poison[:3]) == 6  # 3 came back
    assert sum(1 for letter in again if letter["raw"] == poison[3]) == 1  # the orphan did not
