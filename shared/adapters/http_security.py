"""HTTP hygiene both services share: bounded and strictly parsed request bodies, CORS closed
unless configured, error bodies that echo neither input nor internals, `nosniff` everywhere,
and the error answers documented in the OpenAPI schema.

TLS is terminated by a proxy in front (see docs/security.md, TLS); uvicorn trusts its
`X-Forwarded-Proto`/`-For` only from `FORWARDED_ALLOW_IPS` (127.0.0.1 by default).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, BeforeValidator
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.domain.safety import UnsafeInput, day_reason, strict_json

log = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# A day as the contract writes it, in ASCII digits. Pydantic alone also takes a Unix timestamp
# (as a number or as digits: `1704067200` is 2024-01-01, in UTC, not in the province's time).
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day_text(value: Any) -> Any:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError("must be a day written YYYY-MM-DD")
    return value


def _bounded_day(day: date) -> date:
    reason = day_reason(day)
    if reason:
        raise ValueError(reason)
    return day


# A day as a request may name it: YYYY-MM-DD, within `day_reason`'s bounds.
Day = Annotated[date, BeforeValidator(_iso_day_text), AfterValidator(_bounded_day)]


class ErrorBody(BaseModel):
    """Every error answer: `detail` is a message, or a list of problems (by field)."""

    detail: str | list[Any]


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"model": ErrorBody, "description": description}
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return answer


# Documented on every operation: what any of them may answer besides success.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("no valid token (missing, unknown, revoked or expired)"),
    403: _error("the token's role or scope does not allow this"),
    404: _error("unknown unit, metric, campaign or token"),
    413: _error("request body too large"),
    422: _error("invalid input: a message, or the problems by field"),
    429: _error("the token's rate limit is reached", retry_after=True),
    503: _error("the database or the event log is unavailable", retry_after=True),
}


# Error answers stay short whatever came in: a message is cut at MAX_MESSAGE characters (a
# 60 KB `watch` value came back whole in a 404 or 422), a field name or location part at
# MAX_NAME (a client's attribute key may be a megabyte long).
MAX_MESSAGE = 200
MAX_NAME = 64


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bounded_detail(detail: Any) -> Any:
    """`detail` with every string in it bounded: a problem's `field` and `loc` parts (names)
    at MAX_NAME, everything else at MAX_MESSAGE."""
    if isinstance(detail, str):
        return bounded(detail)
    if isinstance(detail, list | tuple):
        return [bounded_detail(item) for item in detail]
    if isinstance(detail, dict):
        return {key: _bounded_entry(key, value) for key, value in detail.items()}
    return detail


def _bounded_entry(key: str, value: Any) -> Any:
    if key == "field" and isinstance(value, str):
        return bounded(value, MAX_NAME)
    if key == "loc" and isinstance(value, list | tuple):
        return [bounded(part, MAX_NAME) if isinstance(part, str) else part for part in value]
    return bounded_detail(value)


def _json_response(status: int, body: Any) -> tuple[Message, Message]:
    payload = json.dumps(body).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ],
    }
    return start, {"type": "http.response.body", "body": payload}


def _is_json(content_type: str | None) -> bool:
    # FastAPI parses a body as JSON when it has no content type or a JSON one: check the same.
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def is_json_utf8(content_type: str | None) -> bool:
    """`application/json`, optionally with `charset=utf-8` (RFC 8259: JSON is UTF-8): what
    ingest reads. Anything else (form data, text/plain that a browser may send cross-origin
    without a preflight, another charset) is not guessed at."""
    if not content_type:
        return False
    media, _, parameters = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    parameters = parameters.strip()
    if not parameters:
        return True
    name, _, value = parameters.partition("=")
    return name.strip().lower() == "charset" and value.strip().strip('"').lower() == "utf-8"


def _relative_location(location: str, host: str | None) -> str:
    """A redirect to this service, as a path: Starlette builds absolute ones from the
    request's Host header (`/v1/units/` → `http://<Host>/v1/units`), which made every
    trailing-slash redirect an open redirect to wherever a client's Host said. Leading
    slashes collapse into one, so the path can never read as `//other.host/`."""
    parts = urlsplit(location)
    if parts.netloc and (host is None or parts.netloc.lower() != host.lower()):
        return location  # elsewhere on purpose (none of our routes does this)
    path = "/" + parts.path.lstrip("/\\")
    return path + (f"?{parts.query}" if parts.query else "")


class RequestGuard:
    """ASGI middleware: adds `X-Content-Type-Options: nosniff` to every answer and, when
    `max_body_bytes` is set, refuses a body over it (413) and a JSON body that `strict_json`
    refuses (422) before any handler sees it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(name.lower() != b"x-content-type-options" for name, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                if 300 <= message["status"] < 400:
                    host = Headers(scope=scope).get("host")
                    headers = [
                        (
                            name,
                            _relative_location(value.decode("latin-1"), host).encode("latin-1")
                            if name.lower() == b"location"
                            else value,
                        )
                        for name, value in headers
                    ]
                message = {**message, "headers": headers}
            await send(message)

        if self.max_body_bytes is None or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send_hardened)
            return
        limit = self.max_body_bytes
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        too_large = {"detail": f"request body is over {limit} bytes"}
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._answer(send, 413, too_large)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if len(body) > limit:
                await self._answer(send, 413, too_large)
                return
        if body and _is_json(headers.get("content-type")):
            try:
                strict_json(bytes(body))
            except UnsafeInput as exc:
                problem = {"type": "json_invalid", "loc": ["body"], "msg": str(exc)}
                await self._answer(send, 422, {"detail": [problem]})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_hardened)

    @staticmethod
    async def _answer(send: Send, status: int, body: Any) -> None:
        start, content = _json_response(status, body)
        await send(start)
        await send(content)


def harden(app: FastAPI, service: str, cors_origins: list[str], max_body_bytes: int | None) -> None:
    """Install the guard, CORS (only for `cors_origins`) and the error handlers on `app`.
    `max_body_bytes=None` leaves bodies to the service (ingest reads its own, streaming)."""
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    if cors_origins:
        # Bearer tokens, not cookies: no credentials mode, so no origin can ride a session.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            allow_credentials=False,
            max_age=600,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad `input`: a token pasted into the wrong field, or a
        # megabyte of junk, would come straight back (and into any log of responses).
        problems = [
            {"type": error.get("type"), "loc": list(error.get("loc", ())), "msg": error.get("msg")}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": bounded_detail(problems)}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def bounded_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A handler's message may quote what it refused (an unknown unit, metric or period).
        exc.detail = bounded_detail(exc.detail)
        return await http_exception_handler(request, exc)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:
        # The client left mid-body (or was cut off at its body's deadline, see serve.py): not
        # an error of ours, and nobody reads the answer.
        log.info("%s: client left during %s %s", service, request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the service's log, never to the client.
        log.error(
            "%s: unhandled error on %s %s",
            service,
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return JSONResponse({"detail": "internal error; it has been logged"}, 500)
