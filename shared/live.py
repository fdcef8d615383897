"""Live updates for `GET /v1/stream`: one poller per API process, however many clients.

The hub watches `as_of`; when it moves, it recomputes each total some client watches (each
distinct total once) and hands the ones that changed to the clients watching them. A slow
client only ever misses intermediate values: it always gets the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.domain.periods import Period
from shared.views import Backfilling, Views

log = logging.getLogger(__name__)

WatchKey = tuple[str, str, str]  # (unit_id, metric, period)
_UNSEEN = object()


@dataclass(eq=False)
class Subscriber:
    keys: frozenset[WatchKey]
    pending: dict[WatchKey, dict[str, Any]] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, key: WatchKey, body: dict[str, Any]) -> None:
        self.pending[key] = body  # replaces an undelivered older value of the same total
        self.wake.set()


class LiveHub:
    def __init__(self, views: Views, poll_interval_s: float = 0.25) -> None:
        self._views = views
        self._interval = poll_interval_s
        self._subscribers: set[Subscriber] = set()
        self._last: dict[WatchKey, Any] = {}
        self._as_of: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _total(self, key: WatchKey) -> dict[str, Any]:
        unit_id, metric, period = key
        return await self._views.total(unit_id, metric, Period.parse(period))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                as_of = await self._views.as_of()
                if as_of == self._as_of or not self._subscribers:
                    continue
                self._as_of = as_of
                watched = set().union(*(s.keys for s in self._subscribers))
                for key in watched:
                    try:
                        body = await self._total(key)
                    except Backfilling:  # its first value comes once it is ready
                        continue
                    previous = self._last.get(key, _UNSEEN)
                    self._last[key] = body["value"]
                    if previous is not _UNSEEN and previous != body["value"]:
                        for subscriber in self._subscribers:
                            if key in subscriber.keys:
                                subscriber.offer(key, body)
            except Exception:  # the stream must outlive a database hiccup
                log.exception("live update failed; retrying")

    async def stream(
        self, keys: frozenset[WatchKey], heartbeat_s: float = 15.0
    ) -> AsyncIterator[str]:
        """Server-Sent Events: every watched total at once, then each change; a heartbeat
        comment keeps proxies from closing an idle connection."""
        subscriber = Subscriber(keys)
        for key in keys:
            try:
                body = await self._total(key)
            except Backfilling:
                continue
            self._last.setdefault(key, body["value"])
            subscriber.offer(key, body)
        self._subscribers.add(subscriber)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.wake.wait(), heartbeat_s)
                subscriber.wake.clear()
                if not subscriber.pending:
                    yield ": heartbeat\n\n"
                    continue
                changes, subscriber.pending = subscriber.pending, {}
                for body in changes.values():
                    yield f"event: total\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
        finally:
            self._subscribers.discard(subscriber)


async def _still_valid(check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await check()
    except Exception:
        # The database is down: no token can be revoked meanwhile either (revoking writes
        # to it), so the stream goes on, as it outlives a database hiccup elsewhere.
        log.warning("could not re-check a stream's token; keeping the stream", exc_info=True)
        return True


async def until_revoked(
    chunks: AsyncIterator[str],
    still_valid: Callable[[], Awaitable[bool]],
    every_s: float,
) -> AsyncIterator[str]:
    """Pass `chunks` on while `still_valid()` holds, asking it at least every `every_s` seconds
    even when nothing is sent: a stream opened with a token that is then revoked (or expires)
    ends within that time, as every other request would be refused at once."""
    pending: asyncio.Task[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(chunks))
            done, _ = await asyncio.wait({pending}, timeout=every_s)
            if not await _still_valid(still_valid):
                yield 'event: revoked\ndata: {"detail": "the token was revoked or expired"}\n\n'
                return
            if done:
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        close = getattr(chunks, "aclose", None)
        if close is not None:
            # Unsubscribes from the hub now, not whenever the generator is collected.
            await close()
