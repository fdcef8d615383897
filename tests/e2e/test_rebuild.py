"""Rebuild and reconcile from the event log, on the real broker and database.

Reconcile finds exactly the totals someone changed behind the aggregator's back; rebuild
recomputes everything from the log into new collections and switches to them while ingest
goes on, after which every total equals an independent recount of what was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
from pymongo import MongoClient

from deploy.local.stack import REPO, LocalStack
from tests.conftest import (
    Pipeline,
    certification_and_voids,
    post_many,
    running_pipeline,
)
from tests.faults.harness import METRICS, UNITS, realistic_events, recount, stored_totals


def admin(
    line: Pipeline, *args: str, timeout_s: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.admin", *args],
        env={**os.environ, **line.env, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


class SteadyPoster:
    """Posts batches of fresh events, one after another, until stopped: ingest goes on for as
    long as the test needs it to, however slow the machine."""

    def __init__(self, line: Pipeline, seed: int) -> None:
        self.acknowledged: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None

        def run() -> None:
            try:
                with httpx.Client(timeout=60) as client:
                    n = 0
                    while not self._stop.is_set():
                        n += 1
                        batch = realistic_events(200, seed * 100_000 + n, span_days=30)
                        response = client.post(
                            line.url("ingest", "/v1/events"), json=batch, headers=line.headers()
                        )
                        assert response.status_code == 202, response.text
                        self.acknowledged.extend(batch)
                        time.sleep(0.05)
            except BaseException as exc:  # handed to the test thread in stop()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(120)
        if self._error is not None:
            raise self._error
        return self.acknowledged


def test_reconcile_finds_tampering_and_rebuild_repairs_it_while_ingest_goes_on(
    own_pipeline: Pipeline,
) -> None:
    line = own_pipeline
    first = realistic_events(6_000, 21, span_days=30)
    asyncio.run(post_many(line, first))
    asyncio.run(post_many(line, certification_and_voids(first)))
    line.wait_reflected()

    healthy = admin(line, "reconcile")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout == ""

    # Someone adds 5 to one unit's own month and day total, behind the aggregator's back.
    database = MongoClient(line.stack.mongodb_uri)[line.env["MONGODB_DB"]]
    doc = database["totals"].find_one({"u": "dong-xoai", "t.cccd:issued": {"$gt": 0}})
    assert doc is not None
    day = next(d for d, values in doc["d"].items() if values.get("cccd:issued"))
    database["totals"].update_one(
        {"_id": doc["_id"]}, {"$inc": {"t.cccd:issued": 5, f"d.{day}.cccd:issued": 5}}
    )
    tampered = admin(line, "reconcile")
    assert tampered.returncode == 1, tampered.stderr
    month_total, day_total = doc["t"]["cccd:issued"], doc["d"][day]["cccd:issued"]
    assert [json.loads(row) for row in tampered.stdout.splitlines()] == [
        {
            "unit_id": "dong-xoai",
            "metric": "cccd.issued",
            "period": f"day:{doc['m']}-{day}",
            "stored": day_total + 5,
            "recounted": day_total,
        },
        {
            "unit_id": "dong-xoai",
            "metric": "cccd.issued",
            "period": f"month:{doc['m']}",
            "stored": month_total + 5,
            "recounted": month_total,
        },
    ]

    poster = SteadyPoster(line, 22)
    time.sleep(1)
    # Reconcile replayed the log in batches of the default size (6,000+ records: a batch's
    # ledger entries over two documents); the rebuild takes it in many small ones.
    rebuilt = admin(line, "rebuild", "--grace-seconds", "2", env={"REPLAY_BATCH_RECORDS": "700"})
    assert rebuilt.returncode == 0, rebuilt.stderr
    batches = int(re.search(r"in (\d+) batches", rebuilt.stdout)[1])  # type: ignore[index]
    assert batches >= len(first) // 700
    assert poster.running, "ingest stopped before the rebuild switched: not a live rebuild"
    second = poster.stop()
    assert second, "nothing was posted while the rebuild ran"
    line.wait_reflected()

    generation = database["meta"].find_one({"_id": "generation"})
    assert generation is not None and generation["name"] in rebuilt.stdout
    assert "totals" not in database.list_collection_names()  # the replaced generation is gone
    voided = {e["event_id"] for e in first[:300]}
    kept = [e for e in first if e["event_id"] not in voided] + second
    expected = recount(kept)
    stored = stored_totals(line.url("api", ""), line.admin_token)
    wrong = {
        key: (value, expected.get(key, 0))
        for key, value in stored.items()
        if value != expected.get(key, 0)
    }
    assert wrong == {}
    assert len(stored) == len(UNITS) * len(METRICS)
    assert line.total("so-tu-phap", "certification.completed", "year:2025")["value"] == 33

    after = admin(line, "reconcile")
    assert after.returncode == 0, after.stderr
    assert after.stdout == ""


def test_rebuild_through_log_end_counts_the_whole_log_with_the_aggregator_stopped(
    infra: LocalStack,
) -> None:
    """With no aggregator the served totals reflect nothing, so a plain rebuild may switch
    after its first batch; `--through-log-end` must first replay everything the log held when
    it started. A pipeline of its own: the log must hold only these events."""
    with running_pipeline(infra) as line:
        line.stop("aggregator")
        events = realistic_events(3_000, 31, span_days=30)
        asyncio.run(post_many(line, events))

        rebuilt = admin(
            line,
            "rebuild",
            "--grace-seconds",
            "0",
            "--through-log-end",
            # A line after every batch: its stderr is a pipe, not a terminal, so no bar.
            env={"REPLAY_BATCH_RECORDS": "500", "PROGRESS_EVERY_S": "0.001"},
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert f"rebuilt {len(events)} records in " in rebuilt.stdout
        progress = re.findall(
            r"^rebuild: replaying the log: ([\d,]+) of ([\d,]+) records \([\d.]+%\),"
            r" [\d,]+ records/s(.*)$",
            rebuilt.stderr,
            re.MULTILINE,
        )
        assert len(progress) >= 3, rebuilt.stderr
        done = [int(d.replace(",", "")) for d, _, _ in progress]
        assert done == sorted(done) and done[-1] == len(events), rebuilt.stderr
        assert {int(t.replace(",", "")) for _, t, _ in progress} == {len(events)}
        assert any("left" in rest for _, _, rest in progress[:-1]), rebuilt.stderr
        assert "done in" in progress[-1][2], rebuilt.stderr
        assert "\r" not in rebuilt.stderr  # no bar redrawn in a log

        expected = recount(events)
        deadline = time.monotonic() + 15
        while True:  # the API follows the new generation within a second
            stored = stored_totals(line.url("api", ""), line.admin_token)
            wrong = {
                key: (value, expected.get(key, 0))
                for key, value in stored.items()
                if value != expected.get(key, 0)
            }
            if not wrong or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert wrong == {}
