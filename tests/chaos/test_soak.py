"""`make chaos`: the fault scenarios as a steady soak (10 minutes by default).

Events arrive at a steady rate while, during the first 60% of the soak, something breaks
every `CHAOS_FAULT_EVERY_S` seconds (kill -9 of the aggregator, kill -9 and restart of the
broker, of the database, SIGTERM of the aggregator). The last 40% runs calm. At the end every
total must equal an independent recount of what was acknowledged, and no service's memory may
have grown beyond the stated bound between the end of the warm-up and the end of the soak
(ingest and the API run through it all; the aggregator is measured since its last restart).

CHAOS_SECONDS (600), CHAOS_RATE (events/s, 200) and CHAOS_FAULT_EVERY_S (45) tune it.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from tests.conftest import Pipeline
from tests.faults.harness import (
    BackgroundDelivery,
    artifacts_path,
    batches_of,
    realistic_events,
    stored_totals,
    verdict,
)

SOAK_S = float(os.environ.get("CHAOS_SECONDS", "600"))
RATE = float(os.environ.get("CHAOS_RATE", "200"))
FAULT_EVERY_S = float(os.environ.get("CHAOS_FAULT_EVERY_S", "45"))
WARM_UP_S = min(60.0, SOAK_S / 10)
# Ingest remembers up to INGEST_RECENT_IDS (200,000) ids at about 150 bytes each, by design:
# about 30 MiB once full. Anything beyond that and ordinary allocator noise is a leak.
GROWTH_BOUND_MIB = 64.0
FAULTS = ("aggregator kill -9", "broker restart", "database restart", "aggregator SIGTERM")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def test_soak_with_faults_then_calm(line: Pipeline) -> None:
    rng = random.Random(99)
    count = int(SOAK_S * RATE)
    events = realistic_events(count, 42, span_days=7)
    background = BackgroundDelivery(
        line.url("ingest", "/v1/events"),
        line.admin_token,
        batches_of(events, 500),
        concurrency=4,
        deadline_s=SOAK_S * 2 + 120,
        events_per_s=RATE,
    )
    started = background.started
    time.sleep(WARM_UP_S)
    memory_start = {name: rss_mib(p.popen.pid) for name, p in line.services.items()}
    faults: list[str] = []
    stack = line.stack
    while time.monotonic() - started < SOAK_S * 0.6:
        time.sleep(rng.uniform(FAULT_EVERY_S * 0.5, FAULT_EVERY_S * 1.5))
        fault = rng.choice(FAULTS)
        faults.append(fault)
        if fault == "aggregator kill -9":
            line.kill("aggregator")
            line.start("aggregator")
        elif fault == "aggregator SIGTERM":
            assert line.stop("aggregator") == 0
            line.start("aggregator")
        elif fault == "broker restart":
            stack.kill(stack.process("kafka"))
            time.sleep(2)
            stack.start_kafka()
        else:
            stack.kill(stack.process("secantusd"))
            time.sleep(2)
            stack.start_database()
    # The aggregator's memory counts from its last (re)start, after a warm-up of its own.
    time.sleep(WARM_UP_S)
    memory_start["aggregator"] = rss_mib(line.services["aggregator"].popen.pid)
    delivery = background.join(timeout_s=SOAK_S * 2 + 120)
    line.wait_reflected(timeout_s=600)
    memory_end = {name: rss_mib(p.popen.pid) for name, p in line.services.items()}
    stored = stored_totals(line.url("api", ""), line.admin_token)
    result = verdict(f"soak {SOAK_S:.0f} s at {RATE:.0f}/s", delivery, stored, started, count)
    result.record()
    growth = {name: round(memory_end[name] - memory_start[name], 1) for name in memory_end}
    report = {
        "seconds": SOAK_S,
        "rate": RATE,
        "faults": faults,
        "memory_start_MiB": {k: round(v, 1) for k, v in memory_start.items()},
        "memory_end_MiB": {k: round(v, 1) for k, v in memory_end.items()},
        "growth_MiB": growth,
        "growth_bound_MiB": GROWTH_BOUND_MIB,
        "verdict": result.__dict__,
    }
    print(json.dumps(report, ensure_ascii=False))
    artifacts_path("chaos.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    assert result.acknowledged == count, result
    assert result.cells_wrong == [] and result.difference == 0, result
    assert len(faults) >= 1
    assert all(g <= GROWTH_BOUND_MIB for g in growth.values()), growth
