from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from shared.domain.periods import (
    InvalidPeriod,
    LocalDate,
    Period,
    days_between,
    month_keys_between,
    years_after,
)


def test_2330_local_on_22_april_counts_for_22_april() -> None:
    local = datetime(2024, 4, 22, 23, 30, tzinfo=timezone(timedelta(hours=7)))
    as_utc = local.astimezone(UTC)
    assert (as_utc.hour, as_utc.minute, as_utc.day) == (16, 30, 22)
    assert LocalDate.of(local) == LocalDate(2024, 4, 22)
    assert LocalDate.of(as_utc) == LocalDate(2024, 4, 22)


def test_utc_evening_belongs_to_next_local_day() -> None:
    # 17:30 UTC on 22/4 is 00:30 on 23/4 in Ho Chi Minh City.
    assert LocalDate.of(datetime(2024, 4, 22, 17, 30, tzinfo=UTC)) == LocalDate(2024, 4, 23)


def test_new_year_boundary_moves_month_and_year() -> None:
    instant = datetime(2023, 12, 31, 17, 0, tzinfo=UTC)  # 00:00 on 1/1/2024 local
    day = LocalDate.of(instant)
    assert (day.year, day.month_key, day.day_key) == (2024, "2024-01", "01")


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError):
        LocalDate.of(datetime(2024, 4, 22, 12, 0))


@pytest.mark.parametrize(
    ("text", "kind"),
    [("day:2024-04-22", "day"), ("month:2024-04", "month"), ("year:2024", "year"), ("all", "all")],
)
def test_periods_round_trip(text: str, kind: str) -> None:
    period = Period.parse(text)
    assert period.kind == kind
    assert str(period) == text


@pytest.mark.parametrize(
    "text",
    ["day:2024-02-30", "month:2024-13", "week:2024-10", "day:22/04/2024", "", "ALL", "year:24"],
)
def test_malformed_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        Period.parse(text)


def test_period_contains_local_dates() -> None:
    day = LocalDate(2024, 4, 22)
    assert Period.parse("day:2024-04-22").contains(day)
    assert not Period.parse("day:2024-04-21").contains(day)
    assert Period.parse("month:2024-04").contains(day)
    assert not Period.parse("month:2024-05").contains(day)
    assert Period.parse("year:2024").contains(day)
    assert Period.parse("all").contains(day)


# -- quarters and ranges --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("quarter:2024-Q1", date(2024, 1, 1), date(2024, 3, 31)),
        ("quarter:2024-Q2", date(2024, 4, 1), date(2024, 6, 30)),
        ("quarter:2024-Q3", date(2024, 7, 1), date(2024, 9, 30)),
        ("quarter:2024-Q4", date(2024, 10, 1), date(2024, 12, 31)),
        ("range:2024-03-21..2024-04-20", date(2024, 3, 21), date(2024, 4, 20)),
        ("range:2024-12-21..2025-01-20", date(2024, 12, 21), date(2025, 1, 20)),  # year end
        ("range:2024-04-22..2024-04-22", date(2024, 4, 22), date(2024, 4, 22)),  # one day
    ],
)
def test_quarters_and_ranges_round_trip_with_their_days(text: str, first: date, last: date) -> None:
    period = Period.parse(text)
    assert period.kind == text.split(":")[0]
    assert str(period) == text
    assert period.date_range() == (first, last)
    assert Period.parse(str(period)) == period


def test_a_quarter_is_its_three_whole_months() -> None:
    # Q1 of a leap year ends with 29 February's month; its days are 31 + 29 + 31.
    first, last = Period.parse("quarter:2024-Q1").date_range() or (None, None)
    assert first is not None and last is not None
    assert month_keys_between(first, last) == ["2024-01", "2024-02", "2024-03"]
    assert len(days_between(first, last)) == 91
    first, last = Period.parse("quarter:2023-Q1").date_range() or (None, None)
    assert first is not None and last is not None
    assert len(days_between(first, last)) == 90
    # The four quarters tile the year: each day in exactly one.
    quarters = [Period.parse(f"quarter:2024-Q{n}") for n in (1, 2, 3, 4)]
    for day in days_between(date(2024, 1, 1), date(2024, 12, 31)):
        local = LocalDate(day.year, day.month, day.day)
        assert [q.quarter for q in quarters if q.contains(local)] == [(day.month - 1) // 3 + 1]


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("quarter:2024-Q2", [(2024, 4, 1), (2024, 6, 30)], [(2024, 3, 31), (2024, 7, 1)]),
        ("quarter:2024-Q4", [(2024, 10, 1), (2024, 12, 31)], [(2023, 12, 31), (2025, 1, 1)]),
        (
            "range:2024-03-21..2024-04-20",
            [(2024, 3, 21), (2024, 3, 31), (2024, 4, 1), (2024, 4, 20)],
            [(2024, 3, 20), (2024, 4, 21), (2023, 4, 1)],
        ),
        (
            "range:2024-12-21..2025-01-20",
            [(2024, 12, 21), (2024, 12, 31), (2025, 1, 1), (2025, 1, 20)],
            [(2024, 12, 20), (2025, 1, 21), (2024, 1, 10)],
        ),
        ("range:2024-02-29..2024-02-29", [(2024, 2, 29)], [(2024, 2, 28), (2024, 3, 1)]),
    ],
)
def test_quarters_and_ranges_contain_their_edges_and_nothing_beyond(
    text: str, inside: list[tuple[int, int, int]], outside: list[tuple[int, int, int]]
) -> None:
    period = Period.parse(text)
    for day in inside:
        assert period.contains(LocalDate(*day)), day
    for day in outside:
        assert not period.contains(LocalDate(*day)), day


def test_a_range_contains_what_local_days_say() -> None:
    # 23:30 local on 20/4 is still the reporting month; 17:30 UTC on 20/4 is 00:30 on 21/4.
    month = Period.parse("range:2024-03-21..2024-04-20")
    ict = timezone(timedelta(hours=7))
    assert month.contains(LocalDate.of(datetime(2024, 4, 20, 23, 30, tzinfo=ict)))
    assert not month.contains(LocalDate.of(datetime(2024, 4, 20, 17, 30, tzinfo=UTC)))
    assert month.contains(LocalDate.of(datetime(2024, 3, 20, 17, 30, tzinfo=UTC)))  # 00:30 21/3


@pytest.mark.parametrize(
    "text",
    [
        "range:2024-01-01..2026-12-31",  # three years to the day
        "range:2024-03-21..2027-03-20",
        "range:2023-03-01..2026-02-28",
        "range:2024-02-29..2027-02-28",  # 29/2's anniversary is 1/3
        "range:2197-01-01..2199-12-31",  # up to the latest day
    ],
)
def test_a_range_of_exactly_three_years_is_taken(text: str) -> None:
    assert Period.parse(text).kind == "range"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("range:2024-01-01..2027-01-01", "at most 3 years: from 2024-01-01 it ends by 2026-12-31"),
        ("range:2024-03-21..2027-03-21", "ends by 2027-03-20"),
        ("range:2024-02-29..2027-03-01", "ends by 2027-02-28"),
        ("range:2020-01-01..2030-01-01", "at most 3 years"),
        ("range:2024-04-20..2024-03-21", "last day (2024-03-21) is before its first (2024-04-20)"),
        ("range:2025-01-01..2024-12-31", "is before its first"),
        ("range:2024-02-30..2024-03-01", "not a real date"),
        ("range:2024-01-01..2024-13-01", "not a real date"),
        ("range:1899-12-31..1900-01-02", "from 1900-01-01 to 2199-12-31"),
        ("range:2199-01-01..2200-01-01", "from 1900-01-01 to 2199-12-31"),
        ("range:9999-01-01..9999-12-31", "from 1900-01-01 to 2199-12-31"),
        ("quarter:2024-Q0", "Q1, Q2, Q3 or Q4"),
        ("quarter:2024-Q5", "Q1, Q2, Q3 or Q4"),
        ("quarter:2200-Q1", "from 1900-01-01 to 2199-12-31"),
        ("quarter:2024-q1", "quarter:YYYY-Qn"),
        ("quarter:2024-Q10", "quarter:YYYY-Qn"),
        ("quarter:2024Q1", "quarter:YYYY-Qn"),
        ("quarter:2024-Q１", "quarter:YYYY-Qn"),  # fullwidth digit
        ("range:2024-03-21", "range:YYYY-MM-DD..YYYY-MM-DD"),
        ("range:2024-03-21...2024-04-20", "range:YYYY-MM-DD..YYYY-MM-DD"),
        ("range:2024-03-21..", "range:YYYY-MM-DD..YYYY-MM-DD"),
        ("range:2024-3-21..2024-04-20", "range:YYYY-MM-DD..YYYY-MM-DD"),
        ("range: 2024-03-21..2024-04-20", "range:YYYY-MM-DD..YYYY-MM-DD"),
        ("range:2024-03-21..2024-04-20 ", "range:YYYY-MM-DD..YYYY-MM-DD"),
    ],
)
def test_bad_quarters_and_ranges_are_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse(text)
    assert says in str(refused.value)


def test_the_forms_named_in_a_refusal_are_every_form() -> None:
    with pytest.raises(InvalidPeriod) as refused:
        Period.parse("week:2024-10")
    message = str(refused.value)
    for form in ("day:YYYY-MM-DD", "month:YYYY-MM", "quarter:YYYY-Qn", "year:YYYY", "all"):
        assert form in message
    assert "range:YYYY-MM-DD..YYYY-MM-DD (both days included, at most 3 years)" in message


def test_years_after_moves_29_february_to_1_march() -> None:
    assert years_after(date(2024, 2, 29), 3) == date(2027, 3, 1)
    assert years_after(date(2024, 2, 29), 4) == date(2028, 2, 29)
    assert years_after(date(2024, 12, 31), 3) == date(2027, 12, 31)
