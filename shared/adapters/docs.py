"""`/docs` of ingest and the API: Swagger UI served from the files of a pinned package
(`fastapi-offline`, which ships Swagger UI 5's bundle), never from a CDN.

FastAPI's own `/docs` page loads Swagger UI from a public CDN at a floating major version
(`swagger-ui-dist@5`), without integrity hashes: whoever controls that CDN, or the network
path to it, runs script on a page where an operator pastes the admin token. Here the page and
its three assets come from this service, at the version pyproject.toml pins; `/redoc` (also
from a CDN) is not served.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request, Response, status
from fastapi.openapi.docs import get_swagger_ui_html

STATIC = Path(fastapi_offline.__file__).with_name("static")
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


@cache
def _asset_bytes(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def add_offline_docs(app: FastAPI) -> None:
    """Serve `/docs` and its assets (`/docs/static/...`); `app` is made with `docs_url=None`
    and `redoc_url=None`."""

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — Swagger UI",
            swagger_js_url=f"{root}/docs/static/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/static/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/static/favicon.png",
            # No validator badge: Swagger UI would send the schema to validator.swagger.io.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
        return Response(
            _asset_bytes(name),
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400"},
        )
