from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.domain.periods import InvalidPeriod, LocalDate, Period


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
