"""Prometheus exposition shared by the three services (the aggregator's own metrics are in
`shared.adapters.aggregator_metrics`, imported by the aggregator only).

Multiple worker processes: each service runs one uvicorn worker per process today (scaling is
by more processes or replicas, each scraped on its own). If a service is ever run with several
workers behind one port (gunicorn, `uvicorn --workers`), set `PROMETHEUS_MULTIPROC_DIR` to an
empty directory per start: prometheus-client then keeps each worker's samples in files there
and `/metrics` sums them, so counts are not those of whichever worker answered the scrape.
Gauges say how they combine across workers (`multiprocess_mode`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ScrapeCollector(Collector, Protocol):
    """A collector whose samples are computed asynchronously (from the database) before each
    scrape; `collect` then yields what `refresh` computed."""

    async def refresh(self) -> None: ...


async def render_metrics(collectors: Sequence[ScrapeCollector] = ()) -> tuple[bytes, str]:
    """The text exposition of this process (or of every worker, in multiprocess mode) plus
    `collectors`, and its content type."""
    for collector in collectors:
        await collector.refresh()
    if os.environ.get(MULTIPROC_ENV):
        # A fresh registry per scrape, as prometheus-client documents for multiprocess mode:
        # the process-local default registry would report one worker's counts only.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    if not collectors:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    # Computed values (same in every worker) are added once, next to the process metrics.
    combined = CollectorRegistry(auto_describe=False)
    combined.register(_Union([registry, *collectors]))
    return generate_latest(combined), CONTENT_TYPE_LATEST


class _Union(Collector):
    def __init__(self, parts: Sequence[Collector]) -> None:
        self._parts = parts

    def collect(self) -> Iterable[Any]:
        for part in self._parts:
            yield from part.collect()
