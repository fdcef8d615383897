"""`/v1/indicators`: what is counted, with its names and definition, as the registry holds it.

Only read here for now: defining or changing an indicator means counting the whole log for it
(`backfilling`, then `ready`), which is not built yet."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.deps import Reader, RegistryCacheDep
from services.api.schemas import IndicatorOut

router = APIRouter(tags=["registry"])


@router.get("/v1/indicators", response_model=list[IndicatorOut])
async def list_indicators(_: Reader, cache: RegistryCacheDep) -> list[dict[str, object]]:
    """Every indicator: `count`, `sum`, `rate`, `state`, and the built-in
    `online_services_share` (`filing.services_with_online_share`)."""
    registry = await cache.fresh(now=True)
    return [
        {**indicator.to_json(), "version": indicator.version, "status": "ready"}
        for indicator in registry.indicators.values()
    ]
