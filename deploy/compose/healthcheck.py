"""`python -m deploy.compose.healthcheck [SERVICE]`: a container's health check.

Exits 0 when the service answers `GET /healthz` with 200 on the port its settings give it
(INGEST_PORT, API_PORT, AGGREGATOR_PORT: the same setting the service listens on, so the check
cannot drift from the port), 1 otherwise. Without SERVICE (the image's own HEALTHCHECK, which
does not know what the container runs) any of the three answering is enough. Standard library
and the project's settings only: it runs every few seconds in every container.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from shared.settings import Settings, get_settings

SERVICES = ("ingest", "api", "aggregator")


def port_of(service: str, settings: Settings) -> int:
    port: int = getattr(settings, f"{service}_port")
    return port


def probe_host() -> str:
    """Where the service listens, seen from inside its container: BIND_HOST unless that is a
    wildcard, which is reached through loopback."""
    host = os.environ.get("BIND_HOST", "127.0.0.1")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def healthy(port: int, timeout_s: float = 3.0) -> bool:
    url = f"http://{probe_host()}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in SERVICES]
    if unknown:
        print(f"unknown service {unknown[0]!r}; one of {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    settings = get_settings()
    names = argv or list(SERVICES)
    if any(healthy(port_of(name, settings)) for name in names):
        return 0
    print(f"no /healthz answer from {', '.join(names)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
