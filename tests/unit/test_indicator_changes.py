"""Indicators changed at run time (pure): `Registry.with_indicator`, `without_indicator`, and
which indicators a generation counted from a registry version holds exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.registry import (
    BACKFILLING,
    READY,
    IndicatorInUse,
    Registry,
    RegistryError,
    indicator_from_json,
    indicator_status,
    needs_backfill,
    shipped_registry,
)

NAMES = {"name_vi": "Thử", "name_en": "Test", "unit": "lượt"}


def define(registry: Registry, name: str, **body: Any) -> Registry:
    return registry.with_indicator(indicator_from_json(name, {**NAMES, **body}))


def test_a_new_indicator_backfills_from_its_version_and_a_change_of_names_does_not() -> None:
    shipped = shipped_registry()
    assert not needs_backfill(shipped, shipped.version)
    assert all(indicator_status(shipped, i, shipped.version) == READY for i in shipped.indicators)

    one = define(
        shipped, "eid.level1", kind="count", event_type="eid.activated", where={"level": 1}
    )
    assert one.version == shipped.version + 1
    added = one.indicators["eid.level1"]
    assert (added.version, added.since) == (1, one.version)
    assert one.status("eid.level1", shipped.version) == BACKFILLING
    assert one.status("eid.level1", one.version) == READY
    assert one.status("eid.activated", shipped.version) == READY  # the others stay ready
    assert needs_backfill(one, shipped.version) and not needs_backfill(one, one.version)

    renamed = one.with_indicator(
        indicator_from_json(
            "eid.level1",
            {**NAMES, "name_en": "Level 1", "kind": "count", "event_type": "eid.activated",
             "where": {"level": 1}},
        )
    )  # fmt: skip
    assert renamed.indicators["eid.level1"].version == 2
    assert renamed.indicators["eid.level1"].since == one.version  # nothing to count again
    assert renamed.status("eid.level1", one.version) == READY

    changed = define(renamed, "eid.level1", kind="count", event_type="eid.activated")
    assert changed.indicators["eid.level1"].version == 3
    assert changed.indicators["eid.level1"].since == changed.version
    assert changed.status("eid.level1", renamed.version) == BACKFILLING


def test_a_rate_is_as_ready_as_its_parts() -> None:
    shipped = shipped_registry()
    over_ready = define(
        shipped,
        "cccd.per_eid",
        kind="rate",
        numerator=["cccd.issued"],
        denominator=["eid.activated"],
    )
    assert over_ready.status("cccd.per_eid", shipped.version) == READY
    level1 = {"kind": "count", "event_type": "eid.activated", "where": {"level": 1}}
    with_new = define(
        define(over_ready, "eid.level1", **level1),
        "eid.level1_share",
        kind="rate",
        numerator=["eid.level1"],
        denominator=["eid.activated"],
    )  # fmt: skip
    assert with_new.status("eid.level1_share", shipped.version) == BACKFILLING
    assert with_new.status("eid.level1_share", with_new.version) == READY


def test_deleted_and_defined_again_backfills_again() -> None:
    shipped = shipped_registry()
    one = define(
        shipped, "eid.level1", kind="count", event_type="eid.activated", where={"level": 1}
    )
    gone = one.without_indicator("eid.level1")
    assert "eid.level1" not in gone.indicators and gone.version == one.version + 1
    again = define(gone, "eid.level1", kind="count", event_type="eid.activated", where={"level": 1})
    # A generation counted from `one` missed what the registry without it did not count.
    assert again.status("eid.level1", one.version) == BACKFILLING
    with pytest.raises(IndicatorInUse, match=r"payment\.success_rate"):
        shipped.without_indicator("payment.fee.count")
    with pytest.raises(KeyError):
        shipped.without_indicator("no.such")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "count", "event_type": "no.such"}, "unknown event type 'no.such'"),
        ({"kind": "count", "event_type": "eid.activated", "where": {"x": 1}}, "'x', not an attr"),
        ({"kind": "count", "event_type": "eid.activated", "where": {"level": 3}}, "level = 3"),
        (
            {"kind": "sum", "event_type": "filing.submitted", "field": "channel"},
            "not 'channel'",
        ),
        ({"kind": "sum", "event_type": "cccd.issued", "field": "amount_vnd"}, "no amount_vnd"),
        (
            {"kind": "rate", "numerator": ["payment.success_rate"], "denominator": ["cccd.issued"]},
            "a rate of a rate",
        ),
        ({"kind": "rate", "numerator": ["no.such"], "denominator": ["cccd.issued"]}, "'no.such'"),
        (
            {"kind": "rate", "numerator": ["x.self"], "denominator": ["cccd.issued"]},
            "a cycle x.self → x.self",
        ),
        (
            {"kind": "state", "event_type": "certification.status", "status_attribute": "status",
             "status": "lost"},
            "status 'lost'",
        ),
        ({"kind": "online_services_share", "event_type": "filing.submitted",
          "service_attribute": "service_id"}, "built-in"),
    ],
)  # fmt: skip
def test_bad_definitions_are_named_and_change_nothing(body: dict[str, Any], words: str) -> None:
    shipped = shipped_registry()
    before = json.dumps(shipped.to_json(), sort_keys=True)
    with pytest.raises(RegistryError, match=words.replace(".", r"\.").replace("'", ".")):
        define(shipped, "x.self", **body)
    assert json.dumps(shipped.to_json(), sort_keys=True) == before


def test_since_survives_the_stored_form() -> None:
    one = define(
        shipped_registry(),
        "eid.level1",
        kind="count",
        event_type="eid.activated",
        where={"level": 1},
    )
    again = Registry.from_json(one.to_json())
    assert again.indicators["eid.level1"].since == one.version
    assert "since" not in one.indicators["eid.level1"].to_json()  # not part of the contract
