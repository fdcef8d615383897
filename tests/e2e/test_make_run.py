"""`make run`'s program, as a user runs it: start, post, read, survive a crash, stop cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.local.stack import REPO, free_port
from tests.conftest import at, make_event


def _pids_with(marker: str, env_pair: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and env_pair.encode() in environ:
            found.append(int(entry.name))
    return found


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.local.run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output += line
        if "Ctrl-C stops everything" in line:
            return process, output
    process.kill()
    raise AssertionError(f"make run did not come up:\n{output}")


def _posted(url: str, event: dict[str, Any], headers: dict[str, str]) -> int | str:
    """The status of one post, or what failed instead (the servers may be down)."""
    try:
        return httpx.post(url, json=event, headers=headers, timeout=10).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


def test_make_run_starts_everything_restarts_a_dead_service_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    ports = {
        name: free_port()
        for name in ("KAFKA", "KAFKA_CONTROLLER", "MONGODB", "INGEST", "API", "AGGREGATOR")
    }
    env = {f"{name}_PORT": str(port) for name, port in ports.items()}
    env.update(
        {
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_DIR": str(tmp_path / "logs"),
            "ADMIN_TOKEN": "test-admin-token-for-make-run",
            "KAFKA_SESSION_TIMEOUT_MS": "2000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        }
    )
    # Without KAFKA_BOOTSTRAP and MONGODB_URI the run starts its own broker and database.
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KAFKA_BOOTSTRAP", "MONGODB_URI", "EVENTS_TOPIC", "MONGODB_DB")
    }
    full_env = {**inherited, **env}
    process, output = _start(full_env)
    try:
        token = re.search(r"Admin token\s+(\S+)", output)
        assert token and token.group(1) == "test-admin-token-for-make-run"
        assert f"http://127.0.0.1:{ports['API']}/docs" in output
        assert re.search(r"\b\d{2,} units loaded", output)
        headers = {"Authorization": f"Bearer {token.group(1)}"}
        ingest = f"http://127.0.0.1:{ports['INGEST']}/v1/events"
        # The dashboard's address, and a viewer token that reads but cannot post.
        dashboard = f"http://127.0.0.1:{ports['API']}/"
        assert re.search(rf"Dashboard\s+{re.escape(dashboard)}\s", output)
        viewer = re.search(r"Viewer token\s+(\S+)", output)
        assert viewer and viewer.group(1) not in dashboard
        page = httpx.get(dashboard)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        as_viewer = {"Authorization": f"Bearer {viewer.group(1)}"}
        assert httpx.get(dashboard + "v1/units", headers=as_viewer).status_code == 200
        viewer_post = make_event("cccd.issued", "bu-dang-minh-hung", at("2024-04-22"))
        assert httpx.post(ingest, json=viewer_post, headers=as_viewer).status_code == 403
        totals = f"http://127.0.0.1:{ports['API']}/v1/totals"
        params = {"unit_id": "binh-phuoc", "metric": "cccd.issued", "period": "day:2024-04-22"}
        event = make_event("cccd.issued", "bu-dang-minh-hung", at("2024-04-22", 23, 30))
        assert httpx.post(ingest, json=event, headers=headers).status_code == 202
        deadline = time.monotonic() + 20
        while httpx.get(totals, params=params, headers=headers).json()["value"] != 1:
            assert time.monotonic() < deadline, "the event never reached the totals"
            time.sleep(0.1)

        # A crashed service comes back by itself.
        pids = _pids_with("services.aggregator", f"AGGREGATOR_PORT={ports['AGGREGATOR']}")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            again = _pids_with("services.aggregator", f"AGGREGATOR_PORT={ports['AGGREGATOR']}")
            if again and again != pids:
                try:
                    if (
                        httpx.get(f"http://127.0.0.1:{ports['AGGREGATOR']}/healthz").status_code
                        == 200
                    ):
                        break
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, "the aggregator was not restarted"
            time.sleep(0.2)
        second = make_event("cccd.issued", "bu-dang-minh-hung", at("2024-04-22", 8))
        assert httpx.post(ingest, json=second, headers=headers).status_code == 202
        deadline = time.monotonic() + 30
        while httpx.get(totals, params=params, headers=headers).json()["value"] != 2:
            assert time.monotonic() < deadline, "the restarted aggregator did not count"
            time.sleep(0.1)

        # A broker or database that dies comes back by itself too, and ingest recovers.
        servers = (("kafka.Kafka", "broker"), ("secantusd", "database"))
        for counted, (marker, what) in enumerate(servers, start=1):
            dead = _pids_with(marker, f"KAFKA_PORT={ports['KAFKA']}")
            assert len(dead) == 1, (what, dead)
            os.kill(dead[0], signal.SIGKILL)
            survivor = make_event("cccd.issued", "bu-dang-minh-hung", at("2024-04-23"))
            deadline = time.monotonic() + 120
            while _posted(ingest, survivor, headers) != 202:
                assert time.monotonic() < deadline, f"ingest did not recover from the {what}"
                time.sleep(0.5)
            day = {**params, "period": "day:2024-04-23"}
            while (
                httpx.get(totals, params=day, headers=headers, timeout=10).json()["value"]
                != counted
            ):
                assert time.monotonic() < deadline, f"not counted after the {what} came back"
                time.sleep(0.2)

        # A port in use is named, and nothing is left running by the failed attempt.
        blocked = subprocess.run(
            [sys.executable, "-m", "deploy.local.run"],
            cwd=REPO,
            env={**full_env, "DATA_DIR": str(tmp_path / "other")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        blocked_output = blocked.stdout + blocked.stderr
        assert blocked.returncode != 0
        assert f"port {ports['KAFKA']} (KAFKA_PORT) is already in use" in blocked_output
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped." in rest
    for name in ("kafka", "secantusd"):
        assert f"{name} exited with -9; restarting in 1 s (log: {tmp_path / 'logs'}" in rest
        assert f"{name} restarted" in rest
    for port in ports.values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"

    # A second run reuses the data kept: the log and the totals survived the stop.
    process, output = _start(full_env)
    try:
        deadline = time.monotonic() + 30
        while (body := httpx.get(totals, params=params, headers=headers).json())["value"] != 2:
            assert time.monotonic() < deadline, f"totals lost across runs: {body}"
            time.sleep(0.2)
        third = make_event("cccd.issued", "bu-dang-minh-hung", at("2024-04-22", 9))
        assert httpx.post(ingest, json=third, headers=headers).status_code == 202
        again = httpx.post(ingest, json=second, headers=headers).json()
        assert again == {"accepted": 0, "duplicates": 1}  # remembered across runs
        deadline = time.monotonic() + 30
        while httpx.get(totals, params=params, headers=headers).json()["value"] != 3:
            assert time.monotonic() < deadline, "the second run did not count"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest


def test_make_run_stops_when_the_broker_cannot_be_restarted(tmp_path: Path) -> None:
    """A broker that does not come back (here its port is taken while it is down) stops the
    run with a message naming its log, instead of leaving the services on a dead stack."""
    ports = {
        name: free_port()
        for name in ("KAFKA", "KAFKA_CONTROLLER", "MONGODB", "INGEST", "API", "AGGREGATOR")
    }
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "MONGODB_URI")},
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "ADMIN_TOKEN": "test-admin-token-for-make-run",
    }
    process, _ = _start(env)
    try:
        (broker,) = _pids_with("kafka.Kafka", f"KAFKA_PORT={ports['KAFKA']}")
        with socket.socket() as squatter:
            # Listening (past the dead broker's connections in TIME_WAIT), never answering.
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            os.kill(broker, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while True:
                try:
                    squatter.bind(("127.0.0.1", ports["KAFKA"]))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the broker's port stayed taken"
                    time.sleep(0.05)
            squatter.listen()
            rest, _ = process.communicate(timeout=180)
    finally:
        if process.poll() is None:  # the test failed first: stop the run and what it started
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=120)
    assert process.returncode == 1, rest
    log = tmp_path / "logs" / "kafka.log"
    assert f"make run: the broker (kafka) did not restart in 3 tries (log: {log})" in rest
    assert "stopped." not in rest
    for port in ports.values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
