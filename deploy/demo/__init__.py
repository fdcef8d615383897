"""`make demo`: the seed report's province, posted through ingest as field apps would post it.

The April 2024 tables (payments, online services, software usage, the 1022 hotline,
electronic certification), Đề án 06's e-ID activations at 518,898 of 502,000 by the end of
the first quarter, and the "4 phủ" campaign in progress over Bình Phước's communes, so that
the dashboard opened on 22 April 2024 shows what the province's report showed.

Every event comes from `deploy.demo.seed_events`, the generators the replay tests use, with
the tests' seeds: the same ids on every run, so a second run is all duplicates and adds
nothing. The service catalogs and campaign targets are PUT, which is idempotent too.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from deploy.demo.seed_events import (
    EID_ACTIVATIONS,
    FOUR_COVERAGES,
    certification_events,
    communes_of,
    eid_campaign_events,
    four_coverages_events,
    hotline_events,
    load_table,
    online_service_events,
    online_share_fractions,
    payment_events,
    software_usage_events,
    units_under,
)
from shared.bulk_import import ImportFailed, http_post, send_with_retries
from shared.progress import Progress

# The dashboard's day: the payments and certification tables' date.
DEMO_DAY = "2024-04-22"
PROVINCE = "binh-phuoc"
BATCH = 1000
# Events posted before the demo waits for them to be counted (see `post_and_count`).
CHUNK = 50_000
CLIENTS = 4


@dataclass
class DemoPlan:
    """What the demo puts in: catalogs and targets (PUT), then the events, section by section
    (what the dashboard shows first, so that it fills while the rest goes in)."""

    services: dict[str, list[str]]
    targets: dict[str, list[dict[str, Any]]]
    sections: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(len(events) for _, events in self.sections)


def demo_plan(
    units: list[Mapping[str, Any]], shipped_targets: Mapping[str, list[dict[str, Any]]]
) -> DemoPlan:
    """Everything the demo posts, from the units of 22 April 2024 (`GET /v1/units?at=`) and
    the targets the campaigns ship with. The seeds are the replay tests' own."""
    places = units_under(units)
    communes = communes_of(units, PROVINCE)
    online_table = load_table("online_services_2024-04-21.json")
    catalogs, online = online_service_events(
        online_table, online_share_fractions(online_table), places, seed=363
    )
    four_targets, four_events = four_coverages_events(
        communes,
        shipped_targets.get(FOUR_COVERAGES["campaign"], []),
        date.fromisoformat(DEMO_DAY),
        seed=229,
    )
    plan = DemoPlan(
        services=catalogs,
        targets={FOUR_COVERAGES["campaign"]: with_rollup_targets(four_targets, units)},
    )
    plan.sections = [
        ("payments", payment_events(load_table("payments_2024-04-22.json"), places, seed=462)),
        ("online services", online),
        (
            "software usage",
            software_usage_events(load_table("ecabinet_2024-04-20.json"), places, seed=405),
        ),
        ("1022 hotline", hotline_events("so-tt-tt", seed=401)),
        ("4 phủ", four_events),
        (f"e-ID ({EID_ACTIVATIONS['campaign']})", eid_campaign_events(communes, seed=177)),
        (
            "certification",
            certification_events(load_table("certification_2024-04-22.json"), units, seed=460),
        ),
    ]
    return plan


def dashboard_url(api_url: str, campaign: str = FOUR_COVERAGES["campaign"]) -> str:
    """The dashboard opened on the demo's day and campaign (its view is in the fragment)."""
    return f"{api_url.rstrip('/')}/#c={campaign}&d={DEMO_DAY}"


def with_rollup_targets(
    targets: list[dict[str, Any]], units: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The communes' targets and, for every district and the province above them, the sum of
    its communes' (as the plan assigns them: the province's figure is what its communes owe)."""
    parents = {u["id"]: u.get("parent_id") for u in units}
    summed: dict[tuple[str, str], int] = {}
    for target in targets:
        parent = parents.get(target["unit_id"])
        while parent is not None:
            key = (parent, target["metric"])
            summed[key] = summed.get(key, 0) + int(target["target"])
            parent = parents.get(parent)
    own = {(t["unit_id"], t["metric"]) for t in targets}
    return [
        *targets,
        *(
            {"unit_id": unit, "metric": metric, "target": value}
            for (unit, metric), value in summed.items()
            if (unit, metric) not in own
        ),
    ]


class Api:
    """The few calls the demo makes to the API service, with the admin token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(
            f"{self.base}{path}{query}",
            data=None if body is None else json.dumps(body, ensure_ascii=False).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None


class DemoStopped(RuntimeError):
    """`make run` is stopping: the demo posts nothing more (a later run posts the rest)."""


@dataclass
class DemoOutcome:
    posted: int = 0
    accepted: int = 0
    duplicates: int = 0
    seconds: float = 0.0


def post_and_count(
    api: Api,
    ingest_url: str,
    plan: DemoPlan,
    *,
    progress_every_s: float = 5.0,
    say: Callable[[str], None] = print,
    stopping: threading.Event | None = None,
) -> DemoOutcome:
    """Every section's events through ingest, in batches of 1,000 from four clients (each
    batch retried, with ingest's Retry-After, until taken; a refusal stops the demo), a
    chunk at a time: each chunk is counted before the next is posted. On the local database
    the two sides take turns rather than fight: posting and counting at once was five times
    slower than one after the other (tests/demo/test_make_demo.py prints the times)."""
    post = http_post(ingest_url, api.token)

    stopping = stopping or threading.Event()

    def send(batch: list[dict[str, Any]]) -> tuple[int, int, int]:
        if stopping.is_set():
            raise DemoStopped("the stack is stopping")
        answer = send_with_retries(post, batch, retries=10, sleep=time.sleep)
        if answer.status != 202:
            raise ImportFailed(f"ingest refused a demo batch ({answer.status}): {answer.body}")
        body = answer.body or {}
        return len(batch), int(body.get("accepted", 0)), int(body.get("duplicates", 0))

    outcome = DemoOutcome()
    started = time.monotonic()
    progress = Progress(
        "demo", total=plan.events, unit="events posted and counted", every_s=progress_every_s
    )
    with progress, ThreadPoolExecutor(CLIENTS) as clients:
        for name, events in plan.sections:
            for first in range(0, len(events), CHUNK):
                chunk = events[first : first + CHUNK]
                batches = [chunk[i : i + BATCH] for i in range(0, len(chunk), BATCH)]
                for _, accepted, duplicates in clients.map(send, batches):
                    outcome.accepted += accepted
                    outcome.duplicates += duplicates
                outcome.posted += len(chunk)
                wait_counted(api, datetime.now(UTC))
                progress.set(outcome.posted)
            say(f"demo: {name}: {len(events):,} events, counted")
    outcome.seconds = time.monotonic() - started
    return outcome


def wait_counted(api: Api, since: datetime, *, timeout_s: float = 600) -> None:
    """Until the aggregator has counted everything ingest took before `since` (the totals'
    `as_of` passes it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        total = api.call(
            "GET", "/v1/totals", unit_id=PROVINCE, metric="eid.activated", period="all"
        )
        if total["as_of"] is not None and datetime.fromisoformat(total["as_of"]) >= since:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the aggregator had not counted the demo after {timeout_s:.0f} s")


def run_demo(
    api_url: str,
    ingest_url: str,
    token: str,
    *,
    progress_every_s: float = 5.0,
    say: Callable[[str], None] = print,
    stopping: threading.Event | None = None,
) -> DemoOutcome:
    api = Api(api_url, token)
    units = api.call("GET", "/v1/units", at=DEMO_DAY)
    four = FOUR_COVERAGES["campaign"]
    plan = demo_plan(units, {four: api.call("GET", f"/v1/campaigns/{four}/targets")})
    for unit_id, services in plan.services.items():
        api.call("PUT", f"/v1/units/{unit_id}/services", {"services": services})
    for campaign, targets in plan.targets.items():
        api.call("PUT", f"/v1/campaigns/{campaign}/targets", targets)
    say(
        f"demo: {plan.events:,} events for {len(units)} units of {DEMO_DAY}, "
        f"{sum(len(t) for t in plan.targets.values())} campaign targets; the dashboard fills "
        f"as they are counted: {dashboard_url(api_url)}"
    )
    events_url = f"{ingest_url.rstrip('/')}/v1/events"
    outcome = post_and_count(
        api, events_url, plan, progress_every_s=progress_every_s, say=say, stopping=stopping
    )
    say(
        f"demo: {outcome.posted:,} events posted and counted in {outcome.seconds:.0f} s: "
        f"{outcome.accepted:,} new, {outcome.duplicates:,} already there"
    )
    return outcome
