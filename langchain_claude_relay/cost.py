"""What one call cost in USD, with Claude's cache prices, and what it would have cost uncached.

Prices come from the model table (``models.ModelPrices``, USD per million tokens), one price per
token kind and per model: cache reads are 0.1x input on most models but cheaper on some, so no
global multiplier is applied here. Reasoning tokens are part of ``output_tokens`` (that is how
relays and Anthropic report them) and are billed at the output price. A published long-context
tier applies to the whole call (Haiku 5.5: every token at 5x once the prompt, all input tokens
together, exceeds 100K): ``ModelPrices.charges`` is the one place that prices a call.

Data residency multiplies the whole call: a call the API reports with ``usage.inference_geo ==
"us"`` pays 1.1x on every token kind on Claude Opus 4.6, Sonnet 4.6 and later models
(``models.INFERENCE_GEO``, with its sources; ``ModelSpec.price_multiplier``). The uncached
counterfactual is priced at the same multiplier, so savings compare like with like.

A model without published prices (``ModelSpec.prices is None``) costs ``None``: unknown, never a
guess.

>>> from langchain_claude_relay.usage import NormalizedUsage
>>> usage = NormalizedUsage(input_tokens=1_000, cache_read_tokens=100_000,
...                         cache_write_5m_tokens=0, cache_write_1h_tokens=0, output_tokens=500)
>>> round(call_cost_usd(usage, "claude-sonnet-4-6"), 6)   # 1000*3 + 100000*0.3 + 500*15, /1e6
0.0405
>>> round(call_cost_usd(usage, "claude-opus-5-5"), 6)   # 1000*4 + 100000*0.2 (0.05x) + 500*20
0.034
>>> from dataclasses import replace
>>> round(call_cost_usd(replace(usage, inference_geo="us"), "claude-sonnet-4-6"), 6)  # 1.1x
0.04455
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
    "price_multiplier",
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
        price_multiplier: the factor every price of the call was multiplied by (data
            residency: 1.1 for ``inference_geo == "us"`` on the models it applies to; else 1).

    """

    input: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    output: float
    total: float
    savings_vs_uncached: float
    price_multiplier: float = 1.0


def _spec(model: str | ModelSpec) -> ModelSpec:
    return lookup_model(model) if isinstance(model, str) else model


def price_multiplier(usage: NormalizedUsage, model: str | ModelSpec) -> float:
    """The factor on every price of this call: its ``inference_geo`` on this model (else 1).

    >>> from langchain_claude_relay.usage import NormalizedUsage
    >>> us = NormalizedUsage(10, 0, 0, 0, 1, inference_geo="us")
    >>> price_multiplier(us, "claude-opus-4-6"), price_multiplier(us, "claude-haiku-4-5")
    (1.1, 1.0)

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        The multiplier (1.0 for no geo, ``"global"``, or a model the geo does not change).
    """
    return _spec(model).price_multiplier(usage.inference_geo)


def cost_breakdown(usage: NormalizedUsage, model: str | ModelSpec) -> CostBreakdown | None:
    """Price each token kind of one call.

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        The breakdown in USD, or ``None`` if the model has no published prices.

    """
    spec = _spec(model)
    prices = spec.prices
    if prices is None:
        return None
    multiplier = spec.price_multiplier(usage.inference_geo)
    parts = prices.charges(
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_5m_tokens,
        usage.cache_write_1h_tokens,
        usage.output_tokens,
        multiplier=multiplier,
    )
    total = sum(parts)
    return CostBreakdown(
        *parts,
        total=total,
        savings_vs_uncached=_uncached(usage, prices, multiplier) - total,
        price_multiplier=multiplier,
    )


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

    At the call's own price multiplier (its ``inference_geo``), as ``call_cost_usd`` is.

    Args:
        usage: the call's normalized usage.
        model: a relay model id (looked up by family) or a ``ModelSpec``.

    Returns:
        USD, or ``None`` when the model has no published prices.

    """
    spec = _spec(model)
    if spec.prices is None:
        return None
    return _uncached(usage, spec.prices, spec.price_multiplier(usage.inference_geo))


def _uncached(usage: NormalizedUsage, prices: ModelPrices, multiplier: float) -> float:
    plain, _read, _w5, _w1, output = prices.charges(
        usage.total_input_tokens, 0, 0, 0, usage.output_tokens, multiplier=multiplier
    )
    return plain + output
