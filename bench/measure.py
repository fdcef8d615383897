"""Each figure of the benchmark and its baseline, measured against the running local servers."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from bench.world import Deployment, applied_offsets, contract_metrics, encode
from deploy.local.stack import REPO
from shared.progress import Progress

Client = AsyncMongoClient[dict[str, Any]]


# -- CPU accounting: who is busy tells what bounds a figure ----------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuWatch:
    """CPU share (cores) of named processes over a phase."""

    pids: dict[str, int]
    started: float = 0.0
    before: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> CpuWatch:
        self.started = time.perf_counter()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.before["bench"] = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        wall = time.perf_counter() - self.started
        self.shares = {
            name: round((cpu_seconds(pid) - self.before[name]) / wall, 2)
            for name, pid in self.pids.items()
        }
        self.shares["bench"] = round((time.process_time() - self.before["bench"]) / wall, 2)

    shares: dict[str, float] = field(default_factory=dict)


def server_pids(deployment: Deployment) -> dict[str, int]:
    pids = {p.name: p.popen.pid for p in deployment.stack.processes}
    return {k: v for k, v in pids.items() if k in ("kafka", "secantusd")} | {
        name: process.popen.pid for name, process in deployment.services.items()
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- 1. the aggregator and its baselines ------------------------------------------------------


async def raw_consume(bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    """aiokafka alone, in a consumer group, reading the topic from the start: no decoding."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 << 20,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    started = time.perf_counter()
    await consumer.start()
    seen = 0
    first_at = None
    first_n = 0
    try:
        while seen < count:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=5000)
            got = sum(len(records) for records in fetched.values())
            if got and first_at is None:
                first_at, first_n = time.perf_counter(), got
            seen += got
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"raw consumer read {seen} of {count}")
        await consumer.commit()
    finally:
        await consumer.stop()
    done = time.perf_counter()
    assert first_at is not None
    return {
        "events": seen,
        "rate": (seen - first_n) / max(done - first_at, 1e-9),
        "wall_s": done - started,
    }


async def aggregator_throughput(
    deployment: Deployment, client: Client, count: int
) -> dict[str, Any]:
    """The real aggregator process from a cold start until its stored offsets (written in the
    same transaction as the totals) reach the log end; the steady rate is from the first
    committed batch to the last."""
    started = time.perf_counter()
    deployment.start("aggregator")
    first: tuple[float, int] | None = None
    applied = 0
    counted = Progress("aggregator", total=count, unit="events", every_s=10)
    with CpuWatch(server_pids(deployment)) as cpu, counted:
        while applied < count:
            await asyncio.sleep(0.1)
            applied = await applied_offsets(client, deployment.db, deployment.topic)
            counted.set(min(applied, count))
            if applied and first is None:
                first = (time.perf_counter(), applied)
            if time.perf_counter() - started > 3600:
                raise TimeoutError(f"aggregator applied {applied} of {count}")
    done = time.perf_counter()
    assert first is not None
    return {
        "events": applied,
        "rate": (applied - first[1]) / max(done - first[0], 1e-9),
        "wall_s": done - started,
        "cpu": cpu.shares,
        "metrics": await service_metrics(deployment, "aggregator", AGGREGATOR_METRICS),
    }


AGGREGATOR_METRICS = (
    "aggregator_batch_duration_seconds_count",
    "aggregator_batch_duration_seconds_sum",
    "aggregator_db_write_duration_seconds_sum",
    "aggregator_totals_document_writes_total",
)


async def service_metrics(
    deployment: Deployment, service: str, names: Sequence[str]
) -> dict[str, float]:
    """The named unlabelled samples of a running service's /metrics."""
    async with httpx.AsyncClient(timeout=30) as http:
        text = (await http.get(deployment.url(service, "/metrics"))).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[name] = float(value)
    return found


async def upsert_cost(client: Client, db: str, documents: int, days: int = 8) -> dict[str, Any]:
    """The database alone: seconds per `$inc` upsert on distinct month documents in one
    transaction, shaped as the aggregator writes them (a month total and a day's figures for
    8 metrics). Day 1 creates the documents; each later day updates all of them, as batches
    do through a month. Nothing of ours runs but the driver: this is the server's floor for
    any design that writes one document per unit and month a batch touches."""
    from pymongo import UpdateOne

    collection = client[db]["bench_upsert_cost"]
    metrics = [f"m{k}" for k in range(8)]
    per_document: list[float] = []
    for day in range(1, days + 1):
        updates = [
            UpdateOne(
                {"_id": f"unit-{i}|2025-01"},
                {
                    "$inc": {f"t.{m}": 1 for m in metrics}
                    | {f"d.{day:02d}.{m}": 1 for m in metrics},
                    "$setOnInsert": {"u": f"unit-{i}", "y": 2025, "m": "2025-01"},
                },
                upsert=True,
            )
            for i in range(documents)
        ]

        async def write(session: Any, updates: list[Any] = updates) -> None:
            await collection.bulk_write(updates, ordered=False, session=session)

        async with client.start_session() as session:
            started = time.perf_counter()
            await session.with_transaction(write)
            per_document.append((time.perf_counter() - started) / documents)
    await collection.drop()
    updates_only = per_document[1:]
    return {
        "documents": documents,
        "insert_ms": per_document[0] * 1000,
        "update_ms": statistics.median(updates_only) * 1000,
    }


async def naive_subscriber(
    deployment: Deployment, client: Client, count: int, time_cap_s: float
) -> dict[str, Any]:
    """What a typical developer writes: a FastStream subscriber, one `$inc` upsert per event
    per rollup key (the unit and its ancestors × day, month, year, all time). No
    deduplication at all (so it is not even exactly-once): a lower bar than ours."""
    broker = KafkaBroker(deployment.stack.kafka_bootstrap, log_level=10)
    totals = client[deployment.db]["naive_totals"]
    catalog = deployment.catalog
    state = {"count": 0, "first": 0.0, "last": 0.0}
    done = asyncio.Event()

    @broker.subscriber(
        deployment.topic,
        group_id=f"naive-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
    )
    async def handle(event: dict[str, Any]) -> None:
        if done.is_set():
            return
        increments = {k.replace(".", ":"): v for k, v in contract_metrics(event).items()}
        day = event["occurred_at"][:10]  # the local day: events carry +07:00
        for unit in catalog.lineage(event["unit_id"]):
            for period in (f"day:{day}", f"month:{day[:7]}", f"year:{day[:4]}", "all"):
                await totals.update_one(
                    {"_id": f"{unit}|{period}"}, {"$inc": increments}, upsert=True
                )
        state["count"] += 1
        if state["count"] == 1:
            state["first"] = time.perf_counter()
        state["last"] = time.perf_counter()
        if state["count"] >= count:
            done.set()

    await broker.start()
    try:
        started = time.perf_counter()
        while not done.is_set() and (
            state["count"] == 0 or time.perf_counter() - state["first"] < time_cap_s
        ):
            await asyncio.sleep(0.1)
            if time.perf_counter() - started > time_cap_s + 60:
                break
        done.set()
    finally:
        await broker.stop()
    counted = int(state["count"])
    elapsed = state["last"] - state["first"]
    return {
        "events": counted,
        "rate": (counted - 1) / elapsed if elapsed > 0 else float("nan"),
        "upserts_per_event": 12,
    }


# -- 2. ingest and the raw producer ---------------------------------------------------------


async def raw_produce(bootstrap: str, topic: str, events: Sequence[dict[str, Any]]) -> float:
    """aiokafka's producer with ingest's settings (acks=all, idempotent, linger 5 ms), one
    send() per record as ingest's publisher does, awaiting every acknowledgement: events/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1 << 20,
    )
    await producer.start()
    headers = [("content-type", b"application/json")]
    values = [(e["event_id"].encode(), encode(e)) for e in events]
    started = time.perf_counter()
    try:
        for start in range(0, len(values), 1000):
            pending = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, value in values[start : start + 1000]
            ]
            await asyncio.gather(*pending)
    finally:
        elapsed = time.perf_counter() - started
        await producer.stop()
    return len(events) / elapsed


async def ingest_floor(
    client: Client,
    db: str,
    bootstrap: str,
    topic: str,
    requests: Sequence[Sequence[dict[str, Any]]],
    concurrency: int,
) -> dict[str, Any]:
    """What one of ingest's requests costs without any code of ours: the durable duplicate
    check (`find` by `_id` in the accepted ids, `insert_many` of the new ones) and the
    producer's sends (acks=all, idempotent, linger 5 ms, every acknowledgement awaited), in the
    order ingest does them, from `concurrency` workers, one request's events at a time. No
    HTTP, no JSON, no validation: the floor ingest's figures sit on."""
    accepted = client[db]["bench_accepted_floor"]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1 << 20,
    )
    await producer.start()
    headers = [("content-type", b"application/json")]
    encoded = [[(e["event_id"].encode(), encode(e)) for e in events] for events in requests]
    queue = list(reversed(encoded))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            values = queue.pop()
            ids = [key.decode() for key, _ in values]
            sent = time.perf_counter()
            [_ async for _ in accepted.find({"_id": {"$in": ids}}, {"_id": 1})]
            acks = [await producer.send(topic, v, key=k, headers=headers) for k, v in values]
            await asyncio.gather(*acks)
            at = datetime.now(UTC)
            await accepted.insert_many([{"_id": i, "at": at} for i in ids], ordered=False)
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        wall = time.perf_counter() - started
        await producer.stop()
    await accepted.drop()
    return latency_summary(latencies, wall, unit=len(requests[0]))


async def _timed_requests(
    items: Sequence[Any],
    send: Callable[[httpx.AsyncClient, Any], Awaitable[httpx.Response]],
    expect: int,
    concurrency: int,
) -> tuple[list[float], float]:
    """Send one request per item from `concurrency` clients, each waiting for its answer
    before the next; each request's latency and the wall time."""
    latencies: list[float] = []
    queue = list(reversed(items))

    async def worker(http: httpx.AsyncClient) -> None:
        while queue:
            item = queue.pop()
            sent = time.perf_counter()
            response = await send(http, item)
            latencies.append(time.perf_counter() - sent)
            if response.status_code != expect:
                raise RuntimeError(
                    f"{response.request.url}: {response.status_code}: {response.text[:300]}"
                )

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall


async def closed_loop(
    bodies: Sequence[bytes], url: str, token: str, concurrency: int, expect: int = 202
) -> tuple[list[float], float]:
    """POST every body from `concurrency` clients; each request's latency and the wall."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def send(http: httpx.AsyncClient, body: bytes) -> httpx.Response:
        return await http.post(url, content=body, headers=headers)

    return await _timed_requests(bodies, send, expect, concurrency)


async def get_loop(
    paths: Sequence[str], base: str, token: str, concurrency: int
) -> tuple[list[float], float]:
    """GET every path from `concurrency` clients; each request's latency and the wall."""
    headers = {"Authorization": f"Bearer {token}"}

    async def send(http: httpx.AsyncClient, path: str) -> httpx.Response:
        return await http.get(base + path, headers=headers)

    return await _timed_requests(paths, send, 200, concurrency)


def latency_summary(latencies: Sequence[float], wall: float, unit: int = 1) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "events_per_s": len(latencies) * unit / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


# -- 3. freshness -------------------------------------------------------------------------------


PROBE_GIVE_UP_S = 1800


async def freshness(
    deployment: Deployment,
    make_events: Callable[[int], list[dict[str, Any]]],
    probe_unit: str,
    rate: int,
    duration_s: float,
    probe_offset: int,
) -> dict[str, Any]:
    """Offer `rate` events/s (open loop, batches every 100 ms) to ingest for `duration_s`;
    meanwhile post one probe event at a time to a unit nothing else posts to, and time from
    its 202 to its count showing in /v1/totals."""
    ingest = deployment.url("ingest", "/v1/events")
    totals = deployment.url("api", "/v1/totals")
    headers = {"Authorization": f"Bearer {deployment.token}", "Content-Type": "application/json"}
    tick_s = 0.1
    per_tick = max(1, int(rate * tick_s))
    ticks = int(duration_s / tick_s)
    chunks = [
        [encode_list(chunk) for chunk in _split(make_events(per_tick), 1000)] for _ in range(ticks)
    ]
    accepted = 0
    skipped = 0
    in_flight: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    latencies: list[float] = []
    load_s: list[float] = []
    stop = asyncio.Event()

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def post(bodies: list[bytes]) -> None:
            nonlocal accepted
            for body in bodies:
                response = await http.post(ingest, content=body, headers=headers)
                if response.status_code != 202:
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
                accepted += response.json()["accepted"]

        async def load() -> None:
            nonlocal skipped
            started = time.perf_counter()
            for index, bodies in enumerate(chunks):
                await asyncio.sleep(max(0.0, started + index * tick_s - time.perf_counter()))
                if len(in_flight) >= 24:  # bounded: the service is not keeping up
                    skipped += sum(body.count(b'"event_id"') for body in bodies)
                    continue
                task = asyncio.create_task(post(bodies))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*list(in_flight))
            load_s.append(time.perf_counter() - started)
            stop.set()

        async def value() -> int:
            response = await http.get(
                totals,
                params={"unit_id": probe_unit, "metric": "eid.activated", "period": "all"},
                headers=headers,
            )
            response.raise_for_status()
            return int(response.json()["value"])

        async def probes() -> None:
            await asyncio.sleep(min(3.0, duration_s / 4))
            expected = await value()
            number = 0
            while not stop.is_set():
                number += 1
                day = (datetime.now(UTC) + timedelta(hours=7)).date().isoformat()
                event = {
                    "event_id": f"probe-{probe_offset}-{number}-{uuid.uuid4().hex[:8]}",
                    "type": "eid.activated",
                    "unit_id": probe_unit,
                    "occurred_at": f"{day}T00:00:00+07:00",
                    "attributes": {"level": 1},
                }
                response = await http.post(ingest, content=encode(event), headers=headers)
                acked = time.perf_counter()
                if response.status_code != 202:
                    raise RuntimeError(f"probe {response.status_code}: {response.text[:300]}")
                expected += 1
                while await value() < expected:
                    await asyncio.sleep(0.01)
                    # Past the load's end the backlog only drains: a probe shows once the
                    # aggregator reaches it, however long that is (the figure is that time).
                    if time.perf_counter() - acked > PROBE_GIVE_UP_S:
                        raise TimeoutError(f"a probe took over {PROBE_GIVE_UP_S} s to show")
                latencies.append(time.perf_counter() - acked)
                await asyncio.sleep(0.2)

        started = time.perf_counter()
        with CpuWatch(server_pids(deployment)) as cpu:
            await asyncio.gather(load(), probes())
        wall = time.perf_counter() - started
    return {
        "offered_rate": rate,
        "achieved_rate": accepted / load_s[0],
        "load_s": load_s[0],
        "wall_s": wall,
        "skipped_events": skipped,
        "probes": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "cpu": cpu.shares,
    }


def encode_list(events: Sequence[dict[str, Any]]) -> bytes:
    return b"[" + b",".join(encode(e) for e in events) + b"]"


def _split(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# -- 4. the API --------------------------------------------------------------------------------


def totals_paths(deployment: Deployment, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    catalog = deployment.catalog
    units = [catalog.province, *catalog.districts, *catalog.communes]
    metrics = ("eid.activated", "filing.submitted", "payment.fee.amount_vnd", "cccd.issued")
    paths = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.25:
            period = "all"
        elif kind < 0.5:
            period = "year:2025"
        elif kind < 0.75:
            period = f"month:2025-{rng.randint(1, 12):02d}"
        else:
            period = f"day:2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        unit = rng.choice(units)
        paths.append(f"/v1/totals?unit_id={unit}&metric={rng.choice(metrics)}&period={period}")
    return paths


async def set_up_campaign(deployment: Deployment) -> str:
    """A campaign over 2025 with targets for the province and every district."""
    catalog = deployment.catalog
    headers = {"Authorization": f"Bearer {deployment.token}"}
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.put(
            deployment.url("api", "/v1/campaigns/bench-2025"),
            json={"name": "Bench 2025", "starts": "2025-01-01", "ends": "2025-12-31"},
            headers=headers,
        )
        response.raise_for_status()
        targets = [
            {"unit_id": unit, "metric": metric, "target": 1000}
            for unit in [catalog.province, *catalog.districts]
            for metric in ("eid.activated", "cccd.issued", "sim.registered", "filing.submitted")
        ]
        response = await http.put(
            deployment.url("api", "/v1/campaigns/bench-2025/targets"),
            json=targets,
            headers=headers,
        )
        response.raise_for_status()
    return "bench-2025"


# -- 5. scale: rebuild time and bytes per event ------------------------------------------------


async def rebuild(deployment: Deployment) -> tuple[float, dict[str, float]]:
    """`python -m shared.admin rebuild` (the operator's command): seconds to replay the whole
    log into a new generation and switch to it, and the CPU share (cores) of the servers and
    of the rebuild process meanwhile."""
    # The rebuild's own CPU from what this process's reaped children used: no other child
    # ends while it runs (the servers go on).
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with CpuWatch(server_pids(deployment)) as cpu:
        elapsed = await _rebuild(deployment)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    return elapsed, {**cpu.shares, "rebuild": round(used / elapsed, 2)}


async def _rebuild(deployment: Deployment) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.admin",
        "rebuild",
        "--grace-seconds",
        "0",
        # No aggregator ran here: without it the rebuild would switch as soon as it reflects
        # what the (empty) served totals do, at the first fetch that comes back short.
        "--through-log-end",
        env={**os.environ, **deployment.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 7200)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"rebuild failed: {output.decode()[-3000:]}")
    return elapsed


async def rebuilt_everything(client: Client, deployment: Deployment, count: int) -> None:
    """The served generation reflects all `count` records of the log, or the figure is void."""
    applied = await applied_offsets(client, deployment.db, deployment.topic)
    if applied < count:
        raise RuntimeError(f"the rebuild applied {applied:,} of {count:,} records")


FAUST_PYTHON = REPO / ".local" / "venv-faust" / "bin" / "python"


async def faust_count(deployment: Deployment, count: int, catalog_path: Path) -> dict[str, Any]:
    """Baseline (c): bench/faust_baseline.py in faust-streaming's own environment; it prints
    its figure once it has counted `count` events (faust's shutdown then hangs: killed)."""
    if not FAUST_PYTHON.exists():
        return {"error": f"{FAUST_PYTHON} missing (make bench installs it)"}
    process = await asyncio.create_subprocess_exec(
        str(FAUST_PYTHON),
        str(REPO / "bench" / "faust_baseline.py"),
        deployment.stack.kafka_bootstrap,
        deployment.topic,
        str(count),
        str(catalog_path),
        cwd=str(catalog_path.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    tail: list[str] = []
    try:
        async with asyncio.timeout(600):
            async for raw_line in process.stdout:
                line = raw_line.decode(errors="replace")
                tail = [*tail[-20:], line]
                found = re.search(r'\{"events": \d+, "rate": [0-9.e+-]+\}', line)
                if found:
                    return dict(json.loads(found.group(0)))
    except TimeoutError:
        pass
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {"error": "faust did not report: " + "".join(tail)[-1500:]}


async def stored_bytes(client: Client, db_name: str) -> dict[str, int]:
    """Bytes the served generation's derived collections hold: the server's collStats when it
    answers (data and index sizes), else the BSON size of every document."""
    db = client[db_name]
    meta = await db["meta"].find_one({"_id": "generation"})
    suffix = f"_{meta['name']}" if meta and meta.get("name") else ""
    sizes: dict[str, int] = {}
    for base in ("totals", "ledger", "offsets", "subjects"):
        name = f"{base}{suffix}"
        try:
            stats = await db.command("collStats", name)
            sizes[f"{base}.data"] = int(stats.get("size", 0))
            sizes[f"{base}.storage"] = int(stats.get("storageSize", 0))
            sizes[f"{base}.indexes"] = int(stats.get("totalIndexSize", 0))
        except Exception:
            total = 0
            async for doc in db[name].find({}):
                total += len(bson.encode(doc))
            sizes[f"{base}.data"] = total
    return sizes


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.2)
