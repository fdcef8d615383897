"""Writes the shipped catalog (`shared/data/catalog_binh_phuoc.json`) from the official dataset.

    PYTHONPATH=. .local/venv/bin/python -m deploy.catalog.generate          # write it
    PYTHONPATH=. .local/venv/bin/python -m deploy.catalog.generate --check  # exit 1 if it differs

The units come from `vietnamadminunits` (PyPI, MIT; pinned in pyproject.toml): its table
`admin_units_legacy` (the 63-province tree with the General Statistics Office codes: provinces,
districts, communes) and `admin_units` (the 34-province tree of 1 July 2025, no districts), and
its `converter_2025.json` (which old provinces form each new one). Nothing is typed by hand but
what the dataset cannot know, taken from the hand excerpt the product shipped before
(`deploy/catalog/excerpt_2024.json`, with the seed lines it came from): the province's
departments, the names the seeds write units by (`aliases`) and the ids already published.

Ids, kept forever once published:
- a unit of the hand excerpt keeps its id (`bu-dang-minh-hung` is Xã Minh Hưng of Huyện Bù Đăng,
  code 25408); the generator matches it to the dataset by name under its parent, and fails if
  one does not match;
- an old province or district: the slug of its short name (`dong-xoai`, `dong-nai`); a commune,
  ward or town: its district's id, then the slug of its short name (`bien-hoa-trang-dai`);
- a province of 1 July 2025: the slug of its short name with `-2025` (`dong-nai-2025`), and its
  communes and wards that id, then their slug (`dong-nai-2025-phuoc-long`);
- slugs are unidecoded, lower case, words joined by `-`. Where one is taken, a district's is
  prefixed with its province's id, and a commune's uses its full name (with its type), then its
  code. Ids are assigned over the whole country in code order, whatever provinces are written,
  so a unit has the same id in every catalog generated from the dataset.

Dates: units of the 34-province tree carry `valid_from` 2025-07-01; the old units carry no dates
and no successors here. The reform (old units ended on 2025-06-30, their successors) is to be a
plan an admin applies (`vn-2025`, not built yet); until then the old tree takes events as before.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

DATASET = "vietnamadminunits"
DATASET_VERSION = "1.0.4"
REFORM_DAY = "2025-07-01"
# Old Bình Phước and old Đồng Nai: the new Đồng Nai province of 1 July 2025.
DEFAULT_PROVINCES = ("70", "75")
NEW_SUFFIX = "-2025"

HERE = Path(__file__).resolve().parent
EXCERPT = HERE / "excerpt_2024.json"
OUTPUT = HERE.parent.parent / "shared" / "data" / "catalog_binh_phuoc.json"


class DatasetMissing(RuntimeError):
    pass


def slug(text: str) -> str:
    from unidecode import unidecode

    return re.sub(r"[^a-z0-9]+", "-", unidecode(text).lower()).strip("-")


@dataclass(frozen=True, slots=True)
class _Row:
    province: str
    province_short: str
    province_code: str
    province_key: str
    district: str | None
    district_short: str | None
    district_code: str | None
    ward: str | None
    ward_short: str | None
    ward_code: str | None


def _dataset_files() -> tuple[Path, Path]:
    try:
        version = metadata.version(DATASET)
    except metadata.PackageNotFoundError as exc:
        raise DatasetMissing(
            f"the catalog is generated from {DATASET}=={DATASET_VERSION}: "
            f"pip install '{DATASET}=={DATASET_VERSION}' (or the project's `catalog` extra)"
        ) from exc
    if version != DATASET_VERSION:
        raise DatasetMissing(
            f"{DATASET} {version} is installed, the catalog needs {DATASET_VERSION}"
        )
    data = resources.files(DATASET).joinpath("data")
    return Path(str(data.joinpath("dataset.db"))), Path(str(data.joinpath("converter_2025.json")))


def _code(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _order(code: str | None) -> int:
    return int(code) if code else -1


def _read(db: Path) -> tuple[list[_Row], list[_Row]]:
    # Read-only: the installed file is never written.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        legacy = [
            _Row(
                row[0],
                row[1],
                str(row[2]),
                row[3],
                row[4],
                row[5],
                _code(row[6]),
                row[7] or None,
                row[8] or None,
                _code(row[9]),
            )
            for row in conn.execute(
                "SELECT DISTINCT province, provinceShort, provinceCode, provinceKey, district,"
                " districtShort, districtCode, ward, wardShort, wardCode"
                " FROM admin_units_legacy"
            )
        ]
        current = [
            _Row(
                row[0], row[1], str(row[2]), row[3], None, None, None, row[4], row[5], _code(row[6])
            )
            for row in conn.execute(
                "SELECT DISTINCT province, provinceShort, provinceCode, provinceKey, ward,"
                " wardShort, wardCode FROM admin_units"
            )
        ]
    legacy.sort(key=lambda r: (int(r.province_code), _order(r.district_code), _order(r.ward_code)))
    current.sort(key=lambda r: (int(r.province_code), _order(r.ward_code)))
    return legacy, current


def _unit(
    unit_id: str,
    name: str,
    level: str,
    parent_id: str | None,
    code: str | None,
    valid_from: str | None = None,
    aliases: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "id": unit_id,
        "name": name,
        "level": level,
        "parent_id": parent_id,
        "code": code,
        "valid_from": valid_from,
        "valid_to": None,
        "successors": [],
        "aliases": list(aliases),
    }


class _Ids:
    """Assigns ids; the hand excerpt's are reserved first."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.taken = set(reserved)

    def claim(self, *candidates: str) -> str:
        for candidate in candidates:
            if candidate and candidate not in self.taken:
                self.taken.add(candidate)
                return candidate
        raise ValueError(f"no free id among {candidates}")


def _hand_matches(
    excerpt: dict[str, Any], legacy: list[_Row]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The hand excerpt's units by (level, code): each matched by name under its parent."""
    hand = {u["id"]: u for u in excerpt["units"] if u["level"] != "department"}
    by_place: dict[tuple[str, str, str | None], str] = {}
    for row in legacy:
        by_place[("province", row.province, None)] = row.province_code
        if row.district_code:
            by_place[("district", row.district or "", row.province_code)] = row.district_code
        if row.ward_code:
            by_place[("commune", row.ward or "", row.district_code)] = row.ward_code
    codes: dict[str, str] = {}
    matched: dict[tuple[str, str], dict[str, Any]] = {}
    pending = list(hand.values())
    while pending:  # parents first, whatever the excerpt's order
        unit = pending.pop(0)
        parent = unit["parent_id"]
        if parent is not None and parent not in codes:
            if parent not in hand:
                raise ValueError(f"hand unit {unit['id']!r}: unknown parent {parent!r}")
            pending.append(unit)
            continue
        code = by_place.get((unit["level"], unit["name"], codes.get(parent) if parent else None))
        if code is None:
            raise ValueError(
                f"hand unit {unit['id']!r} ({unit['name']}) is not in {DATASET} under its parent"
            )
        codes[unit["id"]] = code
        matched[(unit["level"], code)] = unit
    return matched


def build_catalog(provinces: Sequence[str] | None = DEFAULT_PROVINCES) -> dict[str, Any]:
    """The catalog of these old provinces (GSO codes; None: the whole country): every
    district and commune of theirs, the provinces of 1 July 2025 formed from them with their
    communes and wards, and the hand excerpt's departments where their province is written."""
    db, converter_file = _dataset_files()
    legacy, current = _read(db)
    converter = json.loads(converter_file.read_text("utf-8"))["DICT_PROVINCE"]
    excerpt = json.loads(EXCERPT.read_text("utf-8"))
    hand = _hand_matches(excerpt, legacy)
    hand_ids = {u["id"] for u in excerpt["units"]}
    ids = _Ids(hand_ids)

    # Ids over the whole country, in code order, so they do not depend on the selection.
    old_units: dict[str, list[dict[str, Any]]] = {}  # old province code -> its units, in order
    province_ids: dict[str, str] = {}
    district_ids: dict[str, str] = {}
    for row in legacy:  # provinces first: their slugs win
        if row.province_code in province_ids:
            continue
        known = hand.get(("province", row.province_code))
        unit_id = known["id"] if known else ids.claim(slug(row.province_short))
        province_ids[row.province_code] = unit_id
        old_units[row.province_code] = [
            _unit(
                unit_id,
                row.province,
                "province",
                None,
                row.province_code,
                aliases=known["aliases"] if known else (),
            )
        ]
    wards_of: dict[str, list[_Row]] = {}
    for row in legacy:
        if row.district_code is not None and row.ward_code is not None:
            wards_of.setdefault(row.district_code, []).append(row)
    for row in legacy:
        if row.district_code is None or row.district_code in district_ids:
            continue
        province_id = province_ids[row.province_code]
        known = hand.get(("district", row.district_code))
        short = slug(row.district_short or "")
        unit_id = (
            known["id"]
            if known
            else ids.claim(
                short, f"{province_id}-{short}", f"{province_id}-{short}-{row.district_code}"
            )
        )
        district_ids[row.district_code] = unit_id
        old_units[row.province_code].append(
            _unit(
                unit_id,
                row.district or "",
                "district",
                province_id,
                row.district_code,
                aliases=known["aliases"] if known else (),
            )
        )
        # The district's communes follow it.
        for ward in wards_of.get(row.district_code, []):
            known = hand.get(("commune", ward.ward_code or ""))
            unit_id = (
                known["id"]
                if known
                else ids.claim(
                    f"{district_ids[row.district_code]}-{slug(ward.ward_short or '')}",
                    f"{district_ids[row.district_code]}-{slug(ward.ward or '')}",
                    f"{district_ids[row.district_code]}-{slug(ward.ward or '')}-{ward.ward_code}",
                )
            )
            old_units[row.province_code].append(
                _unit(
                    unit_id,
                    ward.ward or "",
                    "commune",
                    district_ids[row.district_code],
                    ward.ward_code,
                    aliases=known["aliases"] if known else (),
                )
            )

    old_keys = {row.province_key: row.province_code for row in legacy}
    new_units: dict[str, list[dict[str, Any]]] = {}  # new province code -> its units
    formed_from: dict[str, set[str]] = {}
    for row in current:
        if row.province_code not in new_units:
            unit_id = ids.claim(f"{slug(row.province_short)}{NEW_SUFFIX}")
            new_units[row.province_code] = [
                _unit(unit_id, row.province, "province", None, row.province_code, REFORM_DAY)
            ]
            formed_from[row.province_code] = {
                old_keys[key] for key in converter.get(row.province_key, [row.province_key])
            }
        province_id = new_units[row.province_code][0]["id"]
        new_units[row.province_code].append(
            _unit(
                ids.claim(
                    f"{province_id}-{slug(row.ward_short or '')}",
                    f"{province_id}-{slug(row.ward or '')}",
                    f"{province_id}-{slug(row.ward or '')}-{row.ward_code}",
                ),
                row.ward or "",
                "commune",
                province_id,
                row.ward_code,
                REFORM_DAY,
            )
        )

    wanted = set(old_units) if provinces is None else set(provinces)
    unknown = wanted - set(old_units)
    if unknown:
        raise ValueError(f"no province with code {sorted(unknown)} in {DATASET}")
    generated: list[dict[str, Any]] = []
    for code in sorted(wanted, key=int):
        generated.extend(old_units[code])
    for code, formed in new_units.items():
        if formed_from[code] & wanted:
            generated.extend(formed)
    by_id = {u["id"]: u for u in generated}
    written = set(by_id)
    # The hand excerpt's units first, in its order (reports list units they do not lay out in
    # catalog order, as before); its departments as they were, without a code.
    units: list[dict[str, Any]] = []
    for item in excerpt["units"]:
        if item["level"] == "department":
            if item["parent_id"] in written:
                units.append(
                    _unit(
                        item["id"],
                        item["name"],
                        "department",
                        item["parent_id"],
                        None,
                        aliases=item["aliases"],
                    )
                )
        elif item["id"] in by_id:
            units.append(by_id.pop(item["id"]))
    units.extend(by_id.values())
    return {
        "version": 2,
        "generated_by": "deploy/catalog/generate.py (do not edit this file by hand)",
        "dataset": {
            "name": DATASET,
            "version": DATASET_VERSION,
            "license": "MIT",
            "url": f"https://pypi.org/project/{DATASET}/{DATASET_VERSION}/",
            "files": {
                "data/dataset.db": "admin_units_legacy (63 provinces, before 1 July 2025), "
                "admin_units (34 provinces, from 1 July 2025)",
                "data/converter_2025.json": "DICT_PROVINCE (the old provinces of each new one)",
            },
        },
        "provinces": "all" if provinces is None else sorted(wanted, key=int),
        "sources": [
            {
                "group": "provinces, districts, communes, wards and towns (names, GSO codes, "
                "parents), and the units of 1 July 2025",
                "from": f"{DATASET} {DATASET_VERSION} (see dataset)",
            },
            *(
                {**source, "from": f"deploy/catalog/excerpt_2024.json: {source['from']}"}
                for source in excerpt["sources"]
                if source["group"] in ("departments",)
            ),
            {
                "group": "aliases (names the seeds write units by) and the ids published before",
                "from": "deploy/catalog/excerpt_2024.json (the hand excerpt of 39 units, with "
                "the seed lines of each)",
            },
        ],
        "units": units,
    }


def render(catalog: dict[str, Any]) -> str:
    return json.dumps(catalog, ensure_ascii=False, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.catalog.generate")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--provinces",
        default=",".join(DEFAULT_PROVINCES),
        help="old provinces by GSO code, comma-separated, or `all` (default: %(default)s, the "
        "shipped catalog); another selection needs --output (for `init --catalog FILE`)",
    )
    args = parser.parse_args(argv)
    provinces = None if args.provinces == "all" else tuple(args.provinces.split(","))
    if provinces != DEFAULT_PROVINCES and args.output == OUTPUT:
        parser.error("the shipped catalog holds the default provinces: give --output")
    text = render(build_catalog(provinces))
    if args.check:
        same = args.output.exists() and args.output.read_text("utf-8") == text
        print(f"{args.output}: {'up to date' if same else 'differs from the dataset'}")
        return 0 if same else 1
    args.output.write_text(text, "utf-8")
    print(f"{args.output}: {text.count(chr(10))} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
