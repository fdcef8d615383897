"""Bearer tokens for the HTTP services: the admin token from the environment, others in MongoDB.

Tokens are stored only as SHA-256 hashes and looked up on every request, so a revoked token
stops working at once on every instance.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, status

from shared.adapters.mongo import Store, hash_token
from shared.domain.access import Principal, Role

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Authenticator:
    def __init__(self, store: Store, admin_token: str) -> None:
        self._store = store
        self._admin_hash = hash_token(admin_token) if admin_token else None

    async def principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers=_CHALLENGE
            )
        token = token.strip()
        if self._admin_hash is not None and hmac.compare_digest(
            hash_token(token), self._admin_hash
        ):
            return Principal(name="admin", role=Role.ADMIN)
        doc = await self._store.find_token(token)
        if doc is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid or revoked token", headers=_CHALLENGE
            )
        return Principal(name=doc["name"], role=Role(doc["role"]), scope=tuple(doc["scope"]))


def require_admin(
    authenticator: Callable[[Request], Awaitable[Principal]],
) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticator(request)
        if not principal.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin token")
        return principal

    return dependency
