"""Ingest: field apps and portals post events; each accepted event is durably in Kafka first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel

from shared.adapters.auth import Authenticator, rate_limits
from shared.adapters.catalog import CatalogCache
from shared.adapters.docs import add_offline_docs
from shared.adapters.http import add_operational_routes
from shared.adapters.http_security import ERROR_RESPONSES, bounded_detail, harden, is_json_utf8
from shared.adapters.kafka import BrokerUnavailable, EventPublisher, make_broker
from shared.adapters.mongo import Store, connect
from shared.adapters.registry_store import RegistryCache, RegistryStore
from shared.adapters.security_store import SecurityStore
from shared.dedup import InFlightIds, RecentIds
from shared.domain.access import Principal, Role
from shared.domain.events import Event
from shared.domain.intake import (
    Problem,
    RejectedBatch,
    foreign_records,
    foreign_voids,
    out_of_scope,
    outside_validity,
    parse_events,
    resolve_unit_codes,
    split_duplicates,
    unknown_units,
    void_probes,
)
from shared.domain.periods import today_local
from shared.domain.registry import current_registry
from shared.domain.safety import UnsafeInput, local_day_start, strict_json
from shared.domain.units import UnitTree
from shared.settings import Settings, get_settings

MAX_BODY_BYTES = 1 << 20
RETRY_AFTER_S = 5

EVENTS_ACCEPTED = Counter("ingest_events_accepted_total", "Events published and acknowledged")
EVENTS_DUPLICATE = Counter("ingest_events_duplicate_total", "Events whose id was already accepted")
EVENTS_REJECTED = Counter("ingest_events_rejected_total", "Requests rejected", ["reason"])
PUBLISH_LATENCY = Histogram(
    "ingest_publish_duration_seconds",
    "Time until the broker acknowledged a request's events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class EventsAccepted(BaseModel):
    accepted: int
    duplicates: int


class Problems(BaseModel):
    detail: str
    errors: list[dict[str, Any]]


def _problem_response(
    status: int, detail: str, problems: list[Problem], reason: str
) -> JSONResponse:
    EVENTS_REJECTED.labels(reason).inc()
    # Bounded: a problem may name an attribute key of the client's (up to the body's size).
    errors = bounded_detail([problem.to_dict() for problem in problems])
    return JSONResponse({"detail": detail, "errors": errors}, status)


async def _foreign_events(
    store: Store, events: list[Event], tree: UnitTree, principal: Principal
) -> list[Problem]:
    """Events that would touch another unit's numbers, as far as ingest can know: events about
    a record another unit owns, and voids of an event the poster may see in another unit
    (the aggregator refuses the rest: a record's events there, and a void counts nothing
    outside its own unit whatever it names)."""
    registry = current_registry()
    owners = await store.record_owners(r for e in events if (r := registry.record_of(e)))
    foreign = foreign_records(events, owners)
    if not any(event.voids for event in events):
        return foreign
    visible = [
        unit.id
        for unit in tree.units()
        if principal.is_admin or tree.is_within(unit.id, principal.scope)
    ]
    probes = void_probes(events, visible)
    if probes:
        own_keys = {key for e in events if (key := e.voids_key) is not None}
        found = await store.already_accepted([*probes, *own_keys])
        own = {e.voids for e in events if e.voids_key in found}
        elsewhere = {
            target: unit
            for key, (target, unit) in probes.items()
            if key in found and target not in own
        }
        foreign.extend(foreign_voids(events, elsewhere))
    return foreign


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    client = connect(settings.mongodb_uri, app_name="ingest")
    store = Store(client, settings.mongodb_db)
    # Checked on every request: a unit merged a moment ago must refuse new events at once.
    catalog = CatalogCache(store, min_reload_interval_s=0)
    # Events are validated by the stored registry, looked at once a second at most: a type an
    # admin defines is accepted here within a second of its `PUT` (the contract says 5 s).
    registry = RegistryCache(RegistryStore(store), min_interval_s=1.0)
    security = SecurityStore(store)
    authenticator = Authenticator(store, settings.admin_token, security, rate_limits(settings))
    not_before = local_day_start(settings.events_not_before)
    broker = make_broker(settings, client_id="ingest")
    publisher = EventPublisher(broker, settings.events_topic, settings.publish_timeout_s)
    recent = RecentIds(settings.ingest_recent_ids)
    in_flight = InFlightIds()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await security.ensure_indexes()
        await store.keep_accepted_for(settings.accepted_retention_days)
        await catalog.reload()
        await registry.reload()
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await client.close()

    app = FastAPI(
        title="Campaign tracker — ingest",
        version="1",
        lifespan=lifespan,
        description="Field apps and portals post transactions here (contract v1).",
        responses=ERROR_RESPONSES,
        # Swagger UI from a pinned package, not a CDN (shared/adapters/docs.py); no ReDoc.
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    # Bodies are read (and bounded) by the handler itself, streaming: the guard only adds headers.
    harden(app, "ingest", settings.cors_origin_list, max_body_bytes=None)
    add_operational_routes(app, "ingest")

    async def poster(request: Request) -> Principal:
        try:
            return await authenticator.principal(request)
        except HTTPException as refused:
            # Operators see a throttled field team among the rejections, by reason.
            if refused.status_code == 429:
                EVENTS_REJECTED.labels("rate_limited").inc()
            raise

    event_schema = Event.model_json_schema(ref_template="#/components/schemas/{model}")
    # The event's own definitions (its enums) go where its references point: the schema's
    # components (inline `$defs` would leave the references dangling for OpenAPI tools).
    event_definitions = event_schema.pop("$defs", {})
    # An event names its unit by `unit_id` or by its official `unit_code`, exactly one (the
    # code becomes the id before the model sees the event: `resolve_unit_codes`).
    event_schema["properties"]["unit_code"] = {
        "type": "string",
        "pattern": "^[0-9]{1,8}$",
        "description": "the unit's official (GSO) code instead of unit_id: the unit that held "
        "it on the event's local day",
    }
    event_schema["required"] = [f for f in event_schema["required"] if f != "unit_id"]
    event_schema["oneOf"] = [{"required": ["unit_id"]}, {"required": ["unit_code"]}]
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(event_definitions)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=EventsAccepted,
        responses={
            401: {"description": "no valid token"},
            403: {"model": Problems, "description": "an event lies outside the token's scope"},
            413: {"description": "body over 1 MiB"},
            415: {
                "model": Problems,
                "description": "Content-Type is not application/json (optionally with "
                "charset=utf-8)",
            },
            422: {"model": Problems, "description": "invalid events, by index and field"},
            503: {"description": "the broker is unreachable; retry after Retry-After seconds"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                event_schema,
                                {"type": "array", "items": event_schema, "maxItems": 1000},
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_events(request: Request, principal: Principal = Depends(poster)) -> Any:
        if not principal.can_post_events:
            return _problem_response(403, "this token may not post events", [], "forbidden")
        if not is_json_utf8(request.headers.get("content-type")):
            # Not guessed at: a form or text/plain body (which a browser page may send to any
            # origin without a CORS preflight) is not an event batch.
            return _problem_response(
                415,
                "Content-Type must be application/json (or application/json; charset=utf-8)",
                [],
                "unsupported_media_type",
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem_response(413, "body is over 1 MiB", [], "too_large")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                return _problem_response(413, "body is over 1 MiB", [], "too_large")
        try:
            payload = strict_json(bytes(body))
        except UnsafeInput as exc:
            return _problem_response(
                422, "invalid body", [Problem(None, None, str(exc))], "invalid"
            )
        await registry.fresh()
        now = datetime.now(UTC)
        # Units named by official code become their ids first (a code unknown to this copy of
        # the tree may be a unit just added: looked up again after a reload).
        posted = payload
        payload, by_code, code_problems = resolve_unit_codes(
            posted, await catalog.covering(()), today_local(now)
        )
        if any(problem.message.startswith("unknown unit code") for problem in code_problems):
            payload, by_code, code_problems = resolve_unit_codes(
                posted, await catalog.reload(), today_local(now)
            )
        if code_problems:
            return _problem_response(422, "invalid events", code_problems, "unknown_unit")
        try:
            events = parse_events(payload, now, not_before)
        except RejectedBatch as rejected:
            return _problem_response(422, "invalid events", rejected.problems, "invalid")
        tree = await catalog.covering(event.unit_id for event in events)
        unknown = unknown_units(events, tree)
        if unknown:
            return _problem_response(422, "invalid events", unknown, "unknown_unit")
        undated = outside_validity(events, tree, by_code)
        if undated:
            return _problem_response(422, "invalid events", undated, "outside_validity")
        if principal.role == Role.FIELD:
            outside = out_of_scope(events, tree, principal.scope)
            if outside:
                return _problem_response(403, "events outside the token's scope", outside, "scope")
        foreign = await _foreign_events(store, events, tree, principal)
        if foreign:
            return _problem_response(422, "invalid events", foreign, "foreign")
        # Events are told apart by their id within their unit (`Event.key`).
        keys = [event.key for event in events]
        try:
            async with in_flight.claim(keys):
                known = {key for key in keys if key in recent}
                known |= await store.already_accepted([key for key in keys if key not in known])
                fresh, duplicates = split_duplicates(events, known)
                with PUBLISH_LATENCY.time():
                    await publisher.publish(fresh)
                fresh_keys = [event.key for event in fresh]
                await store.remember_accepted(fresh_keys)
                recent.remember(fresh_keys)
        except BrokerUnavailable:
            EVENTS_REJECTED.labels("broker_unavailable").inc()
            return JSONResponse(
                {"detail": "the event log is unavailable; nothing was accepted, retry later"},
                503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        EVENTS_ACCEPTED.inc(len(fresh))
        EVENTS_DUPLICATE.inc(duplicates)
        return EventsAccepted(accepted=len(fresh), duplicates=duplicates)

    return app
