"""Generators that turn the province's report tables back into the events that produced them."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ICT = timezone(timedelta(hours=7))
UTC = UTC


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
                            "event_id": uuid.uuid4().hex,
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
                        "event_id": uuid.uuid4().hex,
                        "type": "payment.succeeded",
                        "unit_id": rng.choice(places),
                        "occurred_at": instant_on(noise_day, rng),
                        "amount_vnd": rng.randint(1, 10**9),
                        "attributes": {"kind": kind},
                    }
                )
            events.append(
                {
                    "event_id": uuid.uuid4().hex,
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
    target = table["total"]["online_share_percent"]
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

    def filing(kind: str, unit: str, day: date, **attributes: Any) -> dict[str, Any]:
        return {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "unit_id": unit,
            "occurred_at": instant_on(day, rng),
            "attributes": attributes,
        }

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
