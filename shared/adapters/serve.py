"""Running a service's ASGI app: one place for the host, port and graceful-stop settings."""

from __future__ import annotations

import os
from typing import Any

import uvicorn


def serve(app: Any, port: int) -> None:
    uvicorn.run(
        app,
        # 127.0.0.1 by default (the contract's `make run`); containers set BIND_HOST=0.0.0.0.
        host=os.environ.get("BIND_HOST", "127.0.0.1"),
        port=port,
        log_level=os.environ.get("LOG_LEVEL", "warning"),
        # SIGTERM lets in-flight requests finish before the process exits.
        timeout_graceful_shutdown=20,
    )
