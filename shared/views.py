"""The read side: totals, progress, rankings and report tables, composed from the store and the
pure domain. The API serves these; nothing here writes."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import Position, Store
from shared.adapters.registry_store import RegistryCache
from shared.domain.campaigns import (
    Campaign,
    MetricProgress,
    Target,
    competition_ranks,
    count_progress,
    rate_progress,
)
from shared.domain.certification import states_on
from shared.domain.metrics import Metric, MetricKind, current_metrics
from shared.domain.periods import EARLIEST_DAY, Period
from shared.domain.registry import BACKFILLING, IndicatorKind, current_registry
from shared.domain.reports import (
    DOCUMENTS,
    ECABINET_MEETINGS,
    STAFF_EMAIL,
    OnlineServicesRow,
    PaymentsRow,
    RateCell,
    ShareCell,
    SoftwareUsageRow,
    payments_rows,
    payments_total,
    software_usage_row,
    software_usage_total,
)
from shared.domain.services_share import ServiceCatalogs, online_service_share
from shared.domain.units import Unit, UnitLevel, UnitTree

SERVICES_SHARE = "filing.services_with_online_share"
PROCESSED_ONLINE = "filing.processed.online_rate"
# The indicators the report tables read by id: they cannot be deleted (`DELETE
# /v1/indicators/{id}` is 409 naming the report), and a report answers 409 while one of them
# is backfilling.
REPORTED_INDICATORS: dict[str, str] = {
    **{
        f"payment.{kind}.{what}": "payments"
        for kind in ("nvtc", "fee")
        for what in ("count", "amount_vnd")
    },
    "filing.submitted": "online-services",
    "filing.processed": "online-services",
    "filing.processed.online": "online-services",
    PROCESSED_ONLINE: "online-services",
    SERVICES_SHARE: "online-services",
    **dict.fromkeys(
        (
            ECABINET_MEETINGS,
            *DOCUMENTS,
            "document.signed_rate",
            "document.online_rate",
            *STAFF_EMAIL,
            "staff.email_rate",
        ),
        "software-usage",
    ),
}


class NotFound(LookupError):
    pass


class Backfilling(RuntimeError):
    """An indicator whose values are being counted over the log (`409`, naming the status)."""


def json_number(value: Decimal | int | None) -> int | float | None:
    """Exact integers stay integers; shares and percents become JSON numbers."""
    if value is None or isinstance(value, int):
        return value
    if value == value.to_integral_value() and abs(value) < 10**15:
        return int(value)
    return float(value)


@dataclass(frozen=True, slots=True)
class MetricValue:
    value: Decimal | int | None
    numerator: int | None = None
    denominator: int | None = None


def metric_value(
    definition: Metric,
    unit_id: str,
    totals: Mapping[str, int],
    tree: UnitTree,
    catalogs: ServiceCatalogs,
) -> MetricValue:
    if definition.kind != MetricKind.RATE:
        return MetricValue(totals.get(definition.name, 0))
    if definition.builtin == IndicatorKind.ONLINE_SERVICES_SHARE:
        numerator, denominator = online_service_share(unit_id, tree, catalogs, totals)
    else:
        numerator = sum(totals.get(m, 0) for m in definition.numerator)
        denominator = sum(totals.get(m, 0) for m in definition.denominator)
    value = Decimal(numerator) / Decimal(denominator) if denominator else None
    return MetricValue(value, numerator, denominator)


class RangeTotalsMemo:
    """`Store.range_totals_many`, remembered for the served totals' version: the wall
    screens and phones that re-read the same progress after a change cost one read of the
    month documents, not one each. Exact: an entry is only used while the version it was read
    at is still the served one (see `Position`), and was read after that version was, so it
    is never older than the `as_of` given with it. Entries of older versions are dropped."""

    def __init__(self, store: Store, max_entries: int = 64) -> None:
        self._store = store
        self._max = max_entries
        self._version: Hashable = None
        self._entries: OrderedDict[Hashable, list[dict[str, dict[str, int]]]] = OrderedDict()

    async def get(
        self, position: Position, unit_ids: Sequence[str], ranges: tuple[tuple[date, date], ...]
    ) -> list[dict[str, dict[str, int]]]:
        key = (tuple(unit_ids), ranges)
        if position.version == self._version and key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        found = await self._store.range_totals_many(unit_ids, ranges)
        if position.version != self._version:
            self._entries.clear()
            self._version = position.version
        self._entries[key] = found
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return found


class TargetsMemo:
    """`Store.targets_of`, remembered per campaign for its targets' version (which every
    `put_targets` moves in the same transaction): read again only after a change."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._entries: dict[str, tuple[int, list[Target]]] = {}

    async def get(self, campaign_id: str) -> list[Target]:
        version = await self._store.targets_version(campaign_id)
        known = self._entries.get(campaign_id)
        if known is not None and known[0] == version:
            return known[1]
        targets = await self._store.targets_of(campaign_id)
        self._entries[campaign_id] = (version, targets)
        return targets


class Views:
    def __init__(
        self,
        store: Store,
        catalog: CatalogCache,
        events_topic: str,
        event_partitions: int,
        registry: RegistryCache | None = None,
    ) -> None:
        self._store = store
        # Looked at (at most once a second) before a metric is judged known or ready.
        self._registry = registry
        self._catalog = catalog
        self._topic = events_topic
        self._partitions = event_partitions
        self._range_totals = RangeTotalsMemo(store)
        self._targets = TargetsMemo(store)

    async def _unit(self, unit_id: str) -> tuple[UnitTree, Unit]:
        tree = await self._catalog.covering([unit_id])
        unit = tree.get(unit_id)
        if unit is None:
            raise NotFound(f"unknown unit {unit_id!r}")
        return tree, unit

    async def as_of(self) -> datetime | None:
        """Read before a response's totals, never after: a rebuild may switch the store to
        a newer generation in between, and a value newer than its `as_of` is true, while an
        `as_of` newer than its value would not be."""
        return (await self._position()).as_of

    async def _definition(self, metric: str) -> Metric:
        """The metric's definition, if it is known (`NotFound`) and its values are exact
        (`Backfilling` while a replay of the log counts them)."""
        if self._registry is not None:
            await self._registry.fresh()
        definition = current_metrics().get(metric)
        if definition is None:
            raise NotFound(f"unknown metric {metric!r}")
        await self.ready(metric)
        return definition

    async def ready(self, *metrics: str) -> None:
        """Raise `Backfilling` if any of `metrics` (indicators of the registry in use) is."""
        registry = current_registry()
        await self._store.follow_generation(max_age_s=1.0)
        for metric in metrics:
            if metric in registry.indicators:
                status = registry.status(metric, self._store.counted_from)
                if status == BACKFILLING:
                    raise Backfilling(
                        f"indicator {metric!r} is {status}: its values are being counted over "
                        "the whole event log; ask again when GET /v1/indicators says ready"
                    )

    async def _reported_ready(self, report: str) -> None:
        if self._registry is not None:
            await self._registry.fresh()
        await self.ready(*(i for i, name in REPORTED_INDICATORS.items() if name == report))

    async def _position(self) -> Position:
        partitions = await self._store.partition_count(self._topic, self._partitions)
        return await self._store.position(self._topic, partitions)

    async def total(self, unit_id: str, metric: str, period: Period) -> dict[str, Any]:
        definition = await self._definition(metric)
        tree, _ = await self._unit(unit_id)
        as_of = await self.as_of()
        bounds = period.date_range()
        first, last = bounds if bounds else (None, None)
        totals = (await self._store.range_totals([unit_id], first, last))[unit_id]
        catalogs = await self._catalogs_if(definition)
        result = metric_value(definition, unit_id, totals, tree, catalogs)
        body: dict[str, Any] = {
            "unit_id": unit_id,
            "metric": metric,
            "period": str(period),
            "value": json_number(result.value),
            "as_of": as_of.isoformat() if as_of else None,
        }
        if definition.kind == MetricKind.RATE:
            body["numerator"] = result.numerator
            body["denominator"] = result.denominator
        return body

    async def daily_series(
        self, unit_id: str, metric: str, first: date, last: date
    ) -> dict[str, Any]:
        """A unit's value of a metric on each local day of [first, last] (every day listed,
        0 or null when nothing happened): the dashboard's daily chart."""
        definition = await self._definition(metric)
        tree, _ = await self._unit(unit_id)
        as_of = await self.as_of()
        by_day = await self._store.daily_totals(unit_id, first, last)
        catalogs = await self._catalogs_if(definition)
        days = []
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            result = metric_value(definition, unit_id, by_day.get(day, {}), tree, catalogs)
            days.append({"date": day.isoformat(), "value": json_number(result.value)})
        return {
            "unit_id": unit_id,
            "metric": metric,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "as_of": as_of.isoformat() if as_of else None,
            "days": days,
        }

    async def _catalogs_if(self, definition: Metric) -> ServiceCatalogs:
        if definition.builtin == IndicatorKind.ONLINE_SERVICES_SHARE:
            return await self._store.service_catalogs_by_unit()
        return {}

    async def rankings(
        self, metric: str, period: Period, level: UnitLevel, within: str | None = None
    ) -> dict[str, Any]:
        """Units of a level under `within` (default: the catalog's first province, the
        deployment's own) by value."""
        definition = await self._definition(metric)
        tree = self._catalog.tree
        if within is None:
            within = next((u.id for u in tree.units() if u.parent_id is None), "")
        elif within not in tree:
            raise NotFound(f"unknown unit {within!r}")
        bounds = period.date_range()
        first, last = bounds if bounds else (None, None)
        # The units of that level under it that existed during the period (a ward formed on
        # 1 July 2025 has no rank in 2024; one that ended before the period has none either).
        units = [
            u
            for u in tree.units()
            if u.level == level
            and tree.is_within(u.id, (within,))
            and (last is None or u.valid_from is None or u.valid_from <= last)
            and (first is None or u.valid_to is None or first <= u.valid_to)
        ]
        as_of = await self.as_of()  # before the totals: see as_of()
        totals = await self._store.range_totals([u.id for u in units], first, last)
        catalogs = await self._catalogs_if(definition)
        values = {u.id: metric_value(definition, u.id, totals[u.id], tree, catalogs) for u in units}
        ranked = competition_ranks(
            [
                (unit_id, None if v.value is None else Decimal(v.value))
                for unit_id, v in values.items()
            ]
        )
        rows = []
        for rank, unit_id, _ in ranked:
            unit = tree.get(unit_id)
            assert unit is not None
            row: dict[str, Any] = {
                "rank": rank,
                "unit_id": unit_id,
                "name": unit.name,
                "value": json_number(values[unit_id].value),
            }
            if definition.kind == MetricKind.RATE:
                row["numerator"] = values[unit_id].numerator
                row["denominator"] = values[unit_id].denominator
            rows.append(row)
        return {
            "metric": metric,
            "period": str(period),
            "level": level.value,
            "within": within,
            "as_of": as_of.isoformat() if as_of else None,
            "units": rows,
        }

    async def progress(self, campaign_id: str, unit_id: str, today: date) -> dict[str, Any]:
        campaign = await self._store.get_campaign(campaign_id)
        if campaign is None:
            raise NotFound(f"unknown campaign {campaign_id!r}")
        tree, unit = await self._unit(unit_id)
        targets = await self._targets.get(campaign_id)
        metrics = list(dict.fromkeys(t.metric for t in targets))
        own: dict[tuple[str, str], Target] = {(t.unit_id, t.metric): t for t in targets}
        units = [unit, *tree.children(unit_id)]
        ids = [u.id for u in units]
        until = campaign.counted_until(today)
        position = await self._position()  # before the totals: see as_of()
        as_of = position.as_of
        # Both ranges in one read (the months they share are read once). No pace window
        # means the campaign has not started: (starts, until) is then empty as well.
        window = campaign.pace_window(today) or (campaign.starts, until)
        in_campaign, in_window = await self._range_totals.get(
            position, ids, ((campaign.starts, until), window)
        )
        catalog = current_metrics()
        catalogs = (
            await self._store.service_catalogs_by_unit()
            if any(catalog[m].builtin == IndicatorKind.ONLINE_SERVICES_SHARE for m in metrics)
            else {}
        )
        return {
            "campaign": {
                "id": campaign.id,
                "name": campaign.name,
                "starts": campaign.starts.isoformat(),
                "ends": campaign.ends.isoformat(),
                "lagging_threshold": campaign.lagging_threshold,
            },
            "as_of": as_of.isoformat() if as_of else None,
            "today": today.isoformat(),
            "units": [
                {
                    "unit_id": u.id,
                    "name": u.name,
                    "level": u.level.value,
                    "metrics": [
                        _progress_json(
                            _metric_progress(
                                campaign,
                                catalog[m],
                                u.id,
                                own.get((u.id, m)),
                                today,
                                in_campaign[u.id],
                                in_window[u.id],
                                tree,
                                catalogs,
                            )
                        )
                        for m in metrics
                    ],
                }
                for u in units
            ],
        }

    async def payments_report(self, day: date) -> dict[str, Any]:
        await self._reported_ready("payments")
        tree = self._catalog.tree
        districts = report_order(tree, "payments", (UnitLevel.DISTRICT,))
        ids = [u.id for u in districts]
        as_of = await self.as_of()  # before the totals: see as_of()
        spans = {
            "day": await self._store.range_totals(ids, day, day),
            "month": await self._store.range_totals(ids, day.replace(day=1), day),
            "year": await self._store.range_totals(ids, day.replace(month=1, day=1), day),
        }
        rows = payments_rows(districts, spans)
        return {
            "report": "payments",
            "date": day.isoformat(),
            "as_of": as_of.isoformat() if as_of else None,
            "rows": [_payments_json(row) for row in rows],
            "total": _payments_json(payments_total(rows)),
        }

    async def online_services_report(
        self,
        day: date,
        share_threshold: Decimal,
        processed_threshold: Decimal,
        campaign_id: str | None = None,
    ) -> dict[str, Any]:
        """With a campaign, each row is judged against that campaign's rate targets: the
        unit's own, else its nearest ancestor's, else the thresholds given."""
        await self._reported_ready("online-services")
        tree = self._catalog.tree
        targets: dict[tuple[str, str], Decimal] = {}
        if campaign_id is not None:
            if await self._store.get_campaign(campaign_id) is None:
                raise NotFound(f"unknown campaign {campaign_id!r}")
            targets = {
                (t.unit_id, t.metric): t.target for t in await self._store.targets_of(campaign_id)
            }

        def threshold(unit_id: str, metric: str, default: Decimal) -> Decimal:
            lineage = tree.lineage(unit_id) if unit_id in tree else ()
            return next((targets[(u, metric)] for u in lineage if (u, metric) in targets), default)

        root = next((u.id for u in tree.units() if u.parent_id is None), "")
        share_threshold = threshold(root, SERVICES_SHARE, share_threshold)
        processed_threshold = threshold(root, PROCESSED_ONLINE, processed_threshold)
        units = report_order(tree, "online-services", (UnitLevel.DEPARTMENT, UnitLevel.DISTRICT))
        ids = [u.id for u in units]
        first = day.replace(month=1, day=1)
        as_of = await self.as_of()  # before the totals: see as_of()
        totals = await self._store.range_totals(ids, first, day)
        catalogs = await self._store.service_catalogs_by_unit()
        rows = []
        for unit in units:
            if not _offers_or_files(unit.id, tree, catalogs, totals[unit.id]):
                continue  # a unit with no online services and no filings has no row
            active, offered = online_service_share(unit.id, tree, catalogs, totals[unit.id])
            processed = totals[unit.id].get("filing.processed", 0)
            online = totals[unit.id].get("filing.processed.online", 0)
            rows.append(
                OnlineServicesRow(
                    unit.id,
                    unit.name,
                    RateCell.of(
                        active, offered, threshold(unit.id, SERVICES_SHARE, share_threshold)
                    ),
                    RateCell.of(
                        online, processed, threshold(unit.id, PROCESSED_ONLINE, processed_threshold)
                    ),
                )
            )
        total = OnlineServicesRow(
            "total",
            "TỔNG",
            RateCell.of(
                sum(r.online_share.numerator for r in rows),
                sum(r.online_share.denominator for r in rows),
                share_threshold,
            ),
            RateCell.of(
                sum(r.processed_online.numerator for r in rows),
                sum(r.processed_online.denominator for r in rows),
                processed_threshold,
            ),
        )
        return {
            "report": "online-services",
            "date": day.isoformat(),
            "from": first.isoformat(),
            "campaign": campaign_id,
            "thresholds": {
                "online_share": json_number(share_threshold),
                "processed_online": json_number(processed_threshold),
            },
            "as_of": as_of.isoformat() if as_of else None,
            "rows": [_online_json(row) for row in rows],
            "total": _online_json(total),
        }

    async def software_usage_report(self, first: date, last: date) -> dict[str, Any]:
        """Per department and district: Ecabinet meetings in [first, last] and up to `last`,
        the signed and online shares of the documents issued in [first, last], and the staff's
        e-mail share as they stood on `last` (each at their latest status dated on or before
        it). A unit with none of these has no row."""
        await self._reported_ready("software-usage")
        tree = self._catalog.tree
        units = report_order(tree, "software-usage", (UnitLevel.DEPARTMENT, UnitLevel.DISTRICT))
        ids = [u.id for u in units]
        as_of = await self.as_of()  # before the totals: see as_of()
        in_range = await self._store.range_totals(ids, first, last)
        up_to = await self._store.range_totals(ids, EARLIEST_DAY, last)
        # The staff as they stood on `last`, not at their latest status (which may be later).
        registry = current_registry()
        staff = states_on(
            [
                record
                for event_type in sorted(
                    {registry.indicators[i].event_type or "" for i in STAFF_EMAIL}
                )
                for record in await self._store.records_of(event_type)
            ],
            last,
            registry,
            tree,
        )
        rows = [
            software_usage_row(
                u,
                in_range[u.id],
                {**up_to[u.id], **{i: staff.get(u.id, {}).get(i, 0) for i in STAFF_EMAIL}},
            )
            for u in units
        ]
        rows = [row for row in rows if not row.empty]
        return {
            "report": "software-usage",
            "from": first.isoformat(),
            "to": last.isoformat(),
            "as_of": as_of.isoformat() if as_of else None,
            "rows": [_usage_json(row) for row in rows],
            "total": _usage_json(software_usage_total(rows)),
        }


def report_order(tree: UnitTree, report: str, levels: tuple[UnitLevel, ...]) -> list[Unit]:
    """The report's units in the province's own row order, then any others of those levels
    under the same province (a unit added later) in catalog order. The catalog holds other
    provinces too (old Đồng Nai, the Đồng Nai of 2025): they are not the report's rows."""
    layout = [unit_id for unit_id in report_layouts().get(report, []) if unit_id in tree]
    listed = set(layout)
    roots = {tree.lineage(unit_id)[-1] for unit_id in layout}
    units = [tree.get(unit_id) for unit_id in layout]
    units += [
        u
        for u in tree.units()
        if u.level in levels
        and u.id not in listed
        and (not roots or tree.lineage(u.id)[-1] in roots)
    ]
    return [u for u in units if u is not None and u.level in levels]


@lru_cache(maxsize=1)
def report_layouts() -> dict[str, list[str]]:
    text = resources.files("shared.data").joinpath("report_layouts.json").read_text("utf-8")
    return {k: v for k, v in json.loads(text).items() if isinstance(v, list)}


def _offers_or_files(
    unit_id: str, tree: UnitTree, catalogs: ServiceCatalogs, totals: Mapping[str, int]
) -> bool:
    return bool(
        totals.get("filing.processed", 0)
        or totals.get("filing.submitted", 0)
        or any(tree.is_within(owner, [unit_id]) for owner in catalogs if owner in tree)
    )


def _metric_progress(
    campaign: Campaign,
    definition: Metric,
    unit_id: str,
    target: Target | None,
    today: date,
    in_campaign: Mapping[str, int],
    in_window: Mapping[str, int],
    tree: UnitTree,
    catalogs: ServiceCatalogs,
) -> MetricProgress:
    goal = target.target if target else None
    if definition.kind == MetricKind.RATE:
        value = metric_value(definition, unit_id, in_campaign, tree, catalogs)
        return rate_progress(
            campaign, definition.name, value.numerator or 0, value.denominator or 0, goal, today
        )
    return count_progress(
        campaign,
        definition.name,
        in_campaign.get(definition.name, 0),
        goal,
        today,
        in_window.get(definition.name, 0),
    )


def _progress_json(p: MetricProgress) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metric": p.metric,
        "value": json_number(p.value),
        "target": json_number(p.target),
        "percent": json_number(p.percent),
        "expected": json_number(p.expected),
        "status": p.status.value if p.status else None,
        "pace_ratio": json_number(p.pace_ratio),
        "pace_last_7_days": json_number(p.pace_last_7_days),
        "pace_needed_per_day": json_number(p.pace_needed_per_day),
        "projected_completion": p.projected_completion.isoformat()
        if p.projected_completion
        else None,
    }
    if p.numerator is not None:
        body["numerator"] = p.numerator
        body["denominator"] = p.denominator
    return body


def _payments_json(row: PaymentsRow) -> dict[str, Any]:
    body: dict[str, Any] = {"unit_id": row.unit_id, "name": row.name}
    for span, kinds in row.spans.items():
        body[span] = {
            **{k: {"count": f.count, "amount_vnd": f.amount_vnd} for k, f in kinds.items()},
            "all": {"count": row.grand(span).count, "amount_vnd": row.grand(span).amount_vnd},
        }
    return body


def _rate_json(cell: RateCell) -> dict[str, Any]:
    return {
        "numerator": cell.numerator,
        "denominator": cell.denominator,
        "percent": json_number(cell.percent),
        "verdict": cell.verdict,
    }


def _online_json(row: OnlineServicesRow) -> dict[str, Any]:
    return {
        "unit_id": row.unit_id,
        "name": row.name,
        "online_share": _rate_json(row.online_share),
        "processed_online": _rate_json(row.processed_online),
    }


def _share_json(cell: ShareCell) -> dict[str, Any]:
    return {
        "numerator": cell.numerator,
        "denominator": cell.denominator,
        "percent": json_number(cell.percent),
    }


def _usage_json(row: SoftwareUsageRow) -> dict[str, Any]:
    return {
        "unit_id": row.unit_id,
        "name": row.name,
        "ecabinet_meetings_period": row.ecabinet_meetings_period,
        "ecabinet_meetings_total": row.ecabinet_meetings_total,
        "signed_documents": _share_json(row.signed_documents),
        "documents_online": _share_json(row.documents_online),
        "official_email": _share_json(row.official_email),
    }
