"""Running a service's ASGI app: one place for the host, port and graceful-stop settings."""

from __future__ import annotations

import gc
import logging
import os
import signal
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("serve")


def _exit_after_drain(signum: int, _: FrameType | None) -> None:
    # uvicorn catches SIGTERM, drains (in-flight requests finish; the lifespan's shutdown
    # flushes the producer and lets a running batch commit), then raises the signal again so
    # that the default action reports "killed by SIGTERM". Exit 0 instead: the process did stop
    # cleanly, and supervisors (make run, Docker, systemd) should be able to tell that apart
    # from a crash.
    log.warning("stopped on signal %d after draining in-flight work", signum)
    raise SystemExit(0)


def frozen_after_startup(app: Any) -> Any:
    """`app`, with what its startup made left out of later garbage collections. Python's full
    collections walk every object that has survived the younger ones: modules, the app and
    its routes, the models' validators, the catalog. In ingest they took 27–56 ms each, every
    few seconds under load, and stalled every request in flight: with eight clients posting
    single events, p99 was 44–54 ms, and 28 ms with those objects frozen (they live as long
    as the process anyway; what requests make is collected as before). Done here, in the
    process's entry point, not in the app: tests start many apps in one process."""

    async def frozen_after_startup(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_then_freeze(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                gc.collect()
                gc.freeze()
            await send(message)

        await app(scope, receive, send_then_freeze)

    return frozen_after_startup


def serve(app: Any, port: int) -> None:
    signal.signal(signal.SIGTERM, _exit_after_drain)
    uvicorn.run(
        frozen_after_startup(app),
        # 127.0.0.1 by default (the contract's `make run`); containers set BIND_HOST=0.0.0.0.
        host=os.environ.get("BIND_HOST", "127.0.0.1"),
        port=port,
        log_level=os.environ.get("LOG_LEVEL", "warning"),
        # Whose X-Forwarded-For to believe (the client address in the audit log, https for
        # HSTS): the gateway in front of the compose stack; unset, only 127.0.0.1.
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS"),
        # SIGTERM lets in-flight requests finish before the process exits.
        timeout_graceful_shutdown=20,
    )
