"""`make run`: the whole product on this machine, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

from deploy.demo import DEMO_DAY, DemoStopped, dashboard_url, run_demo
from deploy.local.dashboard import viewer_token
from deploy.local.prometheus import start_prometheus, write_config
from deploy.local.stack import LOCAL, REPO, LocalStack, PortInUse, Process, kafka_version
from shared.admin import init
from shared.settings import Settings

# The servers `make run` starts, by process name: without them the services cannot work.
SERVERS = {"kafka": "the broker", "secantusd": "the database"}
SERVER_ATTEMPTS = 3


def admin_token(data_dir: Path) -> str:
    """ADMIN_TOKEN if set; else the one generated on the first run and kept under .local/."""
    configured = os.environ.get("ADMIN_TOKEN")
    if configured:
        return configured
    path = LOCAL / "admin_token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def post_demo(api_url: str, ingest_url: str, token: str, stopping: threading.Event) -> None:
    try:
        run_demo(
            api_url,
            ingest_url,
            token,
            say=lambda line: print(line, flush=True),
            stopping=stopping,
        )
    except DemoStopped:
        return
    except Exception as exc:  # the stack stays up; the demo can be posted again
        print(f"demo: stopped: {exc!r} (python -m deploy.demo posts it again)", flush=True)
        return
    print(
        f"\ndemo: the province on {DEMO_DAY}: {dashboard_url(api_url)}"
        "\n      (sign in with the viewer token above; Ctrl-C stops everything)",
        flush=True,
    )


def main() -> int:
    env = os.environ
    data_dir = Path(env.get("DATA_DIR", str(LOCAL / "data"))).resolve()
    stack = LocalStack(
        data_dir=data_dir,
        log_dir=Path(env.get("LOG_DIR", str(LOCAL / "logs"))).resolve(),
        kafka_port=int(env.get("KAFKA_PORT", "9092")),
        mongo_port=int(env.get("MONGODB_PORT", "27017")),
        kafka_controller_port=int(env.get("KAFKA_CONTROLLER_PORT", "9093")),
    )
    ports = {
        "ingest": int(env.get("INGEST_PORT", "8081")),
        "api": int(env.get("API_PORT", "8080")),
        "aggregator": int(env.get("AGGREGATOR_PORT", "8082")),
    }
    token = admin_token(data_dir)
    # `make run PROMETHEUS=1`: Prometheus with the alert rules, scraping the three services.
    prometheus_port = (
        int(env.get("PROMETHEUS_PORT", "9090")) if env.get("PROMETHEUS", "") not in ("", "0") else 0
    )
    service_env = {
        "KAFKA_BOOTSTRAP": env.get("KAFKA_BOOTSTRAP", stack.kafka_bootstrap),
        "MONGODB_URI": env.get("MONGODB_URI", stack.mongodb_uri),
        "ADMIN_TOKEN": token,
        "INGEST_PORT": str(ports["ingest"]),
        "API_PORT": str(ports["api"]),
        "AGGREGATOR_PORT": str(ports["aggregator"]),
        "PYTHONPATH": str(REPO),
    }
    stopping = False

    def request_stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    try:
        if "KAFKA_BOOTSTRAP" not in env:
            stack.start_broker()
        if "MONGODB_URI" not in env:
            stack.start_database()
        settings = Settings(
            kafka_bootstrap=service_env["KAFKA_BOOTSTRAP"], mongodb_uri=service_env["MONGODB_URI"]
        )
        count = asyncio.run(init(settings))
        viewer = viewer_token(settings, data_dir / "viewer_token")
        for name in ("aggregator", "ingest", "api"):
            stack.start_service(name, ports[name], service_env)
        if prometheus_port:
            config = write_config(LOCAL / "prometheus", ports)
            start_prometheus(stack, config, prometheus_port, data_dir / "prometheus")
    except (PortInUse, RuntimeError, TimeoutError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        print(f"logs: {stack.log_dir}", file=sys.stderr)
        stack.stop_all()
        return 1
    kafka_name = (
        "your own broker" if "KAFKA_BOOTSTRAP" in env else f"Apache Kafka {kafka_version()}"
    )
    # Debian's package serves the classic UI only (its React UI is not packaged).
    prometheus_lines = (
        f"  Prometheus alerts    http://127.0.0.1:{prometheus_port}/classic/alerts"
        "   (rules: /classic/rules)\n"
        if prometheus_port
        else ""
    )
    print(
        f"""
Campaign tracker is running ({time.monotonic() - started:.1f} s to start, {count} units loaded).

  Dashboard            http://127.0.0.1:{ports["api"]}/   (sign in with the viewer token below)
  Viewer token         {viewer}
  API + OpenAPI docs   http://127.0.0.1:{ports["api"]}/docs
  Ingest               http://127.0.0.1:{ports["ingest"]}/v1/events   (docs: /docs)
  Aggregator           http://127.0.0.1:{ports["aggregator"]}/metrics  (/healthz)
  Kafka                {service_env["KAFKA_BOOTSTRAP"]}   ({kafka_name})
  MongoDB (SecantusDB) {service_env["MONGODB_URI"]}
  Data                 {data_dir}
  Logs                 {stack.log_dir}
{prometheus_lines}
  Admin token          {token}

Try:
  curl -s -X POST http://127.0.0.1:{ports["ingest"]}/v1/events \\
    -H "Authorization: Bearer {token}" -H 'Content-Type: application/json' \\
    -d '{{"event_id":"demo-1","type":"eid.activated","unit_id":"bu-dang-minh-hung",\\
"occurred_at":"2024-04-22T23:30:00+07:00","attributes":{{"level":2}}}}'
  curl -s -H "Authorization: Bearer {token}" \\
    'http://127.0.0.1:{ports["api"]}/v1/totals?unit_id=binh-phuoc&metric=eid.activated&period=day:2024-04-22'

Ctrl-C stops everything.""",
        flush=True,
    )
    # `make demo` (DEMO=1): the seed report's events, posted beside the supervision below so
    # that a service that dies meanwhile is restarted (the demo's batches are retried).
    demo_stopping = threading.Event()
    if env.get("DEMO", "") not in ("", "0"):
        api_url = f"http://127.0.0.1:{ports['api']}"
        threading.Thread(
            target=post_demo,
            args=(api_url, f"http://127.0.0.1:{ports['ingest']}", token, demo_stopping),
            name="demo",
            daemon=True,
        ).start()
    # Supervision, as an orchestrator would do it: whatever of ours dies (a service, the
    # broker, the database) is restarted, with a backoff that doubles on each quick death and
    # resets after a minute of good health. A broker or database that does not come back in
    # SERVER_ATTEMPTS tries stops the run: the services cannot work without them.
    starters: dict[str, Callable[[], Process]] = {
        name: partial(stack.start_service, name, port, service_env) for name, port in ports.items()
    }
    if "KAFKA_BOOTSTRAP" not in env:
        starters["kafka"] = stack.start_kafka
    if "MONGODB_URI" not in env:
        starters["secantusd"] = stack.start_database
    supervised = {p.name: p for p in stack.processes if p.name in starters}
    backoff = dict.fromkeys(supervised, 1.0)
    failed_starts = dict.fromkeys(supervised, 0)
    restart_at: dict[str, float] = {}
    while not stopping:
        now = time.monotonic()
        for name, process in list(supervised.items()):
            if process.popen.poll() is None:
                if now - process.started_at > 60:
                    backoff[name] = 1.0
                continue
            if name not in restart_at:
                code = process.popen.returncode
                print(
                    f"{name} exited with {code}; restarting in {backoff[name]:.0f} s "
                    f"(log: {process.log_path})",
                    file=sys.stderr,
                    flush=True,
                )
                if process in stack.processes:
                    stack.processes.remove(process)
                restart_at[name] = now + backoff[name]
                backoff[name] = min(backoff[name] * 2, 60.0)
            elif now >= restart_at[name]:
                del restart_at[name]
                try:
                    supervised[name] = starters[name]()
                    failed_starts[name] = 0
                    print(f"{name} restarted", file=sys.stderr, flush=True)
                except (PortInUse, RuntimeError, TimeoutError) as exc:
                    print(f"{name} did not restart: {exc}", file=sys.stderr, flush=True)
                    failed_starts[name] += 1
                    if name in SERVERS and failed_starts[name] >= SERVER_ATTEMPTS:
                        print(
                            f"make run: {SERVERS[name]} ({name}) did not restart in "
                            f"{SERVER_ATTEMPTS} tries (log: {process.log_path}); "
                            "stopping everything",
                            file=sys.stderr,
                            flush=True,
                        )
                        stack.stop_all()
                        return 1
                    restart_at[name] = time.monotonic() + backoff[name]
                    backoff[name] = min(backoff[name] * 2, 60.0)
        time.sleep(0.5)
    demo_stopping.set()
    print("\nstopping…", flush=True)
    stack.stop_all()
    print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
