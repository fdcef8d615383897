"""Nothing lost, nothing counted twice: each scenario drives 100,000 events (`FAULT_EVENTS` to
try another size) through the real ingest service while something breaks for real, then holds
every stored total against an independent recount of the events acknowledged with 202.

Each verdict (sent, acknowledged, counted, difference) is printed and appended to
tests/artifacts/faults.jsonl.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pymongo import MongoClient

from deploy.local.stack import free_port
from shared.adapters.kafka import EventPublisher, make_broker
from shared.admin import read_dead_letters
from shared.domain.events import Event
from shared.settings import Settings
from tests.conftest import Pipeline
from tests.faults.harness import (
    UNITS,
    BackgroundDelivery,
    artifacts_path,
    batches_of,
    realistic_events,
    storage_use,
    stored_totals,
    verdict,
)

EVENTS = int(os.environ.get("FAULT_EVENTS", "100000"))
# A live stream: events of the last two weeks, late ones included (DOMAIN: "may be days late").
SPAN_DAYS = 14


def run_scenario(
    line: Pipeline,
    name: str,
    break_things: Callable[[BackgroundDelivery], None],
    *,
    seed: int,
    batches: list[list[dict[str, Any]]] | None = None,
    concurrency: int = 4,
) -> None:
    events = realistic_events(EVENTS, seed, span_days=SPAN_DAYS)
    started = time.monotonic()
    background = BackgroundDelivery(
        line.url("ingest", "/v1/events"),
        line.admin_token,
        batches or batches_of(events),
        concurrency,
    )
    try:
        break_things(background)
        delivery = background.join()
        delivered_s = time.monotonic() - started
        line.wait_reflected(timeout_s=240)
    except BaseException:
        print_log_tails(line)
        raise
    print(
        f"{name}: delivered in {delivered_s:.1f} s, counted in {time.monotonic() - started:.1f} s"
    )
    stored = stored_totals(line.url("api", ""), line.admin_token)
    result = verdict(name, delivery, stored, started, len(events))
    result.record()
    assert result.acknowledged == EVENTS, result
    assert result.cells_wrong == [], result
    assert result.difference == 0, result


def print_log_tails(line: Pipeline, lines: int = 40) -> None:
    """What the services wrote last: a failed scenario's clue, in the CI log that keeps it."""
    for log in sorted(line.stack.log_dir.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- the last {len(tail)} lines of {log}", *tail, sep="\n")


def restart(line: Pipeline, service: str, *, crash: bool, pause_s: float = 0.3) -> None:
    if crash:
        line.kill(service)
    else:
        assert line.stop(service) == 0, f"{service} did not stop cleanly on SIGTERM"
    time.sleep(pause_s)
    line.start(service)


def samples(line: Pipeline, service: str, series: str) -> list[float]:
    """The values of the series whose exposition lines start with `series`, as scraped."""
    metrics = httpx.get(line.url(service, "/metrics"), timeout=10).text
    return [float(row.split()[-1]) for row in metrics.splitlines() if row.startswith(series)]


def wait_for_dead_aggregators_reaped(line: Pipeline, service: str) -> float:
    """The open transactions of the killed aggregators were aborted by a living one, not left
    to the server's lifetime: their session records are gone and `service` counted its reap."""
    deadline = time.monotonic() + 30
    while True:
        reaped = sum(samples(line, service, "aggregator_dead_sessions_aborted_total "))
        with MongoClient(line.stack.mongodb_uri) as client:
            records = client[line.env["MONGODB_DB"]]["transaction_sessions"].count_documents({})
        if reaped >= 1 and records == 1:
            return reaped
        assert time.monotonic() < deadline, f"reaped {reaped}, {records} session records left"
        time.sleep(0.5)


def test_aggregator_killed_at_random_moments(line: Pipeline) -> None:
    rng = random.Random(4)

    def crash_three_times(background: BackgroundDelivery) -> None:
        for fraction in (0.2, 0.5, 0.8):
            background.wait_for(int(EVENTS * fraction))
            time.sleep(rng.uniform(0, 0.7))
            restart(line, "aggregator", crash=True)
        # Once more while it catches up on the backlog, after the last 202.
        background.join()
        time.sleep(rng.uniform(0.5, 1.5))
        restart(line, "aggregator", crash=True)

    run_scenario(line, "aggregator kill -9 x4", crash_three_times, seed=1)
    wait_for_dead_aggregators_reaped(line, "aggregator")


def test_two_aggregators_one_killed_mid_stream(line: Pipeline) -> None:
    port = free_port()
    second = line.stack.start_service(
        "aggregator", port, {**line.env, "AGGREGATOR_PORT": str(port)}
    )
    line.services["aggregator-2"] = second
    line.ports["aggregator-2"] = port

    def kill_one(background: BackgroundDelivery) -> None:
        background.wait_for(EVENTS // 2)
        line.kill("aggregator")  # its partitions move to the survivor

    run_scenario(line, "two aggregators, one kill -9 (rebalance)", kill_one, seed=2)
    wait_for_dead_aggregators_reaped(line, "aggregator-2")


def test_broker_restarted_mid_stream(line: Pipeline) -> None:
    statuses: dict[str | int, int] = {}

    def restart_broker(background: BackgroundDelivery) -> None:
        background.wait_for(EVENTS * 3 // 10)
        stack = line.stack
        stack.kill(stack.process("kafka"))
        time.sleep(5)  # longer than ingest waits for the broker
        stack.start_kafka()
        statuses.update(background.join().statuses)

    run_scenario(line, "broker kill -9 and restart", restart_broker, seed=3)
    # Meanwhile ingest said 503 (nothing accepted), and clients retried until it took them.
    assert statuses.get(503, 0) > 0, statuses
    assert "503 without Retry-After" not in statuses, statuses


async def publish_as_ingest(line: Pipeline, events: list[dict[str, Any]]) -> None:
    """What an ingest instance does once an event is accepted, with its own publisher."""
    settings = line_settings(line)
    broker = make_broker(settings, client_id="another-ingest")
    await broker.connect()
    try:
        publisher = EventPublisher(broker, settings.events_topic, timeout_s=30)
        await publisher.publish([Event.model_validate(event) for event in events])
    finally:
        await broker.stop()


def test_database_restarted_mid_stream(line: Pipeline) -> None:
    statuses: dict[str | int, int] = {}
    health: list[int] = []
    events = realistic_events(EVENTS, 4, span_days=SPAN_DAYS)
    # Published by "another ingest instance" just as the database went: the aggregator gets
    # them while it is down, so it must hold its batch and retry, never drop it.
    in_flight = events[-500:]

    def restart_database(background: BackgroundDelivery) -> None:
        background.wait_for(EVENTS * 4 // 10)
        stack = line.stack
        stack.kill(stack.process("secantusd"))
        asyncio.run(publish_as_ingest(line, in_flight))
        # Longer than the driver's server selection timeout (5 s): the aggregator's reads and
        # writes fail meanwhile (inside a transaction the driver itself retries them), and
        # those 500 are counted exactly once after the database returns (the recount).
        # Meanwhile its /healthz says counting has stopped (AGGREGATOR_UNHEALTHY_AFTER_S: 3):
        # the database stays down until that is seen, 8 s at least and 20 at most.
        down_since = time.monotonic()
        while time.monotonic() - down_since < 20:
            health.append(httpx.get(line.url("aggregator", "/healthz"), timeout=2).status_code)
            if 503 in health and time.monotonic() - down_since >= 8:
                break
            time.sleep(0.5)
        stack.start_database()
        delivery = background.join()
        statuses.update(delivery.statuses)
        delivery.acknowledged.update((event["event_id"], event) for event in in_flight)

    run_scenario(
        line,
        "database kill -9 and restart",
        restart_database,
        seed=4,
        batches=batches_of(events[: -len(in_flight)]),
    )
    # Ingest cannot check for duplicates without the database: it said 503 with Retry-After.
    assert statuses.get(503, 0) > 0, statuses
    assert "503 without Retry-After" not in statuses, statuses
    assert 503 in health, health
    assert httpx.get(line.url("aggregator", "/healthz"), timeout=5).status_code == 200


def test_every_event_posted_two_or_three_times_concurrently(line: Pipeline) -> None:
    events = realistic_events(EVENTS, 5, span_days=SPAN_DAYS)
    rng = random.Random(5)
    copies = [event for event in events for _ in range(rng.choice((2, 3)))]
    rng.shuffle(copies)  # the copies of an event land in different batches
    run_scenario(
        line,
        "every event posted 2-3 times, 6 clients",
        lambda _: None,
        seed=5,
        batches=batches_of(copies),
        concurrency=6,
    )
    # What is kept per event (the retention story in docs/operations/recovery.md rests on these
    # figures), measured here, where nothing was broken and every event was offered more than once.
    use = storage_use(
        line.stack.mongodb_uri,
        line.env["MONGODB_DB"],
        line.stack.kafka_partition_dirs(line.env["EVENTS_TOPIC"]),
        EVENTS,
        ["accepted", "ledger", "totals", "offsets"],
    )
    report = use.report()
    print(json.dumps(report))
    artifacts_path("storage.json").write_text(json.dumps(report, indent=2) + "\n")
    # Per event, however many times it was posted: one dedup document in ingest's memory and
    # its id in a batch's ledger entry; nothing else grows with events. Totals are one
    # document per unit and local month touched, however many events fall in it (39 units, a
    # 14-day span crosses at most two months).
    assert report["documents"]["accepted"] == EVENTS
    assert report["documents"]["totals"] <= len(UNITS) * 2
    assert use.per_event("totals") < 50


def test_services_stopped_with_sigterm_mid_stream(line: Pipeline) -> None:
    statuses: dict[str | int, int] = {}

    def drain_and_restart(background: BackgroundDelivery) -> None:
        background.wait_for(EVENTS // 4)
        restart(line, "ingest", crash=False)  # asserts exit status 0 after the drain
        background.wait_for(EVENTS // 2)
        restart(line, "aggregator", crash=False)
        statuses.update(background.join().statuses)

    run_scenario(line, "ingest and aggregator SIGTERM mid-stream", drain_and_restart, seed=6)
    # Draining: clients found the port closed while ingest was down (ConnectError). A request
    # sent on a kept-alive connection just as the server closed it fails to read once per
    # connection at most (4 clients): more would mean requests cut mid-way.
    cut = sum(n for status, n in statuses.items() if status not in (202, 503, "ConnectError"))
    assert cut <= 4, statuses
    # The aggregator finished and committed its batch before stopping: its successor was
    # handed nothing twice.
    redelivered = samples(line, "aggregator", 'aggregator_events_total{outcome="redelivered"}')
    assert redelivered == [0.0], redelivered


def poison_records(n: int) -> list[bytes]:
    """One of each kind of poison, made unique by `n` so each dead letter can be traced back."""
    return [
        b"\xff\xfe not even text %d" % n,
        b"{not json %d" % n,
        json.dumps({"event_id": f"p{n}", "type": "no.such.type", "unit_id": "dong-xoai"}).encode(),
        json.dumps(
            {
                "event_id": f"p{n}",
                "type": "payment.succeeded",
                "unit_id": "dong-xoai",
                "occurred_at": "2025-01-01T00:00:00+07:00",
                "attributes": {"kind": "fee"},
                "amount_vnd": -5,
            }
        ).encode(),
        json.dumps(
            {
                "event_id": f"p{n}",
                "type": "cccd.issued",
                "unit_id": "no-such-unit",
                "occurred_at": "2025-01-01T00:00:00+07:00",
            }
        ).encode(),
        b"",  # told apart by its key
    ]


def test_poison_written_straight_to_the_topic_between_good_events(line: Pipeline) -> None:
    topic = line.env["EVENTS_TOPIC"]
    written: dict[str, bytes] = {}  # key -> bytes, once the broker acknowledged it
    resent: set[str] = set()  # keys whose first send failed: the broker may hold it twice

    def inject_poison(background: BackgroundDelivery) -> None:
        async def write() -> None:
            # A burst of poison every quarter second, each burst sent as one produce per
            # partition.
            producer = AIOKafkaProducer(
                bootstrap_servers=line.stack.kafka_bootstrap, acks="all", linger_ms=20
            )
            await producer.start()
            try:
                n = 0
                while not background.done:
                    n += 1
                    burst = {f"poison-{n}-{kind}": p for kind, p in enumerate(poison_records(n))}
                    pending = dict(burst)
                    # The local broker sometimes refuses a produce that races another
                    # producer's (UnknownError); a real client retries, and so does this one.
                    for _ in range(20):
                        futures = {
                            key: await producer.send(topic, value, key=key.encode())
                            for key, value in pending.items()
                        }
                        for key, future in futures.items():
                            try:
                                await future
                                written[key] = burst[key]
                                del pending[key]
                            except KafkaError:
                                resent.add(key)
                        if not pending:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"the broker never took {sorted(pending)}")
                    await asyncio.sleep(0.25)
            finally:
                await producer.stop()

        asyncio.run(write())

    run_scenario(line, "poison records between good ones", inject_poison, seed=7)
    letters = asyncio.run(read_dead_letters(line_settings(line)))
    by_key: dict[str, list[dict[str, Any]]] = {}
    for letter in letters:
        by_key.setdefault(letter["key"], []).append(letter)
    # Every poison record is a dead letter with its original bytes and a reason, named by its
    # own coordinates; only a record the producer had to send twice may be there twice.
    assert len(written) > 100
    assert set(by_key) == set(written)
    assert len({letter["source"] for letter in letters}) == len(letters)
    for key, found in by_key.items():
        assert all(letter["raw"] == written[key] and letter["reason"] for letter in found), key
        assert len(found) == 1 or key in resent, (key, len(found))


def line_settings(line: Pipeline) -> Settings:
    return Settings(
        kafka_bootstrap=line.stack.kafka_bootstrap,
        events_topic=line.env["EVENTS_TOPIC"],
        deadletter_topic=line.env["DEADLETTER_TOPIC"],
        consumer_group=line.env["CONSUMER_GROUP"],
    )
