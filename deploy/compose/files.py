"""Reading the compose files as `docker compose` does, for the checks that keep them coherent
with the code (tests/unit/test_deploy_compose.py, tests/e2e/test_container_entrypoints.py):
YAML with its anchors and merge keys, then `${VAR}` interpolation from an environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "docker-compose.yml"
DEVELOPMENT = REPO / "docker-compose.dev.yml"
ENV_EXAMPLE = REPO / "deploy" / "compose" / "env.example"
PROJECT_IMAGE = "campaign-tracker"

# `$$`, `${NAME}`, `${NAME<op>word}` or `$NAME`, as the Compose specification defines them.
_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_]\w*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<word>.*))?$", re.DOTALL)


class MissingVariable(ValueError):
    """A `${NAME:?message}` whose variable is not set: compose refuses to start."""


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.match(match["braced"])
        if braced is None:
            raise ValueError(f"invalid interpolation {match[0]!r}")
        name, op, word = braced["name"], braced["op"], braced["word"] or ""
        value = env.get(name)
        present = value is not None and (value != "" or not (op or "").startswith(":"))
        if op in (None, ""):
            return value or ""
        if op in (":-", "-"):
            return value if present and value is not None else interpolate_text(word, env)
        if op in (":?", "?"):
            if not present or value is None:
                raise MissingVariable(f"{name}: {word or 'required'}")
            return value
        return interpolate_text(word, env) if present else ""  # `:+` and `+`

    return _REFERENCE.sub(replace, text)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Every string of a loaded compose file, interpolated (keys stay as they are)."""
    if isinstance(value, str):
        return interpolate_text(value, env)
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    return value


def variables(path: Path) -> dict[str, str | None]:
    """Each variable the file refers to, with its operator (None for a plain reference)."""
    found: dict[str, str | None] = {}
    for match in _REFERENCE.finditer(path.read_text()):
        if match["named"]:
            found.setdefault(match["named"], None)
        elif match["braced"] is not None:
            braced = _BRACED.match(match["braced"])
            if braced is not None:
                found[braced["name"]] = braced["op"]
    return found


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines (a compose `.env`), comments and blank lines skipped."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def load_raw(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def load(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    return cast(dict[str, Any], interpolate(load_raw(path), env))


def project_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the project's image (built from its Dockerfile)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).split(":")[0] == PROJECT_IMAGE
    }


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, as a mapping of strings (the list form too)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def healthcheck_command(service: Mapping[str, Any]) -> list[str] | None:
    """The `CMD` form of a service's health check (None: no check of its own, or disabled)."""
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return None
    test = check.get("test")
    if isinstance(test, list) and test and test[0] == "CMD":
        return [str(word) for word in test[1:]]
    if isinstance(test, list) and test and test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", str(test[1])]
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    return None


def container_ports(service: Mapping[str, Any]) -> set[int]:
    """The container side of `ports` and `expose`."""
    ports: set[int] = set()
    for entry in service.get("ports") or []:
        target = entry["target"] if isinstance(entry, dict) else str(entry).rsplit(":", 1)[-1]
        ports.add(int(str(target).split("/")[0]))
    for entry in service.get("expose") or []:
        ports.add(int(str(entry).split("/")[0]))
    return ports


def host_ports(service: Mapping[str, Any]) -> list[str]:
    """The host side (`address:port` or `port`) of `ports`."""
    published = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published.append(f"{entry.get('host_ip', '')}:{entry.get('published', '')}")
        else:
            published.append(str(entry).rsplit(":", 1)[0])
    return published


def bind_mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the volumes that are paths of the repository."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type") == "bind":
                mounts.append((str(entry["source"]), str(entry["target"])))
            continue
        source, _, rest = str(entry).partition(":")
        if source.startswith((".", "/")):
            mounts.append((source, rest.split(":")[0]))
    return mounts


def duration_s(text: str) -> float:
    """A compose duration (`30s`, `1m30s`, `2m`, `500ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)
