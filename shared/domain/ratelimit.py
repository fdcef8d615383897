"""Rate limits per token, as pure rules: which limit applies, and fixed windows of time.

A fixed window (requests counted per token per `window_s`, the count reset at each boundary) is
the cheapest limit that can be shared by every instance exactly: one atomic `$inc` per request
on one small document. Its known weakness, up to twice the limit across a boundary, is
acceptable for what it guards against (a leaked or runaway token flooding the services).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.domain.access import Role

UNLIMITED = 0


@dataclass(frozen=True, slots=True)
class RateLimits:
    window_s: int
    field: int
    viewer: int
    admin: int = UNLIMITED

    def limit_for(self, role: Role, own: int | None = None) -> int:
        """Requests per window for a token of `role`; its own limit, when it has one, wins.
        `UNLIMITED` (0) means no limit."""
        if own is not None:
            return own
        return {Role.FIELD: self.field, Role.VIEWER: self.viewer, Role.ADMIN: self.admin}[role]


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    ends_at: float  # seconds since the epoch

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window ends (at least 1), for `Retry-After`."""
        return max(1, math.ceil(self.ends_at - now))


def window_at(now: float, window_s: int) -> Window:
    index = int(now // window_s)
    return Window(index, (index + 1) * window_s)


# Each process claims its share of a window's limit in blocks of 1/LEASE_SHARE of it, and
# admits requests from its block without a database round trip. The shared count is then
# never exceeded (what every process admits adds up to at most the limit), at the price of
# refusing up to one block per other process too early, when they hold unused requests.
LEASE_SHARE = 20


def lease_size(limit: int) -> int:
    """How many requests one claim reserves (1 for small limits: exact, one claim each)."""
    return max(1, limit // LEASE_SHARE)


def granted(limit: int, count_after: int, claimed: int) -> int:
    """How many of `claimed` requests a claim may admit, given the window's shared count
    after it (claims beyond the limit admit nothing)."""
    return max(0, min(claimed, limit - (count_after - claimed)))
