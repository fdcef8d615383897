"""`/v1/units`: the catalog's units, old and new, each with its official code and its dates
(contract, "Units of the real map"); `?at=` gives the tree of a day, `?code=` the unit an
official code names. The admin adds, moves and merges units (their history moves with them,
`Store.reorganise`) and sets the online services a unit offers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status

from services.api.deps import (
    Actor,
    AdminActor,
    CatalogDep,
    Reader,
    SecurityDep,
    SettingsDep,
    StoreDep,
)
from services.api.schemas import MergeIn, MoveIn, ServicesIn, UnitIn, UnitOut
from shared.adapters.catalog import CatalogCache
from shared.adapters.http_security import Day
from shared.adapters.mongo import Store
from shared.adapters.security_store import SecurityStore
from shared.domain.events import UNIT_ID_PATTERN
from shared.domain.periods import today_local
from shared.domain.units import InvalidCatalog, Unit, UnitTree, rollup_shift
from shared.settings import Settings
from shared.views import NotFound

UnitPath = Annotated[str, Path(pattern=UNIT_ID_PATTERN)]

router = APIRouter(tags=["units"])


@router.get(
    "/v1/units",
    response_model=list[UnitOut],
    responses={404: {"description": "no unit has that code (on that day)"}},
)
async def list_units(
    _: Reader,
    catalog: CatalogDep,
    code: str | None = Query(
        None,
        pattern=r"^[0-9]{1,8}$",
        description="the unit with this official code: the one it named on `at` (default: "
        "today, else the latest to hold it), as a list of one",
    ),
    at: Day | None = Query(
        None, description="the tree as it stood on this day: the units valid then"
    ),
) -> list[UnitOut]:
    """Every unit the catalog holds, old and new, each with its dates; `at` gives the tree
    of a day, `code` finds the unit an official code names."""
    tree = await catalog.reload()
    if code is not None:
        if at is not None:
            found = tree.with_code(code, at)
        else:
            found = tree.with_code(code, today_local(datetime.now(UTC))) or tree.with_code(code)
        if found is None:
            raise NotFound(f"no unit has code {code!r}" + (f" on {at}" if at else ""))
        return [UnitOut.of(found)]
    units = tree.units() if at is None else tree.on(at)
    return [UnitOut.of(u) for u in units]


@dataclass(frozen=True, slots=True)
class Reorganiser:
    """Puts a unit in its new place, moves its history with it (see `Store.reorganise`) and
    records who did it."""

    catalog: CatalogCache
    store: Store
    settings: Settings
    security: SecurityStore

    async def apply(
        self, unit: Unit, actor: Actor, action: str, details: dict[str, Any]
    ) -> UnitOut:
        before = await self.catalog.reload()
        try:
            after = before.with_unit(unit)
        except InvalidCatalog as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if unit.id in before:
            remove_from, add_to = rollup_shift(before, after, unit.id)
        else:
            remove_from, add_to = [], []
        topic = self.settings.events_topic
        partitions = await self.store.partition_count(topic, self.settings.event_partitions)
        await self.store.reorganise(unit, remove_from, add_to, topic, partitions)
        await self.catalog.reload()
        await self.security.record(actor.principal, action, unit.id, details, actor.client)
        return UnitOut.of(unit)


def _reorganiser(
    catalog: CatalogDep, store: StoreDep, settings: SettingsDep, security: SecurityDep
) -> Reorganiser:
    return Reorganiser(catalog, store, settings, security)


ReorganiserDep = Annotated[Reorganiser, Depends(_reorganiser)]


def _existing(tree: UnitTree, unit_id: str) -> Unit:
    unit = tree.get(unit_id)
    if unit is None:
        raise NotFound(f"unknown unit {unit_id!r}")
    return unit


@router.post("/v1/units", status_code=201, response_model=UnitOut, responses={409: {}})
async def add_unit(body: UnitIn, actor: AdminActor, units: ReorganiserDep) -> UnitOut:
    tree = await units.catalog.reload()
    if body.id in tree:
        raise HTTPException(status.HTTP_409_CONFLICT, f"unit {body.id!r} exists")
    if body.parent_id is not None and body.parent_id not in tree:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown parent {body.parent_id!r}"
        )
    unit = Unit(body.id, body.name, body.level, body.parent_id)
    return await units.apply(unit, actor, "unit.add", body.model_dump(mode="json"))


@router.post("/v1/units/{unit_id}/move", response_model=UnitOut)
async def move_unit(
    unit_id: UnitPath, body: MoveIn, actor: AdminActor, units: ReorganiserDep
) -> UnitOut:
    """Move a unit (with everything under it) under another parent. Its history moves with
    it: every total of the old and new ancestors is recomputed to match, for all periods."""
    tree = await units.catalog.reload()
    unit = _existing(tree, unit_id)
    if body.parent_id not in tree:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown parent {body.parent_id!r}"
        )
    moved = replace(unit, parent_id=body.parent_id)
    return await units.apply(moved, actor, "unit.move", {"parent_id": body.parent_id})


@router.post("/v1/units/{unit_id}/merge", response_model=UnitOut)
async def merge_unit(
    unit_id: UnitPath, body: MergeIn, actor: AdminActor, units: ReorganiserDep
) -> UnitOut:
    """Merge a unit into another: its history counts for the unit it joins (and that unit's
    ancestors) from now on, it still answers for itself, and it takes no new events."""
    tree = await units.catalog.reload()
    unit = _existing(tree, unit_id)
    if body.into not in tree or body.into == unit_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot merge into {body.into!r}"
        )
    merged = replace(unit, parent_id=body.into, merged_into=body.into)
    return await units.apply(merged, actor, "unit.merge", {"into": body.into})


@router.put("/v1/units/{unit_id}/services", status_code=204)
async def put_services(
    unit_id: UnitPath,
    body: ServicesIn,
    actor: AdminActor,
    catalog: CatalogDep,
    store: StoreDep,
    security: SecurityDep,
) -> Response:
    """The online public services this unit offers (the denominator of
    `filing.services_with_online_share`)."""
    tree = await catalog.covering([unit_id])
    if unit_id not in tree:
        raise NotFound(f"unknown unit {unit_id!r}")
    await store.put_service_catalog(unit_id, body.services)
    await security.record(
        actor.principal, "unit.services", unit_id, {"services": body.services}, actor.client
    )
    return Response(status_code=204)


@router.get("/v1/units/{unit_id}/services")
async def get_services(_: Reader, unit_id: UnitPath, store: StoreDep) -> dict[str, list[str]]:
    catalogs = await store.service_catalogs_by_unit()
    return {"services": sorted(catalogs.get(unit_id, frozenset()))}
