"""The services' entry point leaves what startup made out of later garbage collections (long
pauses stalled every request in flight), and passes everything else through untouched."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from deploy.local.stack import free_port
from shared.adapters.serve import frozen_after_startup

ROOT = Path(__file__).resolve().parents[2]


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


SLOW_SERVICE = """
import asyncio
from fastapi import FastAPI
from shared.adapters.serve import serve

app = FastAPI()


@app.post("/slow")
async def slow() -> dict[str, str]:
    await asyncio.sleep(60)
    return {"done": "never"}


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


serve(app, {port})
"""


def test_a_request_the_stop_cuts_short_is_answered_503_not_500(tmp_path: Path) -> None:
    """A real uvicorn, stopped with SIGTERM while a request outlasts the drain: uvicorn
    cancels the handler, and the client is told to retry (503, Retry-After), not that its
    request failed (uvicorn's own answer is a bare 500)."""
    port = free_port()
    script = tmp_path / "slow_service.py"
    script.write_text(SLOW_SERVICE.replace("{port}", str(port)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRACEFUL_STOP_S": "1", "ADMIN_TOKEN": "x" * 32}
    service = subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/ready", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(httpx.post, f"{base}/slow", timeout=30)
            time.sleep(0.5)  # the request is in its handler
            service.send_signal(signal.SIGTERM)
            response = answer.result()
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert "retry later" in response.json()["detail"]
        assert service.wait(30) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
