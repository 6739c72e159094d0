"""Tests for the model table (models.json) and its lookups."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from importlib import resources

import pytest

from langchain_claude_relay import models
from langchain_claude_relay.models import (
    DEFAULT_MODEL,
    LISTED_UNPRICED,
    MODEL_TABLE,
    SOURCES,
    ModelPrices,
    did_you_mean,
    load_table,
    lookup_model,
    model_platform,
    register_model,
    use_price_report,
)
from langchain_claude_relay.planner.reuse import ReuseOdds
from langchain_claude_relay.planner.ttl import Rates, future_cost, now_cost

CURRENT = ("claude-fable-5-1", "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")


pytestmark = pytest.mark.usefixtures("packaged_model_table")


def _table_json() -> str:
    return resources.files("langchain_claude_relay").joinpath("models.json").read_text("utf-8")


def test_the_table_is_packaged_data_with_a_source_and_date_on_every_row() -> None:
    sources, table, listed = load_table(_table_json())
    assert table == MODEL_TABLE
    for spec in table.values():
        assert spec.sources, spec.family
        assert all(key in sources for key in spec.sources)
        assert isinstance(spec.read_on, dt.date)
    for row in listed.values():
        assert row.sources
        assert isinstance(row.read_on, dt.date)


@pytest.mark.parametrize("model", CURRENT)
def test_the_current_lineup_is_known_and_priced(model: str) -> None:
    spec = lookup_model(model)
    assert spec.known
    assert spec.current
    assert spec.prices is not None
    assert spec.min_cache_tokens == 512
    assert not spec.is_retired(dt.date(2026, 12, 1))


@pytest.mark.parametrize(
    ("model", "read_multiplier", "cache_read"),
    [
        ("claude-opus-5-5", 0.05, 0.2),
        ("claude-fable-5-1", 0.025, 0.25),
        ("claude-mythos-5-1", 0.025, 0.25),
        ("claude-sonnet-5-5", 0.1, 0.2),
        ("claude-haiku-5-5", 0.1, 0.01),
        ("claude-sonnet-4-6", 0.1, 0.3),
    ],
)
def test_read_multipliers_are_per_model(
    model: str, read_multiplier: float, cache_read: float
) -> None:
    prices = lookup_model(model).prices
    assert prices is not None
    assert prices.read_multiplier == read_multiplier
    assert prices.cache_read == pytest.approx(cache_read)
    assert prices.cache_write_5m == pytest.approx(1.25 * prices.input)
    assert prices.cache_write_1h == pytest.approx(2.0 * prices.input)


def test_haiku_3_cache_prices_are_the_pricing_pages_not_the_default_multipliers() -> None:
    """$0.30 5m writes and $0.03 reads on a $0.25 input (1.2x and 0.12x), $0.50 1h writes."""
    with pytest.warns(DeprecationWarning, match="retired on 2026-04-19"):
        prices = lookup_model("claude-3-haiku-20240307").prices
    assert prices is not None
    assert (prices.input, prices.output) == (0.25, 1.25)
    assert prices.cache_write_5m == pytest.approx(0.30)
    assert prices.cache_write_1h == pytest.approx(0.50)
    assert prices.cache_read == pytest.approx(0.03)


def test_haiku_5_5_carries_its_long_context_tier() -> None:
    prices = lookup_model("claude-haiku-5-5").prices
    assert prices is not None
    assert prices.long_context is not None
    assert prices.long_context.above_prompt_tokens == 100_000
    assert prices.for_prompt(100_000) is prices
    assert prices.for_prompt(100_001).input == pytest.approx(0.5)
    assert prices.for_prompt(100_001).output == pytest.approx(2.5)


@pytest.mark.parametrize("model", ["claude-fable-5-2", "claude-mythos-5-2"])
def test_listed_but_unpriced_ids_stay_unknown(model: str) -> None:
    with pytest.warns(UserWarning, match="listed by Anthropic"):
        spec = lookup_model(model)
    assert not spec.known
    assert spec.prices is None
    assert spec.family in LISTED_UNPRICED


def test_the_default_model_is_current_priced_and_not_retired() -> None:
    assert DEFAULT_MODEL == "claude-sonnet-5-5"
    spec = lookup_model(DEFAULT_MODEL)
    assert spec.current
    assert spec.prices is not None
    assert not spec.is_retired()


@pytest.mark.parametrize(
    ("model", "platform", "minimum"),
    [
        ("anthropic.claude-fable-5-v1:0", "bedrock", 1024),
        ("us.anthropic.claude-mythos-5-v1:0", "bedrock", 1024),
        ("global.anthropic.claude-opus-5-5-v1:0", "bedrock", 512),
        ("bedrock/anthropic.claude-fable-5-v1:0", "bedrock", 1024),  # LiteLLM's routes
        ("bedrock/converse/us.anthropic.claude-mythos-5-v1:0", "bedrock", 1024),
        ("bedrock/invoke/anthropic.claude-fable-5-v1:0", "bedrock", 1024),
        ("claude-fable-5", None, 512),
        ("anthropic/claude-fable-5", None, 512),
        ("claude-fable-5@20260601", None, 512),
    ],
)
def test_platform_minimums(model: str, platform: str | None, minimum: int) -> None:
    assert model_platform(model) == platform
    assert lookup_model(model).min_cache_tokens == minimum


def test_a_retired_model_warns_but_stays_priced() -> None:
    with pytest.warns(DeprecationWarning, match="retired on 2026-11-30"):
        spec = lookup_model("claude-sonnet-4-5-20250929")
    assert spec.prices is not None
    assert spec.is_retired(dt.date(2026, 11, 30))
    assert not spec.is_retired(dt.date(2026, 11, 29))


def test_a_near_miss_gets_a_did_you_mean() -> None:
    assert did_you_mean("claude-sonet-4-6") == "claude-sonnet-4-6"
    assert did_you_mean("anthropic/claude-opsu-5-5") == "claude-opus-5-5"
    with pytest.warns(UserWarning, match="Did you mean 'claude-sonnet-4-6'"):
        spec = lookup_model("claude-sonet-4-6")
    assert not spec.known


def test_an_unrelated_unknown_id_gets_no_suggestion() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lookup_model("gpt-4o")
    assert caught
    assert "Did you mean" not in str(caught[0].message)


def test_register_model_refuses_a_plain_price_dict_naming_model_prices() -> None:
    with pytest.raises(TypeError, match="ModelPrices"):
        register_model("claude-opus-9", prices={"input": 5, "output": 25})
    assert "opus-9" not in models._overrides  # nothing half-registered


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"min_cache_tokens": "1024"}, TypeError),
        ({"min_cache_tokens": 0}, ValueError),
        ({"min_cache_tokens": True}, TypeError),
        ({"token_ratio_prior": "1.2"}, TypeError),
        ({"retired_on": "2026-01-01"}, TypeError),
        ({"minimum": 1024}, ValueError),
    ],
)
def test_register_model_validates_every_argument(
    changes: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        register_model("claude-opus-9", **changes)


def test_register_model_then_lookup_uses_it() -> None:
    spec = register_model(
        "claude-opus-9", min_cache_tokens=2048, prices=ModelPrices.standard(5, 25)
    )
    assert spec.known
    assert lookup_model("anthropic/claude-opus-9").min_cache_tokens == 2048


def test_the_sonnet_5_5_reads_report_is_a_setting() -> None:
    assert lookup_model("claude-sonnet-5-5").prices.cache_read == pytest.approx(0.2)  # type: ignore[union-attr]
    use_price_report("claude-sonnet-5-5", "reads-0.05x")
    prices = lookup_model("claude-sonnet-5-5").prices
    assert prices is not None
    assert prices.cache_read == pytest.approx(0.1)
    assert prices.input == 2
    with pytest.raises(ValueError, match="no price report"):
        use_price_report("claude-sonnet-5-5", "reads-0.01x")


def test_a_row_without_a_known_source_is_refused() -> None:
    data = json.loads(_table_json())
    data["families"][0]["sources"] = ["nowhere"]
    with pytest.raises(ValueError, match="sources"):
        load_table(json.dumps(data))


def test_every_source_is_dated() -> None:
    assert all(isinstance(s.read_on, dt.date) for s in SOURCES.values())


def _ttl_choice(model: str, odds: ReuseOdds) -> str:
    """The TTL with the lower expected cost (this write plus the future) for one segment."""
    rates = Rates.from_prices(lookup_model(model).prices)
    costs = {t: now_cost(t, 0.0, 1.0, rates) + future_cost(t, odds, rates) for t in ("5m", "1h")}
    return min(costs, key=costs.__getitem__)


def test_the_ttl_crossover_moves_with_the_read_multiplier() -> None:
    # One more arrival expected within the hour (q1h = 0.5), 37% of it within 5 minutes: the
    # 1h premium (0.75x input) against the 5m rewrites it avoids, which save (1.25 - read).
    # At 0.1x reads 5m is cheaper; at 0.025x (Fable 5.1) 1h is, so the planner must see the
    # model's own multiplier.
    odds = ReuseOdds(within_5m=0.185, within_1h=0.5)
    assert _ttl_choice("claude-sonnet-5-5", odds) == "5m"
    assert _ttl_choice("claude-fable-5-1", odds) == "1h"


def test_a_registered_listed_model_is_one_row_in_the_table() -> None:
    assert "fable-5-2" in LISTED_UNPRICED
    register_model(
        "claude-fable-5-2",
        min_cache_tokens=512,
        prices=ModelPrices.standard(input=10, output=50, read_multiplier=0.025),
    )
    rows = [r for r in models.table_rows() if r["family"] == "fable-5-2"]
    assert [(r["status"], r["input"]) for r in rows] == [("registered", 10)]
    for family in LISTED_UNPRICED:
        register_model(family, min_cache_tokens=1024)
    families = [r["family"] for r in models.table_rows()]
    assert len(families) == len(set(families))
    assert "listed, unpriced" not in {r["status"] for r in models.table_rows()}
