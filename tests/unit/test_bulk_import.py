"""Bulk import without servers: names to units, rows to events, the batch loop's retries and
re-sends against a fake ingest, JSON Lines, and the checkpoint of an interrupted run."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from shared.bulk_import import (
    Answer,
    ColumnMapping,
    ImportFailed,
    UnitNames,
    report_path,
    run_import,
    send_with_retries,
)
from shared.domain.units import bundled_catalog, load_catalog

NAMES = UnitNames(load_catalog(bundled_catalog()))


def test_units_by_id_or_by_name_without_case_or_diacritics() -> None:
    assert NAMES.resolve("dong-xoai") == ("dong-xoai", None)
    assert NAMES.resolve("THÀNH PHỐ ĐỒNG XOÀI") == ("dong-xoai", None)
    # The old city and the ward of 1 July 2025 share the short name: the full one tells them
    # apart, the short one is refused naming both.
    unit, reason = NAMES.resolve("dong xoai")
    assert unit is None and reason is not None and "dong-xoai," in reason
    assert "dong-nai-2025-dong-xoai" in reason
    # ... unless the event's day tells them apart: only the city existed in 2024.
    assert NAMES.resolve("dong xoai", date(2024, 4, 22)) == ("dong-xoai", None)
    # After the ward began, both exist in the shipped catalog (the old city has no end until
    # the reform is applied): still ambiguous.
    assert NAMES.resolve("dong xoai", date(2025, 8, 1))[0] is None
    assert NAMES.resolve("xã  minh hưng") == ("bu-dang-minh-hung", None)
    unit, reason = NAMES.resolve("Minh Hung")
    assert unit is None and reason is not None and "ambiguous" in reason
    assert NAMES.resolve("a-unit-added-later") == ("a-unit-added-later", None)
    assert NAMES.resolve("Xã Mới")[0] is None


class FakeIngest:
    """Refuses events whose amount is negative (422 naming them), 503 once, then takes."""

    def __init__(self, unavailable: int = 0) -> None:
        self.unavailable = unavailable
        self.taken: dict[str, dict[str, Any]] = {}
        self.requests = 0

    def __call__(self, events: list[dict[str, Any]]) -> Answer:
        self.requests += 1
        if self.unavailable:
            self.unavailable -= 1
            return Answer(503, {"detail": "broker unavailable"}, retry_after=0)
        errors = [
            {"index": i, "field": "amount_vnd", "message": "must be ≥ 0"}
            for i, e in enumerate(events)
            if e.get("amount_vnd", 0) < 0
        ]
        if errors:
            return Answer(422, {"detail": "invalid events", "errors": errors})
        new = [e for e in events if e["event_id"] not in self.taken]
        self.taken.update({e["event_id"]: e for e in new})
        return Answer(202, {"accepted": len(new), "duplicates": len(events) - len(new)})


def write_jsonl(path: Path, amounts: list[int]) -> None:
    lines = [
        json.dumps(
            {
                "id": f"p-{n}",
                "unit": "Sở Y tế",
                "at": "2024-04-22 09:00",
                "vnd": amount,
                "kind": "fee",
            }
        )
        for n, amount in enumerate(amounts)
    ]
    path.write_text("\n".join([*lines[:2], "not json", *lines[2:]]) + "\n")


MAPPING = ColumnMapping.load(
    None,
    ["event_id=id", "unit_id=unit", "occurred_at=at", "amount_vnd=vnd", "attributes.kind=kind"],
    ["type=payment.succeeded"],
)


def test_a_refused_row_is_reported_and_the_rest_of_its_batch_sent(tmp_path: Path) -> None:
    path = tmp_path / "payments.jsonl"
    write_jsonl(path, [100, -1, 300, 400, -5, 600])
    ingest = FakeIngest(unavailable=2)
    outcome = run_import(path, MAPPING, ingest, batch_size=3, sleep=lambda s: None)
    assert sorted(ingest.taken) == ["p-0", "p-2", "p-3", "p-5"]
    assert ingest.taken["p-0"] == {
        "type": "payment.succeeded",
        "event_id": "p-0",
        "unit_id": "so-y-te",
        "occurred_at": "2024-04-22T09:00:00+07:00",
        "amount_vnd": 100,
        "attributes": {"kind": "fee"},
    }
    with report_path(path).open(encoding="utf-8-sig") as handle:
        refused = [(int(r["row"]), r["reason"]) for r in csv.DictReader(handle)]
    # Lines of the file: line 3 is not JSON, p-1 is line 2, p-4 line 6.
    assert [row for row, _ in refused] == [2, 3, 6]
    assert refused[0][1] == "amount_vnd: must be ≥ 0"
    assert refused[1][1].startswith("not JSON")
    assert outcome.accepted == 4


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "payments.jsonl"
    write_jsonl(path, [1, 2, 3, 4, 5, 6, 7])
    ingest = FakeIngest()
    first = run_import(path, MAPPING, ingest, batch_size=2, stop_after_batches=2)
    assert first.stopped and first.accepted == 3  # lines 1, 2, 3 (not JSON), 4
    requests = ingest.requests
    second = run_import(path, MAPPING, ingest, batch_size=2, say=lambda text: None)
    assert not second.stopped and second.accepted == 7 and second.duplicates == 0
    assert ingest.requests == requests + 2  # only the batches not sent before
    assert not (tmp_path / "payments.jsonl.import-checkpoint.json").exists()


def test_retries_give_up_with_a_clear_error() -> None:
    with pytest.raises(ImportFailed, match="after 2 retries"):
        send_with_retries(FakeIngest(unavailable=5), [{}], retries=2, sleep=lambda s: None)


def test_a_mapping_names_only_event_fields() -> None:
    with pytest.raises(ValueError, match="not an event field"):
        ColumnMapping.load(None, ["amount=Số tiền"])
