"""What one call cost in USD, with Claude's cache prices, and what it would have cost uncached.

Prices come from the model table (``models.ModelPrices``, USD per million tokens), one price per
token kind and per model: cache reads are 0.1x input on most models but cheaper on some, so no
global multiplier is applied here. Reasoning tokens are part of ``output_tokens`` (that is how
relays and Anthropic report them) and are billed at the output price. A published long-context
tier applies to the whole call (Haiku 5.5: every token at 5x once the prompt, all input tokens
together, exceeds 100K): ``ModelPrices.charges`` is the one place that prices a call.

A model without published prices (``ModelSpec.prices is None``) costs ``None``: unknown, never a
guess.

>>> from langchain_claude_relay.usage import NormalizedUsage
>>> usage = NormalizedUsage(input_tokens=1_000, cache_read_tokens=100_000,
...                         cache_write_5m_tokens=0, cache_write_1h_tokens=0, output_tokens=500)
>>> round(call_cost_usd(usage, "claude-sonnet-4-6"), 6)   # 1000*3 + 100000*0.3 + 500*15, /1e6
0.0405
>>> round(call_cost_usd(usage, "claude-opus-5-5"), 6)   # 1000*4 + 100000*0.2 (0.05x) + 500*20
0.034
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_claude_relay.models import ModelPrices, ModelSpec, lookup_model
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "CostBreakdown",
    "cost_breakdown",
    "call_cost_usd",
    "uncached_cost_usd",
]


@dataclass(frozen=True)
class CostBreakdown:
    """One call's cost in USD, by token kind.

    Attributes:
        input: plain (uncached) input.
        cache_read: input read from the cache.
        cache_write_5m: input written to the cache with the 5-minute TTL.
        cache_write_1h: input written to the cache with the 1-hour TTL.
        output: output (reasoning included).
        total: the sum of the above.
        savings_vs_uncached: what the same tokens would have cost with no caching (all input at
            the input price) minus ``total``; negative for a call that paid for writes that
            no read has repaid yet.

    """

    input: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    output: float
    total: float
    savings_vs_uncached: float


def _prices(model: str | ModelSpec) -> ModelPrices | None:
    spec = lookup_model(model) if isinstance(model, str) else model
    return spec.prices


def cost_breakdown(usage: NormalizedUsage, model: str | ModelSpec) -> CostBreakdown | None:
    """Price each token kind of one call.

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        The breakdown in USD, or ``None`` if the model has no published prices.

    """
    prices = _prices(model)
    if prices is None:
        return None
    parts = prices.charges(
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
        usage.output_tokens,
    )
    total = sum(parts)
    return CostBreakdown(*parts, total=total, savings_vs_uncached=_uncached(usage, prices) - total)


def call_cost_usd(usage: NormalizedUsage, model: str | ModelSpec) -> float | None:
    """Return the call's cost in USD with cache prices, or ``None`` if the model is unpriced.

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        USD, or ``None`` when the model has no published prices.

    """
    breakdown = cost_breakdown(usage, model)
    return None if breakdown is None else breakdown.total


def uncached_cost_usd(usage: NormalizedUsage, model: str | ModelSpec) -> float | None:
    """Return what the same tokens would cost with no caching: all input at the input price.

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        USD, or ``None`` when the model has no published prices.

    """
    prices = _prices(model)
    return None if prices is None else _uncached(usage, prices)


def _uncached(usage: NormalizedUsage, prices: ModelPrices) -> float:
    plain, _read, _w5, _w1, output = prices.charges(
        usage.total_input_tokens, 0, 0, 0, usage.output_tokens
    )
    return plain + output
