"""The report endpoints: the province's tables as JSON, CSV or XLSX."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.params import Depends
from fastapi.responses import JSONResponse

from shared.adapters.catalog import CatalogCache
from shared.adapters.http_security import Day
from shared.adapters.tables import (
    online_services_table,
    payments_table,
    software_usage_table,
    to_csv,
    to_xlsx,
)
from shared.domain.events import SAFE_TOKEN_PATTERN
from shared.views import Views

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Format = Literal["json", "csv", "xlsx"]
# The three forms a report answers in, for the OpenAPI schema.
FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/json": {},
            "text/csv": {"schema": {"type": "string"}},
            XLSX: {"schema": {"type": "string", "format": "binary"}},
        }
    }
}


def _format(request: Request, explicit: Format | None) -> Format:
    if explicit:
        return explicit
    accept = request.headers.get("accept", "")
    if XLSX in accept:
        return "xlsx"
    if "text/csv" in accept:
        return "csv"
    return "json"


def _render(report: dict[str, Any], fmt: Format, table: Any, filename: str) -> Response:
    if fmt == "json":
        return JSONResponse(report)
    title, header, rows = table(report)
    if fmt == "csv":
        return Response(
            to_csv(header, rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return Response(
        to_xlsx(title, header, rows),
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
    )


def report_routes(views: Views, catalog: CatalogCache, reader: Depends) -> APIRouter:
    router = APIRouter(prefix="/v1/reports", dependencies=[reader], tags=["reports"])

    @router.get("/payments", responses=FORMATS)
    async def payments(
        request: Request,
        date_: Annotated[Day, Query(alias="date", description="the report's local day")],
        format_: Format | None = Query(None, alias="format", description="else by Accept"),
    ) -> Response:
        """Online payments per district: NVTC and fees, number and VND, for the day, its month
        up to that day and its year up to that day, with the total rows (seed report, 4.)."""
        await catalog.reload()
        report = await views.payments_report(date_)
        return _render(report, _format(request, format_), payments_table, f"payments-{date_}")

    @router.get("/online-services", responses=FORMATS)
    async def online_services(
        request: Request,
        date_: Annotated[
            Day, Query(alias="date", description="year to date, up to this local day")
        ],
        format_: Format | None = Query(None, alias="format", description="else by Accept"),
        online_share_threshold: Decimal = Query(Decimal("0.8"), gt=0, le=1),
        processed_online_threshold: Decimal = Query(Decimal("0.5"), gt=0, le=1),
        campaign: str | None = Query(
            None,
            pattern=SAFE_TOKEN_PATTERN,
            description="judge rows against this campaign's rate targets",
        ),
    ) -> Response:
        """Per department and district: share of online services with at least one online
        filing (vs 80%), share of filings processed online (vs 50%), Đạt / Không đạt. With
        `campaign`, each row is judged against that campaign's targets for
        `filing.services_with_online_share` and `filing.processed.online_rate` (the unit's own,
        else its nearest ancestor's)."""
        await catalog.reload()
        report = await views.online_services_report(
            date_, online_share_threshold, processed_online_threshold, campaign
        )
        return _render(
            report, _format(request, format_), online_services_table, f"online-services-{date_}"
        )

    @router.get("/software-usage", responses=FORMATS)
    async def software_usage(
        request: Request,
        first: Annotated[Day, Query(alias="from", description="the range's first local day")],
        last: Annotated[Day, Query(alias="to", description="the range's last local day")],
        format_: Format | None = Query(None, alias="format", description="else by Accept"),
    ) -> Response:
        """Per department and district (seed report, 2.): paperless Ecabinet meetings in the
        range and up to `to`, the shares of the documents issued in the range that were signed
        and handled online, and the share of staff using official e-mail by their latest
        status up to `to`; rates in percent, the total row sum over sum."""
        if first > last:
            raise HTTPException(422, f"from ({first}) is after to ({last})")
        await catalog.reload()
        report = await views.software_usage_report(first, last)
        return _render(
            report,
            _format(request, format_),
            software_usage_table,
            f"software-usage-{first}-{last}",
        )

    return router
