"""The image, without Docker: the Dockerfile's build stage (its COPY steps, then its install
command into a fresh virtual environment), then the containers' entry points (the compose
file's commands, the image's health checks) started from that environment alone, against the
session's local broker and database, until an event posted to ingest is in the API's totals
and every service stops on SIGTERM within its grace period.

What differs from a container: the addresses (the local servers instead of the compose
services), BIND_HOST (loopback: nothing here listens on other interfaces), pip's cache (kept),
the consumer group's timings (shortened as in every test), and no file system of its own: the
processes run in an empty working directory outside the repository, without PYTHONPATH, so
they can only import what the install put into the environment.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.compose import files, image
from deploy.local.stack import LocalStack, free_port
from tests.conftest import at, make_event

ROLES = ("aggregator", "ingest", "api")


@dataclass
class Built:
    root: Path
    venv: Path
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("image")
    log_path = root / "build.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            venv = image.build(root, log=log)
        except subprocess.CalledProcessError as exc:
            raise AssertionError(
                f"the Dockerfile's install failed:\n{log_path.read_text()}"
            ) from exc
    return Built(root, venv, time.monotonic() - started)


@dataclass
class Containers:
    """The compose services' processes, run from the built environment."""

    built: Built
    env: dict[str, str]
    ports: dict[str, int]
    workdir: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.workdir.parent / f"{name}.log"

    def run(self, name: str, command: list[str], timeout_s: float = 60) -> int:
        with self.log(name).open("ab") as log:
            return subprocess.run(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=log, timeout=timeout_s
            ).returncode

    def start(self, name: str, command: list[str]) -> None:
        with self.log(name).open("ab") as log:
            self.running[name] = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=log
            )

    def tail(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")[-3000:]

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def containers(built: Built, infra: LocalStack, tmp_path: Path) -> Iterator[Containers]:
    compose = files.load(files.DEVELOPMENT, {})
    project = files.project_services(compose)
    run = uuid.uuid4().hex[:8]
    ports = {name: free_port() for name in ROLES}
    # The compose file's environment for the services, then what differs on this machine.
    service_env = files.environment(project["api"])
    service_env.update(
        {
            "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "MONGODB_URI": infra.mongodb_uri,
            "MONGODB_DB": f"image_{run}",
            "EVENTS_TOPIC": f"image-{run}",
            "DEADLETTER_TOPIC": f"image-{run}-dead",
            "CONSUMER_GROUP": f"aggregator-{run}",
            "ADMIN_TOKEN": secrets.token_urlsafe(24),
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        }
    )
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TZ") if key in os.environ}
    runtime = image.load()[-1]
    env = image.environment(runtime, built.root, base)
    env.update(service_env)
    env["BIND_HOST"] = "127.0.0.1"
    assert "PYTHONPATH" not in env
    workdir = tmp_path / "app"
    workdir.mkdir()
    line = Containers(built, env, ports, workdir)
    try:
        yield line
    finally:
        line.stop_all()


def test_the_install_is_the_pinned_one_and_holds_the_project(built: Built) -> None:
    print(f"the Dockerfile's build stage took {built.seconds:.1f} s")
    frozen = image.pinned(image.freeze(built.venv))
    expected = image.pinned(image.CONSTRAINTS.read_text())
    assert frozen == expected, (
        "deploy/compose/constraints.txt no longer matches what the install resolves to: "
        "run `python -m deploy.compose.image` and commit the result\n"
        f"only installed: {sorted(set(frozen.items()) - set(expected.items()))}\n"
        f"only pinned: {sorted(set(expected.items()) - set(frozen.items()))}"
    )
    # The modules come from the environment, with their data files (catalog, campaigns,
    # dashboard), not from the repository.
    site = next((built.venv / "lib").glob("python3.*/site-packages"))
    for relative in (
        "shared/data/catalog_binh_phuoc.json",
        "services/api/dashboard",
        "deploy/compose/healthcheck.py",
    ):
        assert (site / relative).exists(), f"{relative} is not in the image"
    assert not (site / "deploy/local").exists(), "the local stack does not belong in the image"


def test_the_entry_points_serve_count_and_stop(containers: Containers) -> None:
    compose = files.load(files.DEVELOPMENT, {})
    project = files.project_services(compose)
    commands = {name: [str(w) for w in service["command"]] for name, service in project.items()}
    checks = {name: files.healthcheck_command(project[name]) for name in ROLES}

    assert containers.run("init", commands["init"]) == 0, containers.tail("init")
    for name in ROLES:
        containers.start(name, commands[name])
    deadline = time.monotonic() + 60
    for name in ROLES:
        while True:
            process = containers.running[name]
            assert process.poll() is None, f"{name} exited:\n{containers.tail(name)}"
            try:
                if httpx.get(containers.url(name, "/healthz"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{name} never healthy:\n{containers.tail(name)}"
            time.sleep(0.2)

    # The health checks Docker would run: each service's own, and the image's default.
    for name in ROLES:
        check = checks[name]
        assert check is not None
        assert containers.run(f"{name}-health", check, timeout_s=10) == 0, containers.tail(
            f"{name}-health"
        )
    default_check = image.healthcheck_command(image.load()[-1])
    assert containers.run("image-health", default_check, timeout_s=10) == 0

    # The pipeline works from the installed packages: an event in, the total out, the
    # dashboard's files served.
    token = containers.env["ADMIN_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    event = make_event("eid.activated", "bu-dang-minh-hung", at("2024-04-22", 23, 30))
    response = httpx.post(containers.url("ingest", "/v1/events"), json=event, headers=headers)
    assert response.status_code == 202, response.text
    params = {"unit_id": "binh-phuoc", "metric": "eid.activated", "period": "day:2024-04-22"}
    value = None
    deadline = time.monotonic() + 30
    while value != 1 and time.monotonic() < deadline:
        total = httpx.get(containers.url("api", "/v1/totals"), params=params, headers=headers)
        assert total.status_code == 200, total.text
        value = total.json()["value"]
        time.sleep(0.2)
    assert value == 1, containers.tail("aggregator")
    page = httpx.get(containers.url("api", "/"))
    assert page.status_code == 200 and "<html" in page.text.lower()

    # `docker stop`: SIGTERM, then the compose file's grace period before a SIGKILL.
    for name in ROLES:
        grace_s = files.duration_s(str(project[name]["stop_grace_period"]))
        process = containers.running[name]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(grace_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} ignored SIGTERM for {grace_s} s") from None
        # 0, or uvicorn's re-raised SIGTERM after draining: stopped by itself either way.
        assert code in (0, -signal.SIGTERM), f"{name} exited {code}:\n{containers.tail(name)}"
        print(f"{name} stopped in {time.monotonic() - started:.1f} s")
