"""The services' entry point leaves what startup made out of later garbage collections (long
pauses stalled every request in flight), and passes everything else through untouched."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from shared.adapters.serve import frozen_after_startup


class RecordingApp:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append((scope["type"], send))
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})


def test_startup_freezes_the_heap_once_it_is_complete() -> None:
    app = RecordingApp()
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[tuple[str, int]] = []

    async def receive() -> Any:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        sent.append((message["type"], gc.get_freeze_count()))

    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        asyncio.run(frozen_after_startup(app)({"type": "lifespan"}, receive, send))
        # Frozen before the server learns startup is done, not before startup ran.
        assert sent[0][0] == "lifespan.startup.complete" and sent[0][1] > 0
        assert sent[1][0] == "lifespan.shutdown.complete"
    finally:
        gc.unfreeze()


def test_requests_reach_the_app_with_their_own_send() -> None:
    app = RecordingApp()

    async def receive() -> Any:
        return {}

    async def send(message: Any) -> None:
        pass

    gc.unfreeze()
    asyncio.run(frozen_after_startup(app)({"type": "http"}, receive, send))
    assert app.calls == [("http", send)]
    assert gc.get_freeze_count() == 0
