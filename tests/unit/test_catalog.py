import re

import pytest

from shared.domain.units import (
    InvalidCatalog,
    Unit,
    UnitLevel,
    UnitTree,
    bundled_catalog,
    load_catalog,
    rollup_shift,
)

DISTRICTS = {
    "Thành phố Đồng Xoài",
    "Thị xã Bình Long",
    "Thị xã Phước Long",
    "Thị xã Chơn Thành",
    "Huyện Đồng Phú",
    "Huyện Hớn Quản",
    "Huyện Phú Riềng",
    "Huyện Bù Đốp",
    "Huyện Bù Gia Mập",
    "Huyện Lộc Ninh",
    "Huyện Bù Đăng",
}


def test_bundled_catalog_is_a_valid_tree() -> None:
    tree = UnitTree(load_catalog(bundled_catalog()))
    province = [u for u in tree.units() if u.level == UnitLevel.PROVINCE]
    # Old Bình Phước and old Đồng Nai, and the Đồng Nai of 1 July 2025 (issue 21).
    assert [u.id for u in province] == ["binh-phuoc", "dong-nai", "dong-nai-2025"]
    districts = {u.name for u in tree.children("binh-phuoc") if u.level == UnitLevel.DISTRICT}
    assert districts == DISTRICTS
    departments = {u.name for u in tree.units() if u.level == UnitLevel.DEPARTMENT}
    assert {"Sở Y tế", "Công an tỉnh", "Ban Quản lý Khu kinh tế", "Sở Tư pháp"} <= departments
    assert tree.lineage("bu-dang-minh-hung") == ("bu-dang-minh-hung", "bu-dang", "binh-phuoc")
    for unit in tree.units():
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", unit.id)


def test_broken_catalogs_are_refused() -> None:
    with pytest.raises(InvalidCatalog):
        UnitTree([Unit("a", "A", UnitLevel.PROVINCE, "missing")])
    with pytest.raises(InvalidCatalog):
        UnitTree(
            [Unit("a", "A", UnitLevel.PROVINCE, None), Unit("a", "B", UnitLevel.DISTRICT, "a")]
        )
    with pytest.raises(InvalidCatalog):
        UnitTree([Unit("a", "A", UnitLevel.DISTRICT, "b"), Unit("b", "B", UnitLevel.DISTRICT, "a")])


def test_scope_covers_descendants() -> None:
    tree = UnitTree(load_catalog(bundled_catalog()))
    assert tree.is_within("bu-dang-minh-hung", ["bu-dang"])
    assert tree.is_within("bu-dang", ["bu-dang"])
    assert not tree.is_within("bu-dop-tan-tien", ["bu-dang"])
    assert not tree.is_within("bu-dang", ["bu-dang-minh-hung"])


def test_rollup_shift_moves_history_only_between_ancestors_that_change() -> None:
    tree = UnitTree(load_catalog(bundled_catalog()))
    commune = tree.get("bu-dop-tan-tien")
    assert commune is not None
    moved = tree.with_unit(Unit(commune.id, commune.name, commune.level, "loc-ninh"))
    assert rollup_shift(tree, moved, "bu-dop-tan-tien") == (["bu-dop"], ["loc-ninh"])
    district = tree.get("loc-ninh")
    assert district is not None
    merged = tree.with_unit(
        Unit(district.id, district.name, district.level, "bu-gia-map", merged_into="bu-gia-map")
    )
    assert rollup_shift(tree, merged, "loc-ninh") == ([], ["bu-gia-map"])
    with pytest.raises(InvalidCatalog):
        merged.with_unit(Unit("bu-gia-map", "x", UnitLevel.DISTRICT, "loc-ninh"))
