"""The province's report tables, built from totals: same rows, columns and total rows as the
April 2024 report (payments per district; online public services per department and district).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.domain.campaigns import percent
from shared.domain.units import Unit

PAYMENT_KINDS = ("nvtc", "fee")
PAYMENT_SPANS = ("day", "month", "year")
KIND_LABELS = {"nvtc": "NVTC", "fee": "Phí, Lệ Phí"}
SPAN_LABELS = {"day": "Ngày", "month": "Tháng", "year": "Năm"}

PASSED, FAILED, NOTHING = "Đạt", "Không đạt", "Không phát sinh"


@dataclass(frozen=True, slots=True)
class Figures:
    count: int
    amount_vnd: int


def payment_figures(totals: Mapping[str, int], kind: str) -> Figures:
    return Figures(
        totals.get(f"payment.{kind}.count", 0), totals.get(f"payment.{kind}.amount_vnd", 0)
    )


@dataclass(frozen=True, slots=True)
class PaymentsRow:
    unit_id: str
    name: str
    spans: dict[str, dict[str, Figures]]  # span -> kind -> figures

    def grand(self, span: str) -> Figures:
        figures = self.spans[span].values()
        return Figures(sum(f.count for f in figures), sum(f.amount_vnd for f in figures))


def payments_rows(
    units: Sequence[Unit], totals: Mapping[str, Mapping[str, Mapping[str, int]]]
) -> list[PaymentsRow]:
    """`totals[span][unit_id]` are each unit's totals for the day, month-to-date, year-to-date."""
    return [
        PaymentsRow(
            unit.id,
            unit.name,
            {
                span: {
                    kind: payment_figures(totals[span].get(unit.id, {}), kind)
                    for kind in PAYMENT_KINDS
                }
                for span in PAYMENT_SPANS
            },
        )
        for unit in units
    ]


def payments_total(rows: Sequence[PaymentsRow]) -> PaymentsRow:
    return PaymentsRow(
        "total",
        "Tổng",
        {
            span: {
                kind: Figures(
                    sum(r.spans[span][kind].count for r in rows),
                    sum(r.spans[span][kind].amount_vnd for r in rows),
                )
                for kind in PAYMENT_KINDS
            }
            for span in PAYMENT_SPANS
        },
    )


def percent_of(numerator: int, denominator: int) -> Decimal | None:
    return percent(Decimal(numerator), Decimal(denominator)) if denominator else None


def verdict(numerator: int, denominator: int, threshold: Decimal) -> str:
    """Đạt when the share reaches the threshold (a value equal to it passes)."""
    if not denominator:
        return NOTHING
    return PASSED if Decimal(numerator) >= threshold * denominator else FAILED


@dataclass(frozen=True, slots=True)
class RateCell:
    numerator: int
    denominator: int
    percent: Decimal | None
    verdict: str

    @classmethod
    def of(cls, numerator: int, denominator: int, threshold: Decimal) -> RateCell:
        return cls(
            numerator,
            denominator,
            percent_of(numerator, denominator),
            verdict(numerator, denominator, threshold),
        )


@dataclass(frozen=True, slots=True)
class OnlineServicesRow:
    unit_id: str
    name: str
    online_share: RateCell  # services with at least one online filing / services offered
    processed_online: RateCell  # filings processed online / filings processed


@dataclass(frozen=True, slots=True)
class ShareCell:
    """A rate cell without a verdict: numerator / denominator, in percent rounded half-up to 2
    decimals (None when there is nothing to divide)."""

    numerator: int
    denominator: int
    percent: Decimal | None

    @classmethod
    def of(cls, numerator: int, denominator: int) -> ShareCell:
        return cls(numerator, denominator, percent_of(numerator, denominator))


ECABINET_MEETINGS = "meeting.paperless.ecabinet"
DOCUMENTS = ("document.issued", "document.signed", "document.online")
STAFF_EMAIL = ("staff.email.active", "staff.email.inactive")


@dataclass(frozen=True, slots=True)
class SoftwareUsageRow:
    """One row of the software-usage table (seed report, line 405)."""

    unit_id: str
    name: str
    ecabinet_meetings_period: int  # paperless Ecabinet meetings in the report's range
    ecabinet_meetings_total: int  # the same, every one up to the range's last day
    signed_documents: ShareCell  # documents issued in the range: digitally signed / issued
    documents_online: ShareCell  # documents issued in the range: handled online / issued
    official_email: ShareCell  # staff by their latest status: active / (active + inactive)

    @property
    def empty(self) -> bool:
        return not (
            self.ecabinet_meetings_total
            or self.signed_documents.denominator
            or self.official_email.denominator
        )


def software_usage_row(
    unit: Unit,
    in_range: Mapping[str, int],
    up_to: Mapping[str, int],
) -> SoftwareUsageRow:
    """`in_range`: the unit's totals over the report's days; `up_to`: over every day up to its
    last (meetings so far, and each staff member at their latest status)."""
    issued, signed, online = (in_range.get(i, 0) for i in DOCUMENTS)
    active, inactive = (up_to.get(i, 0) for i in STAFF_EMAIL)
    return SoftwareUsageRow(
        unit.id,
        unit.name,
        in_range.get(ECABINET_MEETINGS, 0),
        up_to.get(ECABINET_MEETINGS, 0),
        ShareCell.of(signed, issued),
        ShareCell.of(online, issued),
        ShareCell.of(active, active + inactive),
    )


def software_usage_total(rows: Sequence[SoftwareUsageRow]) -> SoftwareUsageRow:
    """The total row: sums of the rows, and each rate as sum / sum (never a mean of rates)."""

    def summed(cell: str) -> ShareCell:
        cells = [getattr(r, cell) for r in rows]
        return ShareCell.of(sum(c.numerator for c in cells), sum(c.denominator for c in cells))

    return SoftwareUsageRow(
        "total",
        "TỔNG",
        sum(r.ecabinet_meetings_period for r in rows),
        sum(r.ecabinet_meetings_total for r in rows),
        summed("signed_documents"),
        summed("documents_online"),
        summed("official_email"),
    )
