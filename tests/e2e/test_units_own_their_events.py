"""Events belong to their unit (contract, December 2026), tried as an attacker with nothing but
a field token, through the real services: no token can stop the counting, void another unit's
events, take over its records, or squat or probe its event ids."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.adapters.mongo import Store, connect
from shared.admin import read_dead_letters
from shared.domain.bounds import OWN_TOTAL_BOUND
from shared.domain.events import MAX_AMOUNT_VND
from tests.conftest import BackgroundPoster, Pipeline, at, make_event

ATTACKER = "bu-dang-minh-hung"
NEIGHBOUR = "bu-dop-tan-tien"


def _payment(unit: str, day: str, amount: int, **fields: Any) -> dict[str, Any]:
    return make_event(
        "payment.succeeded", unit, at(day), attributes={"kind": "fee"}, amount_vnd=amount, **fields
    )


def _post(pipeline: Pipeline, events: Any, token: str) -> httpx.Response:
    return pipeline.post(events, token=token)


def test_no_payment_flood_stops_the_counting(pipeline: Pipeline) -> None:
    _, token = pipeline.create_token("field", [ATTACKER])
    day = "2011-03-09"
    # The attack as found: ten batches of 1,000 payments of 10^15 VND. Each is refused now.
    for _ in range(10):
        refused = _post(pipeline, [_payment(ATTACKER, day, 10**15) for _ in range(1000)], token)
        assert refused.status_code == 422, refused.text
        assert {error["field"] for error in refused.json()["errors"]} == {"amount_vnd"}
    # The largest payments one may post, until the unit's own month passes its bound: the
    # first 100 fill it exactly, the next 9,900 can only be dead letters.
    per_batch = 1000
    flood = [[_payment(ATTACKER, day, MAX_AMOUNT_VND) for _ in range(per_batch)] for _ in range(10)]
    filling = OWN_TOTAL_BOUND // MAX_AMOUNT_VND
    neighbours = [make_event("eid.activated", NEIGHBOUR, at(day)) for _ in range(500)]
    neighbours += [_payment(NEIGHBOUR, day, 1_000) for _ in range(200)]
    honest = BackgroundPoster(pipeline, neighbours, concurrency=1)
    for batch in flood:
        assert _post(pipeline, batch, token).status_code == 202
    honest.join()
    # Later events of every unit are counted within seconds: the pipeline was never wedged.
    after = [make_event("cccd.issued", NEIGHBOUR, at(day)) for _ in range(50)]
    assert pipeline.post(after).status_code == 202
    pipeline.wait_reflected(timeout_s=120)

    assert pipeline.total(NEIGHBOUR, "cccd.issued", f"day:{day}")["value"] == 50
    assert pipeline.total(NEIGHBOUR, "eid.activated", f"day:{day}")["value"] == 500
    assert pipeline.total(NEIGHBOUR, "payment.fee.amount_vnd", f"day:{day}")["value"] == 200_000
    attacked = pipeline.total(ATTACKER, "payment.fee.amount_vnd", f"day:{day}")
    assert attacked["value"] == OWN_TOTAL_BOUND
    assert pipeline.total(ATTACKER, "payment.fee.count", f"day:{day}")["value"] == filling
    province = pipeline.total("binh-phuoc", "payment.fee.amount_vnd", f"day:{day}")
    assert province["value"] == OWN_TOTAL_BOUND + 200_000
    health = httpx.get(pipeline.url("aggregator", "/healthz"), timeout=10)
    assert health.status_code == 200, health.text

    flood_ids = {event["event_id"] for batch in flood for event in batch}
    letters = [
        letter
        for letter in asyncio.run(read_dead_letters(pipeline.settings()))
        if _event_id(letter) in flood_ids
    ]
    assert len(letters) == 10 * per_batch - filling
    assert all("past" in letter["reason"] and ATTACKER in letter["reason"] for letter in letters)


def _event_id(letter: dict[str, Any]) -> str | None:
    try:
        return str(json.loads(letter["raw"])["event_id"])
    except (ValueError, KeyError, TypeError):
        return None


def test_a_void_of_another_units_event_counts_nothing(pipeline: Pipeline) -> None:
    _, token = pipeline.create_token("field", [ATTACKER])
    day = "2011-04-10"
    target = make_event("eid.activated", NEIGHBOUR, at(day))
    assert pipeline.post([target]).status_code == 202
    pipeline.wait_reflected()
    # The attacker names the neighbour's event from its own unit: it counts nothing, and
    # ingest says nothing that would tell the attacker whether that id exists elsewhere.
    void = make_event("event.voided", ATTACKER, at(day), attributes={"voids": target["event_id"]})
    assert _post(pipeline, [void], token).status_code == 202
    # Voiding ahead: the void first, then the neighbour's event with that id.
    ahead_id = uuid.uuid4().hex
    ahead = make_event("event.voided", ATTACKER, at(day), attributes={"voids": ahead_id})
    assert _post(pipeline, [ahead], token).status_code == 202
    late_target = make_event("eid.activated", NEIGHBOUR, at(day), ahead_id)
    assert pipeline.post([late_target]).status_code == 202
    pipeline.wait_reflected()
    assert pipeline.total(NEIGHBOUR, "eid.activated", f"day:{day}")["value"] == 2
    assert pipeline.total("binh-phuoc", "eid.activated", f"day:{day}")["value"] == 2

    # A token that sees both units is told where the event it names belongs.
    _, district = pipeline.create_token("field", ["binh-phuoc"])
    crossing = make_event(
        "event.voided", ATTACKER, at(day), attributes={"voids": target["event_id"]}
    )
    refused = _post(pipeline, [crossing], district)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "attributes.voids" and NEIGHBOUR in error["message"]
    # Posted with the event's own unit, the correction takes it back.
    owned = {**crossing, "event_id": uuid.uuid4().hex, "unit_id": NEIGHBOUR}
    assert _post(pipeline, [owned], district).status_code == 202
    pipeline.wait_reflected()
    assert pipeline.total(NEIGHBOUR, "eid.activated", f"day:{day}")["value"] == 1


def _status(unit: str, occurred_at: str, subject_id: str, status: str) -> dict[str, Any]:
    return make_event(
        "certification.status",
        unit,
        occurred_at,
        subject_id=subject_id,
        attributes={"status": status},
    )


def test_a_record_belongs_to_the_unit_of_its_first_event(pipeline: Pipeline) -> None:
    _, token = pipeline.create_token("field", [ATTACKER])
    day = "2011-05-11"
    dossier = f"dossier-{uuid.uuid4().hex[:8]}"
    completed = _status(NEIGHBOUR, at(day, 9), dossier, "completed")
    assert pipeline.post([completed]).status_code == 202
    pipeline.wait_reflected()
    takeover = _status(ATTACKER, at(day, 15), dossier, "cancelled")
    refused = _post(pipeline, [takeover], token)
    assert refused.status_code == 422, refused.text
    assert [error["field"] for error in refused.json()["errors"]] == ["subject_id"]
    # Nothing in the refusal names the owner: a field token learns no other unit's records.
    assert NEIGHBOUR not in refused.text

    # Two units in one request, and a takeover that reaches the log before the owner's event
    # is counted (written straight to it, as a second ingest replica racing would): the
    # aggregator refuses it, and the record stays the owner's.
    second = f"dossier-{uuid.uuid4().hex[:8]}"
    both = [
        {**completed, "event_id": uuid.uuid4().hex, "subject_id": second},
        {**takeover, "event_id": uuid.uuid4().hex, "subject_id": second},
    ]
    assert pipeline.post(both).status_code == 422
    assert pipeline.post(both[:1]).status_code == 202
    asyncio.run(_produce(pipeline, both[1], key=second))
    pipeline.wait_reflected()
    assert pipeline.total(NEIGHBOUR, "certification.completed", f"day:{day}")["value"] == 2
    assert pipeline.total(ATTACKER, "certification.cancelled", "all")["value"] == 0
    [letter] = [
        letter
        for letter in asyncio.run(read_dead_letters(pipeline.settings()))
        if _event_id(letter) == both[1]["event_id"]
    ]
    assert f"belongs to unit {NEIGHBOUR!r}" in letter["reason"]


async def _produce(pipeline: Pipeline, event: dict[str, Any], key: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.env["KAFKA_BOOTSTRAP"], acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            pipeline.env["EVENTS_TOPIC"], json.dumps(event).encode(), key=key.encode()
        )
    finally:
        await producer.stop()


def test_event_ids_are_unique_within_their_unit(pipeline: Pipeline) -> None:
    name_a, token_a = pipeline.create_token("field", [ATTACKER])
    _, token_b = pipeline.create_token("field", [NEIGHBOUR])
    day = "2011-06-12"
    shared_id = f"form-{uuid.uuid4().hex[:8]}"
    # Team A squats an id before team B uses it: B's event is still counted.
    first = _post(pipeline, [make_event("sim.registered", ATTACKER, at(day), shared_id)], token_a)
    assert first.json() == {"accepted": 1, "duplicates": 0}
    second = _post(pipeline, [make_event("sim.registered", NEIGHBOUR, at(day), shared_id)], token_b)
    assert second.json() == {"accepted": 1, "duplicates": 0}
    # Probing B's ids from A's unit tells A nothing about B: a fresh id and B's id look alike.
    probe = _post(pipeline, [make_event("sim.registered", ATTACKER, at(day), shared_id)], token_a)
    assert probe.json() == {"accepted": 0, "duplicates": 1}  # its own, already posted
    # A re-post after the token is rotated stays a duplicate for its unit.
    assert httpx.delete(
        pipeline.url("api", f"/v1/tokens/{name_a}"), headers=pipeline.headers(), timeout=10
    ).status_code in (200, 204)
    _, rotated = pipeline.create_token("field", [ATTACKER])
    again = _post(pipeline, [make_event("sim.registered", ATTACKER, at(day), shared_id)], rotated)
    assert again.json() == {"accepted": 0, "duplicates": 1}
    pipeline.wait_reflected()
    assert pipeline.total("binh-phuoc", "sim.registered", f"day:{day}")["value"] == 2
    assert pipeline.total(ATTACKER, "sim.registered", f"day:{day}")["value"] == 1
    assert pipeline.total(NEIGHBOUR, "sim.registered", f"day:{day}")["value"] == 1


def test_a_ledger_from_before_replays_into_the_new_rules(own_pipeline: Pipeline) -> None:
    day = "2011-07-13"
    payments = [_payment(NEIGHBOUR, day, 1_000 + n) for n in range(300)]
    voids = [
        make_event("event.voided", NEIGHBOUR, at(day), attributes={"voids": p["event_id"]})
        for p in payments[:40]
    ]
    records = [
        _status(NEIGHBOUR, at(day, 8 + n % 3), f"old-{n // 3}", "completed") for n in range(30)
    ]
    assert own_pipeline.post(payments + records).status_code == 202
    assert own_pipeline.post(voids).status_code == 202
    own_pipeline.wait_reflected()
    metrics = ("payment.fee.amount_vnd", "payment.fee.count", "certification.completed")
    before = {m: own_pipeline.total(NEIGHBOUR, m, f"day:{day}")["value"] for m in metrics}
    assert before["payment.fee.count"] == 260

    # A database counted before ids belonged to their unit carries no ledger scheme: `init`
    # (run by `make run` and by the compose stack's init) replays the log into today's rules.
    async def forget_scheme() -> None:
        client = connect(own_pipeline.env["MONGODB_URI"], app_name="test")
        try:
            store = Store(client, own_pipeline.env["MONGODB_DB"])
            await store.follow_generation()
            await store.meta.delete_one({"_id": f"ledger-scheme:{store.generation}"})
            assert await store.ledger_scheme() == "event"
        finally:
            await client.close()

    asyncio.run(forget_scheme())
    init = subprocess.run(
        [sys.executable, "-m", "shared.admin", "init"],
        env=own_pipeline.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stderr
    assert "rebuilt" in init.stdout
    own_pipeline.wait_reflected()
    after = {m: own_pipeline.total(NEIGHBOUR, m, f"day:{day}")["value"] for m in metrics}
    assert after == before
    # The replayed ledger knows its events by unit: a re-post is a duplicate, counted once.
    again = own_pipeline.post(payments[50:60])
    assert again.json()["accepted"] == 0
    # And straight into the log, as a replica whose memory of accepted ids predates it would.
    for payment in payments[60:70]:
        asyncio.run(_produce(own_pipeline, payment, key=payment["event_id"]))
    own_pipeline.wait_reflected()
    assert own_pipeline.total(NEIGHBOUR, "payment.fee.count", f"day:{day}")["value"] == 260
