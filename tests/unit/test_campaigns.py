from datetime import date
from decimal import Decimal

from shared.domain.campaigns import (
    Campaign,
    Status,
    competition_ranks,
    count_progress,
    percent,
    rate_progress,
    validate_target,
)

FOUR_COVERAGES = Campaign("4-phu", "4 phủ", date(2024, 4, 4), date(2024, 7, 3))


def test_percent_is_rounded_half_up_to_two_places() -> None:
    assert percent(Decimal(518_898), Decimal(502_000)) == Decimal("103.37")
    assert percent(Decimal(1), Decimal(8)) == Decimal("12.50")
    assert percent(Decimal(1), Decimal(800)) == Decimal("0.13")  # 0.125 rounds up
    assert percent(Decimal(2), Decimal(3)) == Decimal("66.67")


def test_campaign_days() -> None:
    assert FOUR_COVERAGES.days == 91
    assert FOUR_COVERAGES.elapsed_days(date(2024, 4, 3)) == 0
    assert FOUR_COVERAGES.elapsed_days(date(2024, 4, 4)) == 1
    assert FOUR_COVERAGES.elapsed_days(date(2024, 8, 1)) == 91


def test_expected_status_and_pace() -> None:
    today = date(2024, 5, 4)  # day 31 of 91
    on_track = count_progress(FOUR_COVERAGES, "eid.activated", 1200, Decimal(3308), today, 70)
    assert on_track.expected == Decimal("1126.90")
    assert on_track.status == Status.ON_TRACK
    assert on_track.percent == Decimal("36.28")
    assert on_track.pace_last_7_days == Decimal("10.00")
    assert on_track.pace_needed_per_day == Decimal("34.56")  # 2108 left over 61 days
    assert on_track.projected_completion == date(2024, 12, 1)  # 2108 / 10 → 211 more days
    lagging = count_progress(FOUR_COVERAGES, "eid.activated", 1000, Decimal(3308), today, 0)
    assert lagging.status == Status.LAGGING
    assert lagging.projected_completion is None
    assert (
        count_progress(FOUR_COVERAGES, "eid.activated", 3308, Decimal(3308), today, 0).status
        == Status.DONE
    )


def test_lagging_threshold_is_per_campaign() -> None:
    strict = Campaign("c", "c", date(2024, 4, 4), date(2024, 7, 3), lagging_threshold=1.0)
    today = date(2024, 5, 4)
    assert count_progress(strict, "m", 1100, Decimal(3308), today, 0).status == Status.LAGGING
    assert (
        count_progress(FOUR_COVERAGES, "m", 1100, Decimal(3308), today, 0).status == Status.ON_TRACK
    )


def test_before_start_and_after_end() -> None:
    before = count_progress(FOUR_COVERAGES, "m", 0, Decimal(10), date(2024, 3, 1), 0)
    assert (before.status, before.expected) == (Status.ON_TRACK, Decimal("0.00"))
    after = count_progress(FOUR_COVERAGES, "m", 9, Decimal(10), date(2024, 9, 1), 0)
    assert (after.status, after.expected, after.pace_needed_per_day) == (
        Status.LAGGING,
        Decimal("10.00"),
        None,
    )


def test_unit_without_target_shows_value_only() -> None:
    progress = count_progress(FOUR_COVERAGES, "m", 42, None, date(2024, 5, 4), 7)
    assert (progress.value, progress.target, progress.percent, progress.status) == (
        Decimal(42),
        None,
        None,
        None,
    )


def test_rate_targets_are_thresholds() -> None:
    today = date(2024, 5, 4)
    below = rate_progress(FOUR_COVERAGES, "r", 45, 100, Decimal("0.5"), today)
    assert (below.status, below.percent) == (Status.LAGGING, Decimal("90.00"))
    met = rate_progress(FOUR_COVERAGES, "r", 50, 100, Decimal("0.5"), today)
    assert met.status == Status.DONE
    empty = rate_progress(FOUR_COVERAGES, "r", 0, 0, Decimal("0.5"), today)
    assert (empty.value, empty.status) == (None, Status.LAGGING)


def test_target_validation() -> None:
    assert validate_target("eid.activated", Decimal(5)) is None
    assert validate_target("eid.activated", Decimal(0)) is not None
    assert validate_target("filing.processed.online_rate", Decimal("0.5")) is None
    assert validate_target("filing.processed.online_rate", Decimal(50)) is not None
    assert validate_target("certification.completed", Decimal(5)) is not None
    assert validate_target("nope", Decimal(5)) is not None


def test_competition_ranking_ties_share_a_rank() -> None:
    ranked = competition_ranks(
        [("a", Decimal(5)), ("b", Decimal(7)), ("c", Decimal(5)), ("d", None), ("e", Decimal(1))]
    )
    assert ranked == [
        (1, "b", Decimal(7)),
        (2, "a", Decimal(5)),
        (2, "c", Decimal(5)),
        (4, "e", Decimal(1)),
        (5, "d", None),
    ]
