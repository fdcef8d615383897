"""Bulk import through the real services: a back office's CSV and XLSX, good rows and bad ones,
an interruption in the middle and a second run that resumes. The totals the API serves
afterwards equal the good rows exactly; every bad row is in the report with its reason."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from deploy.local.stack import REPO
from tests.conftest import Pipeline

METRICS = (
    "eid.activated",
    "payment.fee.count",
    "payment.fee.amount_vnd",
    "payment.nvtc.count",
    "payment.nvtc.amount_vnd",
)


def run_import(line: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.admin", "import", *args],
        env={**os.environ, **line.env, "PROGRESS_EVERY_S": "0.001"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def province_totals(line: Pipeline) -> dict[str, int]:
    return {m: line.total("binh-phuoc", m, "all")["value"] for m in METRICS}


def expected_delta(good: list[dict[str, Any]]) -> dict[str, int]:
    delta = dict.fromkeys(METRICS, 0)
    for row in good:
        if row["type"] == "eid.activated":
            delta["eid.activated"] += 1
        else:
            delta[f"payment.{row['kind']}.count"] += 1
            delta[f"payment.{row['kind']}.amount_vnd"] += row["amount"]
    return delta


def report(path: Path) -> dict[int, str]:
    with (path.parent / f"{path.name}.refused.csv").open(encoding="utf-8-sig") as handle:
        return {int(item["row"]): item["reason"] for item in csv.DictReader(handle)}


def test_a_csv_with_bad_rows_interrupted_and_resumed(
    own_pipeline: Pipeline, tmp_path: Path
) -> None:
    line = own_pipeline
    header = ["Mã giao dịch", "Đơn vị", "Thời gian", "Số tiền", "Loại phí"]
    rows: list[list[str]] = [
        ["csv-1", "Xã Minh Hưng", "2024-04-22 09:00", "150000", "fee"],  # row 2
        ["csv-2", "dong-xoai", "2024-04-22T10:00:00+07:00", "200000", "nvtc"],
        ["csv-3", "thi xa binh long", "2024-04-21 08:00", "50,000", "fee"],
        ["csv-4", "HUYỆN BÙ ĐĂNG", "2024-04-20 16:30", "75000", "nvtc"],
        ["csv-5", "xa-khong-co-that", "2024-04-22 09:00", "1000", "fee"],  # row 6: unknown
        ["csv-6", "dong-xoai", "2024-13-45 09:00", "1000", "fee"],  # row 7: bad date
        ["csv-7", "dong-xoai", "2024-04-22 09:00", "-5000", "fee"],  # row 8: negative
        ["csv-1", "Xã Minh Hưng", "2024-04-22 11:00", "999", "fee"],  # row 9: duplicate id
        ["csv-9", "Minh Hưng", "2024-04-22 09:00", "1000", "fee"],  # row 10: ambiguous
        ["csv-10", "so-tu-phap", "2024-04-19 09:00", "30000", "fee"],
        ["csv-11", "Sở Tư pháp", "2024-04-19 10:00", "40000", "nvtc"],
        ["csv-12", "chon-thanh-minh-hung", "2024-04-18 09:00", "10000", "fee"],
        ["csv-13", "Phường Minh Hưng", "2024-04-18 09:30", "20000", "nvtc"],
        ["csv-14", "dong-phu-thuan-phu", "2024-04-17 09:00", "60000", "fee"],
    ]
    path = tmp_path / "thu-phi-04-2024.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    mapping = tmp_path / "mapping.json"
    mapping.write_text(
        json.dumps(
            {
                "columns": {
                    "event_id": "Mã giao dịch",
                    "unit_id": "Đơn vị",
                    "occurred_at": "Thời gian",
                    "amount_vnd": "Số tiền",
                    "attributes.kind": "Loại phí",
                },
                "values": {"type": "payment.succeeded"},
            },
            ensure_ascii=False,
        )
    )
    bad = {6, 7, 8, 9, 10}
    good = [
        {"type": "payment.succeeded", "kind": r[4], "amount": int(r[3].replace(",", ""))}
        for number, r in enumerate(rows, start=2)
        if number not in bad
    ]
    before = province_totals(line)

    args = (str(path), "--mapping", str(mapping), "--batch-size", "4")
    first = run_import(line, *args, "--stop-after-batches", "2")
    assert first.returncode == 3, first.stderr
    assert (tmp_path / f"{path.name}.import-checkpoint.json").exists()
    assert "import thu-phi-04-2024.csv: 8 of 14 rows" in first.stderr, first.stderr

    second = run_import(line, *args)
    assert second.returncode == 1, second.stderr  # some rows refused
    assert "resuming thu-phi-04-2024.csv at row 10" in second.stdout, second.stdout
    assert not (tmp_path / f"{path.name}.import-checkpoint.json").exists()
    refused = report(path)
    assert set(refused) == bad, refused
    assert refused[6] == "unit_id: unknown unit 'xa-khong-co-that'"  # ingest's own words
    assert "occurred_at" in refused[7]
    assert "amount_vnd" in refused[8]
    assert refused[9] == "event_id: duplicate of row 2"
    assert "ambiguous" in refused[10] and "bu-dang-minh-hung" in refused[10]
    assert "chon-thanh-minh-hung" in refused[10]

    line.wait_reflected()
    after = province_totals(line)
    assert {m: after[m] - before[m] for m in METRICS} == expected_delta(good)

    # Sent again whole (no checkpoint now): ingest answers duplicates, nothing doubles.
    again = run_import(line, *args)
    assert again.returncode == 1, again.stderr
    assert f"0 accepted, {len(good)} already known" in again.stdout, again.stdout
    assert set(report(path)) == bad
    line.wait_reflected()
    assert province_totals(line) == after


def test_an_xlsx_with_bad_rows_interrupted_and_resumed(
    own_pipeline: Pipeline, tmp_path: Path
) -> None:
    line = own_pipeline
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Tháng 4"
    sheet.append(["ID", "Loại", "Đơn vị", "Ngày giờ", "Số tiền", "Loại thu", "Mức"])
    rows: list[list[Any]] = [
        [1001, "eid.activated", "Xã Thanh Hòa", datetime(2024, 4, 22, 8, 0), None, None, 2],
        [1002, "eid.activated", "xa thuan phu", datetime(2024, 4, 22, 9, 0), None, None, 1],
        [1003, "payment.succeeded", "dong-xoai", datetime(2024, 4, 21, 9), 120000, "fee", None],
        [1004, "eid.activated", "Nowhere", datetime(2024, 4, 22, 9, 0), None, None, 2],  # 5
        [1005, "eid.activated", "bu-dop-tan-tien", "22/04/2024", None, None, 2],  # 6: date
        [1006, "payment.succeeded", "dong-xoai", datetime(2024, 4, 21, 10), -1, "fee", None],
        [1001, "eid.activated", "Xã Thanh Hòa", datetime(2024, 4, 22, 10), None, None, 2],  # 8
        [1008, "payment.succeeded", "Sở Y tế", datetime(2024, 4, 20, 9), 80000, "nvtc", None],
        [1009, "eid.activated", "Thị xã Phước Long", datetime(2024, 4, 19, 9), None, None, 2],
        [1010, "eid.activated", "loc-ninh", datetime(2024, 4, 18, 9), None, None, 1],
    ]
    for row in rows:
        sheet.append(row)
    path = tmp_path / "eid-va-thu.xlsx"
    workbook.save(path)
    bad = {5, 6, 7, 8}
    good = [
        {"type": r[1], "kind": r[5], "amount": r[4]}
        for number, r in enumerate(rows, start=2)
        if number not in bad
    ]
    before = province_totals(line)
    maps = [
        "event_id=ID",
        "type=Loại",
        "unit_id=Đơn vị",
        "occurred_at=Ngày giờ",
        "amount_vnd=Số tiền",
        "attributes.kind=Loại thu",
        "attributes.level=Mức",
    ]
    args = [str(path), "--batch-size", "3", *(f"--map={m}" for m in maps)]
    first = run_import(line, *args, "--stop-after-batches", "1")
    assert first.returncode == 3, first.stderr
    second = run_import(line, *args)
    assert second.returncode == 1, second.stderr
    assert "resuming eid-va-thu.xlsx at row 5" in second.stdout, second.stdout
    refused = report(path)
    assert set(refused) == bad, refused
    assert refused[5] == (
        "unit_id: unknown unit 'Nowhere': neither a unit id nor a name of the catalog"
    )
    assert "occurred_at" in refused[6]
    assert "amount_vnd" in refused[7]
    assert refused[8] == "event_id: duplicate of row 2"

    line.wait_reflected()
    after = province_totals(line)
    assert {m: after[m] - before[m] for m in METRICS} == expected_delta(good)
