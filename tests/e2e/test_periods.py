"""`quarter:` and `range:` periods through the real services: events posted to ingest, counted
by the aggregator, read from the API's totals, rankings, series and stream, each compared with
an independent recount of the posted events (their local day from the standard library's
zoneinfo, their ancestors from `GET /v1/units`; no product code)."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import Pipeline, post_many

ICT = ZoneInfo("Asia/Ho_Chi_Minh")
PROVINCE = "binh-phuoc"
# Days on either side of every edge the periods below have, where a wrong edge shows.
EDGES = [
    date(2023, 12, 31),
    date(2024, 1, 1),
    date(2024, 2, 29),
    date(2024, 3, 1),
    date(2024, 3, 20),
    date(2024, 3, 21),
    date(2024, 3, 31),
    date(2024, 4, 1),
    date(2024, 4, 20),
    date(2024, 4, 21),
    date(2024, 6, 30),
    date(2024, 7, 1),
    date(2024, 9, 30),
    date(2024, 10, 1),
    date(2024, 12, 20),
    date(2024, 12, 21),
    date(2024, 12, 31),
    date(2025, 1, 1),
    date(2025, 1, 20),
    date(2025, 1, 21),
]
SPAN = (date(2023, 12, 1), date(2025, 2, 28))
# period → its first and last local day, as the contract defines them.
PERIODS = {
    "quarter:2023-Q4": (date(2023, 10, 1), date(2023, 12, 31)),
    "quarter:2024-Q1": (date(2024, 1, 1), date(2024, 3, 31)),
    "quarter:2024-Q2": (date(2024, 4, 1), date(2024, 6, 30)),
    "quarter:2024-Q4": (date(2024, 10, 1), date(2024, 12, 31)),
    "range:2024-03-21..2024-04-20": (date(2024, 3, 21), date(2024, 4, 20)),  # reporting month
    "range:2024-12-21..2025-01-20": (date(2024, 12, 21), date(2025, 1, 20)),  # over the year end
    "range:2024-02-29..2024-02-29": (date(2024, 2, 29), date(2024, 2, 29)),
    "range:2024-01-15..2024-11-10": (date(2024, 1, 15), date(2024, 11, 10)),
    "range:2023-12-01..2025-02-28": SPAN,
    "range:2022-06-01..2025-05-31": (date(2022, 6, 1), date(2025, 5, 31)),  # three years
}
RATE = "filing.processed.online_rate"
COUNTS = ("eid.activated", "payment.nvtc.amount_vnd", "filing.processed", "filing.processed.online")


@dataclass(frozen=True)
class Posted:
    unit_id: str
    day: date  # local day, from zoneinfo
    metrics: dict[str, int]


@dataclass
class World:
    line: Pipeline
    parents: dict[str, str | None]
    levels: dict[str, str]
    posted: list[Posted]
    commune: str
    district: str

    def lineage(self, unit_id: str) -> Iterator[str]:
        current: str | None = unit_id
        while current is not None:
            yield current
            current = self.parents[current]

    def recount(self, unit_id: str, metric: str, first: date, last: date) -> int:
        return sum(
            p.metrics.get(metric, 0)
            for p in self.posted
            if first <= p.day <= last and unit_id in self.lineage(p.unit_id)
        )

    def get(self, path: str, params: Any) -> httpx.Response:
        return httpx.get(
            self.line.url("api", path), params=params, headers=self.line.headers(), timeout=30
        )


def _instant(rng: random.Random, day: date) -> str:
    """An instant on local `day`, often near midnight and often written in another offset
    (17:30 UTC is already the next local day)."""
    minute = rng.choice([0, 5, 30, 59]) + 60 * rng.choice([0, 0, 1, 10, 22, 23, 23])
    local = datetime(day.year, day.month, day.day, tzinfo=ICT) + timedelta(minutes=minute)
    offset = timezone(timedelta(hours=rng.choice([7, 0, -5, 9])))
    return local.astimezone(offset).isoformat()


def _event(rng: random.Random, unit_id: str, day: date) -> tuple[dict[str, Any], Posted]:
    occurred_at = _instant(rng, day)
    local_day = datetime.fromisoformat(occurred_at).astimezone(ICT).date()
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "unit_id": unit_id,
        "occurred_at": occurred_at,
    }
    kind = rng.choice(["eid", "payment", "filing"])
    if kind == "eid":
        body |= {"type": "eid.activated", "attributes": {"level": rng.choice([1, 2])}}
        metrics = {"eid.activated": 1}
    elif kind == "payment":
        amount = rng.randint(0, 3_000_000_000)
        body |= {"type": "payment.succeeded", "amount_vnd": amount, "attributes": {"kind": "nvtc"}}
        metrics = {"payment.nvtc.amount_vnd": amount}
    else:
        online = rng.random() < 0.6
        channel = "online" if online else "offline"
        on_time = rng.random() < 0.8
        body |= {"type": "filing.processed", "attributes": {"channel": channel, "on_time": on_time}}
        metrics = {"filing.processed": 1, "filing.processed.online": int(online)}
    return body, Posted(unit_id, local_day, metrics)


@pytest.fixture(scope="module")
def world(own_pipeline: Pipeline) -> World:
    line = own_pipeline
    units = httpx.get(line.url("api", "/v1/units"), headers=line.headers(), timeout=30).json()
    parents = {u["id"]: u["parent_id"] for u in units}
    levels = {u["id"]: u["level"] for u in units}
    # Every commune (each under its own district) and a department: leaves of the tree.
    communes = sorted(u["id"] for u in units if u["level"] == "commune")
    department = sorted(u["id"] for u in units if u["level"] == "department")[0]
    assert len(communes) >= 2
    leaves = [*communes, department]
    rng = random.Random(20)
    days = [SPAN[0] + timedelta(n) for n in range((SPAN[1] - SPAN[0]).days + 1)]
    events, posted = [], []
    for _ in range(2400):
        day = rng.choice(EDGES) if rng.random() < 0.5 else rng.choice(days)
        # The first commune gets the most, so rankings are not all ties.
        unit_id = leaves[0] if rng.random() < 0.3 else rng.choice(leaves)
        body, record = _event(rng, unit_id, day)
        events.append(body)
        posted.append(record)
    asyncio.run(post_many(line, events))
    line.wait_reflected(timeout_s=120)
    return World(line, parents, levels, posted, leaves[0], str(parents[leaves[0]]))


def test_the_events_fall_on_the_edges() -> None:
    # The fixture's instants near midnight in other offsets are on the local day meant.
    rng = random.Random(1)
    for day in EDGES:
        for _ in range(20):
            written = datetime.fromisoformat(_instant(rng, day))
            assert written.astimezone(ICT).date() == day


@pytest.mark.parametrize("period", PERIODS)
def test_quarter_and_range_totals_equal_a_recount(world: World, period: str) -> None:
    first, last = PERIODS[period]
    for unit_id in (world.commune, world.district, PROVINCE):
        for metric in COUNTS:
            body = world.line.total(unit_id, metric, period)
            expected = world.recount(unit_id, metric, first, last)
            assert body["value"] == expected, (unit_id, metric, period)
            assert isinstance(body["value"], int)
            assert body["period"] == period
        rate = world.line.total(unit_id, RATE, period)
        online = world.recount(unit_id, "filing.processed.online", first, last)
        processed = world.recount(unit_id, "filing.processed", first, last)
        assert (rate["numerator"], rate["denominator"]) == (online, processed), (unit_id, period)
        if processed:
            assert rate["value"] == float(Decimal(online) / Decimal(processed))
        else:
            assert rate["value"] is None


def test_the_recount_is_not_trivial(world: World) -> None:
    # Every period holds events at every level checked, and the reporting month differs from
    # both calendar months it cuts: an off-by-one edge would show.
    for first, last in PERIODS.values():
        if first.year >= 2024 or last.year >= 2024:
            assert world.recount(world.commune, "eid.activated", first, last) > 0
    month = world.recount(PROVINCE, "eid.activated", date(2024, 3, 21), date(2024, 4, 20))
    march = world.recount(PROVINCE, "eid.activated", date(2024, 3, 1), date(2024, 3, 31))
    april = world.recount(PROVINCE, "eid.activated", date(2024, 4, 1), date(2024, 4, 30))
    assert month not in (march, april)
    edge = world.recount(PROVINCE, "eid.activated", date(2024, 4, 20), date(2024, 4, 21))
    assert edge > world.recount(PROVINCE, "eid.activated", date(2024, 4, 20), date(2024, 4, 20))


def test_a_quarter_equals_its_months_and_the_same_days_as_a_range(world: World) -> None:
    for metric in ("eid.activated", "payment.nvtc.amount_vnd"):
        quarter = world.line.total(world.district, metric, "quarter:2024-Q2")["value"]
        months = sum(
            world.line.total(world.district, metric, f"month:2024-0{m}")["value"] for m in (4, 5, 6)
        )
        same = world.line.total(world.district, metric, "range:2024-04-01..2024-06-30")
        assert quarter == months == same["value"]
        year = world.line.total(world.district, metric, "year:2024")["value"]
        quarters = sum(
            world.line.total(world.district, metric, f"quarter:2024-Q{q}")["value"]
            for q in (1, 2, 3, 4)
        )
        assert quarters == year


@pytest.mark.parametrize(
    "period", ["range:2024-03-21..2024-04-20", "quarter:2024-Q2", "range:2024-12-21..2025-01-20"]
)
@pytest.mark.parametrize("level", ["district", "commune"])
def test_rankings_of_quarters_and_ranges_equal_a_recount(
    world: World, period: str, level: str
) -> None:
    first, last = PERIODS[period]
    counted = world.get(
        "/v1/rankings", {"metric": "eid.activated", "period": period, "level": level}
    )
    assert counted.status_code == 200, counted.text
    body = counted.json()
    assert body["period"] == period
    units = [u for u, lvl in world.levels.items() if lvl == level]
    expected = {u: world.recount(u, "eid.activated", first, last) for u in units}
    got = {row["unit_id"]: row["value"] for row in body["units"]}
    assert got == expected
    assert sum(1 for v in expected.values() if v > 0) >= 2
    for row in body["units"]:  # competition ranks: 1 + how many have more
        assert row["rank"] == 1 + sum(1 for v in got.values() if v > row["value"])

    rates = world.get("/v1/rankings", {"metric": RATE, "period": period, "level": level})
    assert rates.status_code == 200, rates.text
    assert len(rates.json()["units"]) == len(units)
    for row in rates.json()["units"]:
        online = world.recount(row["unit_id"], "filing.processed.online", first, last)
        processed = world.recount(row["unit_id"], "filing.processed", first, last)
        assert (row["numerator"], row["denominator"]) == (online, processed), row["unit_id"]


def test_series_of_a_period_lists_its_days(world: World) -> None:
    period = "range:2024-03-21..2024-04-20"
    first, last = PERIODS[period]
    answer = world.get(
        "/v1/series", {"unit_id": world.district, "metric": "eid.activated", "period": period}
    )
    assert answer.status_code == 200, answer.text
    days = answer.json()["days"]
    assert [d["date"] for d in days] == [
        (first + timedelta(n)).isoformat() for n in range((last - first).days + 1)
    ]
    for d in days:
        day = date.fromisoformat(d["date"])
        assert d["value"] == world.recount(world.district, "eid.activated", day, day), day
    quarter = world.get(
        "/v1/series",
        {"unit_id": world.district, "metric": "eid.activated", "period": "quarter:2024-Q1"},
    ).json()["days"]
    assert len(quarter) == 91 and quarter[0]["date"] == "2024-01-01"
    assert quarter[-1]["date"] == "2024-03-31"


def test_a_stream_watches_a_range(world: World) -> None:
    watch = f"{world.commune}:eid.activated:range:2024-03-21..2024-04-20"
    expected = world.recount(world.commune, "eid.activated", date(2024, 3, 21), date(2024, 4, 20))
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
        client.stream(
            "GET",
            world.line.url("api", "/v1/stream"),
            params={"watch": watch},
            headers=world.line.headers(),
        ) as response,
    ):
        assert response.status_code == 200
        body: dict[str, Any] = {}
        for text in response.iter_lines():
            if text.startswith("data: "):
                body = json.loads(text[len("data: ") :])
                break
    assert body["period"] == "range:2024-03-21..2024-04-20"
    assert body["value"] == expected


@pytest.mark.parametrize(
    ("period", "says"),
    [
        ("range:2024-04-20..2024-03-21", "is before its first"),
        ("range:2022-06-01..2025-06-01", "at most 3 years: from 2022-06-01 it ends by 2025-05-31"),
        ("quarter:2024-Q5", "Q1, Q2, Q3 or Q4"),
        ("range:2024-03-21..2024-02-30", "not a real date"),
        ("range:2024-03-21/2024-04-20", "quarter:YYYY-Qn"),
        ("quarter:2024", "range:YYYY-MM-DD..YYYY-MM-DD"),
    ],
)
def test_bad_quarters_and_ranges_are_422_naming_the_problem(
    world: World, period: str, says: str
) -> None:
    requests = [
        ("/v1/totals", {"unit_id": PROVINCE, "metric": "eid.activated", "period": period}),
        ("/v1/rankings", {"metric": "eid.activated", "period": period, "level": "district"}),
        ("/v1/series", {"unit_id": PROVINCE, "metric": "eid.activated", "period": period}),
        ("/v1/stream", {"watch": f"{PROVINCE}:eid.activated:{period}"}),
    ]
    for path, params in requests:
        answer = world.get(path, params)
        assert answer.status_code == 422, (path, answer.text)
        assert says in answer.text, (path, answer.text)


def test_series_takes_a_period_or_from_and_to(world: World) -> None:
    base = {"unit_id": PROVINCE, "metric": "eid.activated"}
    refused = [
        ({**base, "period": "all"}, "not all"),
        ({**base, "period": "range:2024-01-01..2025-01-01"}, "at most 366 days"),
        ({**base, "period": "quarter:2024-Q1", "from": "2024-01-01"}, "not both"),
        (base, "give `from` and `to`, or `period`"),
        ({**base, "from": "2024-01-01"}, "give `from` and `to`, or `period`"),
    ]
    for params, says in refused:
        answer = world.get("/v1/series", params)
        assert answer.status_code == 422, (params, answer.text)
        assert says in answer.text, (params, answer.text)
    year = world.get("/v1/series", {**base, "period": "year:2024"})
    assert year.status_code == 200 and len(year.json()["days"]) == 366
