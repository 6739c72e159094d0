"""Tests for langchain_claude_relay.cost: per-model cache prices, by hand."""

from __future__ import annotations

from dataclasses import astuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from langchain_claude_relay.cost import (
    CostBreakdown,
    call_cost_usd,
    cost_breakdown,
    uncached_cost_usd,
)
from langchain_claude_relay.ledger import LedgerEntry, summarize
from langchain_claude_relay.models import MODEL_TABLE, ModelPrices, ModelSpec
from langchain_claude_relay.usage import NormalizedUsage

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # retired models still priced
    pytest.mark.filterwarnings("ignore:Model .* is not in:UserWarning"),  # unknown models
]


def usage(plain: int, read: int, w5: int, w1: int, out: int) -> NormalizedUsage:
    return NormalizedUsage(
        input_tokens=plain,
        cache_read_tokens=read,
        cache_write_5m_tokens=w5,
        cache_write_1h_tokens=w1,
        output_tokens=out,
    )


MIXED = usage(1_000, 100_000, 20_000, 10_000, 2_000)  # every kind at once: 131,000 input tokens
FIRST_WRITE = usage(50, 0, 10_000, 0, 100)
ALL_HITS = usage(10, 50_000, 0, 0, 100)

# Worked by hand from the price table in DESIGN.md (USD per million tokens):
#   sonnet-4-5  in 3    out 15  read 0.3   w5 3.75   w1 6
#   opus-4-1    in 15   out 75  read 1.5   w5 18.75  w1 30
#   haiku-3-5   in 0.8  out 4   read 0.08  w5 1.0    w1 1.6
#   haiku-4-5   in 1    out 5   read 0.1   w5 1.25   w1 2
#   opus-5-5    in 4    out 20  read 0.2   w5 5      w1 8      (reads 0.05x)
#   fable-5-1   in 10   out 50  read 0.25  w5 12.5   w1 20     (reads 0.025x)
#   sonnet-5-5  in 2    out 10  read 0.2   w5 2.5    w1 4
#   haiku-5-5   in 0.1  out 0.5 read 0.01  w5 0.125  w1 0.2    (all 5x above 100K prompt tokens)
# Columns: input, cache_read, write_5m, write_1h, output, total, uncached, savings (USD).
CASES = [
    # sonnet-4-5, MIXED: 1000*3, 100000*0.3, 20000*3.75, 10000*6, 2000*15; uncached 131000*3+30000
    ("claude-sonnet-4-5", MIXED, (0.003, 0.03, 0.075, 0.06, 0.03, 0.198, 0.423, 0.225)),
    ("anthropic/claude-sonnet-4.5", MIXED, (0.003, 0.03, 0.075, 0.06, 0.03, 0.198, 0.423, 0.225)),
    # opus-4-1: 1000*15, 100000*1.5, 20000*18.75, 10000*30, 2000*75; uncached 131000*15+150000
    ("claude-opus-4-1", MIXED, (0.015, 0.15, 0.375, 0.3, 0.15, 0.99, 2.115, 1.125)),
    # haiku-3-5: 1000*0.8, 100000*0.08, 20000*1.0, 10000*1.6, 2000*4; uncached 131000*0.8+8000
    ("claude-3-5-haiku-20241022", MIXED, (0.0008, 0.008, 0.02, 0.016, 0.008, 0.0528, 0.1128, 0.06)),
    # haiku-4-5: 1000*1, 100000*0.1, 20000*1.25, 10000*2, 2000*5; uncached 131000*1+10000
    ("claude-haiku-4-5", MIXED, (0.001, 0.01, 0.025, 0.02, 0.01, 0.066, 0.141, 0.075)),
    # a first call that only writes: 50*3 + 10000*3.75 + 100*15 = 39150; uncached 10050*3+1500
    (
        "claude-sonnet-4-5",
        FIRST_WRITE,
        (0.00015, 0.0, 0.0375, 0.0, 0.0015, 0.03915, 0.03165, -0.0075),
    ),
    # all hits on haiku-4-5: 10*1 + 50000*0.1 + 100*5 = 5510; uncached 50010*1 + 500
    ("claude-haiku-4-5", ALL_HITS, (0.00001, 0.005, 0.0, 0.0, 0.0005, 0.00551, 0.05051, 0.045)),
    # opus-5-5: 1000*4, 100000*0.2, 20000*5, 10000*8, 2000*20; uncached 131000*4+40000
    ("claude-opus-5-5", MIXED, (0.004, 0.02, 0.1, 0.08, 0.04, 0.244, 0.564, 0.32)),
    # fable-5-1: 1000*10, 100000*0.25, 20000*12.5, 10000*20, 2000*50; uncached 131000*10+100000
    ("claude-fable-5-1", MIXED, (0.01, 0.025, 0.25, 0.2, 0.1, 0.585, 1.41, 0.825)),
    # sonnet-5-5: 1000*2, 100000*0.2, 20000*2.5, 10000*4, 2000*10; uncached 131000*2+20000
    ("claude-sonnet-5-5", MIXED, (0.002, 0.02, 0.05, 0.04, 0.02, 0.132, 0.282, 0.15)),
    # haiku-5-5, 131,000 prompt tokens > 100K: every price 5x (in 0.5, read 0.05, w5 0.625,
    # w1 1.0, out 2.5): 1000*0.5, 100000*0.05, 20000*0.625, 10000*1.0, 2000*2.5;
    # uncached 131000*0.5 + 2000*2.5
    ("claude-haiku-5-5", MIXED, (0.0005, 0.005, 0.0125, 0.01, 0.005, 0.033, 0.0705, 0.0375)),
    # haiku-5-5 below the tier: 50*0.1 + 10000*0.125 + 100*0.5; uncached 10050*0.1 + 100*0.5
    (
        "claude-haiku-5-5",
        FIRST_WRITE,
        (0.000005, 0.0, 0.00125, 0.0, 0.00005, 0.001305, 0.001055, -0.00025),
    ),
]


@pytest.mark.parametrize(("model", "call_usage", "expected"), CASES)
def test_cost_table_by_hand(
    model: str, call_usage: NormalizedUsage, expected: tuple[float, ...]
) -> None:
    breakdown = cost_breakdown(call_usage, model)
    assert breakdown is not None
    *parts, total, uncached, savings = expected
    assert astuple(breakdown)[:5] == pytest.approx(tuple(parts), rel=1e-9, abs=1e-15)
    assert breakdown.total == pytest.approx(total, rel=1e-9)
    assert breakdown.savings_vs_uncached == pytest.approx(savings, rel=1e-9)
    assert call_cost_usd(call_usage, model) == pytest.approx(total, rel=1e-9)
    assert uncached_cost_usd(call_usage, model) == pytest.approx(uncached, rel=1e-9)


@pytest.mark.parametrize(
    "model", ["gpt-4o", "claude-fable-5-2", "claude-mythos-5-2", "totally-unknown"]
)
def test_unpriced_model_costs_none(model: str) -> None:
    assert call_cost_usd(MIXED, model) is None
    assert uncached_cost_usd(MIXED, model) is None
    assert cost_breakdown(MIXED, model) is None


def test_model_spec_is_accepted_and_its_own_read_price_is_used() -> None:
    # A model reading at 0.05x input: a global 0.1x multiplier would give 1.0, not 0.5.
    prices = ModelPrices(
        input=10, output=50, cache_read=0.5, cache_write_5m=12.5, cache_write_1h=20
    )
    spec = ModelSpec("fable-9", 512, prices)
    assert call_cost_usd(usage(0, 1_000_000, 0, 0, 0), spec) == pytest.approx(0.5)
    assert uncached_cost_usd(usage(0, 1_000_000, 0, 0, 0), spec) == pytest.approx(10.0)
    assert call_cost_usd(usage(0, 0, 0, 1_000_000, 0), spec) == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("prompt", "multiplier"), [(99_999, 1), (100_000, 1), (100_001, 5), (400_000, 5)]
)
def test_haiku_5_5_long_prompt_prices_every_token_at_5x(prompt: int, multiplier: int) -> None:
    # The tier looks at the whole prompt (plain + reads + writes) and then prices every token.
    call = usage(prompt - 60_000, 50_000, 10_000, 0, 1_000)
    expected = (
        ((prompt - 60_000) * 0.1 + 50_000 * 0.01 + 10_000 * 0.125 + 1_000 * 0.5) * multiplier / 1e6
    )
    assert call_cost_usd(call, "claude-haiku-5-5") == pytest.approx(expected, rel=1e-12)
    uncached = (prompt * 0.1 + 1_000 * 0.5) * multiplier / 1e6
    assert uncached_cost_usd(call, "claude-haiku-5-5") == pytest.approx(uncached, rel=1e-12)


def test_unpriced_spec_costs_none() -> None:
    assert call_cost_usd(MIXED, ModelSpec("opus-9", 512, None)) is None


def test_reasoning_is_billed_inside_output() -> None:
    with_reasoning = NormalizedUsage(0, 0, 0, 0, output_tokens=1_000, reasoning_tokens=800)
    assert call_cost_usd(with_reasoning, "claude-haiku-4-5") == pytest.approx(0.005)


PRICED = sorted(f for f, spec in MODEL_TABLE.items() if spec.prices is not None)
COUNT = st.integers(min_value=0, max_value=10**8)


@given(
    family=st.sampled_from(PRICED),
    plain=COUNT,
    read=COUNT,
    w5=COUNT,
    w1=COUNT,
    out=COUNT,
)
def test_breakdown_adds_up_and_savings_are_consistent(
    family: str, plain: int, read: int, w5: int, w1: int, out: int
) -> None:
    spec = MODEL_TABLE[family]
    call_usage = usage(plain, read, w5, w1, out)
    breakdown = cost_breakdown(call_usage, spec)
    assert isinstance(breakdown, CostBreakdown)
    parts = astuple(breakdown)[:5]
    assert all(p >= 0 for p in parts)
    assert breakdown.total == pytest.approx(sum(parts), rel=1e-12, abs=1e-12)
    uncached = uncached_cost_usd(call_usage, spec)
    assert uncached is not None
    assert breakdown.savings_vs_uncached == pytest.approx(
        uncached - breakdown.total, rel=1e-9, abs=1e-9
    )
    if read == w5 == w1 == 0:  # no caching at all: the two costs agree
        assert breakdown.savings_vs_uncached == pytest.approx(0.0, abs=1e-9)
    if w5 == w1 == 0:  # reads only ever save
        assert breakdown.savings_vs_uncached >= -1e-9


@pytest.mark.parametrize(
    ("plain", "write", "multiplier"),
    [(20, 99_980, 1), (20, 120_000, 5), (90_000, 20_000, 5), (0, 400_000, 5)],
)
def test_a_wasted_writes_premium_is_priced_at_the_calls_tier(
    plain: int, write: int, multiplier: int
) -> None:
    # Haiku 5.5 prices every token at 5x once the prompt passes 100K: writes too ($0.125 base).
    entry = LedgerEntry.from_usage(
        usage(plain, 0, write, 0, 0), model="claude-haiku-5-5", timestamp=1.0,
        written_prefixes=("ab" * 16,),
    )  # fmt: skip
    summary = summarize([entry])
    expected = write * (0.125 - 0.1) * multiplier / 1e6
    assert summary.wasted_write_usd == pytest.approx(expected, rel=1e-9)
    assert entry.cost_usd is not None
    assert entry.uncached_cost_usd is not None
    # no read, no output: all the call paid above uncached is the wasted premium
    assert summary.wasted_write_usd == pytest.approx(
        entry.cost_usd - entry.uncached_cost_usd, rel=1e-9
    )


@given(
    family=st.sampled_from(PRICED),
    plain=COUNT,
    w5=COUNT,
    w1=COUNT,
)
@example(family="haiku-5-5", plain=20, w5=60_000, w1=60_000)  # the only long-context tier
def test_a_wasted_writes_premium_is_what_the_call_paid_above_uncached(
    family: str, plain: int, w5: int, w1: int
) -> None:
    entry = LedgerEntry.from_usage(
        usage(plain, 0, w5, w1, 0), model=f"claude-{family}", timestamp=1.0,
        written_prefixes=("ab" * 16,),
    )  # fmt: skip
    assert entry.cost_usd is not None
    assert entry.uncached_cost_usd is not None
    assert summarize([entry]).wasted_write_usd == pytest.approx(
        entry.cost_usd - entry.uncached_cost_usd, rel=1e-9, abs=1e-12
    )
