"""Test fixtures: the real local broker and database on free ports, with throw-away data.

Tests of anything that crosses Kafka or MongoDB run against these real servers and the real
service processes; nothing here is faked.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.local.stack import REPO, LocalStack, Process, free_port, started_stack
from shared.settings import Settings


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@dataclass
class Pipeline:
    """The three services running against `infra`, each test session on fresh topics and db."""

    stack: LocalStack
    env: dict[str, str]
    ports: dict[str, int]
    admin_token: str
    services: dict[str, Process] = field(default_factory=dict)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def start(self, name: str) -> None:
        self.services[name] = self.stack.start_service(name, self.ports[name], self.env)

    def stop(self, name: str) -> int | None:
        return self.stack.stop(self.services.pop(name))

    def kill(self, name: str) -> None:
        self.stack.kill(self.services.pop(name))

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def post(self, events: Any, token: str | None = None) -> httpx.Response:
        return httpx.post(
            self.url("ingest", "/v1/events"), json=events, headers=self.headers(token), timeout=30
        )

    def total(self, unit_id: str, metric: str, period: str, token: str | None = None) -> Any:
        response = httpx.get(
            self.url("api", "/v1/totals"),
            params={"unit_id": unit_id, "metric": metric, "period": period},
            headers=self.headers(token),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def wait_reflected(self, since: datetime | None = None, timeout_s: float = 30) -> datetime:
        """Wait until `as_of` passes `since` (default: now): every event acknowledged before
        then is in the totals."""
        since = since or datetime.now(UTC)
        deadline = time.monotonic() + timeout_s
        as_of = None
        while time.monotonic() < deadline:
            try:
                as_of_text = self.total("binh-phuoc", "eid.activated", "all")["as_of"]
            except httpx.TimeoutException:
                continue  # a loaded machine: ask again until the deadline
            if as_of_text is not None:
                as_of = datetime.fromisoformat(as_of_text)
                if as_of >= since:
                    return as_of
            time.sleep(0.1)
        raise AssertionError(
            f"totals not caught up with {since} after {timeout_s} s (as_of {as_of})"
        )

    def settings(self) -> Settings:
        """Settings naming this pipeline's broker and topics, for the admin's functions."""
        return Settings(
            kafka_bootstrap=self.env["KAFKA_BOOTSTRAP"],
            events_topic=self.env["EVENTS_TOPIC"],
            deadletter_topic=self.env["DEADLETTER_TOPIC"],
            consumer_group=self.env["CONSUMER_GROUP"],
        )

    def create_token(self, role: str, scope: Sequence[str] = ()) -> tuple[str, str]:
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        response = httpx.post(
            self.url("api", "/v1/tokens"),
            json={"name": name, "role": role, "scope": list(scope)},
            headers=self.headers(),
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return name, response.json()["token"]


@contextmanager
def running_pipeline(
    infra: LocalStack, extra_env: dict[str, str] | None = None
) -> Iterator[Pipeline]:
    """The three services on fresh topics and a fresh database of `infra`."""
    run = uuid.uuid4().hex[:8]
    ports = {"ingest": free_port(), "api": free_port(), "aggregator": free_port()}
    env = {
        "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "MONGODB_URI": infra.mongodb_uri,
        "MONGODB_DB": f"test_{run}",
        "EVENTS_TOPIC": f"events-{run}",
        "DEADLETTER_TOPIC": f"events-{run}-dead",
        "CONSUMER_GROUP": f"aggregator-{run}",
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "INGEST_PORT": str(ports["ingest"]),
        "API_PORT": str(ports["api"]),
        "AGGREGATOR_PORT": str(ports["aggregator"]),
        # INFRA: a group join takes about half the session timeout.
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        # A killed aggregator's open transaction is aborted after 3 s of silence, not 5.
        "AGGREGATOR_STALE_AFTER_S": "3",
        "PYTHONPATH": str(REPO),
        **(extra_env or {}),
    }
    line = Pipeline(infra, env, ports, env["ADMIN_TOKEN"])
    init = infra.spawn("init", [sys.executable, "-m", "shared.admin", "init"], env=env)
    assert init.popen.wait(60) == 0, Path(init.log_path).read_text()
    infra.processes.remove(init)
    try:
        # Side by side: each spends most of its start importing and connecting.
        with ThreadPoolExecutor(3) as starting:
            list(starting.map(line.start, ("aggregator", "ingest", "api")))
        yield line
    finally:
        for name in list(line.services):
            line.stop(name)


@pytest.fixture(scope="session")
def pipeline(infra: LocalStack) -> Iterator[Pipeline]:
    with running_pipeline(infra) as line:
        yield line


@pytest.fixture(scope="module")
def own_pipeline(infra: LocalStack) -> Iterator[Pipeline]:
    """A pipeline of the module's own, for tests that change the unit tree."""
    with running_pipeline(infra) as line:
        yield line


_ICT = timedelta(hours=7)


def at(day: str, hour: int = 10, minute: int = 0) -> str:
    """An RFC 3339 instant at a local (Asia/Ho_Chi_Minh) wall-clock time."""
    return f"{day}T{hour:02d}:{minute:02d}:00+07:00"


def make_event(
    kind: str, unit_id: str, occurred_at: str, event_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "eid.activated": {"attributes": {"level": 2}},
        "filing.submitted": {"attributes": {"channel": "online", "service_id": "svc-1"}},
        "filing.processed": {"attributes": {"channel": "online", "on_time": True}},
        "payment.failed": {"attributes": {"kind": "fee"}},
    }
    body: dict[str, Any] = {
        "event_id": event_id or uuid.uuid4().hex,
        "type": kind,
        "unit_id": unit_id,
        "occurred_at": occurred_at,
        **defaults.get(kind, {}),
    }
    body.update(fields)
    return body


async def post_many(pipeline: Pipeline, events: list[dict[str, Any]], concurrency: int = 4) -> None:
    """Post in batches of 1,000 from a few concurrent clients, as portals do."""
    batches = [events[i : i + 1000] for i in range(0, len(events), 1000)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            response = await client.post(
                pipeline.url("ingest", "/v1/events"), json=batch, headers=pipeline.headers()
            )
            assert response.status_code == 202, response.text

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


class BackgroundPoster:
    """Posts events from another thread while the test does something else; `join` re-raises
    whatever went wrong there, so a refused post fails the test instead of vanishing."""

    def __init__(
        self, pipeline: Pipeline, events: list[dict[str, Any]], concurrency: int = 4
    ) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                asyncio.run(post_many(pipeline, events, concurrency))
            except BaseException as exc:  # handed to the test thread in join()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout_s: float = 300) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "posting did not finish"
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class Record:
    """A log record as the aggregator reads it (aiokafka's ConsumerRecord's fields it uses)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def certification_and_voids(first: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Voids of some counted events and certification histories: state the rebuild must
    replay in order (the ledger of counted ids, the subjects' statuses)."""
    voids = [
        make_event(
            "event.voided", e["unit_id"], e["occurred_at"], attributes={"voids": e["event_id"]}
        )
        for e in first[:300]
    ]
    statuses = ("pending_signature", "pending_seal", "completed")
    certifications = [
        make_event(
            "certification.status",
            "so-tu-phap",
            at("2025-12-20", 8 + step),
            subject_id=f"dossier-{n}",
            attributes={"status": statuses[step]},
        )
        for n in range(100)
        for step in range(n % 3 + 1)
    ]
    return voids + certifications
