"""The shipped catalog is the official one (issue 21): generated from `vietnamadminunits`, with the
ids published before, and units that carry codes and dates."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from deploy.catalog import generate
from shared.admin import catalog_data
from shared.domain.units import Unit, UnitLevel, UnitTree, bundled_catalog, load_catalog
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXCERPT = json.loads((REPO / "deploy/catalog/excerpt_2024.json").read_text("utf-8"))


def _dataset(sql: str) -> list[sqlite3.Row]:
    db = resources.files("vietnamadminunits").joinpath("data/dataset.db")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql))


def _tree() -> UnitTree:
    return UnitTree(load_catalog(bundled_catalog()))


def _ended(unit_id: str, tree: UnitTree) -> Unit:
    """The unit as the 2025 reform leaves it: ended on 30 June, the new ward its successor."""
    unit = tree.get(unit_id)
    assert unit is not None
    return replace(unit, valid_to=date(2025, 6, 30), successors=("dong-nai-2025-minh-hung",))


def test_the_shipped_catalog_is_what_the_generator_writes() -> None:
    shipped = (REPO / "shared/data/catalog_binh_phuoc.json").read_text("utf-8")
    assert generate.render(generate.build_catalog()) == shipped, (
        "shared/data/catalog_binh_phuoc.json is generated: run "
        "`PYTHONPATH=. .local/venv/bin/python -m deploy.catalog.generate`"
    )
    data = json.loads(shipped)
    assert data["dataset"]["name"] == "vietnamadminunits"
    assert data["dataset"]["version"] == "1.0.4"


def test_every_commune_of_binh_phuoc_and_dong_nai_is_a_unit_with_its_code_and_parent() -> None:
    tree = _tree()
    old = [u for u in tree.units() if u.valid_from is None]
    by_code = {(u.level, u.code): u for u in old}
    rows = _dataset(
        "SELECT province, provinceCode, district, districtCode, ward, wardCode"
        " FROM admin_units_legacy WHERE provinceCode IN ('70', '75')"
    )
    assert len(rows) == 111 + 159
    for row in rows:
        commune = by_code[(UnitLevel.COMMUNE, row["wardCode"])]
        district = by_code[(UnitLevel.DISTRICT, row["districtCode"])]
        province = by_code[(UnitLevel.PROVINCE, row["provinceCode"])]
        assert (commune.name, commune.parent_id) == (row["ward"], district.id)
        assert (district.name, district.parent_id) == (row["district"], province.id)
        assert province.name == row["province"]
    # The Đồng Nai of 1 July 2025: 95 communes and wards, no district level.
    new = [u for u in tree.units() if u.valid_from == date(2025, 7, 1)]
    rows = _dataset("SELECT ward, wardCode FROM admin_units WHERE provinceCode = '75'")
    assert len(rows) == 95
    province = tree.get("dong-nai-2025")
    assert province is not None
    assert (province.name, province.code, province.parent_id) == ("Tỉnh Đồng Nai", "75", None)
    wards = {u.code: u for u in new if u.level == UnitLevel.COMMUNE}
    assert {(row["wardCode"], row["ward"]) for row in rows} == {
        (code, u.name) for code, u in wards.items()
    }
    assert {u.parent_id for u in wards.values()} == {"dong-nai-2025"}
    # No unit lacks a code but the departments, which have none.
    assert [u.id for u in tree.units() if u.code is None] == [
        u.id for u in tree.units() if u.level == UnitLevel.DEPARTMENT
    ]
    levels = Counter((u.level.value, u.valid_from is None) for u in tree.units())
    assert levels == {
        ("province", True): 2,
        ("district", True): 22,
        ("commune", True): 270,
        ("department", True): 23,
        ("province", False): 1,
        ("commune", False): 95,
    }


def test_the_ids_published_before_name_the_same_units() -> None:
    tree = _tree()
    for before in EXCERPT["units"]:
        unit = tree.get(before["id"])
        assert unit is not None, before["id"]
        assert (unit.name, unit.level.value, unit.parent_id, list(unit.aliases)) == (
            before["name"],
            before["level"],
            before["parent_id"],
            before["aliases"],
        )
    codes = {u: tree.get(u).code for u in ("bu-dang-minh-hung", "chon-thanh-minh-hung")}  # type: ignore[union-attr]
    assert codes == {"bu-dang-minh-hung": "25408", "chon-thanh-minh-hung": "25441"}
    unit = tree.get("binh-phuoc")
    assert unit is not None and unit.code == "70"
    # The excerpt's units come first, in its order (reports list the units they do not lay
    # out in catalog order); the rest follow.
    assert [u.id for u in tree.units()][: len(EXCERPT["units"])] == [
        u["id"] for u in EXCERPT["units"]
    ]


def test_new_ids_are_slugs_of_district_and_commune() -> None:
    tree = _tree()
    unit = tree.get("bien-hoa-trang-dai")
    assert unit is not None and (unit.name, unit.parent_id) == ("Phường Trảng Dài", "bien-hoa")
    unit = tree.get("bu-gia-map-dak-o")
    assert unit is not None and unit.name == "Xã Đak Ơ"
    unit = tree.get("dong-nai-2025-minh-hung")
    assert unit is not None and unit.valid_from == date(2025, 7, 1)


def test_an_official_code_names_the_unit_of_the_day() -> None:
    tree = _tree()
    # 25217 was Phường Long Thủy's, then the ward of 2025 that took its place.
    old = tree.with_code("25217", date(2024, 4, 22))
    new = tree.with_code("25217", date(2025, 7, 1))
    assert old is not None and new is not None
    assert (old.id, new.id) == ("phuoc-long-long-thuy", "dong-nai-2025-phuoc-long")
    assert tree.with_code("99999") is None
    unit = tree.with_code("25408", date(2024, 1, 1))
    assert unit is not None and unit.id == "bu-dang-minh-hung"


def test_the_tree_of_a_day() -> None:
    tree = _tree()
    before = {u.id for u in tree.on(date(2025, 6, 30))}
    after = {u.id for u in tree.on(date(2025, 7, 1))}
    assert "dong-nai-2025" not in before and "bu-dang-minh-hung" in before
    # Until the reform is applied the old units have not ended: both trees stand.
    assert "dong-nai-2025" in after and "bu-dang-minh-hung" in after
    ended = tree.with_unit(_ended("chon-thanh-minh-hung", tree))
    assert "chon-thanh-minh-hung" not in {u.id for u in ended.on(date(2025, 7, 1))}
    assert "chon-thanh-minh-hung" in {u.id for u in ended.on(date(2025, 6, 30))}
    assert len(tree.on(date(2024, 4, 22))) == len(tree) - 96


def test_units_keep_their_new_fields_through_dicts() -> None:
    unit = Unit(
        "x",
        "Xã X",
        UnitLevel.COMMUNE,
        None,
        code="1",
        valid_from=date(2025, 7, 1),
        valid_to=date(2026, 1, 1),
        successors=("y", "z"),
    )
    assert Unit.from_dict(json.loads(json.dumps(unit.to_dict()))) == unit
    legacy = Unit.from_dict({"id": "a", "name": "A", "level": "province", "parent_id": None})
    assert (legacy.code, legacy.valid_from, legacy.valid_to, legacy.successors) == (
        None,
        None,
        None,
        (),
    )


def test_init_loads_other_provinces_or_the_whole_country_from_the_dataset() -> None:
    shipped = {u["id"]: u for u in bundled_catalog()["units"]}
    assert catalog_data(Settings(catalog_provinces="75,70")) == bundled_catalog()
    binh_duong = UnitTree(load_catalog(catalog_data(Settings(catalog_provinces="74"))))
    roots = sorted(u.id for u in binh_duong.units() if u.parent_id is None)
    # Bình Dương joined Hồ Chí Minh City on 1 July 2025; no department is Bình Dương's.
    assert roots == ["binh-duong", "ho-chi-minh-2025"]
    assert not [u for u in binh_duong.units() if u.level == UnitLevel.DEPARTMENT]
    country = generate.build_catalog(None)
    tree = UnitTree(load_catalog(country))  # ids unique, every parent known
    levels = Counter((u.level.value, u.valid_from is None) for u in tree.units())
    assert levels == {
        ("province", True): 63,
        ("district", True): 696,
        ("commune", True): 10_040 - 5,  # five island districts have no commune
        ("department", True): 23,
        ("province", False): 34,
        ("commune", False): 3_321,
    }
    # A unit has the same id in every catalog generated from the dataset.
    for unit in tree.units():
        if unit.id in shipped:
            assert unit.to_dict() == Unit.from_dict(shipped[unit.id]).to_dict()
    assert len([u for u in tree.units() if u.id in shipped]) == len(shipped)
    with pytest.raises(ValueError):
        Settings(catalog_provinces="7")
