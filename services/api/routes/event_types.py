"""`/v1/event-types`: what events may say, read by everyone, changed by the admin at run time
(contract, "Indicators are data"). Ingest validates by the stored registry (it looks at most
once a second), and the aggregator reloads it before refusing a record as not an event, so a
new type posted after its `PUT` is counted, never dead-lettered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import JSONResponse

from services.api.deps import AdminActor, Reader, RegistryCacheDep, RegistryStoreDep, SecurityDep
from services.api.schemas import EventTypeIn, EventTypeOut, RegistryChange
from shared.domain.registry import (
    IncompatibleChange,
    RegistryError,
    current_registry,
    event_type_from_json,
    use_registry,
)

TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
TypeName = Annotated[str, Path(pattern=TYPE_PATTERN, max_length=64)]
# Two admins changing the registry at once: the later change is made again on the newer one.
_ATTEMPTS = 5

router = APIRouter(tags=["registry"])


@router.get("/v1/event-types", response_model=list[EventTypeOut])
async def list_event_types(_: Reader, cache: RegistryCacheDep) -> list[dict[str, object]]:
    registry = await cache.fresh(now=True)
    return [{**t.to_json(), "status": "ready"} for t in registry.event_types.values()]


@router.put(
    "/v1/event-types/{event_type}",
    response_model=RegistryChange,
    responses={
        201: {"model": RegistryChange, "description": "a new event type"},
        409: {"description": "the change would refuse events accepted before"},
        422: {"description": "a definition the registry cannot hold, named"},
    },
)
async def put_event_type(
    event_type: TypeName,
    body: EventTypeIn,
    actor: AdminActor,
    cache: RegistryCacheDep,
    registry_store: RegistryStoreDep,
    security: SecurityDep,
) -> JSONResponse:
    """Add an event type (`201`) or widen one (`200`): new optional attributes, new enum
    values. A change that would refuse an event accepted before (an attribute removed or
    retyped, one made required, values taken away) is `409`."""
    asked = body.model_dump(mode="json", exclude_none=True)
    for _ in range(_ATTEMPTS):
        registry = await cache.fresh(now=True)
        try:
            definition = event_type_from_json(event_type, asked)
            before = registry.event_types.get(event_type)
            if before is not None and before.same_rules(definition):
                return JSONResponse(
                    {"type": event_type, "version": before.version, "status": "ready"}, 200
                )
            changed = registry.with_event_type(definition)
        except IncompatibleChange as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except RegistryError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        if await registry_store.replace(changed, registry.version):
            use_registry(changed)
            await security.record(
                actor.principal,
                "event_type.put",
                event_type,
                {**asked, "registry_version": changed.version},
                actor.client,
            )
            version = changed.event_types[event_type].version
            return JSONResponse(
                {"type": event_type, "version": version, "status": "ready"},
                201 if before is None else 200,
            )
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        f"the registry kept changing (now version {current_registry().version}); retry",
    )
