"""Bearer tokens for the HTTP services: the admin token from the environment, others in MongoDB.

Tokens are random (256 bits, `secrets.token_urlsafe(32)`) and stored only as SHA-256 hashes: a
fast hash is enough for secrets that cannot be guessed, and a stolen database reveals none. A
token is looked up by its hash on every request, so a revoked or expired one stops working at
once on every instance; the admin token is compared in constant time (`hmac.compare_digest`),
and a stored one is found by an index on its hash, whose timing reveals nothing of the token.
Every authenticated request is counted against its token's rate limit (see `RateLimiter`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import HTTPException, Request, status

from shared.adapters.mongo import Store, hash_token
from shared.adapters.security_store import RateLimiter, SecurityStore
from shared.domain.access import Principal, Role
from shared.domain.ratelimit import RateLimits
from shared.settings import Settings

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Below this the admin token is guessable in principle; generated ones have 43 characters.
MIN_ADMIN_TOKEN_CHARS = 16
# An open stream re-checks its token at most this often per token and process, however many
# streams share it (the dashboard's viewer token is on many screens).
_STILL_VALID_CACHE_S = 1.0


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers=_CHALLENGE
        )
    return token


def rate_limit_key(token: str) -> str:
    # The hash, not the token: the counters' collection must not hold a usable secret either.
    return hash_token(token)[:32]


class Authenticator:
    def __init__(
        self,
        store: Store,
        admin_token: str,
        security: SecurityStore | None = None,
        limits: RateLimits | None = None,
    ) -> None:
        if admin_token and len(admin_token) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_CHARS} characters: use a random "
                "one (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self._store = store
        self._admin_hash = hash_token(admin_token) if admin_token else None
        self._limits = limits
        self._limiter = (
            RateLimiter(security, limits.window_s)
            if security is not None and limits is not None
            else None
        )
        self._checked: dict[str, tuple[float, bool]] = {}

    async def identify(self, token: str) -> tuple[Principal, int | None] | None:
        """The token's principal and its own rate limit (if it has one), or None when the
        token is unknown, revoked or expired."""
        if self._admin_hash is not None and hmac.compare_digest(
            hash_token(token), self._admin_hash
        ):
            return Principal(name="admin", role=Role.ADMIN), None
        doc = await self._store.find_token(token)
        if doc is None:
            return None
        expires_at = doc.get("expires_at")
        if isinstance(expires_at, datetime) and expires_at <= datetime.now(UTC):
            return None
        own_limit = doc.get("rate_limit")
        principal = Principal(name=doc["name"], role=Role(doc["role"]), scope=tuple(doc["scope"]))
        return principal, int(own_limit) if own_limit is not None else None

    async def principal(self, request: Request) -> Principal:
        token = bearer_token(request)
        found = await self.identify(token)
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid, revoked or expired token",
                headers=_CHALLENGE,
            )
        principal, own_limit = found
        if self._limiter is not None and self._limits is not None:
            limit = self._limits.limit_for(principal.role, own_limit)
            wait = await self._limiter.retry_after(rate_limit_key(token), limit)
            if wait is not None:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"rate limit of this token reached ({limit} requests per "
                    f"{self._limits.window_s} s); retry after {wait} s",
                    headers={"Retry-After": str(wait)},
                )
        return principal

    async def still_valid(self, token: str) -> bool:
        """For long-lived requests (the stream): whether `token` still authenticates; cached
        for a second per token so many open streams cost one lookup."""
        key = rate_limit_key(token)
        now = time.monotonic()
        cached = self._checked.get(key)
        if cached is not None and now - cached[0] < _STILL_VALID_CACHE_S:
            return cached[1]
        valid = await self.identify(token) is not None
        if len(self._checked) > 10_000:
            self._checked = {
                k: v for k, v in self._checked.items() if now - v[0] < _STILL_VALID_CACHE_S
            }
        self._checked[key] = (now, valid)
        return valid


def require_admin(
    authenticator: Callable[[Request], Awaitable[Principal]],
) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticator(request)
        if not principal.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin token")
        return principal

    return dependency


def rate_limits(settings: Settings) -> RateLimits:
    return RateLimits(
        window_s=settings.rate_limit_window_s,
        field=settings.rate_limit_field,
        viewer=settings.rate_limit_viewer,
        admin=settings.rate_limit_admin,
    )
