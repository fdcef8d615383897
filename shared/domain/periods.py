"""Periods in the province's local time.

A day is a day in Asia/Ho_Chi_Minh: an event at 23:30 local time on 22/4 belongs to 22/4,
whatever offset the client wrote it with. A period is a day, a month, a quarter (three whole
months), a year, a range of days (both included, as the province's reporting month "từ 21/3
đến 20/4/2024" is) or all time; every bounded one is a span of local days (`date_range`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

PeriodKind = Literal["day", "month", "quarter", "year", "range", "all"]

# ASCII digits only (re.ASCII): `\d` alone would take any script's digits, and int() converts
# them, so `year:２０２４` (fullwidth) would be a second spelling of `year:2024`.
_DAY = r"\d{4}-\d{2}-\d{2}"
_PERIOD_RE = re.compile(
    rf"^(?:day:(?P<day>{_DAY})|month:(?P<month>\d{{4}}-\d{{2}})"
    r"|quarter:(?P<quarter>\d{4}-Q\d)|year:(?P<year>\d{4})"
    rf"|range:(?P<first>{_DAY})\.\.(?P<last>{_DAY})|(?P<all>all))$",
    re.ASCII,
)
PERIOD_FORMS = (
    "day:YYYY-MM-DD, month:YYYY-MM, quarter:YYYY-Qn (n 1 to 4), year:YYYY, "
    "range:YYYY-MM-DD..YYYY-MM-DD (both days included, at most 3 years) or all"
)
# A range spans at most this many years: its last day comes before the third anniversary of
# its first (21/3/2024 to 20/3/2027 is the longest from 21/3/2024; an anniversary of 29/2
# falls on 1/3). Wide enough for any campaign or plan (Đề án 06 runs 2022–2025 in years, not
# days), and a bound on what one request may make the database read.
MAX_RANGE_YEARS = 3

# Days a request may name (periods, campaign bounds, report days, chart ranges): wide enough
# for any real campaign, narrow enough that date arithmetic around them (pace windows, a year
# before, a month after) can never leave Python's 1-9999 range. `shared.domain.safety` holds
# the rule for days; the bounds live here, where periods (which safety builds on) need them.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)


class InvalidPeriod(ValueError):
    """A period string that is none of the forms of `PERIOD_FORMS`, a range that is reversed
    or longer than MAX_RANGE_YEARS, or a period whose days are not all from EARLIEST_DAY to
    LATEST_DAY. The message never repeats the text (a `/v1/stream` watch may be kilobytes
    long); it may name the days it parsed, which are short."""


@dataclass(frozen=True, slots=True)
class LocalDate:
    """The local calendar day an instant falls on, and the month and year it belongs to."""

    year: int
    month: int
    day: int

    @classmethod
    def of(cls, instant: datetime) -> LocalDate:
        if instant.tzinfo is None:
            raise ValueError("an instant needs an offset to have a local day")
        local = instant.astimezone(LOCAL_TZ)
        return cls(local.year, local.month, local.day)

    @property
    def month_key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def day_key(self) -> str:
        return f"{self.day:02d}"

    def as_date(self) -> date:
        return date(self.year, self.month, self.day)


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    year: int | None = None
    month: int | None = None
    day: int | None = None
    quarter: int | None = None
    # A range's first and last local day, both included (None for the other kinds).
    first: date | None = None
    last: date | None = None

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD_RE.match(text)
        if match is None:
            raise InvalidPeriod(f"period must be {PERIOD_FORMS}")
        try:
            if match["day"]:
                d = date.fromisoformat(match["day"])
                period = cls("day", d.year, d.month, d.day)
            elif match["month"]:
                year, month = (int(part) for part in match["month"].split("-"))
                date(year, month, 1)
                period = cls("month", year, month)
            elif match["quarter"]:
                year, quarter = int(match["quarter"][:4]), int(match["quarter"][-1])
                if not 1 <= quarter <= 4:
                    raise InvalidPeriod("a quarter is Q1, Q2, Q3 or Q4")
                date(year, 1, 1)
                period = cls("quarter", year, quarter=quarter)
            elif match["year"]:
                year = int(match["year"])
                date(year, 1, 1)
                period = cls("year", year)
            elif match["first"]:
                period = cls.between(
                    date.fromisoformat(match["first"]), date.fromisoformat(match["last"])
                )
            else:
                return cls("all")
        except InvalidPeriod:
            raise
        except ValueError as exc:
            raise InvalidPeriod(f"period is not a real date: {exc}") from exc
        _within_bounds(*(period.date_range() or (EARLIEST_DAY, LATEST_DAY)))
        return period

    @classmethod
    def between(cls, first: date, last: date) -> Period:
        """The range of local days from `first` to `last`, both included: refused when
        reversed, longer than MAX_RANGE_YEARS or outside EARLIEST_DAY to LATEST_DAY."""
        _within_bounds(first, last)
        if last < first:
            raise InvalidPeriod(f"a range's last day ({last}) is before its first ({first})")
        if last >= years_after(first, MAX_RANGE_YEARS):
            longest = years_after(first, MAX_RANGE_YEARS) - timedelta(days=1)
            raise InvalidPeriod(
                f"a range spans at most {MAX_RANGE_YEARS} years: from {first} it ends by {longest}"
            )
        return cls("range", first=first, last=last)

    def __str__(self) -> str:
        if self.kind == "day":
            return f"day:{self.year:04d}-{self.month:02d}-{self.day:02d}"
        if self.kind == "month":
            return f"month:{self.year:04d}-{self.month:02d}"
        if self.kind == "quarter":
            return f"quarter:{self.year:04d}-Q{self.quarter}"
        if self.kind == "year":
            return f"year:{self.year:04d}"
        if self.kind == "range":
            return f"range:{self.first}..{self.last}"
        return "all"

    @property
    def month_key(self) -> str:
        """The storage month a day or month period lives in."""
        if self.kind not in ("day", "month"):
            raise ValueError(f"{self} has no single month")
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def day_key(self) -> str:
        if self.kind != "day":
            raise ValueError(f"{self} is not a day")
        return f"{self.day:02d}"

    def contains(self, local: LocalDate) -> bool:
        bounds = self.date_range()
        return bounds is None or bounds[0] <= local.as_date() <= bounds[1]

    def date_range(self) -> tuple[date, date] | None:
        """The first and last local day of the period; None for all time."""
        if self.kind == "all":
            return None
        if self.kind == "range":
            assert self.first is not None and self.last is not None
            return self.first, self.last
        assert self.year is not None
        if self.kind == "year":
            return date(self.year, 1, 1), date(self.year, 12, 31)
        if self.kind == "quarter":
            assert self.quarter is not None
            first_month = 3 * self.quarter - 2
            last = calendar.monthrange(self.year, first_month + 2)[1]
            return date(self.year, first_month, 1), date(self.year, first_month + 2, last)
        assert self.month is not None
        if self.kind == "month":
            last = calendar.monthrange(self.year, self.month)[1]
            return date(self.year, self.month, 1), date(self.year, self.month, last)
        assert self.day is not None
        day = date(self.year, self.month, self.day)
        return day, day


def _within_bounds(first: date, last: date) -> None:
    # Totals of day:0001-01-01 or day:9999-12-31 would overflow the date arithmetic around
    # them (a 500): the same bounds as every other day a request names.
    if min(first, last) < EARLIEST_DAY or max(first, last) > LATEST_DAY:
        raise InvalidPeriod(f"period must lie from {EARLIEST_DAY} to {LATEST_DAY}")


def years_after(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February's is 1 March in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return date(day.year + years, 3, 1)


def today_local(now: datetime) -> date:
    return now.astimezone(LOCAL_TZ).date()


def month_keys_between(start: date, end: date) -> list[str]:
    """Every month key (YYYY-MM) from start's month to end's month, inclusive."""
    keys = []
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return keys


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]
