"""Bulk import: a back office's CSV, XLSX or JSON Lines file into events, through ingest's HTTP
API with a token, as a field app posts them (`python -m shared.admin import FILE`).

- A *mapping* says which of the file's columns holds each event field (`event_id`, `type`,
  `unit_id`, `occurred_at`, `amount_vnd`, `subject_id`, `attributes.<name>`), and which fields
  take one value for every row (the type of a payments export, say).
- Units are given by id, or by name as the catalog writes it (its aliases, or the name without
  its level: "Minh Hưng" for "Xã Minh Hưng"), matched without case or diacritics; a name that
  fits several units is refused naming them.
- Rows go in batches; `429`, `503` and connection errors are retried (`Retry-After`, else
  backoff). A batch with a bad row is refused whole by ingest (`422` naming the index and
  field): that row is reported and the rest of the batch is sent again.
- Resumable: after each acknowledged batch the next row is written to a checkpoint beside the
  input (`FILE.import-checkpoint.json`), so a run that stopped resumes there; re-sending is
  safe anyway (event ids: ingest answers a duplicate).
- Refused rows, with the reason for each, go to `FILE.refused.csv` beside the input: the row
  number as a spreadsheet shows it (the header is row 1; in JSON Lines, the line).

The file is read whole (a month of a back office is thousands of rows, not millions).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shared.adapters.tables import to_csv
from shared.domain.events import UNIT_ID_PATTERN
from shared.domain.registry import AttributeType, Registry, shipped_registry
from shared.domain.units import Unit, bundled_catalog, load_catalog
from shared.progress import Progress

LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")
FIELDS = ("event_id", "type", "unit_id", "occurred_at", "amount_vnd", "subject_id")
# What a unit's name may start with in the catalog; a name given without it still matches.
LEVEL_PREFIXES = ("tỉnh", "thành phố", "thị xã", "huyện", "xã", "phường", "thị trấn")
RETRIED = {429, 502, 503, 504}


class ImportFailed(RuntimeError):
    """The import cannot go on (a bad token, ingest unreachable past the retries): what was
    acknowledged stays, the checkpoint says where to resume."""


# -- the mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMapping:
    """Event field -> the file's column, and event field -> one value for every row."""

    columns: Mapping[str, str]
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: Path | None, columns: Sequence[str] = (), values: Sequence[str] = ()
    ) -> ColumnMapping:
        """From a mapping file (`{"columns": {...}, "values": {...}}`) and `field=...` flags,
        the flags winning. Without either, each column named as an event field is that field."""
        body: dict[str, Any] = json.loads(path.read_text("utf-8")) if path else {}
        unknown = set(body) - {"columns", "values"}
        if unknown:
            raise ValueError(f"mapping file: unknown keys {sorted(unknown)}")
        mapped = dict(body.get("columns", {}))
        fixed = dict(body.get("values", {}))
        for flag, into in ((columns, mapped), (values, fixed)):
            for item in flag:
                name, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{item!r}: expected FIELD=VALUE")
                into[name.strip()] = value
        for name in (*mapped, *fixed):
            if name not in FIELDS and not name.startswith("attributes."):
                raise ValueError(
                    f"{name!r} is not an event field ({', '.join(FIELDS)}, attributes.NAME)"
                )
        return cls(mapped, fixed)

    def resolved(self, header: Sequence[str]) -> ColumnMapping:
        """Every mapped column must be in the file; unmapped columns named as fields map."""
        missing = [column for column in self.columns.values() if column not in header]
        if missing:
            raise ValueError(f"columns not in the file: {missing} (it has {list(header)})")
        if self.columns or self.values:
            return self
        implicit = {c: c for c in header if c in FIELDS or c.startswith("attributes.")}
        return ColumnMapping(implicit, self.values)


# -- reading the file ----------------------------------------------------------------------------


def read_rows(
    path: Path, sheet: str | None = None
) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The header and each row with its number as the file shows it."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            rows = [
                (number, dict(zip(header, cells, strict=False)))
                for number, cells in enumerate(reader, start=2)
                if any(cell.strip() for cell in cells)
            ]
        return header, rows
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        workbook = load_workbook(path, read_only=True, data_only=True)
        try:
            worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
            values = worksheet.iter_rows(values_only=True)
            header = [str(h).strip() if h is not None else "" for h in next(values, ())]
            rows = [
                (number, dict(zip(header, cells, strict=False)))
                for number, cells in enumerate(values, start=2)
                if any(cell not in (None, "") for cell in cells)
            ]
        finally:
            workbook.close()
        return header, rows
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        keys: dict[str, None] = {}
        for number, text in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                item = json.loads(text)
            except ValueError as exc:
                item = {"\0invalid": f"not JSON: {exc}"}
            if not isinstance(item, dict):
                item = {"\0invalid": "not a JSON object"}
            keys.update(dict.fromkeys(k for k in item if k != "\0invalid"))
            rows.append((number, item))
        return list(keys), rows
    raise ValueError(f"{path.name}: expected .csv, .xlsx or .jsonl")


# -- units by id or name ---------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case, diacritics (đ too) and spacing do not matter."""
    text = text.replace("đ", "d").replace("Đ", "D")
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
    )
    return " ".join(stripped.casefold().split())


class UnitNames:
    def __init__(self, units: Sequence[Unit]) -> None:
        self.ids = {unit.id for unit in units}
        self.units = {unit.id: unit for unit in units}
        self.by_name: dict[str, set[str]] = {}
        prefixes = tuple(fold(p) + " " for p in LEVEL_PREFIXES)
        for unit in units:
            for name in (unit.name, *unit.aliases):
                key = fold(name)
                self.by_name.setdefault(key, set()).add(unit.id)
                for prefix in prefixes:
                    if key.startswith(prefix):
                        self.by_name.setdefault(key[len(prefix) :], set()).add(unit.id)

    def resolve(self, given: str, on: date | None = None) -> tuple[str | None, str | None]:
        """(unit id, None), or (None, the reason it is refused). A value shaped as an id but
        not in the shipped catalog is sent as it is: ingest knows the units added since. A name
        two units share (an old commune and the ward of 2025 that took its name) is the one
        that existed `on` the event's day, when only one did."""
        if given in self.ids:
            return given, None
        found = self.by_name.get(fold(given), set())
        if len(found) > 1 and on is not None:
            existing = {unit_id for unit_id in found if self.units[unit_id].valid_on(on)}
            found = existing if len(existing) == 1 else found
        if len(found) == 1:
            return next(iter(found)), None
        if len(found) > 1:
            return None, f"unit {given!r} is ambiguous: {', '.join(sorted(found))}; give its id"
        if not re.fullmatch(UNIT_ID_PATTERN, given):
            return None, f"unknown unit {given!r}: neither a unit id nor a name of the catalog"
        return given, None


# -- a row into an event -------------------------------------------------------------------------


def _local_day(occurred_at: Any) -> date | None:
    """The local day of an `occurred_at` as sent, if it reads as one (ingest judges the rest)."""
    try:
        moment = datetime.fromisoformat(str(occurred_at))
    except ValueError:
        return None
    return moment.astimezone(LOCAL).date() if moment.tzinfo else None


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _instant(value: Any) -> Any:
    """An RFC 3339 string; a spreadsheet's date or a time without an offset is local
    (Asia/Ho_Chi_Minh). What cannot be read is sent as it is, for ingest to judge."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=LOCAL)
        return moment.isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=LOCAL).isoformat()
    text = _text(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return (moment if moment.tzinfo else moment.replace(tzinfo=LOCAL)).isoformat()


def _integer(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = _text(value).replace(",", "").replace(" ", "")
    try:
        return int(text)
    except ValueError:
        return _text(value)  # ingest refuses it, naming the field


TRUE, FALSE = {"true", "1", "yes", "co", "x", "dung"}, {"false", "0", "no", "khong", "sai"}


def _boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    key = fold(_text(value))
    return True if key in TRUE else False if key in FALSE else _text(value)


@dataclass
class Row:
    number: int
    event: dict[str, Any] | None
    reason: str | None = None

    @property
    def event_id(self) -> str:
        return str((self.event or {}).get("event_id", ""))


def to_event(
    number: int,
    raw: Mapping[str, Any],
    mapping: ColumnMapping,
    units: UnitNames,
    registry: Registry,
) -> Row:
    if "\0invalid" in raw:
        return Row(number, None, str(raw["\0invalid"]))
    given: dict[str, Any] = dict(mapping.values)
    for name, column in mapping.columns.items():
        value = raw.get(column)
        if value is not None and _text(value) != "":
            given[name] = value
    event: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    definition = registry.event_types.get(_text(given.get("type", "")))
    for name, value in given.items():
        if name == "occurred_at":
            event[name] = _instant(value)
        elif name == "amount_vnd":
            event[name] = _integer(value)
        elif name.startswith("attributes."):
            attribute = name.removeprefix("attributes.")
            rule = definition.attributes.get(attribute) if definition else None
            kind = rule.type if rule else AttributeType.STRING
            attributes[attribute] = (
                _integer(value)
                if kind is AttributeType.INTEGER
                else _boolean(value)
                if kind is AttributeType.BOOLEAN
                else _text(value)
            )
        else:
            event[name] = _text(value)
    if attributes:
        event["attributes"] = attributes
    missing = [name for name in ("event_id", "type", "unit_id", "occurred_at") if name not in event]
    if missing:
        return Row(number, event, f"missing {', '.join(missing)}")
    unit_id, refused = units.resolve(event["unit_id"], _local_day(event["occurred_at"]))
    if refused:
        return Row(number, event, f"unit_id: {refused}")
    event["unit_id"] = unit_id
    return Row(number, event)


# -- sending -------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    retry_after: float | None = None


Post = Callable[[list[dict[str, Any]]], Answer]


def http_post(url: str, token: str, timeout_s: float = 60) -> Post:
    def post(events: list[dict[str, Any]]) -> Answer:
        request = urllib.request.Request(
            url,
            data=json.dumps(events, ensure_ascii=False).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return Answer(response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            try:
                body = json.loads(error.read() or b"null")
            except ValueError:
                body = None
            retry = error.headers.get("Retry-After")
            return Answer(error.code, body, float(retry) if retry and retry.isdigit() else None)

    return post


@dataclass
class Outcome:
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    stopped: bool = False


def send_with_retries(
    post: Post, events: list[dict[str, Any]], retries: int, sleep: Callable[[float], None]
) -> Answer:
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            answer = post(events)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            answer = Answer(0, {"detail": f"connection failed: {exc}"})
        if answer.status not in RETRIED and answer.status != 0:
            return answer
        if attempt == retries:
            raise ImportFailed(
                f"ingest did not take a batch after {retries} retries: {answer.body}"
            )
        sleep(answer.retry_after if answer.retry_after is not None else delay)
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def send_batch(
    post: Post, batch: list[Row], retries: int, sleep: Callable[[float], None]
) -> tuple[int, int, list[tuple[Row, str]]]:
    """Send the batch until ingest takes what is left of it: (accepted, duplicates, the rows
    refused with their reasons). A refused request names the bad events by index."""
    refused: list[tuple[Row, str]] = []
    pending = list(batch)
    while pending:
        answer = send_with_retries(post, [row.event or {} for row in pending], retries, sleep)
        if answer.status == 202:
            body = answer.body or {}
            return int(body.get("accepted", 0)), int(body.get("duplicates", 0)), refused
        errors = (answer.body or {}).get("errors") if isinstance(answer.body, dict) else None
        named = [e for e in errors or [] if isinstance(e.get("index"), int)]
        if answer.status in (403, 422) and named:
            bad: dict[int, list[str]] = {}
            for error in named:
                where = f"{error['field']}: " if error.get("field") else ""
                bad.setdefault(error["index"], []).append(f"{where}{error.get('message', '')}")
            for index, reasons in sorted(bad.items()):
                if 0 <= index < len(pending):
                    refused.append((pending[index], "; ".join(reasons)))
            pending = [row for i, row in enumerate(pending) if i not in bad]
            continue
        if answer.status == 413 and len(pending) > 1:
            half = len(pending) // 2
            first = send_batch(post, pending[:half], retries, sleep)
            second = send_batch(post, pending[half:], retries, sleep)
            return first[0] + second[0], first[1] + second[1], refused + first[2] + second[2]
        raise ImportFailed(f"ingest answered {answer.status}: {answer.body}")
    return 0, 0, refused


# -- the run -------------------------------------------------------------------------------------


def beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def checkpoint_path(path: Path) -> Path:
    return beside(path, ".import-checkpoint.json")


def report_path(path: Path) -> Path:
    return beside(path, ".refused.csv")


def _digest(path: Path, mapping: ColumnMapping) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(
        json.dumps([mapping.columns, mapping.values], sort_keys=True, default=str).encode()
    )
    return digest.hexdigest()


def _batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), size):
        yield list(rows[start : start + size])


def run_import(
    path: Path,
    mapping: ColumnMapping,
    post: Post,
    *,
    batch_size: int = 500,
    retries: int = 8,
    stop_after_batches: int | None = None,
    sheet: str | None = None,
    units: Sequence[Unit] | None = None,
    registry: Registry | None = None,
    progress_every_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = print,
) -> Outcome:
    header, raw_rows = read_rows(path, sheet)
    mapping = mapping.resolved(header)
    names = UnitNames(units if units is not None else load_catalog(bundled_catalog()))
    rows = [to_event(n, raw, mapping, names, registry or shipped_registry()) for n, raw in raw_rows]
    # The same id twice in the file: the first is the event, the second a mistake to report
    # (ingest would only count it as a duplicate, saying nothing of which row).
    first_row: dict[tuple[str, str], int] = {}
    for row in rows:
        if row.reason is None and row.event is not None:
            key = (row.event["unit_id"], row.event_id)
            if key in first_row:
                row.reason = f"event_id: duplicate of row {first_row[key]}"
            else:
                first_row[key] = row.number

    digest = _digest(path, mapping)
    outcome = Outcome(rows=len(rows))
    checkpoint = checkpoint_path(path)
    next_row = 0
    if checkpoint.exists():
        state = json.loads(checkpoint.read_text("utf-8"))
        if state.get("digest") == digest:
            next_row = int(state["next_row"])
            outcome.refused = list(state.get("refused", []))
            outcome.accepted, outcome.duplicates = (
                state.get("accepted", 0),
                state.get("duplicates", 0),
            )
            at = rows[next_row].number if next_row < len(rows) else "the end"
            say(f"resuming {path.name} at row {at}")
        else:
            say(f"{checkpoint.name} is for another file or mapping: starting from the first row")

    def save(next_index: int) -> None:
        state = {
            "digest": digest,
            "next_row": next_index,
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "refused": outcome.refused,
        }
        temporary = beside(checkpoint, ".tmp")
        temporary.write_text(json.dumps(state, ensure_ascii=False), "utf-8")
        temporary.replace(checkpoint)

    def refuse(row: Row, reason: str) -> None:
        outcome.refused.append({"row": row.number, "event_id": row.event_id, "reason": reason})

    progress = Progress(
        f"import {path.name}", total=len(rows), unit="rows", every_s=progress_every_s
    )
    with progress:
        progress.set(next_row)
        index = next_row
        for chunk in _batches(rows[next_row:], batch_size):
            if stop_after_batches is not None and outcome.batches >= stop_after_batches:
                outcome.stopped = True
                break
            good = [row for row in chunk if row.reason is None]
            for row in chunk:
                if row.reason is not None:
                    refuse(row, row.reason)
            if good:
                accepted, duplicates, refused = send_batch(post, good, retries, sleep)
                outcome.accepted += accepted
                outcome.duplicates += duplicates
                for row, reason in refused:
                    refuse(row, reason)
            outcome.batches += 1
            index += len(chunk)
            save(index)
            progress.set(index)
    outcome.refused.sort(key=lambda item: int(item["row"]))
    write_report(report_path(path), outcome.refused)
    if not outcome.stopped:
        checkpoint.unlink(missing_ok=True)
    return outcome


def write_report(path: Path, refused: Sequence[Mapping[str, Any]]) -> None:
    """The refused rows as CSV (UTF-8 with a BOM, cells neutralised against formulas: the
    file is opened in a spreadsheet by the back office)."""
    rows = [[item["row"], item["event_id"], item["reason"]] for item in refused]
    path.write_bytes(to_csv(["row", "event_id", "reason"], rows))
