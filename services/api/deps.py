"""The API's dependencies as annotated types, read from `app.state` (set once by `create_app`):
`Reader` (any valid token), `AdminActor` (the admin token, with the client for the audit log)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from shared.adapters.auth import Authenticator
from shared.adapters.mongo import Store
from shared.adapters.registry_store import RegistryCache, RegistryStore
from shared.adapters.security_store import SecurityStore
from shared.domain.access import Principal
from shared.domain.periods import PERIOD_FORMS, InvalidPeriod, Period

# The `period` query parameter's description, wherever one is taken.
PERIOD_DOC = f"{PERIOD_FORMS}; days are local days in Asia/Ho_Chi_Minh"


@dataclass(frozen=True, slots=True)
class Actor:
    """The admin behind a request, for the audit log."""

    principal: Principal
    client: str | None


def parse_period(text: str) -> Period:
    """A `period` parameter, or `422` naming what is wrong with it."""
    try:
        return Period.parse(text)
    except InvalidPeriod as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


async def _reader(request: Request) -> Principal:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.principal(request)


async def _admin(request: Request) -> Actor:
    principal = await _reader(request)
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin token")
    return Actor(principal, request.client.host if request.client else None)


def _security(request: Request) -> SecurityStore:
    security: SecurityStore = request.app.state.security
    return security


def _registry_store(request: Request) -> RegistryStore:
    registry_store: RegistryStore = request.app.state.registry_store
    return registry_store


def _registry_cache(request: Request) -> RegistryCache:
    cache: RegistryCache = request.app.state.registry_cache
    return cache


Reader = Annotated[Principal, Depends(_reader)]
AdminActor = Annotated[Actor, Depends(_admin)]
SecurityDep = Annotated[SecurityStore, Depends(_security)]
RegistryStoreDep = Annotated[RegistryStore, Depends(_registry_store)]
RegistryCacheDep = Annotated[RegistryCache, Depends(_registry_cache)]


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(_store)]
