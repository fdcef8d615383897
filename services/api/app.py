"""API: units, live totals, campaigns, rankings, reports and tokens.

Reads what the aggregator keeps (through `shared.views`); writes only configuration: tokens,
campaigns, targets, units and the services they offer."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from services.api import routes
from services.api.dashboard import dashboard_routes
from services.api.deps import PERIOD_DOC, Actor, parse_period
from services.api.reports import report_routes
from shared.adapters.auth import Authenticator, bearer_token, rate_limits, require_admin
from shared.adapters.catalog import CatalogCache
from shared.adapters.docs import add_offline_docs
from shared.adapters.http import add_operational_routes
from shared.adapters.http_security import ERROR_RESPONSES, Day, ErrorBody, bounded, harden
from shared.adapters.mongo import Store, connect
from shared.adapters.registry_store import RegistryCache, RegistryStore
from shared.adapters.security_store import SecurityStore
from shared.campaign_gauges import CampaignGauges
from shared.domain.campaigns import Campaign, Target, validate_target
from shared.domain.events import SAFE_TOKEN_PATTERN, SERVICE_ID_PATTERN, UNIT_ID_PATTERN
from shared.domain.periods import today_local
from shared.domain.safety import unsafe_text_reason
from shared.domain.units import InvalidCatalog, Unit, UnitLevel, rollup_shift
from shared.live import LiveHub, until_revoked
from shared.settings import Settings, get_settings
from shared.views import Backfilling, NotFound, Views, json_number

UnitId = Annotated[str, Field(pattern=UNIT_ID_PATTERN)]
ServiceId = Annotated[str, Field(pattern=SERVICE_ID_PATTERN)]
# Ids that name documents (campaigns, tokens): validated before they reach a query.
CampaignId = Annotated[str, Path(pattern=SAFE_TOKEN_PATTERN)]
TokenName = Annotated[str, Path(pattern=SAFE_TOKEN_PATTERN)]
UnitPath = Annotated[str, Path(pattern=UNIT_ID_PATTERN)]


def _safe_name(value: str) -> str:
    reason = unsafe_text_reason(value)
    if reason:
        raise ValueError(reason)
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_safe_name)]
# One `unit_id:metric:period` of `/v1/stream`: a unit id (64), a metric (64) and a period
# (32) with their colons fit; a 60 KB one is refused before anything quotes it.
WatchItem = Annotated[str, StringConstraints(max_length=200)]


class UnitOut(BaseModel):
    id: str
    name: str
    level: str
    parent_id: str | None
    merged_into: str | None = Field(None, description="set once the unit was merged into another")


class UnitIn(BaseModel):
    id: UnitId
    name: SafeName
    level: UnitLevel
    parent_id: UnitId | None


class MoveIn(BaseModel):
    parent_id: UnitId


class MergeIn(BaseModel):
    into: UnitId


class Total(BaseModel):
    unit_id: str
    metric: str
    period: str
    value: int | float | None = Field(
        description="Counts and VND are exact integers; a rate is numerator / denominator "
        "(null when the denominator is 0)."
    )
    as_of: datetime | None = Field(
        description="Accepted events up to this time are reflected (null until the aggregator "
        "has caught up once)."
    )
    numerator: int | None = Field(None, description="rates only")
    denominator: int | None = Field(None, description="rates only")


class TokenRequest(BaseModel):
    name: str = Field(pattern=SAFE_TOKEN_PATTERN)
    role: Literal["field", "viewer"]
    scope: list[UnitId] = Field(default_factory=list, max_length=1000)
    expires_at: AwareDatetime | None = Field(
        None, description="the token stops working at this instant (default: never)"
    )
    rate_limit: int | None = Field(
        None,
        ge=0,
        le=1_000_000,
        description="requests per rate-limit window for this token, instead of its role's "
        "default (0: unlimited)",
    )


class TokenCreated(BaseModel):
    token: str


class CampaignIn(BaseModel):
    name: SafeName
    starts: Day
    ends: Day
    lagging_threshold: float = Field(
        0.9, gt=0, le=1, description="lagging when value < expected × this share"
    )

    @model_validator(mode="after")
    def _ordered(self) -> CampaignIn:
        if self.ends < self.starts:
            raise ValueError("ends is before starts")
        return self


class TargetIn(BaseModel):
    unit_id: UnitId
    metric: str = Field(max_length=64)
    target: Decimal = Field(description="a count or VND; for a rate, a share in (0, 1]")


class ServicesIn(BaseModel):
    services: list[ServiceId] = Field(max_length=10_000)


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    role: str
    client: str | None
    action: str
    target: str
    details: dict[str, Any]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    client = connect(settings.mongodb_uri, app_name="api")
    store = Store(client, settings.mongodb_db)
    catalog = CatalogCache(store)
    security = SecurityStore(store)
    registry_store = RegistryStore(store)
    registry_cache = RegistryCache(registry_store)
    views = Views(store, catalog, settings.events_topic, settings.event_partitions, registry_cache)
    authenticator = Authenticator(store, settings.admin_token, security, rate_limits(settings))
    reader = Depends(authenticator.principal)
    admin_principal = require_admin(authenticator.principal)

    async def admin_actor(request: Request) -> Actor:
        principal = await admin_principal(request)
        return Actor(principal, request.client.host if request.client else None)

    admin = Depends(admin_actor)

    async def audit(actor: Actor, action: str, target: str, **details: Any) -> None:
        await security.record(actor.principal, action, target, details, actor.client)

    hub = LiveHub(views)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_indexes()
        await security.ensure_indexes()
        await catalog.reload()
        # The shipped registry, if `init` has not stored one (a database set up before it).
        await registry_store.install_shipped()
        await registry_cache.reload()
        hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await client.close()

    app = FastAPI(
        title="Campaign tracker — API",
        version="1",
        lifespan=lifespan,
        description="Live totals, progress against targets, rankings, reports, units and "
        "tokens (contract v1).",
        responses={
            **ERROR_RESPONSES,
            409: {
                "model": ErrorBody,
                "description": "a conflict with the state: an indicator still backfilling "
                "(its status named), a name taken, an indicator in use",
            },
        },
        # Swagger UI from a pinned package, not a CDN (shared/adapters/docs.py); no ReDoc.
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    # Before the operational routes: their request metrics then count what the guard refuses.
    harden(app, "api", settings.cors_origin_list, settings.api_max_body_bytes)
    add_operational_routes(app, "api", [CampaignGauges(store, catalog, views)])

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        # Bounded: the message may quote the unit or metric asked for.
        return JSONResponse({"detail": bounded(str(exc))}, status.HTTP_404_NOT_FOUND)

    @app.exception_handler(Backfilling)
    async def backfilling(_: Request, exc: Backfilling) -> JSONResponse:
        return JSONResponse(
            {"detail": bounded(str(exc)), "status": "backfilling"}, status.HTTP_409_CONFLICT
        )

    # -- units ---------------------------------------------------------------------------

    @app.get("/v1/units", response_model=list[UnitOut], dependencies=[reader])
    async def list_units() -> list[UnitOut]:
        tree = await catalog.reload()
        return [
            UnitOut(
                id=u.id,
                name=u.name,
                level=u.level.value,
                parent_id=u.parent_id,
                merged_into=u.merged_into,
            )
            for u in tree.units()
        ]

    async def reorganise(unit: Unit) -> UnitOut:
        """Put `unit` in its new place and move its history with it (see Store.reorganise)."""
        before = await catalog.reload()
        try:
            after = before.with_unit(unit)
        except InvalidCatalog as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if unit.id in before:
            remove_from, add_to = rollup_shift(before, after, unit.id)
        else:
            remove_from, add_to = [], []
        partitions = await store.partition_count(settings.events_topic, settings.event_partitions)
        await store.reorganise(unit, remove_from, add_to, settings.events_topic, partitions)
        await catalog.reload()
        return UnitOut(
            id=unit.id,
            name=unit.name,
            level=unit.level.value,
            parent_id=unit.parent_id,
            merged_into=unit.merged_into,
        )

    @app.post("/v1/units", status_code=201, response_model=UnitOut, responses={409: {}})
    async def add_unit(body: UnitIn, actor: Actor = admin) -> UnitOut:
        tree = await catalog.reload()
        if body.id in tree:
            raise HTTPException(status.HTTP_409_CONFLICT, f"unit {body.id!r} exists")
        if body.parent_id is not None and body.parent_id not in tree:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown parent {body.parent_id!r}"
            )
        added = await reorganise(Unit(body.id, body.name, body.level, body.parent_id))
        await audit(actor, "unit.add", body.id, **body.model_dump(mode="json"))
        return added

    @app.post("/v1/units/{unit_id}/move", response_model=UnitOut)
    async def move_unit(unit_id: UnitPath, body: MoveIn, actor: Actor = admin) -> UnitOut:
        """Move a unit (with everything under it) under another parent. Its history moves with
        it: every total of the old and new ancestors is recomputed to match, for all periods."""
        tree = await catalog.reload()
        unit = tree.get(unit_id)
        if unit is None:
            raise NotFound(f"unknown unit {unit_id!r}")
        if body.parent_id not in tree:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown parent {body.parent_id!r}"
            )
        moved = await reorganise(replace(unit, parent_id=body.parent_id))
        await audit(actor, "unit.move", unit_id, parent_id=body.parent_id)
        return moved

    @app.post("/v1/units/{unit_id}/merge", response_model=UnitOut)
    async def merge_unit(unit_id: UnitPath, body: MergeIn, actor: Actor = admin) -> UnitOut:
        """Merge a unit into another: its history counts for the unit it joins (and that unit's
        ancestors) from now on, it still answers for itself, and it takes no new events."""
        tree = await catalog.reload()
        unit = tree.get(unit_id)
        if unit is None:
            raise NotFound(f"unknown unit {unit_id!r}")
        if body.into not in tree or body.into == unit_id:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot merge into {body.into!r}"
            )
        merged = await reorganise(replace(unit, parent_id=body.into, merged_into=body.into))
        await audit(actor, "unit.merge", unit_id, into=body.into)
        return merged

    @app.put("/v1/units/{unit_id}/services", status_code=204)
    async def put_services(unit_id: UnitPath, body: ServicesIn, actor: Actor = admin) -> Response:
        """The online public services this unit offers (the denominator of
        `filing.services_with_online_share`)."""
        tree = await catalog.covering([unit_id])
        if unit_id not in tree:
            raise NotFound(f"unknown unit {unit_id!r}")
        await store.put_service_catalog(unit_id, body.services)
        await audit(actor, "unit.services", unit_id, services=body.services)
        return Response(status_code=204)

    @app.get("/v1/units/{unit_id}/services", dependencies=[reader])
    async def get_services(unit_id: UnitPath) -> dict[str, list[str]]:
        catalogs = await store.service_catalogs_by_unit()
        return {"services": sorted(catalogs.get(unit_id, frozenset()))}

    # -- totals and rankings -------------------------------------------------------------

    @app.get(
        "/v1/totals",
        response_model=Total,
        dependencies=[reader],
        responses={
            404: {"description": "unknown unit or metric"},
            409: {"description": "the indicator is backfilling (its status is named)"},
            422: {"description": "bad period"},
        },
    )
    async def get_total(
        unit_id: str = Query(pattern=UNIT_ID_PATTERN),
        metric: str = Query(max_length=64),
        period: str = Query(max_length=32, description=PERIOD_DOC),
    ) -> JSONResponse:
        return JSONResponse(await views.total(unit_id, metric, parse_period(period)))

    @app.get("/v1/rankings", dependencies=[reader])
    async def get_rankings(
        metric: str = Query(max_length=64),
        period: str = Query(max_length=32, description=PERIOD_DOC),
        level: UnitLevel = UnitLevel.DISTRICT,
    ) -> JSONResponse:
        """Units of a level ordered by value (or rate), highest first; ties share a rank."""
        await catalog.reload()
        return JSONResponse(await views.rankings(metric, parse_period(period), level))

    # -- campaigns -------------------------------------------------------------------------

    @app.put("/v1/campaigns/{campaign_id}", responses={201: {"description": "created"}})
    async def put_campaign(
        campaign_id: CampaignId, body: CampaignIn, actor: Actor = admin
    ) -> JSONResponse:
        campaign = Campaign(campaign_id, body.name, body.starts, body.ends, body.lagging_threshold)
        created = await store.put_campaign(campaign)
        await audit(actor, "campaign.put", campaign_id, **body.model_dump(mode="json"))
        return JSONResponse(
            {"id": campaign_id, **body.model_dump(mode="json")}, 201 if created else 200
        )

    @app.get("/v1/campaigns", dependencies=[reader])
    async def list_campaigns() -> list[dict[str, object]]:
        return [
            {
                "id": c.id,
                "name": c.name,
                "starts": c.starts.isoformat(),
                "ends": c.ends.isoformat(),
                "lagging_threshold": c.lagging_threshold,
            }
            for c in await store.list_campaigns()
        ]

    @app.put("/v1/campaigns/{campaign_id}/targets")
    async def put_targets(
        campaign_id: CampaignId, body: list[TargetIn], actor: Actor = admin
    ) -> dict[str, int]:
        """Set targets per (unit, metric); targets of pairs not named stay as they are."""
        if await store.get_campaign(campaign_id) is None:
            raise NotFound(f"unknown campaign {campaign_id!r}")
        await registry_cache.fresh(now=True)  # the indicators a target may name
        tree = await catalog.covering(t.unit_id for t in body)
        problems = []
        for index, item in enumerate(body):
            if item.unit_id not in tree:
                problems.append(
                    {
                        "index": index,
                        "field": "unit_id",
                        "message": f"unknown unit {item.unit_id!r}",
                    }
                )
            reason = validate_target(item.metric, item.target)
            if reason:
                field = "metric" if "metric" in reason else "target"
                problems.append({"index": index, "field": field, "message": reason})
        if problems:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
        count = await store.put_targets(
            campaign_id, [Target(t.unit_id, t.metric, t.target) for t in body]
        )
        await audit(
            actor,
            "campaign.targets",
            campaign_id,
            targets=[t.model_dump(mode="json") for t in body],
        )
        return {"targets": count}

    @app.get("/v1/campaigns/{campaign_id}/targets", dependencies=[reader])
    async def get_targets(campaign_id: CampaignId) -> list[dict[str, object]]:
        return [
            {
                "unit_id": t.unit_id,
                "metric": t.metric,
                "target": json_number(t.target),
            }
            for t in await store.targets_of(campaign_id)
        ]

    @app.get("/v1/campaigns/{campaign_id}/progress", dependencies=[reader])
    async def get_progress(
        campaign_id: CampaignId,
        unit_id: str = Query(pattern=UNIT_ID_PATTERN),
        at: Annotated[
            Day | None,
            Query(description="evaluate as of this local day (default: today in Asia/Ho_Chi_Minh)"),
        ] = None,
    ) -> JSONResponse:
        """Progress of a unit and each of its direct children against the campaign's targets."""
        today = at or today_local(datetime.now(UTC))
        return JSONResponse(await views.progress(campaign_id, unit_id, today))

    # What the routers read through `services.api.deps`.
    app.state.authenticator = authenticator
    app.state.security = security
    app.state.registry_store = registry_store
    app.state.registry_cache = registry_cache
    app.state.store = store
    app.include_router(routes.event_types.router)
    app.include_router(routes.indicators.router)
    app.include_router(report_routes(views, catalog, reader))
    app.include_router(dashboard_routes(views, reader))

    @app.get(
        "/v1/stream",
        dependencies=[reader],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        watch: list[WatchItem] = Query(
            min_length=1,
            max_length=200,
            description="totals to watch, each `unit_id:metric:period` "
            "(e.g. `binh-phuoc:eid.activated:day:2024-04-22`)",
        ),
    ) -> StreamingResponse:
        """Server-Sent Events: an `event: total` message with each watched total at once, then
        one whenever it changes (the body of `/v1/totals`, with `as_of`)."""
        keys: set[tuple[str, str, str]] = set()
        for item in watch:
            unit_id, _, rest = item.partition(":")
            metric, _, period = rest.partition(":")
            parsed = parse_period(period)
            await views.total(unit_id, metric, parsed)  # 404 for unknown ones
            keys.add((unit_id, metric, str(parsed)))
        token = bearer_token(request)
        return StreamingResponse(
            until_revoked(
                hub.stream(frozenset(keys)),
                lambda: authenticator.still_valid(token),
                settings.stream_reauth_s,
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- tokens ----------------------------------------------------------------------------

    @app.post("/v1/tokens", status_code=201, response_model=TokenCreated, responses={409: {}})
    async def create_token(body: TokenRequest, actor: Actor = admin) -> TokenCreated:
        tree = await catalog.covering(body.scope)
        unknown = [unit_id for unit_id in body.scope if unit_id not in tree]
        if unknown:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown units in scope: {unknown}"
            )
        if body.role == "field" and not body.scope:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "a field token needs a non-empty scope"
            )
        if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "expires_at is not in the future"
            )
        token = secrets.token_urlsafe(32)
        if not await store.create_token(token, body.name, body.role, body.scope):
            raise HTTPException(status.HTTP_409_CONFLICT, f"a token named {body.name!r} exists")
        # Before the token is handed out, so it is never usable without its expiry or limit.
        await security.set_token_policy(
            token, expires_at=body.expires_at, rate_limit=body.rate_limit
        )
        # What was asked for, never the token itself.
        await audit(actor, "token.create", body.name, **body.model_dump(mode="json"))
        return TokenCreated(token=token)

    @app.delete("/v1/tokens/{name}", status_code=204)
    async def revoke_token(name: TokenName, actor: Actor = admin) -> Response:
        if not await store.revoke_token(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token named {name!r}")
        await audit(actor, "token.revoke", name)
        return Response(status_code=204)

    # -- audit -----------------------------------------------------------------------------

    @app.get("/v1/audit", response_model=list[AuditEntry])
    async def get_audit(
        _: Actor = admin, limit: int = Query(100, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        """The admin actions (campaigns, targets, units, tokens), newest first: who (the
        token's name and role, the client's address), what (action, target, what was asked
        for) and when."""
        return await security.audit_entries(limit)

    return app
