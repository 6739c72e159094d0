"""Reuse odds and the expected-cost TTL decision (pure), as tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_claude_relay.models import ModelPrices
from langchain_claude_relay.planner.placement import Option, choose_markers
from langchain_claude_relay.planner.reuse import (
    DECAY_PREFIX,
    DECAY_TEMPLATE,
    PRIOR_ODDS,
    ReuseOdds,
    ReuseRecord,
    estimate_odds,
    record_arrival,
    record_return,
)
from langchain_claude_relay.planner.ttl import (
    Rates,
    best_split,
    future_arrivals,
    future_cost,
    late_arrivals,
)

STANDARD = ModelPrices.standard(3.0, 15.0)  # read 0.1x, write 1.25x / 2x
CHEAP_READS = ModelPrices.standard(5.0, 25.0, read_multiplier=0.025)
DEAR_1H = ModelPrices(
    input=3.0, output=15.0, cache_read=0.3, cache_write_5m=3.75, cache_write_1h=12.0
)
CHEAP_1H = ModelPrices(
    input=3.0, output=15.0, cache_read=0.3, cache_write_5m=3.75, cache_write_1h=4.5
)


def odds_after(gaps: list[float], next_gap: float) -> ReuseOdds:
    """A prefix's odds when it arrives ``next_gap`` after a history with ``gaps``."""
    now, record = 0.0, None
    record = record_arrival(record, now, DECAY_PREFIX)
    for gap in gaps:
        now += gap
        record = record_arrival(record, now, DECAY_PREFIX)
    return estimate_odds(record, PRIOR_ODDS, arriving_at=now + next_gap)


def decide(odds: ReuseOdds, prices: ModelPrices | None, *, cached: bool = False, policy="auto"):
    """The planner's decision for one 10,000-token segment: None, "5m" or "1h"."""
    rates = Rates.from_prices(prices)
    option = Option(0, future_cost("1h", odds, rates), future_cost("5m", odds, rates))
    placement = choose_markers(
        [option], [], [10_000.0, 10_050.0], {0: "5m"} if cached else {}, rates, policy, 4
    )
    return placement.markers[0][1] if placement.markers else None


DENSE = [60, 120, 90, 200, 30, 45]
SPARSE = [900, 1800, 2400, 1200, 3000, 1500]  # 15 to 50 minutes


@pytest.mark.parametrize(
    ("gaps", "next_gap", "prices", "expected"),
    [
        (DENSE, 100, STANDARD, "5m"),
        (DENSE, 100, CHEAP_READS, "5m"),
        (DENSE, 100, None, "5m"),  # unpriced model: relative prices, same decision
        (SPARSE, 1500, STANDARD, "1h"),
        (SPARSE, 1500, CHEAP_READS, "1h"),
        (SPARSE, 1500, CHEAP_1H, "1h"),
        (SPARSE[:2], 1500, STANDARD, "1h"),  # three observations are enough
        ([], 1500, STANDARD, "1h"),  # one 25-minute gap already tips it
        ([7200, 9000, 10800, 7200], 8000, STANDARD, None),  # back only after hours: no marker
        ([7200, 9000, 10800, 7200], 8000, CHEAP_1H, None),
    ],
)
def test_ttl_by_gap_pattern_and_prices(
    gaps: list[float], next_gap: float, prices: ModelPrices | None, expected: str | None
) -> None:
    assert decide(odds_after(gaps, next_gap), prices) == expected


@pytest.mark.parametrize(
    ("odds", "prices", "expected"),
    [
        (ReuseOdds(0.0, 0.8), STANDARD, "1h"),  # N = 4 returns within the hour
        (ReuseOdds(0.0, 0.8), DEAR_1H, "1h"),  # 4x write still pays over 4 reads
        (ReuseOdds(0.0, 0.7), STANDARD, "1h"),
        (ReuseOdds(0.0, 0.7), DEAR_1H, None),  # 2.3 returns do not pay a 4x write
        (ReuseOdds(0.0, 0.5), STANDARD, None),  # 1 return does not pay a 2x write
        (ReuseOdds(0.95, 0.95), STANDARD, "5m"),
        (ReuseOdds(0.6, 0.95), STANDARD, "1h"),  # frequent 5-60 min gaps: 5m would rewrite
        (ReuseOdds(0.1, 0.1), STANDARD, None),
        (ReuseOdds(0.0, 0.0), STANDARD, None),
    ],
)
def test_ttl_by_odds_and_price_table(
    odds: ReuseOdds, prices: ModelPrices, expected: str | None
) -> None:
    assert decide(odds, prices) == expected


@pytest.mark.parametrize("odds", [ReuseOdds(0.0, 0.0), ReuseOdds(0.1, 0.2), ReuseOdds(0.9, 0.9)])
def test_a_cached_prefix_is_always_marked(odds: ReuseOdds) -> None:
    assert decide(odds, STANDARD, cached=True) is not None


@pytest.mark.parametrize(("policy", "ttl"), [("5m", "5m"), ("1h", "1h")])
def test_fixed_policy_sets_the_ttl_but_not_whether_to_mark(policy: str, ttl: str) -> None:
    assert decide(ReuseOdds(0.9, 0.95), STANDARD, policy=policy) == ttl
    assert decide(ReuseOdds(0.0, 0.0), STANDARD, policy=policy) is None


def test_first_sighting_defaults_to_5m() -> None:
    assert decide(PRIOR_ODDS, STANDARD) == "5m"


def test_odds_learn_from_gaps() -> None:
    dense, sparse = odds_after(DENSE, 60), odds_after(SPARSE, 1500)
    assert dense.within_5m > 0.9
    assert dense.within_1h > 0.9
    assert sparse.within_5m < 0.2 < 0.9 < sparse.within_1h
    assert odds_after([], 20 * 60) == ReuseOdds(0.35, 0.875)


def test_template_record_learns_that_prefixes_never_return() -> None:
    record = None
    for i in range(6):
        record = record_arrival(record, i * 60.0, DECAY_TEMPLATE, resolve=False)
    odds = estimate_odds(record, PRIOR_ODDS)
    assert odds.within_1h < 0.2
    assert record is not None
    back = record_return(record, 30.0)
    assert estimate_odds(back, PRIOR_ODDS).within_5m > odds.within_5m


def test_future_arrivals_are_capped_and_monotone() -> None:
    values = [ReuseOdds(0.0, q).future_arrivals() for q in (0.0, 0.5, 0.9, 0.99, 1.0)]
    assert values == sorted(values)
    assert values[0] == 0
    assert values[1] == pytest.approx(1.0)
    assert values[-1] == 20.0


def test_record_long_memory_is_stored_only_once_it_holds_anything() -> None:
    """Templates and prefixes with no late return keep the stored form they had; a record
    stored before the long memory existed reads with an empty one."""
    plain = ReuseRecord(2.5, 1.0, 0.5, 123.0, 456.0, 300.0, 99)
    assert "tl" not in plain.to_json()
    late = plain._replace(late=1.9, breaks=1.0)
    assert ReuseRecord.from_json(late.to_json()) == late
    assert ReuseRecord.from_json({**late.to_json(), "tl": -3.0}) == late._replace(late=0.0)
    assert ReuseRecord.from_json({**late.to_json(), "tb": "x"}) is None


def test_record_round_trip_and_garbage() -> None:
    record = ReuseRecord(2.5, 1.0, 0.5, 123.0, 456.0, 300.0, 99)
    assert ReuseRecord.from_json(record.to_json()) == record
    assert ReuseRecord.from_json("garbage") is None
    assert ReuseRecord.from_json({"n": "x"}) is None


@pytest.mark.parametrize(
    ("c1h", "c5m", "forced", "policy", "expected"),
    [
        ([1.0, 1.0], [2.0, 2.0], [None, None], "auto", (2, 2.0)),
        ([3.0, 3.0], [2.0, 2.0], [None, None], "auto", (0, 4.0)),
        ([1.0, 2.5], [3.0, 2.0], [None, None], "auto", (1, 3.0)),
        # the second wants 1h badly: raising the first to 1h beats lowering the second
        ([2.2, 1.0], [2.0, 5.0], [None, None], "auto", (2, 3.2)),
        # the first wants 5m badly: lowering the second to 5m beats raising the first
        ([5.0, 1.0], [1.0, 1.5], [None, None], "auto", (0, 2.5)),
        ([3.0, 3.0], [2.0, 2.0], [None, "1h"], "auto", (2, 6.0)),  # a user 1h forces the first
        ([1.0, 1.0], [2.0, 2.0], ["5m", None], "auto", (0, 4.0)),  # a user 5m forces the rest
        ([1.0, 1.0], [2.0, 2.0], [None, None], "5m", (0, 4.0)),
        ([3.0, 3.0], [2.0, 2.0], [None, None], "1h", (2, 6.0)),
        ([1.0, 1.0], [2.0, 2.0], ["5m", "1h"], "auto", None),
    ],
)
def test_best_split(c1h, c5m, forced, policy, expected) -> None:
    assert best_split(c1h, c5m, forced, policy) == expected


def test_one_long_gap_after_a_dense_run_is_seen_and_switches_to_1h() -> None:
    # Poisson-like traffic: returns within 5 min, then one 6-minute gap (the entry expired).
    odds = odds_after([60, 120, 90, 45, 150, 30, 80, 100, 70], 360)
    assert odds.within_5m < 0.8 < 0.9 < odds.within_1h
    assert decide(odds, STANDARD) == "1h"
    # the same history with a quick return stays on 5m
    assert decide(odds_after([60, 120, 90, 45, 150, 30, 80, 100, 70], 60), STANDARD) == "5m"


@given(st.lists(st.sampled_from([30.0, 200.0, 400.0, 1800.0, 5000.0]), max_size=30))
def test_outcomes_never_outweigh_the_arrivals_they_resolve(gaps: list[float]) -> None:
    now, record = 0.0, record_arrival(None, 0.0, DECAY_PREFIX)
    for gap in gaps:
        now += gap
        record = record_arrival(record, now, DECAY_PREFIX)
        assert record.back_5m + record.back_1h <= record.arrivals - 1.0 + 1e-9
    odds = estimate_odds(record, PRIOR_ODDS, arriving_at=now + 30.0)
    assert 0.0 <= odds.within_5m <= odds.within_1h <= 1.0


_ODDS = st.builds(
    lambda a, b: ReuseOdds(min(a, b), max(a, b)), st.floats(0.0, 1.0), st.floats(0.0, 1.0)
)


@given(_ODDS, st.booleans())
def test_future_cost_with_the_odds_own_late_arrivals_is_unchanged(
    odds: ReuseOdds, next_only: bool
) -> None:
    rates = Rates.from_prices(STANDARD)
    late = late_arrivals(odds, next_only=next_only)
    for ttl in ("5m", "1h"):
        plain = future_cost(ttl, odds, rates, next_only=next_only)
        assert future_cost(ttl, odds, rates, next_only=next_only, late=late) == pytest.approx(
            plain, abs=1e-15
        )


@given(_ODDS, st.floats(0.0, 20.0))
def test_each_late_arrival_more_makes_5m_dearer_than_1h_by_a_write_over_a_read(
    odds: ReuseOdds, extra: float
) -> None:
    rates = Rates.from_prices(STANDARD)
    late = late_arrivals(odds)

    def gap(n: float) -> float:
        return future_cost("5m", odds, rates, late=n) - future_cost("1h", odds, rates, late=n)

    if future_arrivals(odds) > 0.0:
        step = (rates.write_5m - rates.read) * extra
        assert gap(late + extra) - gap(late) == pytest.approx(step, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("odds", "per_break", "expected_late"),
    [
        (ReuseOdds(0.95, 0.99), 4.0, 4.0),  # a busy prefix: the breaks say more than the odds
        (ReuseOdds(0.95, 0.99), 0.1, None),  # fewer than the odds expect: the odds'
        (ReuseOdds(0.0, 0.2), 10.0, 0.25),  # never more than the arrivals the odds expect
        (ReuseOdds(0.0, 0.0), 10.0, 0.0),  # never back: nothing late
    ],
)
def test_option_counts_late_returns_per_break_up_to_the_expected_arrivals(
    odds: ReuseOdds, per_break: float, expected_late: float | None
) -> None:
    rates = Rates.from_prices(STANDARD)
    survival = (1.0, 0.3, 0.2, 0.15, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.05, 0.05)
    option = Option.priced(1, odds, rates, survival=survival, late_per_break=per_break)
    want = late_arrivals(odds) if expected_late is None else expected_late
    assert option.late == pytest.approx(want)
    assert option.future_5m == pytest.approx(future_cost("5m", odds, rates, late=want))
    assert option.future_1h == pytest.approx(future_cost("1h", odds, rates, late=want))


def test_best_split_considers_only_the_cuts_its_costs_hold_for() -> None:
    """A row bridged as one segment is priced 5m as a whole: a cut inside it is not offered."""
    assert best_split([1.0, 1.0], [2.0, 0.0], [None, None], "auto") == (1, 1.0)
    assert best_split([1.0, 1.0], [2.0, 0.0], [None, None], "auto", cuts={0, 2}) == (0, 2.0)
    assert best_split([1.0, 1.0], [2.0, 0.0], [None, None], "5m", cuts={1}) is None
