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
