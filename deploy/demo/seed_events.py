"""Generators that turn the province's report tables back into the events that produced them.

One piece of code for the replay tests (`tests/e2e/test_seed_tables.py`) and `make demo`: the
same table and seed give the same events, ids included, so a demo posted twice adds nothing.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Protocol

ICT = timezone(timedelta(hours=7))
UTC = UTC
SEED_TABLES = Path(__file__).parent / "seed_tables"


def load_table(name: str) -> dict[str, Any]:
    """A transcription of a seed table (`seed_tables/*.json`, with its source lines)."""
    table: dict[str, Any] = json.loads((SEED_TABLES / name).read_text("utf-8"))
    return table


def event_id(rng: random.Random) -> str:
    """An id drawn from the generator's own stream: the same seed gives the same ids."""
    return uuid.UUID(int=rng.getrandbits(128), version=4).hex


def units_under(units: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each unit (as `GET /v1/units` lists them) and its communes: where its events are
    posted, so that the rollups are exercised."""
    listed = list(units)
    places: dict[str, list[str]] = {u["id"]: [u["id"]] for u in listed}
    for unit in listed:
        if unit["level"] == "commune" and unit.get("parent_id") in places:
            places[unit["parent_id"]].append(unit["id"])
    return places


def split_amount(total: int, parts: int, rng: random.Random) -> list[int]:
    """`parts` non-negative integers that sum to `total` exactly."""
    if parts == 0:
        assert total == 0, "an amount with no transactions"
        return []
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def instant_on(day: date, rng: random.Random) -> str:
    """A random instant of a local day, often right at its edges, written with a random offset."""
    edge = rng.random()
    if edge < 0.1:
        seconds = rng.randint(0, 59)  # just after local midnight
    elif edge < 0.2:
        seconds = 86_399 - rng.randint(0, 59)  # just before the next local midnight
    else:
        seconds = rng.randint(0, 86_399)
    local = datetime(day.year, day.month, day.day, tzinfo=ICT) + timedelta(seconds=seconds)
    if rng.random() < 0.5:
        return local.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return local.isoformat()


class EventMaker(Protocol):
    def __call__(self, kind: str, unit: str, day: date, **attributes: Any) -> dict[str, Any]: ...


def event_maker(rng: random.Random) -> EventMaker:
    """Builds an event of a type, for a unit, at a random instant of a local day."""

    def event(kind: str, unit: str, day: date, **attributes: Any) -> dict[str, Any]:
        return {
            "event_id": event_id(rng),
            "type": kind,
            "unit_id": unit,
            "occurred_at": instant_on(day, rng),
            "attributes": attributes,
        }

    return event


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def payment_events(
    table: dict[str, Any], units_under: dict[str, list[str]], seed: int
) -> list[dict[str, Any]]:
    """Events that reproduce the payments table: the day's figures on the report day, the rest of
    the month before it, the rest of the year before that month; plus events that must not count
    (failed payments, the day after, the year before)."""
    rng = random.Random(seed)
    report_day = date.fromisoformat(table["date"])
    spans = {
        "day": [report_day],
        "month": days(report_day.replace(day=1), report_day - timedelta(days=1)),
        "year": days(
            report_day.replace(month=1, day=1), report_day.replace(day=1) - timedelta(days=1)
        ),
    }
    events: list[dict[str, Any]] = []
    for row in table["rows"]:
        places = units_under[row["unit_id"]]
        for kind in ("nvtc", "fee"):
            day_figures = row["day"][kind]
            month_figures = row["month"][kind]
            year_figures = row["year"][kind]
            own = {
                "day": (day_figures["count"], day_figures["amount_vnd"]),
                "month": (
                    month_figures["count"] - day_figures["count"],
                    month_figures["amount_vnd"] - day_figures["amount_vnd"],
                ),
                "year": (
                    year_figures["count"] - month_figures["count"],
                    year_figures["amount_vnd"] - month_figures["amount_vnd"],
                ),
            }
            for span, (count, amount) in own.items():
                for value in split_amount(amount, count, rng):
                    events.append(
                        {
                            "event_id": event_id(rng),
                            "type": "payment.succeeded",
                            "unit_id": rng.choice(places),
                            "occurred_at": instant_on(rng.choice(spans[span]), rng),
                            "amount_vnd": value,
                            "attributes": {"kind": kind},
                        }
                    )
            noise_days = [
                report_day + timedelta(days=1),
                report_day.replace(month=1, day=1) - timedelta(days=1),
            ]
            for noise_day in noise_days:
                events.append(
                    {
                        "event_id": event_id(rng),
                        "type": "payment.succeeded",
                        "unit_id": rng.choice(places),
                        "occurred_at": instant_on(noise_day, rng),
                        "amount_vnd": rng.randint(1, 10**9),
                        "attributes": {"kind": kind},
                    }
                )
            events.append(
                {
                    "event_id": event_id(rng),
                    "type": "payment.failed",
                    "unit_id": rng.choice(places),
                    "occurred_at": instant_on(report_day, rng),
                    "attributes": {"kind": kind},
                }
            )
    rng.shuffle(events)
    return events


def fraction_for(percent: str, max_denominator: int = 5000) -> tuple[int, int]:
    """The smallest k/n whose percent, rounded half-up at the table's precision, is `percent`."""
    shown = Decimal(percent)
    quantum = Decimal(1).scaleb(shown.as_tuple().exponent)  # type: ignore[arg-type]
    for n in range(1, max_denominator):
        guess = int(shown * n / 100)
        for k in (guess, guess + 1):
            if 0 <= k <= n and (Decimal(k * 100) / n).quantize(quantum, ROUND_HALF_UP) == shown:
                return k, n
    raise ValueError(f"no fraction up to {max_denominator} shows as {percent}%")


def rounds_to(numerator: int, denominator: int, percent: str) -> bool:
    shown = Decimal(percent)
    quantum = Decimal(1).scaleb(shown.as_tuple().exponent)  # type: ignore[arg-type]
    return (Decimal(numerator * 100) / denominator).quantize(quantum, ROUND_HALF_UP) == shown


def online_share_fractions(table: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per unit (active services, services offered) reproducing each row's share, weighted so
    that the total row (sum/sum) also shows as printed."""
    fractions = {row["unit_id"]: fraction_for(row["online_share_percent"]) for row in table["rows"]}
    return weighted_to_total(fractions, table["total"]["online_share_percent"])


def weighted_to_total(
    fractions: dict[str, tuple[int, int]], target: str
) -> dict[str, tuple[int, int]]:
    """Each unit's k/n scaled by a whole weight (its share unchanged) so that sum(k)/sum(n)
    rounds, at `target`'s precision, to `target`."""
    weights = dict.fromkeys(fractions, 1)
    lowest = min(fractions, key=lambda u: fractions[u][0] / fractions[u][1])
    highest = max(fractions, key=lambda u: (fractions[u][0] / fractions[u][1], -fractions[u][1]))
    for _ in range(10_000):
        k = sum(fractions[u][0] * weights[u] for u in fractions)
        n = sum(fractions[u][1] * weights[u] for u in fractions)
        if rounds_to(k, n, target):
            return {
                u: (fractions[u][0] * weights[u], fractions[u][1] * weights[u]) for u in fractions
            }
        weights[lowest if Decimal(k * 100) / n > Decimal(target) else highest] += 1
    raise ValueError("could not weight the rows to the total")


def online_service_events(
    table: dict[str, Any],
    fractions: dict[str, tuple[int, int]],
    units_under: dict[str, list[str]],
    seed: int,
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Service catalogs and filings that reproduce the online-services table for the year up to
    its date, with filings that must not count (offline, before the year, after the date, or
    for a service the unit does not offer)."""
    rng = random.Random(seed)
    report_day = date.fromisoformat(table["date"])
    in_range = days(report_day.replace(month=1, day=1), report_day)
    outside = [
        report_day + timedelta(days=1),
        report_day.replace(month=1, day=1) - timedelta(days=1),
    ]
    catalogs: dict[str, list[str]] = {}
    events: list[dict[str, Any]] = []

    filing = event_maker(rng)

    for row in table["rows"]:
        unit = row["unit_id"]
        places = units_under[unit]
        active, offered = fractions[unit]
        services = [f"{unit}.{i:04d}" for i in range(offered)]
        catalogs[unit] = services
        for service in services[:active]:
            for _ in range(rng.randint(1, 3)):
                events.append(
                    filing(
                        "filing.submitted",
                        rng.choice(places),
                        rng.choice(in_range),
                        channel="online",
                        service_id=service,
                    )
                )
        for service in services[active:]:
            events.append(
                filing(
                    "filing.submitted",
                    rng.choice(places),
                    rng.choice(in_range),
                    channel="offline",
                    service_id=service,
                )
            )
            events.append(
                filing(
                    "filing.submitted",
                    rng.choice(places),
                    rng.choice(outside),
                    channel="online",
                    service_id=service,
                )
            )
        events.append(
            filing(
                "filing.submitted",
                rng.choice(places),
                rng.choice(in_range),
                channel="online",
                service_id=f"{unit}.not-offered",
            )
        )
        online, processed = fraction_for(row["processed_online_percent"])
        scale = rng.randint(1, 3)
        for i in range(processed * scale):
            events.append(
                filing(
                    "filing.processed",
                    rng.choice(places),
                    rng.choice(in_range),
                    channel="online" if i < online * scale else "offline",
                    on_time=rng.random() < 0.8,
                )
            )
        events.append(
            filing(
                "filing.processed",
                rng.choice(places),
                rng.choice(outside),
                channel="online",
                on_time=True,
            )
        )
    rng.shuffle(events)
    return catalogs, events


def exact_fraction(percent: str) -> tuple[int, int]:
    """The smallest k/n whose percent, rounded half-up to 2 decimals (the report's precision),
    is `percent`: "98" is 49/50 (98.00), not 48/49 (97.96, which the seed would print as 98)."""
    return fraction_for(str(Decimal(percent).quantize(Decimal("0.01"))))


def software_usage_fractions(
    table: dict[str, Any],
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Per unit (signed, issued) documents and (active, staff) e-mail users reproducing each
    row's rates at 2 decimals, weighted so that the total row's rates (sum/sum) show too. The
    online share is the same for every row of the seed (100%): all of a unit's documents."""
    assert {row["documents_online_percent"] for row in table["rows"]} == {"100"}
    signed = {
        row["unit_id"]: exact_fraction(row["signed_documents_percent"]) for row in table["rows"]
    }
    email = {
        row["unit_id"]: exact_fraction(row["official_email_usage_percent"]) for row in table["rows"]
    }
    total = table["total"]
    return (
        weighted_to_total(signed, total["signed_documents_percent"]),
        weighted_to_total(email, total["official_email_usage_percent"]),
    )


def software_usage_events(
    table: dict[str, Any], units_under: dict[str, list[str]], seed: int
) -> list[dict[str, Any]]:
    """Events that reproduce the software-usage table (seed 003, line 405) for its range:
    paperless Ecabinet meetings in the range and before it, documents issued in the range, and
    staff e-mail statuses (some changed, one voided) up to its last day; plus events that must
    not count (meetings not paperless or on another platform, meetings and documents outside
    the range)."""
    rng = random.Random(seed)
    first = date.fromisoformat(table["period"]["from"])
    last = date.fromisoformat(table["period"]["to"])
    in_range = days(first, last)
    before = days(date(2022, 1, 1), first - timedelta(days=1))
    signed, email = software_usage_fractions(table)
    events: list[dict[str, Any]] = []

    event = event_maker(rng)

    for row in table["rows"]:
        unit = row["unit_id"]
        places = units_under[unit]
        period = row["ecabinet_meetings_period"]
        earlier = row["ecabinet_meetings_total"] - period
        for span, count in ((in_range, period), (before, earlier)):
            for _ in range(count):
                events.append(
                    event(
                        "meeting.held",
                        rng.choice(places),
                        rng.choice(span),
                        paperless=True,
                        platform="ecabinet",
                    )
                )
        for day, paperless, platform in (
            (last + timedelta(days=1), True, "ecabinet"),  # after the range
            (rng.choice(in_range), False, "ecabinet"),
            (rng.choice(in_range), True, "zoom"),
        ):
            events.append(
                event(
                    "meeting.held", rng.choice(places), day, paperless=paperless, platform=platform
                )
            )
        events.append(
            event("meeting.held", rng.choice(places), rng.choice(in_range), paperless=True)
        )
        k, n = signed[unit]
        for i in range(n):
            events.append(
                event(
                    "document.issued",
                    rng.choice(places),
                    rng.choice(in_range),
                    signed=i < k,
                    online=True,
                )
            )
        for day in (first - timedelta(days=1), last + timedelta(days=1)):
            events.append(
                event("document.issued", rng.choice(places), day, signed=False, online=False)
            )
        active, staff = email[unit]
        for i in range(staff):
            # A staff member's events are all of one unit (the record belongs to it).
            place = rng.choice(places)
            person = f"{unit}.staff-{i:04d}"
            stands = "active" if i < active else "inactive"
            other = "inactive" if stands == "active" else "active"
            one, two, three = sorted(rng.sample([*before[-60:], *in_range], 3))
            if rng.random() < 0.3:  # the other status first, then the one that stands
                events.append(status_of(event, place, person, other, one))
            events.append(status_of(event, place, person, stands, two))
            if rng.random() < 0.1:  # a wrong later status, taken back
                wrong = status_of(event, place, person, other, three)
                events += [wrong, event("event.voided", place, three, voids=wrong["event_id"])]
    rng.shuffle(events)
    return events


def status_of(
    event: EventMaker,
    unit: str,
    subject: str,
    status: str,
    day: date,
    kind: str = "staff.email_status",
) -> dict[str, Any]:
    """A status event of a record (`subject_id`), built by `event(kind, unit, day, ...)`."""
    body: dict[str, Any] = event(kind, unit, day, status=status)
    body["subject_id"] = subject
    return body


# The 1022 hotline's figures (seed 003, line 401): "Từ ngày 21/3/2024 đến ngày 22/4/2024, tổng
# số tin tiếp nhận 360 tin, đã xử lý 351 tin, đang xử lý 09; tổng đài viên trả lời trực tiếp
# 329 tin, chuyển các ngành xử lý 31 tin."
HOTLINE_1022 = {
    "from": "2024-03-21",
    "to": "2024-04-22",
    "hotline.received": 360,
    "hotline.processed": 351,
    "hotline.in_progress": 9,
    "hotline.answered_by_operator": 329,
    "hotline.forwarded": 31,
}


def hotline_events(
    unit: str, seed: int, figures: dict[str, Any] = HOTLINE_1022
) -> list[dict[str, Any]]:
    """Ticket events that reproduce the hotline's figures over its range: each ticket is
    received once (`hotline.ticket_received`, answered by an operator or forwarded to a
    department) and moves between statuses (`hotline.ticket_status`): an operator's answer is
    processed at once, a forwarded ticket is in progress until its department processes it.
    Tickets received the day before and the day after the range must not count."""
    rng = random.Random(seed)
    first = date.fromisoformat(figures["from"])
    last = date.fromisoformat(figures["to"])
    in_range = days(first, last)
    operator = figures["hotline.answered_by_operator"]
    forwarded = figures["hotline.forwarded"]
    still_open = figures["hotline.in_progress"]
    assert operator + forwarded == figures["hotline.received"]
    assert figures["hotline.processed"] + still_open == figures["hotline.received"]
    assert still_open <= forwarded
    events: list[dict[str, Any]] = []

    event = event_maker(rng)

    def ticket(number: int, handled_by: str, span: list[date], closed: bool) -> None:
        subject = f"1022-{number:05d}"
        # A forwarded ticket that is closed later needs a later day for its closing.
        day = rng.choice(span[:-1] if handled_by == "department" and closed else span)
        received = event("hotline.ticket_received", unit, day, handled_by=handled_by)
        received["subject_id"] = subject
        events.append(received)
        kind = "hotline.ticket_status"
        if handled_by == "operator":
            events.append(status_of(event, unit, subject, "processed", day, kind))
            return
        events.append(status_of(event, unit, subject, "in_progress", day, kind))
        if closed:
            later = rng.choice([d for d in span if d > day])
            events.append(status_of(event, unit, subject, "processed", later, kind))

    for number in range(operator):
        ticket(number, "operator", in_range, closed=True)
    for number in range(forwarded):
        ticket(operator + number, "department", in_range, closed=number >= still_open)
    outside = figures["hotline.received"]
    for number, day in enumerate((first - timedelta(days=1), last + timedelta(days=1))):
        ticket(outside + 2 * number, "operator", [day], closed=True)
        ticket(outside + 2 * number + 1, "department", [day], closed=False)
    rng.shuffle(events)
    return events


# -- the rest of the seed report, for `make demo` ------------------------------------------------


def subtree(units: Iterable[Mapping[str, Any]], root: str) -> list[Mapping[str, Any]]:
    """The units under `root` (itself included), in the order listed."""
    listed = list(units)
    children: dict[str, list[str]] = {}
    for unit in listed:
        if unit.get("parent_id"):
            children.setdefault(unit["parent_id"], []).append(unit["id"])
    inside, stack = set(), [root]
    while stack:
        unit_id = stack.pop()
        inside.add(unit_id)
        stack.extend(children.get(unit_id, []))
    return [u for u in listed if u["id"] in inside]


def communes_of(units: Iterable[Mapping[str, Any]], root: str) -> list[str]:
    return [u["id"] for u in subtree(units, root) if u["level"] == "commune"]


def certification_events(
    table: dict[str, Any], units: Iterable[Mapping[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """Records of electronic certification (seed 003, row 460) whose latest statuses on the
    table's day are its figures: most records are posted at their status of that day, one in
    twenty with the statuses before it on earlier days, a few reported out of order."""
    rng = random.Random(seed)
    event = event_maker(rng)
    first = date.fromisoformat(table["period"]["from"])
    last = date.fromisoformat(table["as_of"])
    span = days(first, last)
    statuses = ("pending_signature", "pending_seal", "completed", "cancelled", "rejected")
    earlier = {
        "pending_signature": [],
        "pending_seal": ["pending_signature"],
        "completed": ["pending_signature", "pending_seal"],
        "cancelled": ["pending_signature"],
        "rejected": ["pending_signature"],
    }
    events: list[dict[str, Any]] = []
    for row in table["rows"]:
        places = [u["id"] for u in subtree(units, row["unit_id"]) if u["level"] != "province"]
        assert sum(row[s] for s in statuses) == row["total"]
        number = 0
        for status in statuses:
            for _ in range(row[status]):
                subject = f"{row['unit_id']}.cert-{number:06d}"
                number += 1
                place = rng.choice(places)  # a record's events are all of one unit
                steps = earlier[status] if rng.random() < 0.05 else []
                when = sorted(rng.sample(span[-400:], len(steps) + 1))
                for step, day in zip([*steps, status], when, strict=True):
                    events.append(
                        status_of(event, place, subject, step, day, "certification.status")
                    )
    # Mostly in the order they happened, as a live log is; one in twenty late.
    late = {id(e) for e in events if rng.random() < 0.05}
    events.sort(key=lambda e: "~" if id(e) in late else e["occurred_at"][:10])
    return events


# Đề án 06 (seed 003, line 177): "518.898/502.000 trường hợp, đạt 103,37%" at the end of the
# first quarter of 2024, counted since the campaign began on 2022-01-01.
EID_ACTIVATIONS = {"campaign": "de-an-06-eid-2024", "from": "2022-01-01", "to": "2024-03-31"}
EID_ACTIVATED_BY_Q1_2024 = 518_898


def eid_campaign_events(
    communes: list[str], seed: int, count: int = EID_ACTIVATED_BY_Q1_2024
) -> list[dict[str, Any]]:
    """`count` e-ID activations over the communes from the campaign's start to the end of the
    quarter, more of them each month as the campaign gathered pace; level 2 for most. In the
    order they happened, as field apps posted them: a batch then touches a few days' totals,
    not every day of two years (the aggregator's worst case, BENCHMARKS.md)."""
    rng = random.Random(seed)
    span = days(
        date.fromisoformat(EID_ACTIVATIONS["from"]), date.fromisoformat(EID_ACTIVATIONS["to"])
    )
    weights = [1 + i / len(span) * 3 for i in range(len(span))]
    chosen_days = sorted(rng.choices(span, weights=weights, k=count))
    return [
        {
            "event_id": event_id(rng),
            "type": "eid.activated",
            "unit_id": rng.choice(communes),
            "occurred_at": instant_on(day, rng),
            "attributes": {"level": 2 if rng.random() < 0.7 else 1},
        }
        for day in chosen_days
    ]


# "4 phủ" (seed 003, line 229; Kế hoạch 128/KH-UBND): 90 days from 4 April 2024. Minh Hưng's
# targets are the seed's (line 203, shipped with the campaign); the other communes' are drawn
# at its scale, and each is somewhere between lagging and done by the demo's day.
FOUR_COVERAGES = {"campaign": "4-phu-2024", "from": "2024-04-04", "ends": "2024-07-03"}
FOUR_COVERAGES_SCALE = {
    "cccd.issued": 183,
    "eid.activated": 3308,
    "sim.registered": 3373,
    "smartphone.replaced": 84,
}


def four_coverages_events(
    communes: list[str],
    shipped: list[dict[str, Any]],
    upto: date,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(targets, events): the campaign's targets for every commune (the shipped ones kept) and
    the coverage events from its start to `upto`, each commune's pace drawn around the one
    its targets need."""
    rng = random.Random(seed)
    event = event_maker(rng)
    first = date.fromisoformat(FOUR_COVERAGES["from"])
    ends = date.fromisoformat(FOUR_COVERAGES["ends"])
    span = days(first, upto)
    elapsed = len(span) / len(days(first, ends))
    targets = {(t["unit_id"], t["metric"]): t["target"] for t in shipped}
    events: list[dict[str, Any]] = []
    for commune in communes:
        size = rng.uniform(0.2, 0.8)
        for metric, scale in FOUR_COVERAGES_SCALE.items():
            target = targets.setdefault((commune, metric), max(1, round(scale * size)))
            done = min(target, round(target * elapsed * rng.uniform(0.5, 1.5)))
            attributes = {"level": 2} if metric == "eid.activated" else {}
            events += [event(metric, commune, rng.choice(span), **attributes) for _ in range(done)]
    rng.shuffle(events)
    listed = [{"unit_id": u, "metric": m, "target": t} for (u, m), t in targets.items()]
    return listed, events
