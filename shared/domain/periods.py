"""Periods in the province's local time.

A day is a day in Asia/Ho_Chi_Minh: an event at 23:30 local time on 22/4 belongs to 22/4,
whatever offset the client wrote it with.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

PeriodKind = Literal["day", "month", "year", "all"]

# ASCII digits only (re.ASCII): `\d` alone would take any script's digits, and int() converts
# them, so `year:２０２４` (fullwidth) would be a second spelling of `year:2024`.
_PERIOD_RE = re.compile(
    r"^(?:day:(?P<day>\d{4}-\d{2}-\d{2})|month:(?P<month>\d{4}-\d{2})|year:(?P<year>\d{4})|(?P<all>all))$",
    re.ASCII,
)
_PERIOD_FORMS = "day:YYYY-MM-DD, month:YYYY-MM, year:YYYY or all"

# Days a request may name (periods, campaign bounds, report days, chart ranges): wide enough
# for any real campaign, narrow enough that date arithmetic around them (pace windows, a year
# before, a month after) can never leave Python's 1-9999 range. `shared.domain.safety` holds
# the rule for days; the bounds live here, where periods (which safety builds on) need them.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2199, 12, 31)


class InvalidPeriod(ValueError):
    """A period string that is not `day:YYYY-MM-DD`, `month:YYYY-MM`, `year:YYYY` or `all`, or
    whose days are not all from EARLIEST_DAY to LATEST_DAY. The message never repeats the text
    (a `/v1/stream` watch may be kilobytes long)."""


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

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD_RE.match(text)
        if match is None:
            raise InvalidPeriod(f"period must be {_PERIOD_FORMS}")
        try:
            if match["day"]:
                d = date.fromisoformat(match["day"])
                period = cls("day", d.year, d.month, d.day)
            elif match["month"]:
                year, month = (int(part) for part in match["month"].split("-"))
                date(year, month, 1)
                period = cls("month", year, month)
            elif match["year"]:
                year = int(match["year"])
                date(year, 1, 1)
                period = cls("year", year)
            else:
                return cls("all")
        except ValueError as exc:
            raise InvalidPeriod(f"period is not a real date: {exc}") from exc
        # Totals of day:0001-01-01 or day:9999-12-31 would overflow the date arithmetic around
        # them (a 500): the same bounds as every other day a request names.
        first, last = period.date_range() or (EARLIEST_DAY, LATEST_DAY)
        if first < EARLIEST_DAY or last > LATEST_DAY:
            raise InvalidPeriod(f"period must lie from {EARLIEST_DAY} to {LATEST_DAY}")
        return period

    def __str__(self) -> str:
        if self.kind == "day":
            return f"day:{self.year:04d}-{self.month:02d}-{self.day:02d}"
        if self.kind == "month":
            return f"month:{self.year:04d}-{self.month:02d}"
        if self.kind == "year":
            return f"year:{self.year:04d}"
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
        if self.kind == "all":
            return True
        if local.year != self.year:
            return False
        if self.kind == "year":
            return True
        if local.month != self.month:
            return False
        return self.kind == "month" or local.day == self.day

    def date_range(self) -> tuple[date, date] | None:
        """The first and last local day of the period; None for all time."""
        if self.kind == "all":
            return None
        assert self.year is not None
        if self.kind == "year":
            return date(self.year, 1, 1), date(self.year, 12, 31)
        assert self.month is not None
        if self.kind == "month":
            last = calendar.monthrange(self.year, self.month)[1]
            return date(self.year, self.month, 1), date(self.year, self.month, last)
        assert self.day is not None
        day = date(self.year, self.month, self.day)
        return day, day


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
