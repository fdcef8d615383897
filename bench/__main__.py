"""`make bench` (`python -m bench [--quick]`): every figure beside its baseline, one run.

Writes BENCHMARKS.md (figures, baselines, ratios, goals, the machine, the date, the command)
and bench/results-<full|quick>.json (everything measured, raw).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from bench import measure
from bench.report import write_report
from bench.world import (
    Arrival,
    Deployment,
    KeyedRecords,
    applied_offsets,
    deploy,
    encode,
    generated_records,
    prefill,
    realistic_events,
    synthetic_catalog,
)
from deploy.local.stack import MEMORY_FS, REPO, kafka_version, memory_backed, started_stack
from shared.progress import Progress


@dataclass(frozen=True)
class Sizes:
    aggregator_events: int
    worst_case_events: int
    faust_events: int
    naive_events: int
    naive_cap_s: float
    ingest_batches: int
    single_requests: int
    freshness_s: float
    api_events: int
    api_totals_requests: int
    api_progress_requests: int
    scale_small: int
    scale_large: int


# The sizes where it names them (1M aggregator events, 10M for scale, a 10,000-unit
# catalog); the rest as small as keeps the figure steady, so the run stays under 30 minutes.
FULL = Sizes(
    aggregator_events=1_000_000,
    worst_case_events=50_000,
    faust_events=10_000,
    naive_events=20_000,
    naive_cap_s=20,
    ingest_batches=300,
    single_requests=3_000,
    freshness_s=60,
    api_events=100_000,
    api_totals_requests=5_000,
    api_progress_requests=1_000,
    scale_small=1_000_000,
    scale_large=10_000_000,
)
# Scaled so the whole run stays near 5 minutes on the local database (the aggregator folds
# a few thousand events/s there at best): a tenth of the full sizes and less.
QUICK = Sizes(
    aggregator_events=50_000,
    worst_case_events=50_000,
    faust_events=3_000,
    naive_events=3_000,
    naive_cap_s=10,
    ingest_batches=40,
    single_requests=600,
    freshness_s=10,
    api_events=20_000,
    api_totals_requests=600,
    api_progress_requests=40,
    scale_small=20_000,
    scale_large=60_000,
)
CHUNK = 200_000  # events generated and appended at a time (10M dicts would not fit in memory)


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


async def fill(deployment: Deployment, count: int, seed: int, in_order: bool = True) -> float:
    """Append `count` realistic events in chunks; events/s of the whole fill. `in_order`: as
    a live log has them (days advancing, a tenth late by up to 30 days); else each event's
    day at random over the year (the aggregator's worst case)."""
    loop = asyncio.get_running_loop()
    starts = range(0, count, CHUNK)
    started = time.perf_counter()
    # Worker processes make the next chunks while this one is sent: with one, the sends
    # waited on it (10M events: its core busy, the sender's at a tenth).
    workers = 2
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:

        def generate(first: int) -> asyncio.Future[KeyedRecords]:
            return loop.run_in_executor(
                pool,
                generated_records,
                deployment.catalog,
                min(CHUNK, count - first),
                seed + first,
                Arrival(first, count) if in_order else None,
                first == 0,
            )

        pending = {index: generate(first) for index, first in enumerate(starts[:workers])}
        with Progress("pre-fill", total=count, unit="events", every_s=10) as filled:
            for index in range(len(starts)):
                records = await pending.pop(index)
                if index + workers < len(starts):
                    pending[index + workers] = generate(starts[index + workers])
                await prefill(deployment.stack.kafka_bootstrap, deployment.topic, records)
                filled.advance(sum(len(batch) for batch in records.values()))
    return count / (time.perf_counter() - started)


async def run(sizes: Sizes, root: Path, results: dict[str, Any], save: Callable[[], None]) -> None:
    catalog_1k = synthetic_catalog(1_000)

    def done(phase: str, figures: Any) -> None:
        results[phase] = figures
        results.setdefault("load", {})[phase] = [round(x, 2) for x in os.getloadavg()]
        save()

    def wanted(phase: str) -> bool:
        """False for a phase a resumed run already has (`--resume`)."""
        if phase in results:
            log(f"{phase}: kept from the run resumed")
            return False
        return True

    stack_started = time.perf_counter()
    with started_stack(root) as stack:
        results["servers_start_s"] = round(time.perf_counter() - stack_started, 1)
        results["broker"] = f"Apache Kafka {kafka_version()} (KRaft, one node)"
        results["data_dir"] = (
            f"{MEMORY_FS} (memory-backed)"
            if memory_backed(stack.data_dir)
            else f"{stack.data_dir} (disk)"
        )
        client: measure.Client = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
        try:
            # 1. Aggregator, raw consumer, naive subscriber and faust on one pre-filled topic.
            if wanted("faust"):
                await aggregator_phases(stack, catalog_1k, root, client, sizes, done)
            # 1b. The same aggregator when every batch touches every unit's every month.
            if wanted("aggregator_worst_case"):
                w = deploy(stack, "worst", catalog_1k, root)
                n = sizes.worst_case_events
                log(f"pre-filling {n:,} events, days at random over the year")
                await fill(w, n, seed=3, in_order=False)
                worst = await measure.aggregator_throughput(w, client, n)
                done("aggregator_worst_case", worst)
                log(f"aggregator, worst case: {worst['rate']:,.0f} events/s")
                w.stop_all()
                await client.drop_database(w.db)
            # 2. Ingest.
            if wanted("ingest"):
                done("ingest", await ingest(stack, catalog_1k, root, sizes))
            # 3. Freshness.
            if wanted("freshness"):
                done("freshness", await freshness(stack, catalog_1k, root, sizes))
            # 4. The API over a 10,000-unit catalog.
            if wanted("api"):
                done("api", await api(stack, root, sizes, client))
            # 5. Scale: rebuild a log, then one ten times (QUICK: three times) larger.
            if "large" not in (results.get("scale") or {}):
                kept = dict(results.get("scale") or {})
                done(
                    "scale",
                    await scale(
                        stack, catalog_1k, root, client, sizes, kept, lambda f: done("scale", f)
                    ),
                )
        finally:
            results["servers_memory_mib"] = servers_memory(stack)
            await client.close()


def servers_memory(stack: Any) -> dict[str, float]:
    """The peak resident memory (VmHWM) of the broker and the database over the whole run."""
    peaks: dict[str, float] = {}
    for process in stack.processes:
        if process.name not in ("kafka", "secantusd"):
            continue
        try:
            status = Path(f"/proc/{process.popen.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[process.name] = round(int(line.split()[1]) / 1024, 1)
    return peaks


async def aggregator_phases(
    stack: Any,
    catalog: Any,
    root: Path,
    client: measure.Client,
    sizes: Sizes,
    done: Callable[[str, Any], None],
) -> None:
    """The aggregator, the raw consumer, the database's own upsert cost, the naive subscriber
    and faust, on one pre-filled topic."""
    a = deploy(stack, "agg", catalog, root)
    n = sizes.aggregator_events
    log(f"pre-filling {n:,} events over {len(catalog.units):,} units")
    prefill_rate = await fill(a, n, seed=1)
    done("prefill_rate", prefill_rate)
    log(f"send_batch pre-fill: {prefill_rate:,.0f} events/s")
    raw = await measure.raw_consume(stack.kafka_bootstrap, a.topic, n)
    done("raw_consume", raw)
    log(f"raw aiokafka consume: {raw['rate']:,.0f} events/s")
    aggregator = await measure.aggregator_throughput(a, client, n)
    done("aggregator", aggregator)
    log(f"aggregator: {aggregator['rate']:,.0f} events/s")
    a.stop_all()
    cost = await measure.upsert_cost(client, a.db, documents=2_000)
    done("upsert_cost", cost)
    log(f"database alone, per month-document upsert: {cost}")
    naive = await measure.naive_subscriber(a, client, sizes.naive_events, sizes.naive_cap_s)
    done("naive", naive)
    log(f"naive subscriber: {naive['rate']:,.1f} events/s over {naive['events']:,} events")
    faust = await measure.faust_count(a, sizes.faust_events, Path(a.env["BENCH_CATALOG"]))
    done("faust", faust)
    log(f"faust-streaming table: {faust}")
    await client.drop_database(a.db)  # the servers' data is in memory: keep it small


async def scale(
    stack: Any,
    catalog: Any,
    root: Path,
    client: measure.Client,
    sizes: Sizes,
    figures: dict[str, Any],
    keep: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Rebuild a log and one larger, but for the sizes `figures` already has (a resumed
    run's); `keep` saves the figures after each (the large one takes longest)."""
    for label, count in (("small", sizes.scale_small), ("large", sizes.scale_large)):
        if label in figures:
            log(f"rebuild of {count:,} events: kept from the run resumed")
            continue
        d = deploy(stack, f"scale-{label}", catalog, root)
        log(f"pre-filling {count:,} events")
        prefill_rate = await fill(d, count, seed=7)
        log(f"rebuild of {count:,} events")
        seconds, cpu = await measure.rebuild(d)
        await measure.rebuilt_everything(client, d, count)
        figures[label] = {
            "events": count,
            "rebuild_s": seconds,
            "cpu": cpu,
            "prefill_rate": prefill_rate,
            "bytes": await measure.stored_bytes(client, d.db),
        }
        figures.pop(f"{label}_partial", None)  # how far a stopped run had got: superseded
        keep(figures)  # before the drop: a figure measured is not lost to a failure after it
        # Not the large one: the run's last phase, whose data goes with the stack. Dropping
        # the 10M database took SecantusDB past 10 GB resident: killed for want of memory,
        # twice (bench/analysis.md).
        if label == "small":
            await client.drop_database(d.db)
        log(f"rebuild {count:,}: {seconds:.1f} s ({count / seconds:,.0f} events/s)")
    return figures


async def ingest(stack: Any, catalog: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    d = deploy(stack, "ingest", catalog, root)
    figures: dict[str, Any] = {}
    raw_events = realistic_events(catalog, sizes.ingest_batches * 1000, seed=11)
    figures["raw_producer_rate"] = await measure.raw_produce(
        stack.kafka_bootstrap, d.topic, raw_events
    )
    log(f"raw producer (send per record): {figures['raw_producer_rate']:,.0f} events/s")
    d.start("ingest")
    client: measure.Client = AsyncMongoClient(stack.mongodb_uri, tz_aware=True)
    try:
        events = realistic_events(catalog, sizes.ingest_batches * 1000, seed=12)
        bodies = [measure.encode_list(events[i : i + 1000]) for i in range(0, len(events), 1000)]
        with measure.CpuWatch(measure.server_pids(d)) as cpu:
            latencies, wall = await measure.closed_loop(
                bodies, d.url("ingest", "/v1/events"), d.token, concurrency=4
            )
        figures["batches"] = measure.latency_summary(latencies, wall, unit=1000) | {
            "cpu": cpu.shares
        }
        log(f"ingest batches: {figures['batches']['events_per_s']:,.0f} events/s")
        floor_events = realistic_events(catalog, sizes.ingest_batches * 1000, seed=14)
        figures["batches_floor"] = await measure.ingest_floor(
            client,
            d.db,
            stack.kafka_bootstrap,
            d.topic,
            [floor_events[i : i + 1000] for i in range(0, len(floor_events), 1000)],
            concurrency=4,
        )
        log(f"its floor: {figures['batches_floor']['events_per_s']:,.0f} events/s")
        singles = realistic_events(catalog, sizes.single_requests, seed=13)
        bodies = [encode(e) for e in singles]
        for concurrency in (1, 8):
            part = bodies[: len(bodies) // 2] if concurrency == 1 else bodies[len(bodies) // 2 :]
            with measure.CpuWatch(measure.server_pids(d)) as cpu:
                latencies, wall = await measure.closed_loop(
                    part, d.url("ingest", "/v1/events"), d.token, concurrency=concurrency
                )
            figures[f"single_c{concurrency}"] = measure.latency_summary(latencies, wall) | {
                "cpu": cpu.shares
            }
            floor_events = realistic_events(catalog, len(part), seed=15 + concurrency)
            figures[f"single_c{concurrency}_floor"] = await measure.ingest_floor(
                client,
                d.db,
                stack.kafka_bootstrap,
                d.topic,
                [[event] for event in floor_events],
                concurrency=concurrency,
            )
            log(
                f"ingest single events, {concurrency} clients: "
                f"{figures[f'single_c{concurrency}']['rps']:,.0f} req/s, "
                f"p99 {figures[f'single_c{concurrency}']['p99_ms']:.1f} ms; its floor p99 "
                f"{figures[f'single_c{concurrency}_floor']['p99_ms']:.1f} ms"
            )
    finally:
        await client.close()
        d.stop_all()
    return figures


async def freshness(stack: Any, catalog: Any, root: Path, sizes: Sizes) -> dict[str, Any]:
    d = deploy(stack, "fresh", catalog, root)
    probe_unit = catalog.communes[0]
    pool = catalog.communes[1:]
    seed = [100]

    def make(count: int) -> list[dict[str, Any]]:
        seed[0] += 1
        return realistic_events(catalog, count, seed[0], span_days=3, units=pool)

    figures: dict[str, Any] = {}
    for service in ("aggregator", "ingest", "api"):
        d.start(service)
    client: measure.Client = AsyncMongoClient(stack.mongodb_uri)
    try:
        for index, rate in enumerate((5_000, 20_000)):
            log(f"freshness at {rate:,} events/s for {sizes.freshness_s:.0f} s")
            figures[str(rate)] = await measure.freshness(
                d, make, probe_unit, rate, sizes.freshness_s, index
            )
            f = figures[str(rate)]
            log(
                f"freshness {rate:,}/s: achieved {f['achieved_rate']:,.0f}/s, "
                f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms"
            )
            if rate == 20_000:
                break
            # Let the aggregator drain what it owes before the next rate.
            drained = time.perf_counter()
            end = await _log_end(stack.kafka_bootstrap, d.topic)
            await measure.wait_until(partial(_applied_at_least, client, d, end), 600)
            figures[str(rate)]["drain_s"] = time.perf_counter() - drained
    finally:
        await client.close()
        d.stop_all()
    return figures


async def _applied_at_least(client: measure.Client, d: Deployment, count: int) -> bool:
    return await applied_offsets(client, d.db, d.topic) >= count


async def _log_end(bootstrap: str, topic: str) -> int:
    """Records in the topic now: the sum of its partitions' end offsets (ListOffsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(4)])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def api(stack: Any, root: Path, sizes: Sizes, client: measure.Client) -> dict[str, Any]:
    catalog = synthetic_catalog(10_000)
    d = deploy(stack, "api", catalog, root)
    log(f"API: {sizes.api_events:,} events over {len(catalog.units):,} units")
    await fill(d, sizes.api_events, seed=21)
    figures: dict[str, Any] = {"catalog_units": len(catalog.units)}
    d.start("aggregator")
    try:

        async def counted() -> bool:
            return await applied_offsets(client, d.db, d.topic) >= sizes.api_events

        await measure.wait_until(counted, 1800)
        d.stop("aggregator")
        d.start("api")
        campaign = await measure.set_up_campaign(d)
        base = d.url("api", "")
        paths = measure.totals_paths(d, sizes.api_totals_requests, seed=5)
        progress = [
            f"/v1/campaigns/{campaign}/progress?unit_id={catalog.province}&at=2025-10-01"
        ] * sizes.api_progress_requests
        await measure.get_loop(paths[:50], base, d.token, 1)  # warm-up
        for name, work in (("totals", paths), ("progress", progress)):
            for concurrency in (1, 4):
                with measure.CpuWatch(measure.server_pids(d)) as cpu:
                    latencies, wall = await measure.get_loop(work, base, d.token, concurrency)
                figures[f"{name}_c{concurrency}"] = measure.latency_summary(latencies, wall) | {
                    "cpu": cpu.shares
                }
                f = figures[f"{name}_c{concurrency}"]
                log(
                    f"{name}, {concurrency} clients: {f['rps']:,.0f} req/s, "
                    f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms"
                )
    finally:
        d.stop_all()
    return figures


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(total_kb / 1024 / 1024, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_before": [round(x, 2) for x in load],
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (~5 minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the kept results"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="run only the phases the kept results lack (after a run that stopped)",
    )
    args = parser.parse_args()
    if args.report_only:
        kept = REPO / "bench" / f"results-{'quick' if args.quick else 'full'}.json"
        write_report(args.output, _all_results(kept, json.loads(kept.read_text())))
        return
    sizes = QUICK if args.quick else FULL
    command = "make bench QUICK=1" if args.quick else "make bench"
    info = machine()
    started = time.perf_counter()
    date = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="bench-", dir=REPO / ".local"))
    log(f"{command}: data under {root}")
    results: dict[str, Any] = {
        "sizes": sizes.__dict__,
        "machine": info,
        "command": command,
        "date": date.isoformat(timespec="seconds"),
        "complete": False,
    }
    raw = REPO / "bench" / f"results-{'quick' if args.quick else 'full'}.json"
    earlier_s = 0.0
    if args.resume and raw.exists():
        results = json.loads(raw.read_text())
        earlier_s = float(results.get("wall_s", 0.0))
        results.setdefault("resumed", []).append(
            {"date": date.isoformat(timespec="seconds"), "machine": info}
        )
        log(f"resuming the run of {results['date']} ({earlier_s / 60:.1f} min so far)")

    def save() -> None:
        # A resumed run's wall time is the sum of its parts (the pause between them excluded).
        results["wall_s"] = earlier_s + time.perf_counter() - started
        raw.write_text(json.dumps(results, indent=2, default=str) + "\n")

    try:
        asyncio.run(run(sizes, root, results, save))
        results["complete"] = True
    finally:
        save()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - started
    write_report(args.output, _all_results(raw, results))
    log(f"done in {wall / 60:.1f} min: {args.output} and {raw}")


def _all_results(latest: Path, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """This run's results, and the other mode's last ones if kept (the report shows both)."""
    found: dict[str, dict[str, Any]] = {}
    # The last runs on tansu, before the switch to Apache Kafka (issue 22), shown beside.
    for mode in ("full", "quick", "full-tansu", "quick-tansu"):
        path = latest.parent / f"results-{mode}.json"
        if path == latest:
            found[mode] = results
        elif path.exists():
            kept: dict[str, Any] = json.loads(path.read_text())
            found[mode] = kept
    for mode in ("full", "quick"):
        # Until a mode has a run on Apache Kafka, its latest is the tansu one: shown once.
        tansu = found.get(f"{mode}-tansu")
        if tansu is not None and found.get(mode, {}).get("date") == tansu["date"]:
            del found[f"{mode}-tansu"]
    return found


if __name__ == "__main__":
    main()
