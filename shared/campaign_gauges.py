"""Campaign gauges for Prometheus: every running campaign's targets at province and district
level, computed on scrape from the stored totals (so they are right after any restart).

Commune targets stay in the API (`/v1/campaigns/{id}/progress`): exporting them would put
hundreds of units in the labels. The bound, per gauge, is
    running campaigns × (province + district-level units: 12 in Bình Phước) × targeted metrics
e.g. 2 campaigns × 12 units × 4 metrics = 96 series per gauge, 5 unit gauges → 480 series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.adapters.catalog import CatalogCache
from shared.adapters.mongo import Store
from shared.domain.periods import today_local
from shared.domain.units import UnitLevel
from shared.views import Views

log = logging.getLogger(__name__)

EXPORTED_LEVELS = (UnitLevel.PROVINCE, UnitLevel.DISTRICT)
UNIT_LABELS = ["campaign", "unit_id", "unit_name", "level", "metric"]


class CampaignGauges(Collector):
    """A prometheus-client collector; `refresh` (awaited by `/metrics` before each scrape)
    recomputes at most every `ttl_s`, so several Prometheus servers scraping cost one query."""

    def __init__(
        self,
        store: Store,
        catalog: CatalogCache,
        views: Views,
        ttl_s: float = 5.0,
        today: Callable[[], date] = lambda: today_local(datetime.now(UTC)),
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._views = views
        self._ttl_s = ttl_s
        self._today = today
        self._computed_at = -float("inf")
        self._families: list[GaugeMetricFamily] = []
        self._up = 0

    async def refresh(self) -> None:
        if time.monotonic() - self._computed_at < self._ttl_s:
            return
        try:
            self._families = await self._compute()
            self._up = 1
        except Exception:
            # The scrape must still succeed (else the API looks down and every other series
            # of it is lost); no campaign series rather than stale ones, and `up` says why.
            log.exception("campaign gauges could not be computed")
            self._families, self._up = [], 0
        self._computed_at = time.monotonic()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "campaign_gauges_up", "1 when the campaign gauges were computed from the database"
        )
        up.add_metric([], self._up)
        return [*self._families, up]

    async def _compute(self) -> list[GaugeMetricFamily]:
        today = self._today()
        families = {
            "value": GaugeMetricFamily(
                "campaign_unit_value", "Counted so far in the campaign", labels=UNIT_LABELS
            ),
            "target": GaugeMetricFamily(
                "campaign_unit_target", "The unit's target (a share for rates)", labels=UNIT_LABELS
            ),
            "expected": GaugeMetricFamily(
                "campaign_unit_expected",
                "What the unit should have by today (the target scaled by the elapsed share)",
                labels=UNIT_LABELS,
            ),
            "progress": GaugeMetricFamily(
                "campaign_unit_progress_ratio", "value / target", labels=UNIT_LABELS
            ),
            "pace": GaugeMetricFamily(
                "campaign_unit_pace_ratio",
                "value / expected (a rate: value / target)",
                labels=UNIT_LABELS,
            ),
        }
        days_left = GaugeMetricFamily(
            "campaign_days_left",
            "Days left in the campaign, today included",
            labels=["campaign", "name"],
        )
        threshold = GaugeMetricFamily(
            "campaign_lagging_threshold",
            "A unit lags when value < expected × this share",
            labels=["campaign", "name"],
        )
        tree = await self._catalog.reload()
        roots = [u for u in tree.units() if u.level == UnitLevel.PROVINCE]
        for campaign in await self._store.list_campaigns():
            if not campaign.starts <= today <= campaign.ends:
                continue  # only running campaigns: an ended one has nothing left to page about
            days_left.add_metric([campaign.id, campaign.name], (campaign.ends - today).days + 1)
            threshold.add_metric([campaign.id, campaign.name], campaign.lagging_threshold)
            seen: set[str] = set()
            for root in roots:
                # The province and its direct children, with the same numbers the API serves.
                progress = await self._views.progress(campaign.id, root.id, today)
                for unit in progress["units"]:
                    if unit["level"] not in EXPORTED_LEVELS or unit["unit_id"] in seen:
                        continue
                    seen.add(unit["unit_id"])
                    for metric in unit["metrics"]:
                        if metric["target"] is None:
                            continue
                        labels = [
                            campaign.id,
                            unit["unit_id"],
                            unit["name"],
                            unit["level"],
                            metric["metric"],
                        ]
                        _add(families["value"], labels, metric["value"])
                        _add(families["target"], labels, metric["target"])
                        _add(families["expected"], labels, metric["expected"])
                        _add(
                            families["progress"], labels, _ratio(metric["value"], metric["target"])
                        )
                        _add(families["pace"], labels, metric["pace_ratio"])
        return [*families.values(), days_left, threshold]


def _ratio(value: Any, target: Any) -> float | None:
    return None if value is None or not target else float(value) / float(target)


def _add(family: GaugeMetricFamily, labels: list[str], value: Any) -> None:
    # A rate with nothing to divide has no value: no sample, rather than a made-up 0.
    if value is not None:
        family.add_metric(labels, float(value))
