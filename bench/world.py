"""What every benchmark stands on: a synthetic catalog, realistic events, the local servers,
the real service processes, and topics pre-filled exactly as ingest fills them.

Everything runs on 127.0.0.1 against the same Apache Kafka broker and SecantusDB the tests use.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from pymongo import AsyncMongoClient

from deploy.local.stack import REPO, LocalStack, Process, free_port
from shared.domain.events import Event

PARTITIONS = 4

# -- the catalog -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """A synthetic province → districts → communes tree of `size` units."""

    units: list[dict[str, Any]]
    province: str
    districts: list[str]
    communes: list[str]
    parent: dict[str, str | None]

    def lineage(self, unit_id: str) -> list[str]:
        chain: list[str] = []
        current: str | None = unit_id
        while current is not None:
            chain.append(current)
            current = self.parent[current]
        return chain

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps({"version": 1, "sources": [], "units": self.units}))
        return path


def synthetic_catalog(size: int) -> Catalog:
    """1 province, about √size/… districts (at most 99 communes each), the rest communes."""
    districts_n = max(1, round((size - 1) / 100))
    communes_n = size - 1 - districts_n
    province = "bench-province"
    units: list[dict[str, Any]] = [
        {"id": province, "name": "Bench province", "level": "province", "parent_id": None}
    ]
    districts = [f"bench-d{i:03d}" for i in range(districts_n)]
    communes = [f"bench-d{i % districts_n:03d}-c{i:05d}" for i in range(communes_n)]
    parent: dict[str, str | None] = {province: None}
    for district in districts:
        units.append({"id": district, "name": district, "level": "district", "parent_id": province})
        parent[district] = province
    for commune in communes:
        district = commune.rsplit("-", 1)[0]
        units.append({"id": commune, "name": commune, "level": "commune", "parent_id": district})
        parent[commune] = district
    return Catalog(units, province, districts, communes, parent)


# -- events ------------------------------------------------------------------------------------

TYPES = (
    "eid.activated",
    "cccd.issued",
    "sim.registered",
    "smartphone.replaced",
    "filing.submitted",
    "filing.processed",
    "payment.succeeded",
    "payment.failed",
)


def contract_metrics(event: dict[str, Any]) -> dict[str, int]:
    """What an event counts into, from the contract's table (the naive baseline's rules)."""
    kind, attributes = event["type"], event.get("attributes", {})
    if kind == "filing.submitted":
        return {kind: 1, **({f"{kind}.online": 1} if attributes["channel"] == "online" else {})}
    if kind == "filing.processed":
        found = {kind: 1}
        if attributes["channel"] == "online":
            found[f"{kind}.online"] = 1
        if attributes["on_time"]:
            found[f"{kind}.on_time"] = 1
        return found
    if kind == "payment.succeeded":
        prefix = f"payment.{attributes['kind']}"
        return {f"{prefix}.count": 1, f"{prefix}.amount_vnd": int(event["amount_vnd"])}
    if kind == "payment.failed":
        return {"payment.failed.count": 1}
    if kind == "eid.activated" and attributes.get("level") == 2:
        return {kind: 1, f"{kind}.level2": 1}
    return {kind: 1}


@dataclass(frozen=True)
class Arrival:
    """Where a chunk of events sits in a log of `total` events that arrives in time order."""

    first: int
    total: int
    late_share: float = 0.1
    late_days: int = 30


def realistic_events(
    catalog: Catalog,
    count: int,
    seed: int,
    last_day: date = date(2025, 12, 31),
    span_days: int = 365,
    units: Sequence[str] | None = None,
    arrival: Arrival | None = None,
) -> list[dict[str, Any]]:
    """Mixed events over the catalog's communes (tests/faults/harness.py's mix), spread over
    `span_days` local days ending on `last_day`, in the contract's field order.

    Without `arrival` each event's day is drawn at random from the whole span (the worst
    case for the aggregator: a batch touches every unit's every month). With it, events come
    as a live log has them: the day advances with the position in the log, and a share of
    events arrive late (posted days after they happened, as field teams' offline apps do)."""
    rng = random.Random(seed)
    pool = list(units or catalog.communes)
    events = []
    for index in range(count):
        kind = rng.choice(TYPES)
        if arrival is None:
            day = last_day - timedelta(days=rng.randrange(span_days))
        else:
            position = (arrival.first + index) / arrival.total  # 0 .. 1 through the log
            day = last_day - timedelta(days=span_days - 1 - int(position * span_days))
            if rng.random() < arrival.late_share:
                day -= timedelta(days=rng.randint(1, arrival.late_days))
        event: dict[str, Any] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "type": kind,
            "unit_id": rng.choice(pool),
            "occurred_at": f"{day.isoformat()}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:00+07:00",
        }
        if kind == "payment.succeeded":
            event["amount_vnd"] = rng.randint(1, 5_000) * 1_000
        if kind == "eid.activated":
            event["attributes"] = {"level": rng.choice((1, 2))}
        elif kind == "filing.submitted":
            event["attributes"] = {
                "channel": rng.choice(("online", "offline")),
                "service_id": f"svc-{rng.randint(1, 40)}",
            }
        elif kind == "filing.processed":
            event["attributes"] = {
                "channel": rng.choice(("online", "offline")),
                "on_time": rng.random() < 0.9,
            }
        elif kind in ("payment.succeeded", "payment.failed"):
            event["attributes"] = {"kind": rng.choice(("nvtc", "fee"))}
        else:
            event["attributes"] = {}
        events.append(event)
    return events


def encode(event: dict[str, Any]) -> bytes:
    """The record value ingest publishes: Event.model_dump_json(exclude_none=True)."""
    return json.dumps(event, separators=(",", ":")).encode()


def check_encoding(events: Sequence[dict[str, Any]]) -> None:
    """The fast encoding is byte for byte what ingest would publish (checked on a sample)."""
    for event in events[:500]:
        expected = Event.model_validate(event).model_dump_json(exclude_none=True).encode()
        if encode(event) != expected:
            raise AssertionError(
                f"encoding differs from ingest's:\n{encode(event)!r}\n{expected!r}"
            )


# -- servers and services ----------------------------------------------------------------------


@dataclass
class Deployment:
    """One database and one events topic of the stack, with the services that serve them."""

    stack: LocalStack
    name: str
    env: dict[str, str]
    catalog: Catalog
    ports: dict[str, int] = field(default_factory=dict)
    services: dict[str, Process] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.env["EVENTS_TOPIC"]

    @property
    def db(self) -> str:
        return self.env["MONGODB_DB"]

    @property
    def token(self) -> str:
        return self.env["ADMIN_TOKEN"]

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def start(self, service: str, **extra_env: str) -> None:
        port = free_port()
        self.ports[service] = port
        env = {**self.env, f"{service.upper()}_PORT": str(port), **extra_env}
        self.services[service] = self.stack.start_service(service, port, env)

    def stop(self, service: str) -> None:
        self.stack.stop(self.services.pop(service))

    def stop_all(self) -> None:
        for service in list(self.services):
            self.stop(service)


def deploy(stack: LocalStack, name: str, catalog: Catalog, root: Path) -> Deployment:
    """Fresh topics and database, initialised with `catalog` by `shared.admin init` (the
    admin API: topics, indexes, Store.upsert_units)."""
    run = f"{name}-{uuid.uuid4().hex[:6]}"
    env = {
        "KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "MONGODB_URI": stack.mongodb_uri,
        "MONGODB_DB": f"bench_{run}".replace("-", "_"),
        "EVENTS_TOPIC": f"events-{run}",
        "DEADLETTER_TOPIC": f"events-{run}-dead",
        "CONSUMER_GROUP": f"aggregator-{run}",
        "EVENT_PARTITIONS": str(PARTITIONS),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "PYTHONPATH": str(REPO),
    }
    path = catalog.write(root / f"catalog-{run}.json")
    env["BENCH_CATALOG"] = str(path)
    result = subprocess.run(
        [sys.executable, "-m", "shared.admin", "init", "--catalog", str(path)],
        cwd=REPO,
        env={**_os_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"init failed: {result.stdout}\n{result.stderr}")
    return Deployment(stack, name, env, catalog)


def _os_env() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- the topic ---------------------------------------------------------------------------------


KeyedRecords = dict[int, list[tuple[bytes, bytes]]]  # by partition: (key, value)


def keyed_records(events: Sequence[dict[str, Any]]) -> KeyedRecords:
    """Each event as ingest publishes it (key: its id; value: its JSON), by the partition the
    producer's default partitioner gives its key."""
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    by_partition: KeyedRecords = {p: [] for p in partitions}
    for event in events:
        key = event["event_id"].encode()
        by_partition[partitioner(key, partitions, partitions)].append((key, encode(event)))
    return by_partition


def generated_records(
    catalog: Catalog, count: int, seed: int, arrival: Arrival | None, check: bool
) -> KeyedRecords:
    """`realistic_events` as keyed records (in a worker process: only bytes come back)."""
    events = realistic_events(catalog, count, seed, arrival=arrival)
    if check:
        check_encoding(events)
    return keyed_records(events)


async def prefill(
    bootstrap: str, topic: str, events: Sequence[dict[str, Any]] | KeyedRecords
) -> float:
    """Append `events` (or `keyed_records` of them) as ingest would (value, key, header), with
    send_batch; events/s."""
    started = time.perf_counter()
    by_partition = events if isinstance(events, dict) else keyed_records(events)
    # One producer per partition: a producer keeps one request in flight per broker, and
    # the local broker's store answers each in milliseconds, so one producer waits more than
    # it sends (1M events: 58,000/s with one, 120,000/s with four).
    await asyncio.gather(
        *(
            _send_partition(bootstrap, topic, partition, records)
            for partition, records in by_partition.items()
        )
    )
    return sum(map(len, by_partition.values())) / (time.perf_counter() - started)


async def _send_partition(
    bootstrap: str, topic: str, partition: int, records: Sequence[tuple[bytes, bytes]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    headers = [("content-type", b"application/json")]
    pending = []
    try:
        batch = producer.create_batch()
        for key, value in records:
            now_ms = int(time.time() * 1000)
            if batch.append(key=key, value=value, timestamp=now_ms, headers=headers) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=now_ms, headers=headers)
                if len(pending) > 32:
                    await asyncio.gather(*pending)
                    pending.clear()
        if batch.record_count():
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def applied_offsets(client: AsyncMongoClient[dict[str, Any]], db: str, topic: str) -> int:
    """Records the aggregator has applied (the sum of its stored next offsets), in the
    generation being served."""
    meta = await client[db]["meta"].find_one({"_id": "generation"})
    suffix = f"_{meta['name']}" if meta and meta.get("name") else ""
    total = 0
    async for doc in client[db][f"offsets{suffix}"].find({"topic": topic}):
        total += int(doc.get("next", 0))
    return total


def now() -> datetime:
    return datetime.now(UTC)
