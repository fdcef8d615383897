"""`make run`'s viewer token for the dashboard: printed once per run, never put in a URL."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from shared.adapters.mongo import Store, connect
from shared.settings import Settings

TOKEN_NAME = "dashboard"


def viewer_token(settings: Settings, path: Path) -> str:
    """The viewer token kept (in `path`) from the last run while the database still knows it;
    else a new one, kept for the next run."""
    kept = path.read_text().strip() if path.exists() else None
    token = asyncio.run(_ensure(settings, kept))
    if token != kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
    return token


async def _ensure(settings: Settings, kept: str | None) -> str:
    client = connect(settings.mongodb_uri, app_name="run")
    try:
        store = Store(client, settings.mongodb_db)
        if kept:
            doc = await store.find_token(kept)
            if doc is not None and doc.get("role") == "viewer":
                return kept
        # Tokens are stored hashed: a lost one cannot be shown again, so it is replaced.
        await store.revoke_token(TOKEN_NAME)
        token = secrets.token_urlsafe(32)
        if not await store.create_token(token, TOKEN_NAME, "viewer", []):
            raise RuntimeError("could not create the dashboard's viewer token")
        return token
    finally:
        await client.close()
