"""The consumer lag in seconds, and what a batch adds to the aggregator's metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prometheus_client import REGISTRY

from shared.adapters.aggregator_metrics import lag_seconds, observe_batch


def test_lag_under_steady_load_follows_the_newest_applied_record() -> None:
    # Behind since an hour ago without a break, the last applied record is 4 s old.
    assert lag_seconds(now=10_000.0, last_applied_at=9_996.0, backlog_since=6_400.0) == 4.0


def test_lag_after_an_idle_spell_is_not_the_idle_time() -> None:
    # The last record before this one was applied two days ago; the new one came 1 s ago.
    assert lag_seconds(now=200_000.0, last_applied_at=27_200.0, backlog_since=199_999.0) == 1.0


def test_lag_before_anything_was_applied_counts_from_the_backlog() -> None:
    assert lag_seconds(now=100.0, last_applied_at=None, backlog_since=40.0) == 60.0


@dataclass
class Record:
    partition: int
    timestamp: int


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def test_a_batch_counts_by_type_and_moves_freshness_forward() -> None:
    before = sample("aggregator_events_processed_total", {"type": "cccd.issued"}) or 0.0
    invalid = sample("aggregator_events_processed_total", {"type": "invalid"}) or 0.0
    observe_batch(
        [Record(7, 1_800_000_000_000), Record(7, 1_800_000_001_000), Record(7, 1_799_000_000_000)],
        {"cccd.issued": 2, "invalid": 1},
        datetime(2027, 1, 1, 8, tzinfo=timezone(timedelta(hours=7))),
    )
    observe_batch([], {}, datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=7))))
    assert sample("aggregator_events_processed_total", {"type": "cccd.issued"}) == before + 2
    assert sample("aggregator_events_processed_total", {"type": "invalid"}) == invalid + 1
    # The newest event time, and the newest log time (never moved back by an older record).
    assert sample("aggregator_newest_event_time_seconds") == 1_798_765_200.0
    assert (
        sample("aggregator_last_applied_record_timestamp_seconds", {"partition": "7"})
        == 1_800_000_001.0
    )
