"""`/v1/indicators`: what is counted, with its names and definition, as the registry holds it;
defined, changed and deleted by the admin at run time (contract, "Indicators are data").

A new indicator, or one whose definition changes, is `backfilling` until the log has been
counted for it (`shared.backfill`, run by the aggregator), then `ready`; a change of names
alone, or a rate over ready indicators, is `ready` at once. A refused request stores nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from fastapi.responses import JSONResponse

from services.api.deps import (
    AdminActor,
    Reader,
    RegistryCacheDep,
    RegistryStoreDep,
    SecurityDep,
    StoreDep,
)
from services.api.schemas import IndicatorChange, IndicatorIn, IndicatorOut
from shared.domain.registry import (
    IndicatorInUse,
    Registry,
    RegistryError,
    current_registry,
    indicator_from_json,
    use_registry,
)
from shared.views import REPORTED_INDICATORS

ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
IndicatorId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
# Two admins changing the registry at once: the later change is made again on the newer one.
_ATTEMPTS = 5

router = APIRouter(tags=["registry"])


async def _counted_from(store: StoreDep) -> int:
    """The registry version the served totals were counted from (`indicator_status`)."""
    await store.follow_generation()
    return store.counted_from


@router.get("/v1/indicators", response_model=list[IndicatorOut])
async def list_indicators(
    _: Reader, cache: RegistryCacheDep, store: StoreDep
) -> list[dict[str, object]]:
    """Every indicator: `count`, `sum`, `rate`, `state`, and the built-in
    `online_services_share` (`filing.services_with_online_share`), each `ready` or
    `backfilling` (its values being counted over the whole event log)."""
    registry = await cache.fresh(now=True)
    counted_from = await _counted_from(store)
    return [
        {
            **indicator.to_json(),
            "version": indicator.version,
            "status": registry.status(indicator.id, counted_from),
        }
        for indicator in registry.indicators.values()
    ]


@router.put(
    "/v1/indicators/{indicator_id}",
    response_model=IndicatorChange,
    responses={
        201: {"model": IndicatorChange, "description": "a new indicator"},
        409: {"description": "the registry kept changing; retry"},
        422: {
            "description": "a definition the registry cannot hold, named: an unknown event "
            "type, attribute or indicator, a rate of a rate, a cycle, a sum over a non-integer"
        },
    },
)
async def put_indicator(
    indicator_id: IndicatorId,
    body: IndicatorIn,
    actor: AdminActor,
    cache: RegistryCacheDep,
    registry_store: RegistryStoreDep,
    security: SecurityDep,
    store: StoreDep,
) -> JSONResponse:
    """Define an indicator (`201`) or change one (`200`); the answer's `status` is
    `backfilling` while the log is counted for it, unless nothing needs counting (a change
    of names, a rate over ready indicators)."""
    asked = body.model_dump(mode="json", exclude_none=True)
    for _ in range(_ATTEMPTS):
        registry = await cache.fresh(now=True)
        before = registry.indicators.get(indicator_id)
        try:
            indicator = indicator_from_json(indicator_id, asked)
            if before is not None and before.to_json() == indicator.to_json():
                return _answer(registry, indicator_id, await _counted_from(store), 200)
            changed = registry.with_indicator(indicator)
        except RegistryError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if await registry_store.replace(changed, registry.version):
            use_registry(changed)
            await security.record(
                actor.principal,
                "indicator.put",
                indicator_id,
                {**asked, "registry_version": changed.version},
                actor.client,
            )
            counted_from = await _counted_from(store)
            return _answer(changed, indicator_id, counted_from, 201 if before is None else 200)
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        f"the registry kept changing (now version {current_registry().version}); retry",
    )


@router.delete(
    "/v1/indicators/{indicator_id}",
    status_code=204,
    responses={
        204: {"description": "deleted: no longer counted nor served"},
        409: {"description": "a campaign target, a rate or a report uses it (named)"},
    },
)
async def delete_indicator(
    indicator_id: IndicatorId,
    actor: AdminActor,
    cache: RegistryCacheDep,
    registry_store: RegistryStoreDep,
    security: SecurityDep,
    store: StoreDep,
) -> Response:
    """Delete an indicator: it is no longer counted, listed or served (`/v1/totals` `404`).
    `409` while a campaign target, a rate or one of the report tables uses it. A shipped
    indicator is deleted like any other; defined again, it is backfilled from the log."""
    report = REPORTED_INDICATORS.get(indicator_id)
    if report is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"indicator {indicator_id!r} is read by the {report} report",
        )
    for _ in range(_ATTEMPTS):
        registry = await cache.fresh(now=True)
        if indicator_id not in registry.indicators:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown indicator {indicator_id!r}")
        target = await store.targets.find_one({"metric": indicator_id})
        if target is not None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"indicator {indicator_id!r} is a target of campaign {target['campaign']!r} "
                f"(unit {target['unit_id']!r})",
            )
        try:
            changed = registry.without_indicator(indicator_id)
        except IndicatorInUse as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except RegistryError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        if await registry_store.replace(changed, registry.version):
            use_registry(changed)
            await security.record(
                actor.principal,
                "indicator.delete",
                indicator_id,
                {"registry_version": changed.version},
                actor.client,
            )
            return Response(status_code=204)
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        f"the registry kept changing (now version {current_registry().version}); retry",
    )


def _answer(registry: Registry, indicator_id: str, counted_from: int, code: int) -> JSONResponse:
    indicator = registry.indicators[indicator_id]
    return JSONResponse(
        {
            "id": indicator_id,
            "version": indicator.version,
            "status": registry.status(indicator_id, counted_from),
        },
        code,
    )
