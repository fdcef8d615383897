"""Several worker processes behind one port: with PROMETHEUS_MULTIPROC_DIR set, `/metrics`
reports the sum of every worker's counts, not those of the worker that answered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WORKER = """
from shared.adapters.http import HTTP_REQUESTS
HTTP_REQUESTS.labels("ingest", "/v1/events", "202").inc(3)
"""
SCRAPE = """
import asyncio
from shared.adapters.metrics import render_metrics
print(asyncio.run(render_metrics())[0].decode())
"""


def run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_counts_of_several_workers_add_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    run(WORKER, env)
    run(WORKER, env)
    exposition = run(SCRAPE, env)
    line = 'http_requests_total{route="/v1/events",service="ingest",status="202"} 6.0'
    assert line in exposition, exposition


def test_without_the_directory_a_process_reports_its_own_counts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = str(REPO)
    exposition = run(WORKER + SCRAPE, env)
    line = 'http_requests_total{route="/v1/events",service="ingest",status="202"} 3.0'
    assert line in exposition, exposition
