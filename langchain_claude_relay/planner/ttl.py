"""The expected-cost model behind every marker: none, 5m or 1h, under the model's own prices.

Pure functions. Costs are USD per token of the marked segment (the tokens between the previous
marker and this one); a segment is read whenever the prefix ending at its marker is read, so the
segments of one request can be priced separately.

For a marker at a prefix with reuse odds ``q5 = P(next arrival within 5 min)`` and
``q1h = P(within 1 h)`` (see ``reuse``), the cost of a TTL ``t`` is:

* **now**: a read (``read``) if the prefix is believed cached and reachable, else a write
  (``write_5m`` or ``write_1h``);
* **future**: the prefix comes back ``N = q1h / (1 - q1h)`` more times before a gap longer than
  an hour; each of those arrivals is a read when it falls within ``t``
  (probability ``p = q_t / q1h``), else a fresh write at ``t``'s price. Against leaving the
  segment unmarked (``input`` on every arrival) that is ``N * (p*read + (1-p)*write_t - input)``.

Unmarked tokens cost ``input`` now and nothing more. With Anthropic's usual prices (write 5m
1.25x, 1h 2x, read 0.1x) this marks a prefix that comes back with any regularity, keeps 5m for
dense traffic (every gap under 5 min: both TTLs read, 5m writes cheaper), switches to 1h when
gaps fall between 5 minutes and an hour, and stops marking a prefix that never comes back. The
choice among TTLs in one request respects Claude's order (every 1h marker before every 5m one):
``best_split`` tries each cut point, so raising earlier markers to 1h and lowering later ones
to 5m are weighed against each other.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_claude_relay.models import ModelPrices, lookup_model
from langchain_claude_relay.planner.reuse import ReuseOdds

__all__ = [
    "TTLPolicy",
    "TTL_POLICIES",
    "Rates",
    "future_cost",
    "future_arrivals",
    "late_arrivals",
    "now_cost",
    "best_split",
]

TTLPolicy = Literal["auto", "5m", "1h"]
TTL_POLICIES: tuple[str, ...] = ("auto", "5m", "1h")


@dataclass(frozen=True)
class Rates:
    """USD per token for each kind of input token.

    Attributes:
        input: plain input.
        read: cache read.
        write_5m: cache write with the 5-minute TTL.
        write_1h: cache write with the 1-hour TTL.
        priced: ``False`` when the model has no published prices and these are relative
            (Anthropic's usual multipliers on an input price of 1 USD per million).
    """

    input: float
    read: float
    write_5m: float
    write_1h: float
    priced: bool = True

    @classmethod
    def from_prices(cls, prices: ModelPrices | None) -> Rates:
        """Per-token rates from a model's prices (per million); relative ones when unpriced."""
        priced = prices is not None
        table = prices if prices is not None else ModelPrices.standard(1.0, 5.0)
        return cls(
            table.input / 1e6,
            table.cache_read / 1e6,
            table.cache_write_5m / 1e6,
            table.cache_write_1h / 1e6,
            priced=priced,
        )

    @classmethod
    def for_model(cls, model: str) -> Rates:
        """A priced model's rates, with its own read multiplier (0.05x on Opus 5.5, ...).

        Raises:
            ValueError: if the model has no published prices.
        """
        prices = lookup_model(model).prices
        if prices is None:
            msg = f"model {model!r} has no published prices: the benchmark needs a priced model"
            raise ValueError(msg)
        return cls.from_prices(prices)

    def write(self, ttl: str) -> float:
        """The write rate for a TTL."""
        return self.write_5m if ttl == "5m" else self.write_1h

    def cost(self, plain: float, read: float, write_5m: float, write_1h: float) -> float:
        """USD (or relative units, unpriced) for the given token counts."""
        return (
            plain * self.input
            + read * self.read
            + write_5m * self.write_5m
            + write_1h * self.write_1h
        )


def future_cost(
    ttl: str,
    odds: ReuseOdds,
    rates: Rates,
    *,
    next_only: bool = False,
    late: float | None = None,
) -> float:
    """Expected future cost per token of marking with ``ttl``, relative to leaving it unmarked.

    Negative when marking saves money over the prefix's coming arrivals. The arrivals within
    5 minutes are reads with either TTL; the late ones (after 5 minutes, within the hour) are
    reads with 1h and rewrites with 5m.

    Args:
        ttl: ``"5m"`` or ``"1h"``.
        odds: the prefix's reuse odds.
        rates: per-token prices.
        next_only: only the next arrival counts (a conversation's tail: the turn that reads it
            writes a new tail, whose own TTL keeps the whole prefix from then on).
        late: the late arrivals to count, when more is known than the odds show
            (``Option.priced``); default ``late_arrivals(odds, next_only=next_only)``.

    >>> r = Rates.from_prices(ModelPrices.standard(3.0, 15.0))
    >>> future_cost("1h", ReuseOdds(0.0, 0.9), r) < future_cost("5m", ReuseOdds(0.0, 0.9), r)
    True
    """
    arrivals = future_arrivals(odds, next_only=next_only)
    if arrivals <= 0.0:
        return 0.0
    soon = arrivals * min(1.0, odds.within_5m / odds.within_1h)
    if late is None:
        late = late_arrivals(odds, next_only=next_only)
    per_late = rates.read if ttl == "1h" else rates.write_5m
    return soon * (rates.read - rates.input) + late * (per_late - rates.input)


def late_arrivals(odds: ReuseOdds, *, next_only: bool = False) -> float:
    """Expected arrivals after 5 minutes but within the hour (those a 5m entry misses).

    With keep-alive requests, each of them may find the entry kept alive instead of expired:
    ``future_cost("5m", ...)`` counts them as rewrites, and what keep-alives save on them
    (``keepalive.bridge_cost``) comes off that (``placement.Option``).

    >>> round(late_arrivals(ReuseOdds(0.5, 0.75)), 3)
    1.0
    """
    arrivals = future_arrivals(odds, next_only=next_only)
    if arrivals <= 0.0:
        return 0.0
    return arrivals * max(0.0, 1.0 - odds.within_5m / odds.within_1h)


def future_arrivals(odds: ReuseOdds, *, next_only: bool = False) -> float:
    """Expected further arrivals before a gap past the hour (capped; see ``ReuseOdds``).

    With ``next_only``, only the next arrival: at most its chance within the hour.

    >>> odds = ReuseOdds(0.5, 0.75)
    >>> future_arrivals(odds), future_arrivals(odds, next_only=True)
    (3.0, 0.75)
    """
    if odds.within_1h <= 0.0:
        return 0.0
    return min(odds.future_arrivals(), odds.within_1h) if next_only else odds.future_arrivals()


def now_cost(ttl: str, read_tokens: float, write_tokens: float, rates: Rates) -> float:
    """This request's cost of a segment: its cached part read, the rest written at ``ttl``."""
    return read_tokens * rates.read + write_tokens * rates.write(ttl)


def best_split(
    cost_1h: Sequence[float],
    cost_5m: Sequence[float],
    forced: Sequence[str | None],
    policy: TTLPolicy,
    *,
    cuts: Container[int] | None = None,
) -> tuple[int, float] | None:
    """Choose TTLs for markers in prefix order: the first ``s`` are 1h, the rest 5m.

    Args:
        cost_1h: each marker's segment cost with 1h.
        cost_5m: each marker's segment cost with 5m.
        forced: each marker's fixed TTL (a user marker), or ``None`` (the planner's to choose).
        policy: ``"auto"`` takes the cheapest cut, ``"5m"`` the earliest allowed, ``"1h"`` the
            latest allowed (user markers may force some planner markers to the other TTL).
        cuts: the cuts ``s`` the costs hold for (default: all); the others are not considered.

    Returns:
        ``(s, total cost)``, or ``None`` if the forced TTLs (and ``cuts``) admit no valid order.

    >>> best_split([2.0, 2.0], [1.0, 3.0], [None, None], "auto")
    (0, 4.0)
    >>> best_split([2.0, 2.0], [1.0, 3.0], [None, "1h"], "5m")
    (2, 4.0)
    """
    k = len(forced)
    low = max((i + 1 for i, f in enumerate(forced) if f == "1h"), default=0)
    high = min((i for i, f in enumerate(forced) if f == "5m"), default=k)
    if low > high:
        return None
    if policy == "5m":
        high = low
    elif policy == "1h":
        low = high
    total_5m = sum(cost_5m)
    acc_1h = sum(cost_1h[:low])
    acc_5m = sum(cost_5m[:low])
    best: tuple[int, float] | None = None
    for s in range(low, high + 1):
        total = acc_1h + (total_5m - acc_5m)
        if (cuts is None or s in cuts) and (best is None or total < best[1] - 1e-15):
            best = (s, total)
        if s < k:
            acc_1h += cost_1h[s]
            acc_5m += cost_5m[s]
    return best
