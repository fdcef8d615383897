"""Issue 19, findings 5-8, without servers: periods and days in ASCII digits and within
1900-2199, the id rule (NFC, no invisible or bidirectional characters), formula cells behind
whitespace, and the HTTP rules that need no server (bounded error bodies, relative
redirects, the JSON content type, the offline docs)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.adapters.http_security import Day
from shared.domain.periods import InvalidPeriod, Period
from shared.domain.safety import EARLIEST_DAY, LATEST_DAY

# -- finding 5: periods and days --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "day:0001-01-01",
        "day:9999-12-31",
        "day:1899-12-31",
        "day:2200-01-01",
        "month:1899-12",
        "month:2200-01",
        "year:0001",
        "year:1899",
        "year:2200",
        "year:9999",
        "year:２０２４",  # fullwidth digits
        "day:２０２４-04-22",
        "month:2024-０４",
        "year:٢٠٢٤",  # Arabic-Indic digits
        "day:2024-04-2\u0662",
    ],
)
def test_periods_outside_the_bounds_or_in_other_digits_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse(text)
    assert text not in str(refused.value)  # never echoed


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("day:1900-01-01", EARLIEST_DAY, EARLIEST_DAY),
        ("day:2199-12-31", LATEST_DAY, LATEST_DAY),
        ("month:1900-01", date(1900, 1, 1), date(1900, 1, 31)),
        ("year:2199", date(2199, 1, 1), LATEST_DAY),
    ],
)
def test_the_bounds_themselves_are_periods(text: str, first: date, last: date) -> None:
    assert Period.parse(text).date_range() == (first, last)
    assert (date(1900, 1, 1), date(2199, 12, 31)) == (EARLIEST_DAY, LATEST_DAY)


def test_a_long_period_is_refused_without_being_repeated() -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse("day:" + "9" * 60_000)
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    "value",
    ["２０２４-04-22", "1713744000", 1_713_744_000, "2024-4-22", "0001-01-01", "9999-12-31", ""],
)
def test_days_are_ascii_iso_days_within_the_bounds(value: Any) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Day).validate_python(value)


def test_a_day_as_the_contract_writes_it() -> None:
    assert TypeAdapter(Day).validate_python("2024-04-22") == date(2024, 4, 22)
    assert TypeAdapter(Day).validate_python(date(2199, 12, 31)) == LATEST_DAY
