"""The fault-injection harness: a realistic stream of events, a client that retries the way a
field app does, and an independent recount to hold the stored totals against.

The recount reads the catalog file and the contract's table of what each type counts into;
it shares no code with the counting it checks.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from deploy.local.stack import REPO

CATALOG = json.loads((REPO / "shared/data/catalog_binh_phuoc.json").read_text("utf-8"))
PARENT: dict[str, str | None] = {u["id"]: u["parent_id"] for u in CATALOG["units"]}
UNITS = sorted(PARENT)
ARTIFACTS = REPO / "tests" / "artifacts"

# What each event counts into, from the contract's table (written out again on purpose).
COUNTED_TYPES = (
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
    kind, attributes = event["type"], event.get("attributes", {})
    if kind in ("eid.activated", "cccd.issued", "sim.registered", "smartphone.replaced"):
        return {kind: 1}
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
        return {f"{prefix}.count": 1, f"{prefix}.amount_vnd": event["amount_vnd"]}
    if kind == "payment.failed":
        return {"payment.failed.count": 1}
    raise ValueError(kind)


METRICS = sorted(
    {
        "eid.activated",
        "cccd.issued",
        "sim.registered",
        "smartphone.replaced",
        "filing.submitted",
        "filing.submitted.online",
        "filing.processed",
        "filing.processed.online",
        "filing.processed.on_time",
        "payment.nvtc.count",
        "payment.nvtc.amount_vnd",
        "payment.fee.count",
        "payment.fee.amount_vnd",
        "payment.failed.count",
    }
)
# One metric per counted event: their sum at the province is the number of events counted.
ONE_PER_EVENT = (
    "eid.activated",
    "cccd.issued",
    "sim.registered",
    "smartphone.replaced",
    "filing.submitted",
    "filing.processed",
    "payment.nvtc.count",
    "payment.fee.count",
    "payment.failed.count",
)


def realistic_events(
    count: int, seed: int, last_day: date = date(2025, 12, 31), span_days: int = 365
) -> list[dict[str, Any]]:
    """Mixed events over every unit of the catalog, spread over the `span_days` local days
    that end on `last_day` (a live stream spans a few days; a backfill, a year)."""
    rng = random.Random(seed)
    events = []
    for _ in range(count):
        kind = rng.choice(COUNTED_TYPES)
        day = last_day - timedelta(days=rng.randrange(span_days))
        event: dict[str, Any] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "type": kind,
            "unit_id": rng.choice(UNITS),
            "occurred_at": f"{day.isoformat()}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:00+07:00",
        }
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
            if kind == "payment.succeeded":
                event["amount_vnd"] = rng.randint(1, 5_000) * 1_000
        events.append(event)
    return events


def lineage(unit_id: str) -> list[str]:
    chain = []
    current: str | None = unit_id
    while current is not None:
        chain.append(current)
        current = PARENT[current]
    return chain


def recount(events: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(unit, metric) → the value over all time, for the unit and everything under it."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        for metric, value in contract_metrics(event).items():
            for unit in lineage(event["unit_id"]):
                totals[(unit, metric)] += value
    return totals


@dataclass
class Delivery:
    """What a retrying client sent and what the service acknowledged with 202."""

    sent: int = 0
    requests: int = 0
    retries: int = 0
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int | str] = field(default_factory=Counter)


async def deliver(
    url: str,
    token: str,
    batches: list[list[dict[str, Any]]],
    concurrency: int,
    delivery: Delivery,
    deadline_s: float = 240,
    events_per_s: float | None = None,
) -> None:
    """Post every batch until it gets a 202, as a field app would: a 503, a dropped connection
    or a timeout is retried after a pause; any other answer is a failure of the test. With
    `events_per_s`, batches start no faster than that steady rate."""
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    started = time.monotonic()
    give_up = started + deadline_s
    scheduled = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal scheduled
        while not queue.empty():
            batch = queue.get_nowait()
            if events_per_s:
                due = started + scheduled / events_per_s
                scheduled += len(batch)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            delivery.sent += len(batch)
            while True:
                assert time.monotonic() < give_up, "the service did not accept a batch in time"
                delivery.requests += 1
                try:
                    response = await client.post(
                        url, json=batch, headers={"Authorization": f"Bearer {token}"}
                    )
                except httpx.TransportError as exc:
                    delivery.statuses[type(exc).__name__] += 1
                    delivery.retries += 1
                    await asyncio.sleep(0.5)
                    continue
                delivery.statuses[response.status_code] += 1
                if response.status_code == 202:
                    for event in batch:
                        delivery.acknowledged[event["event_id"]] = event
                    break
                assert response.status_code == 503, response.text
                if int(response.headers.get("Retry-After", "0")) <= 0:
                    delivery.statuses["503 without Retry-After"] += 1
                delivery.retries += 1
                await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


class BackgroundDelivery:
    """`deliver` on another thread, so the test can break things meanwhile."""

    def __init__(
        self,
        url: str,
        token: str,
        batches: list[list[dict[str, Any]]],
        concurrency: int = 4,
        *,
        deadline_s: float = 240,
        events_per_s: float | None = None,
    ) -> None:
        self.delivery = Delivery()
        self._error: BaseException | None = None
        self.started = time.monotonic()

        def run() -> None:
            try:
                asyncio.run(
                    deliver(
                        url,
                        token,
                        batches,
                        concurrency,
                        self.delivery,
                        deadline_s,
                        events_per_s,
                    )
                )
            except BaseException as exc:  # handed to the test thread in join()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def progress(self) -> int:
        return len(self.delivery.acknowledged)

    def wait_for(self, acknowledged: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.progress() < acknowledged and not self.done:
            assert time.monotonic() < deadline, f"only {self.progress()} acknowledged"
            time.sleep(0.05)

    def join(self, timeout_s: float = 300) -> Delivery:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "delivery did not finish"
        if self._error is not None:
            raise self._error
        return self.delivery


def batches_of(events: list[dict[str, Any]], size: int = 1000) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def stored_totals(api_url: str, token: str, units: list[str] = UNITS) -> dict[tuple[str, str], int]:
    """Every (unit, metric) total over all time, as the API serves it."""

    async def read() -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:

            async def one(unit: str, metric: str) -> None:
                async with limit:
                    response = await client.get(
                        "/v1/totals", params={"unit_id": unit, "metric": metric, "period": "all"}
                    )
                assert response.status_code == 200, response.text
                found[(unit, metric)] = response.json()["value"]

            await asyncio.gather(*(one(u, m) for u in units for m in METRICS))
        return found

    return asyncio.run(read())


@dataclass
class Verdict:
    scenario: str
    sent: int
    acknowledged: int
    counted: int
    difference: int
    cells_checked: int
    cells_wrong: list[str]
    seconds: float
    requests: int
    retries: int
    statuses: dict[str, int]

    def record(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        line = json.dumps(self.__dict__, ensure_ascii=False)
        with (ARTIFACTS / "faults.jsonl").open("a", encoding="utf-8") as out:
            out.write(line + "\n")
        print(line)


def verdict(
    scenario: str,
    delivery: Delivery,
    stored: dict[tuple[str, str], int],
    started: float,
    unique_sent: int,
) -> Verdict:
    expected = recount(list(delivery.acknowledged.values()))
    wrong = [
        f"{unit} {metric}: stored {value}, recount {expected.get((unit, metric), 0)}"
        for (unit, metric), value in sorted(stored.items())
        if value != expected.get((unit, metric), 0)
    ]
    counted = sum(stored[("binh-phuoc", metric)] for metric in ONE_PER_EVENT)
    return Verdict(
        scenario=scenario,
        sent=unique_sent,
        acknowledged=len(delivery.acknowledged),
        counted=counted,
        difference=counted - len(delivery.acknowledged),
        cells_checked=len(stored),
        cells_wrong=wrong[:20],
        seconds=round(time.monotonic() - started, 1),
        requests=delivery.requests,
        retries=delivery.retries,
        statuses={str(k): v for k, v in delivery.statuses.items()},
    )


def artifacts_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


@dataclass
class StorageUse:
    """Bytes kept per event, from the database's own collStats (BSON bytes of the documents
    plus their indexes) and the broker's log files for the topic."""

    events: int
    collections: dict[str, dict[str, int]]
    log_bytes: int

    def per_event(self, name: str) -> float:
        stats = self.collections[name]
        return (stats["size"] + stats["index"]) / self.events

    def report(self) -> dict[str, Any]:
        per_million = {
            name: round(self.per_event(name) * 1_000_000 / 2**20, 1) for name in self.collections
        }
        per_million["kafka log"] = round(self.log_bytes / self.events * 1_000_000 / 2**20, 1)
        return {
            "events": self.events,
            "bytes_per_event": {
                **{name: round(self.per_event(name), 1) for name in self.collections},
                "kafka log": round(self.log_bytes / self.events, 1),
            },
            "MiB_per_million_events": per_million,
            "documents": {name: stats["count"] for name, stats in self.collections.items()},
        }


def storage_use(
    mongodb_uri: str, database: str, partition_dirs: list[Path], events: int, names: list[str]
) -> StorageUse:
    """The collections' BSON and index bytes, and the topic's log segments (`*.log` in its
    partitions' folders: the index files beside them are preallocated, not used)."""
    db = MongoClient(mongodb_uri)[database]
    collections = {}
    for name in names:
        stats = db.command("collStats", name)
        collections[name] = {
            "size": int(stats["size"]),
            "index": int(stats["totalIndexSize"]),
            "count": int(stats["count"]),
        }
    assert partition_dirs, "no partition folder of the topic"
    log_bytes = sum(path.stat().st_size for d in partition_dirs for path in d.glob("*.log"))
    return StorageUse(events, collections, log_bytes)
