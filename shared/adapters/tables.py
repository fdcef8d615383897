"""Report tables as CSV and XLSX, with the Vietnamese headers of the province's report.

Every text cell is neutralised against formula injection (OWASP's CSV injection rules): a
cell whose first visible character is `=`, `+`, `-` or `@`, or that starts with a tab or a
carriage return, is written with a leading apostrophe, so no spreadsheet evaluates it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import date
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font

from shared.domain.safety import UNSAFE_CHAR_CLASS

Cell = str | int | float | None

# What a spreadsheet skips before it decides a cell is a formula: `" =1+1"` and
# `"\u00a0=1+1"` are formulas to it too. Any whitespace, or any character the id and name rule
# refuses (controls, format and bidirectional characters, separators), may stand before the
# sign; a cell that starts with a tab or CR is escaped whatever follows (OWASP lists both as
# formula starts). The fullwidth signs are escaped too, in case a spreadsheet program folds
# fullwidth forms into ASCII ones: the apostrophe costs nothing.
_FORMULA = re.compile(f"[\\t\\r]|[\\s{UNSAFE_CHAR_CLASS}]*[=+\\-@＝＋－＠]")


def safe_cell(value: Cell) -> Cell:
    if isinstance(value, str) and _FORMULA.match(value):
        return "'" + value
    return value


def _vn_date(day: date) -> str:
    return f"{day.day}/{day.month}/{day.year}"


def payments_table(report: dict[str, Any]) -> tuple[str, list[str], list[list[Cell]]]:
    day = date.fromisoformat(report["date"])
    spans = {
        "day": f"Ngày {_vn_date(day)}",
        "month": f"Tháng {day.month}/{day.year}",
        "year": f"Năm {day.year}",
    }
    kinds = {"nvtc": "NVTC", "fee": "Phí, Lệ Phí"}
    header = ["TT", "TÊN ĐƠN VỊ"]
    for span_label in spans.values():
        for kind_label in kinds.values():
            header += [
                f"{span_label} - {kind_label} - Số GD",
                f"{span_label} - {kind_label} - Số tiền",
            ]
    for span_label in spans.values():
        header += [f"{span_label} - Tổng số GD", f"{span_label} - Tổng số tiền"]

    def line(number: Cell, row: dict[str, Any]) -> list[Cell]:
        cells: list[Cell] = [number, row["name"]]
        for span in spans:
            for kind in kinds:
                cells += [row[span][kind]["count"], row[span][kind]["amount_vnd"]]
        for span in spans:
            cells += [row[span]["all"]["count"], row[span]["all"]["amount_vnd"]]
        return cells

    rows = [line(i, row) for i, row in enumerate(report["rows"], start=1)]
    rows.append(line("#", report["total"]))
    title = f"Kết quả thanh toán trực tuyến đến ngày {_vn_date(day)}"
    return title, header, rows


def online_services_table(report: dict[str, Any]) -> tuple[str, list[str], list[list[Cell]]]:
    day = date.fromisoformat(report["date"])
    share = round(report["thresholds"]["online_share"] * 100)
    processed = round(report["thresholds"]["processed_online"] * 100)
    header = [
        "STT",
        "Đơn vị",
        "DVCTT có hồ sơ trực tuyến",
        "DVCTT của đơn vị",
        "Tỷ lệ DVCTT phát sinh hồ sơ trực tuyến (%)",
        f"So với chỉ tiêu ({share}%)",
        "Hồ sơ xử lý trực tuyến",
        "Hồ sơ đã xử lý",
        "Tỷ lệ hồ sơ xử lý trực tuyến (%)",
        f"So với chỉ tiêu ({processed}%)",
    ]

    def line(number: Cell, row: dict[str, Any]) -> list[Cell]:
        a, b = row["online_share"], row["processed_online"]
        return [
            number,
            row["name"],
            a["numerator"],
            a["denominator"],
            a["percent"],
            a["verdict"],
            b["numerator"],
            b["denominator"],
            b["percent"],
            b["verdict"],
        ]

    rows = [line(i, row) for i, row in enumerate(report["rows"], start=1)]
    rows.append(line("", report["total"]))
    title = f"Dịch vụ công trực tuyến (tính đến ngày {_vn_date(day)})"
    return title, header, rows


def software_usage_table(report: dict[str, Any]) -> tuple[str, list[str], list[list[Cell]]]:
    first, last = date.fromisoformat(report["from"]), date.fromisoformat(report["to"])
    span = f"từ {first.day}/{first.month}- {last.day}/{last.month}/{last.year}"
    header = [
        "STT",
        "Đơn vị",
        f"Hợp không giấy qua phần mềm Ecabinet ({span})",
        "Hợp không giấy qua phần mềm Ecabinet (tổng từ trước đến nay)",
        "Tỷ lệ văn bản điện tử được ký số của cơ quan, đơn vị (%)",
        "Tỷ lệ văn bản được thực hiện trực tuyến qua Hệ thống QLVB&HSCV (%)",
        "Tỷ lệ CB, CC, VC sử dụng thư điện tử công vụ (%)",
    ]

    def line(number: Cell, row: dict[str, Any]) -> list[Cell]:
        return [
            number,
            row["name"],
            row["ecabinet_meetings_period"],
            row["ecabinet_meetings_total"],
            row["signed_documents"]["percent"],
            row["documents_online"]["percent"],
            row["official_email"]["percent"],
        ]

    rows = [line(i, row) for i, row in enumerate(report["rows"], start=1)]
    rows.append(line("", report["total"]))
    title = f"Kết quả sử dụng phần mềm, ứng dụng ({_vn_date(first)} - {_vn_date(last)})"
    return title, header, rows


def to_csv(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow(["" if c is None else safe_cell(c) for c in row])
    # A BOM so spreadsheet programs read the Vietnamese text as UTF-8.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(title: str, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Báo cáo"
    sheet.append([safe_cell(title)])
    sheet["A1"].font = Font(bold=True, size=13)
    sheet.append([safe_cell(h) for h in header])
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="center")
    for row in rows:
        sheet.append([safe_cell(c) for c in row])
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str):
                # Text is text, never a formula (openpyxl makes a string that starts with `=` a
                # formula cell): the title and header rows too.
                cell.data_type = "s"
            elif isinstance(cell.value, int) and cell.column > 2 and cell.row > 2:
                cell.number_format = "#,##0"
    sheet.freeze_panes = "C3"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
