"""The live monitoring dashboard at `/`, and the daily series its chart draws.

The page is three static files (HTML, JS, CSS) in `dashboard/`: no build step, nothing loaded
from the internet. It holds no data and no secret, so it is served without a token; the script
asks for a viewer token, keeps it in sessionStorage and sends it as a bearer header to the JSON
endpoints and to `GET /v1/stream` (read with fetch, as EventSource cannot send headers), so the
token never appears in a URL, a referrer or an access log.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from services.api.deps import PERIOD_DOC, parse_period
from shared.adapters.http_security import Day
from shared.domain.events import UNIT_ID_PATTERN
from shared.views import Views

ASSETS = Path(__file__).with_name("dashboard")
MAX_SERIES_DAYS = 366

# Only our own files run, styles come from our stylesheet, and data only from this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-cache",
}
# Only over HTTPS (the proxy's X-Forwarded-Proto, from FORWARDED_ALLOW_IPS): a browser that saw
# it once refuses plain HTTP to this host for a year.
HSTS = "max-age=31536000"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


def _asset(request: Request, name: str) -> Response:
    # Read on each request (three small files): an upgraded page is served without a restart.
    headers = dict(SECURITY_HEADERS)
    if request.url.scheme == "https":
        headers["Strict-Transport-Security"] = HSTS
    return Response((ASSETS / name).read_bytes(), media_type=_TYPES[name], headers=headers)


def _series_days(first: date | None, last: date | None, period: str | None) -> tuple[date, date]:
    """The days a series covers: `from` and `to`, or a bounded period's."""
    if period is None:
        if first is None or last is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "give `from` and `to`, or `period`"
            )
        return first, last
    if first is not None or last is not None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give `period` or `from` and `to`, not both"
        )
    bounds = parse_period(period).date_range()
    if bounds is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "a series needs a period of days, not all"
        )
    return bounds


def dashboard_routes(views: Views, reader: Depends) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        return _asset(request, "index.html")

    @router.get("/dashboard/{name}", include_in_schema=False)
    async def asset(request: Request, name: str) -> Response:
        if name not in _TYPES or name == "index.html":
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        return _asset(request, name)

    @router.get("/v1/series", dependencies=[reader], tags=["dashboard"])
    async def series(
        unit_id: Annotated[str, Query(pattern=UNIT_ID_PATTERN)],
        metric: Annotated[str, Query(max_length=64)],
        from_: Annotated[
            Day | None, Query(alias="from", description="first local day (or give `period`)")
        ] = None,
        to: Annotated[
            Day | None,
            Query(description="last local day (at most 366 days after `from`; or `period`)"),
        ] = None,
        period: Annotated[
            str | None,
            Query(
                max_length=32,
                description=f"instead of `from` and `to`, the days of a period of at most "
                f"{MAX_SERIES_DAYS} days: {PERIOD_DOC} (not all)",
            ),
        ] = None,
    ) -> JSONResponse:
        """A unit's value of a metric for each local day of [from, to] or of a period, every
        day listed (the dashboard's daily chart; sums of these days equal `/v1/totals` for any
        period)."""
        first, last = _series_days(from_, to, period)
        if last < first or last - first >= timedelta(days=MAX_SERIES_DAYS):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"`to` must be from `from` up to {MAX_SERIES_DAYS} days after it"
                if period is None
                else f"a series covers at most {MAX_SERIES_DAYS} days",
            )
        return JSONResponse(await views.daily_series(unit_id, metric, first, last))

    return router
