"""What every HTTP service shares: health and Prometheus endpoints, request metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pymongo.errors import PyMongoError

from shared.adapters.metrics import ScrapeCollector, render_metrics

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route and status", ["service", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route and status",
    ["service", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


DATABASE_RETRY_AFTER_S = 5


def add_operational_routes(
    app: FastAPI, service: str, collectors: Sequence[ScrapeCollector] = ()
) -> None:
    """`/healthz`, `/metrics` (with `collectors` computed on each scrape), request metrics and
    the database-down answer."""

    @app.exception_handler(PyMongoError)
    async def database_unavailable(_: Request, exc: PyMongoError) -> JSONResponse:
        # Nothing was accepted (an event already in the log is deduplicated when retried).
        log.warning("database unavailable: %r", exc)
        return JSONResponse(
            {"detail": "the database is unavailable; nothing was done, retry later"},
            503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = await render_metrics(collectors)
        return Response(body, media_type=content_type)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, never the raw path: raw paths would be unbounded label values.
        label = getattr(route, "path", "unmatched")
        status = str(response.status_code)
        HTTP_REQUESTS.labels(service, label, status).inc()
        HTTP_LATENCY.labels(service, label, status).observe(time.perf_counter() - started)
        return response
