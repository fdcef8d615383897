"""Running a service's ASGI app: one place for the host, port, graceful-stop settings and the
deadlines of a request's headers and body."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
from types import FrameType
from typing import Any

import h11
import uvicorn
from starlette.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import get_settings

log = logging.getLogger("serve")


def _timeout_answer(what: str) -> bytes:
    body = json.dumps({"detail": f"the request's {what} did not arrive in time"}).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with deadlines: a request's headers must be complete within
    `header_timeout_s` of its first byte (the first request's, of the connection's opening),
    and its body within `body_timeout_s` of its headers; otherwise the connection answers 408
    (when part of a request came and no answer has begun) and is closed. uvicorn has neither:
    a client that sent half a header line, or half a body, and then nothing held its
    connection (and, for a body, a handler's task) for as long as it liked, and a few thousand
    such clients would hold them all. Between requests, uvicorn's keep-alive timeout (5 s)
    closes idle connections."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None

    @classmethod
    def with_timeouts(cls, header_timeout_s: float, body_timeout_s: float) -> type[H11Protocol]:
        # uvicorn makes each connection's protocol from a class it is given: a subclass carries
        # the settings.
        return type(
            cls.__name__,
            (cls,),
            {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._expect("headers")  # the first byte of a request: its headers' time starts
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        # Pipelined requests already received are parsed here, not in data_received.
        super().on_response_complete()
        self._follow()

    def _follow(self) -> None:
        """Keep the deadline of what the connection waits for: a request's headers while the
        client is idle (its previous request done), its body while it sends one, else none."""
        state = self.conn.their_state
        if state is h11.IDLE:
            wanted: str | None = "headers"
        elif state is h11.SEND_BODY:
            wanted = "body"
        else:
            wanted = None
        if wanted != self._waiting_for:
            self._expect(wanted)

    def _expect(self, what: str | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._waiting_for = what
        if what is not None:
            delay = self.header_timeout_s if what == "headers" else self.body_timeout_s
            self._deadline = self.loop.call_later(delay, self._expired, what)

    def _expired(self, what: str) -> None:
        self._deadline = None
        self._waiting_for = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        started = what == "body" or bool(self.conn.trailing_data[0])
        if started and not answering:
            self.transport.write(_timeout_answer(what))
        if cycle is not None and not cycle.response_complete:
            # The handler still waiting for the body reads a disconnect and its answer (if it
            # makes one) goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


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


def unavailable_when_cut_short(app: Any) -> Any:
    """`app`, answering `503` with `Retry-After` to a request whose handler is cancelled before
    it answered. uvicorn cancels the handlers still running when a stop's drain outlasts
    `timeout_graceful_shutdown` and answers them with a bare `500`: a client would take that
    for a refusal of its events, while they are only unanswered (event ids make a retry safe,
    whether or not they reached the log)."""

    async def unavailable_when_cut_short(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = False

        async def noting_start(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, noting_start)
        except asyncio.CancelledError:
            if not started:
                log.warning("%s %s cut short by the stop", scope.get("method"), scope.get("path"))
                detail = "the service stopped before it could answer; nothing is lost, retry later"
                cut_short = JSONResponse(
                    {"detail": detail},
                    503,
                    headers={"Retry-After": "1", "Connection": "close"},
                )
                await cut_short(scope, receive, send)
            raise

    return unavailable_when_cut_short


def serve(app: Any, port: int) -> None:
    signal.signal(signal.SIGTERM, _exit_after_drain)
    settings = get_settings()
    uvicorn.run(
        unavailable_when_cut_short(frozen_after_startup(app)),
        http=DeadlineProtocol.with_timeouts(
            settings.http_header_timeout_s, settings.http_body_timeout_s
        ),
        # No WebSocket route exists: an upgrade request is answered as plain HTTP, and never
        # leaves the protocol whose deadlines guard it.
        ws="none",
        # 127.0.0.1 by default (the contract's `make run`); containers set BIND_HOST=0.0.0.0.
        host=os.environ.get("BIND_HOST", "127.0.0.1"),
        port=port,
        log_level=os.environ.get("LOG_LEVEL", "warning"),
        # Whose X-Forwarded-For to believe (the client address in the audit log, https for
        # HSTS): the gateway in front of the compose stack; unset, only 127.0.0.1.
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS"),
        # SIGTERM lets in-flight requests finish before the process exits.
        timeout_graceful_shutdown=settings.graceful_stop_s,
    )
