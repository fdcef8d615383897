"""BENCHMARKS.md from the measured results (the interpretation lives in bench/analysis.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ANALYSIS = Path(__file__).with_name("analysis.md")


def _n(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def _goal(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _cpu(shares: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.2f}" for name, share in sorted(shares.items()))


def _faust_row(faust: dict[str, Any], rate: float) -> str:
    if "rate" not in faust:
        reason = str(faust.get("error", "?"))[:200].replace("|", "/").replace("\n", " ")
        return f"| (c) faust-streaming table count | not measured: {reason} | — | — |"
    return (
        f"| (c) faust-streaming table count, in memory, 12 table updates per event "
        f"({faust['events']:,} events; no MongoDB, no exactly-once) | {_n(faust['rate'], 1)} | "
        f"{rate / faust['rate']:,.1f}× it | — |"
    )


def _database_bound(agg: dict[str, Any], cost: dict[str, Any] | None) -> list[str]:
    """What the database alone costs the aggregator: the documents its batches wrote (its own
    counter) times what the server takes per such upsert (measured without our code)."""
    metrics = agg.get("metrics") or {}
    written = metrics.get("aggregator_totals_document_writes_total")
    batches = metrics.get("aggregator_batch_duration_seconds_count")
    batch_s = metrics.get("aggregator_batch_duration_seconds_sum")
    if not (cost and written and batches and batch_s):
        return []
    floor_s = written * cost["update_ms"] / 1000
    return [
        f"What bounds it: the aggregator's batches wrote {written:,.0f} totals documents "
        f"({written / agg['events']:.2f} per event, {written / batches:,.0f} per batch) in "
        f"{batch_s:.1f} s of batch transactions. The database alone, with no code of ours "
        f"but the driver, takes {cost['update_ms']:.2f} ms per such `$inc` upsert inside a "
        f"transaction ({cost['insert_ms']:.2f} ms for a new document; {cost['documents']:,} "
        f"documents per transaction): {floor_s:.1f} s, {floor_s / batch_s:.0%} of the batch "
        "time, before the ledger, its lookups and the commit. Any design that keeps a total "
        "per unit and month pays that floor on this server.",
        "",
    ]


def _floor_row(floor: dict[str, Any] | None, what: str, ours: dict[str, Any]) -> list[str]:
    if not floor:
        return []
    return [
        f"| floor: {what}, database and broker calls only | {_n(floor['events_per_s'])} | "
        f"{_n(floor['rps'], 1)} | {_n(floor['p50_ms'], 1)} | {_n(floor['p99_ms'], 1)} | "
        f"ingest: {ours['events_per_s'] / floor['events_per_s']:.0%} of its rate, p99 "
        f"×{ours['p99_ms'] / floor['p99_ms']:.1f} |"
    ]


def _total_bytes(rebuilt: dict[str, Any]) -> int:
    """Data and index bytes of a rebuilt generation (`.storage` repeats the data's)."""
    return sum(v for k, v in rebuilt["bytes"].items() if not k.endswith(".storage"))


def _partial_scale(sc: dict[str, Any]) -> list[str]:
    """The scale section of a run stopped during its large rebuild: the small rebuild whole,
    and how far the large one got (its applied offsets, sampled while it ran)."""
    lines = ["", "### 5. Scale: the large rebuild did not finish in this run", ""]
    small = sc.get("small")
    if small:
        size = _total_bytes(small)
        lines += [
            f"Rebuild of {small['events']:,} events: {small['rebuild_s']:.1f} s "
            f"({small['events'] / small['rebuild_s']:,.0f} events/s); MongoDB bytes (data + "
            f"indexes) {size:,}, {size / small['events']:,.1f} per event.",
            "",
        ]
    partial = sc.get("large_partial")
    if partial and not partial["samples"]:
        lines += [
            f"Rebuild of {partial['events']:,} events, stopped after {partial['seconds']:,.0f} s "
            f"({partial['reason']}).",
            "",
        ]
    elif partial:
        lines += [
            f"Rebuild of {partial['events']:,} events, stopped after {partial['seconds']:,.0f} s "
            f"({partial['reason']}). Records applied as it went (seconds from its start: "
            "events/s over the interval before):",
            "",
            "| seconds | records applied | events/s in the interval |",
            "| ---: | ---: | ---: |",
        ]
        previous = (0.0, 0)
        for seconds, applied in partial["samples"]:
            rate = (applied - previous[1]) / max(seconds - previous[0], 1e-9)
            lines.append(f"| {seconds:,.0f} | {applied:,} | {rate:,.0f} |")
            previous = (seconds, applied)
        lines.append("")
    return lines


def _worst_case_row(worst: dict[str, Any] | None, rate: float) -> list[str]:
    if not worst:
        return []
    return [
        f"| the same aggregator, worst case: days at random over the year "
        f"({worst['events']:,} events) | {_n(worst['rate'])} | {worst['rate'] / rate:.0%} of "
        "the in-order rate | — |"
    ]


def section(mode: str, r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    sizes = r["sizes"]
    lines = [
        f"## `{r['command']}` — {r['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, Python "
        f"{m['python']}, Linux {m['kernel']}; load average before the run {m['load_before']} "
        "(the machine is shared). Wall time of the whole run: "
        f"**{r['wall_s'] / 60:.1f} min**. Local broker "
        # Runs recorded before the switch to Apache Kafka name no broker.
        f"{r.get('broker', 'tansu 0.6.0 (localbucket S3 store)')}, SecantusDB 0.7.0b3; "
        "everything on 127.0.0.1, 4 partitions; the servers' data in "
        f"{r.get('data_dir', 'a temporary directory on disk')}.",
        "",
    ]
    if r.get("resumed"):
        lines += [
            "This run stopped part-way and was resumed (`make bench BENCH_ARGS=--resume`) at "
            + ", ".join(part["date"] for part in r["resumed"])
            + ": the phases it had were kept, the rest measured then, on the same machine; "
            "its wall time is the sum of the parts.",
            "",
        ]
    agg, raw, naive = r["aggregator"], r["raw_consume"], r["naive"]
    ratio_raw = agg["rate"] / raw["rate"]
    ratio_naive = agg["rate"] / naive["rate"]
    lines += [
        f"### 1. Aggregator throughput ({sizes['aggregator_events']:,} events, 1,000 units)",
        "",
        "| what | events/s | ratio | goal |",
        "| --- | ---: | ---: | --- |",
        f"| aggregator (real service process, exactly-once, rollups) | {_n(agg['rate'])} | — | — |",
        f"| (a) raw aiokafka group consumer, no decoding | {_n(raw['rate'])} | "
        f"{ratio_raw:.1%} of it | ≥ 50%: {_goal(ratio_raw >= 0.5)} |",
        f"| (b) naive FastStream subscriber, 12 `$inc` upserts per event "
        f"({naive['events']:,} events) | {_n(naive['rate'], 1)} | {ratio_naive:,.0f}× it | "
        f"≥ 20×: {_goal(ratio_naive >= 20)} |",
        _faust_row(r.get("faust") or {}, agg["rate"]),
        *_worst_case_row(r.get("aggregator_worst_case"), agg["rate"]),
        "",
        "The log arrives as a live one does: days advance through it and a tenth of the events "
        "come up to 30 days late; the worst case draws every event's day at random over the year, "
        "so that each batch touches nearly every unit's every month.",
        "",
        f"Pre-fill with `send_batch`: {_n(r['prefill_rate'])} events/s. Aggregator wall time "
        f"from process start: {agg['wall_s']:.1f} s. CPU (cores) during the aggregator run: "
        f"{_cpu(agg['cpu'])}.",
        "",
        *_database_bound(agg, r.get("upsert_cost")),
    ]
    ing = r["ingest"]
    b = ing["batches"]
    ratio_ing = b["events_per_s"] / ing["raw_producer_rate"]
    lines += [
        "### 2. Ingest",
        "",
        "| what | events/s | req/s | p50 ms | p99 ms | goal |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| raw aiokafka producer, acks=all, linger 5 ms, send per record | "
        f"{_n(ing['raw_producer_rate'])} | — | — | — | — |",
        f"| `POST /v1/events`, batches of 1,000, 4 clients | {_n(b['events_per_s'])} | "
        f"{_n(b['rps'], 1)} | {_n(b['p50_ms'], 1)} | {_n(b['p99_ms'], 1)} | "
        f"{ratio_ing:.1%} of raw, ≥ 50%: {_goal(ratio_ing >= 0.5)} |",
        *_floor_row(ing.get("batches_floor"), "batches of 1,000, 4 workers", b),
    ]
    for c in (1, 8):
        s = ing[f"single_c{c}"]
        lines.append(
            f"| single events, {c} client{'s' if c > 1 else ''} | {_n(s['events_per_s'])} | "
            f"{_n(s['rps'])} | {_n(s['p50_ms'], 1)} | {_n(s['p99_ms'], 1)} | "
            f"p99 ≤ 50 ms: {_goal(s['p99_ms'] <= 50)} |"
        )
        lines += _floor_row(
            ing.get(f"single_c{c}_floor"), f"single events, {c} worker{'s' if c > 1 else ''}", s
        )
    lines += [
        "",
        "A *floor* row is the same request's calls to the database and the broker alone, as "
        "ingest makes them (the durable duplicate check: `find` by `_id` in `accepted`, then "
        "the producer's sends with acks=all, then `insert_many` of the new ids), with no HTTP, "
        "JSON or validation: what any ingest that never forgets an accepted id pays on these "
        "servers.",
        "",
        f"CPU (cores) during the batches: {_cpu(b['cpu'])}; single events, 8 clients: "
        f"{_cpu(ing['single_c8']['cpu'])}.",
        "",
        f"### 3. Freshness (202 → visible in `/v1/totals`, {sizes['freshness_s']:.0f} s per rate)",
        "",
        "| offered events/s | achieved events/s | probes | p50 ms | p99 ms | max ms | drain after "
        "| goal |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for rate, f in r["freshness"].items():
        goal = f"p99 ≤ 1 s: {_goal(f['p99_ms'] <= 1000)}" if rate == "5000" else "—"
        lines.append(
            f"| {int(rate):,} | {_n(f['achieved_rate'])} | {f['probes']} | {_n(f['p50_ms'])} | "
            f"{_n(f['p99_ms'])} | {_n(f['max_ms'])} | {f.get('drain_s', 0):.1f} s | {goal} |"
        )
    for rate, f in r["freshness"].items():
        lines.append(f"\nCPU (cores) at {int(rate):,}/s: {_cpu(f['cpu'])}.")
    api = r["api"]
    lines += [
        "",
        f"### 4. API ({api['catalog_units']:,}-unit catalog, {sizes['api_events']:,} events "
        "counted)",
        "",
        "| request | clients | req/s | p50 ms | p99 ms | goal |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, label, limit in (
        ("totals", "`/v1/totals` (random unit, metric, period)", 10),
        ("progress", "province `progress` (100 districts)", 50),
    ):
        for c in (1, 4):
            s = api[f"{name}_c{c}"]
            goal = f"p99 ≤ {limit} ms: {_goal(s['p99_ms'] <= limit)}" if c == 1 else "—"
            lines.append(
                f"| {label} | {c} | {_n(s['rps'])} | {_n(s['p50_ms'], 1)} | "
                f"{_n(s['p99_ms'], 1)} | {goal} |"
            )
    sc = r.get("scale") or {}
    if "large" not in sc:
        return [*lines, *_partial_scale(sc)]
    small, large = sc["small"], sc["large"]

    per = [(x["events"], x["rebuild_s"], _total_bytes(x), x["bytes"]) for x in (small, large)]
    lines += [
        "",
        "### 5. Scale (rebuild = `python -m shared.admin rebuild`, replaying the whole log)",
        "",
        "| events | rebuild s | µs per event | events/s | MongoDB bytes (data + indexes) | "
        "bytes per event |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for events, seconds, size, _ in per:
        lines.append(
            f"| {events:,} | {seconds:.1f} | {seconds / events * 1e6:,.0f} | "
            f"{_n(events / seconds)} | {size:,} | {size / events:,.1f} |"
        )
    growth_t = (per[1][1] / per[1][0]) / (per[0][1] / per[0][0])
    growth_b = (per[1][2] / per[1][0]) / (per[0][2] / per[0][0])
    lines += [
        "",
        f"Per-event growth from {per[0][0]:,} to {per[1][0]:,}: rebuild time ×{growth_t:.2f}, "
        f"bytes ×{growth_b:.2f} (flat = ×1.00; goal: flat). Per collection at "
        f"{per[1][0]:,}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(per[1][3].items())) + ".",
        "",
    ]
    for x in (small, large):
        if "cpu" in x:  # recorded since 2026-11-24T12:00
            lines.append(f"CPU (cores) during the rebuild of {x['events']:,}: {_cpu(x['cpu'])}.\n")
    return lines


# The figures `broker_comparison` sets side by side, by their path in the results.
COMPARED = [
    ("raw produce, aiokafka, acks=all (events/s)", ("ingest", "raw_producer_rate")),
    ("raw consume, group consumer (events/s)", ("raw_consume", "rate")),
    (
        "ingest, batches of 1,000, 4 clients (events/s)",
        ("ingest", "batches", "events_per_s"),
    ),
    ("aggregator (events/s)", ("aggregator", "rate")),
    ("baseline (b): naive FastStream subscriber (events/s)", ("naive", "rate")),
    ("baseline (c): faust-streaming, in memory (events/s)", ("faust", "rate")),
    ("aggregator, worst case (events/s)", ("aggregator_worst_case", "rate")),
    ("freshness at 5,000/s, p99 (ms)", ("freshness", "5000", "p99_ms")),
    ("rebuild of the small log (s)", ("scale", "small", "rebuild_s")),
    ("rebuild of the large log (s)", ("scale", "large", "rebuild_s")),
]


def _figure(r: dict[str, Any], *path: str) -> Any:
    value: Any = r
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def broker_comparison(results: dict[str, dict[str, Any]]) -> list[str]:
    """The same figures of the latest run on Apache Kafka and of the last on tansu."""
    pairs = [
        (m, f"{m}-tansu") for m in ("full", "quick") if m in results and f"{m}-tansu" in results
    ]
    lines: list[str] = []
    for kafka_mode, tansu_mode in pairs:
        kafka, tansu = results[kafka_mode], results[tansu_mode]
        if kafka.get("broker", "").startswith("tansu") or "broker" not in kafka:
            continue

        lines += [
            f"### `{kafka['command']}`: Apache Kafka beside tansu",
            "",
            f"| figure | {kafka.get('broker', 'Apache Kafka')} ({kafka['date'][:10]}) | "
            f"tansu ({tansu['date'][:10]}) | Apache Kafka / tansu |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, path in COMPARED:
            a, b = _figure(kafka, *path), _figure(tansu, *path)
            ratio = (
                f"{a / b:.2f}×"
                if isinstance(a, int | float) and isinstance(b, int | float) and b
                else "—"
            )
            shown = [_n(x) if x is not None else "—" for x in (a, b)]
            lines.append(f"| {label} | {shown[0]} | {shown[1]} | {ratio} |")
        memory = kafka.get("servers_memory_mib") or {}
        if "servers_start_s" in kafka or memory:
            lines += [
                "",
                f"The broker and the database started in {kafka.get('servers_start_s', '—')} s "
                "together (`started_stack`: each until it answers); peak resident memory over "
                "the run: "
                + ", ".join(f"{name} {mib:,.0f} MiB" for name, mib in sorted(memory.items()))
                + ". The two runs are on the same machine but not in the same hour: compare "
                "each figure with its baselines of the same run (the aggregator against (b) "
                "and (c)), not across the runs alone.",
            ]
        lines.append("")
    return lines


def write_report(path: Path, results: dict[str, dict[str, Any]]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (full sizes: about 27 minutes here, under the goal of 30, "
        "see *Sizes*) or `make bench QUICK=1` (scaled down, under 5); the raw figures are in "
        "`bench/results-full.json` and "
        "`bench/results-quick.json`. Every ratio is against a baseline measured in the same "
        "run on the same machine. How the harness works and what bounds each figure: after "
        "the figures.",
        "",
    ]
    lines += broker_comparison(results)
    for mode in ("full", "quick", "full-tansu", "quick-tansu"):
        if mode.endswith("-tansu") and mode in results:
            lines += [
                f"The last `{results[mode]['command']}` on tansu, the Kafka-protocol stand-in "
                "the local stack ran on before Apache Kafka (kept for the comparison above):",
                "",
            ]
        if mode in results:
            try:
                lines += section(mode, results[mode])
            except KeyError as missing:
                lines += [
                    f"## `{results[mode]['command']}` — {results[mode]['date']}: incomplete run "
                    f"(no {missing} figures; see bench/results-{mode}.json)",
                    "",
                ]
            load = results[mode].get("load", {})
            if load:
                lines += [
                    "Load average (1, 5, 15 min) at the end of each phase: "
                    + "; ".join(f"{phase} {values}" for phase, values in load.items())
                    + ".",
                    "",
                ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    path.write_text("\n".join(lines).rstrip() + "\n")
