"""Ledger summaries: calls, hit rate, tokens by kind, cost, savings, wasted writes, predictions.

``summarize`` is pure (no I/O, no clock); ``LedgerSummary.to_table`` is what ``claude-relay
stats`` prints. ``summarize_over_time`` cuts the same figures into time buckets (what
``claude-relay stats --chart`` draws).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_claude_relay.ledger.entry import LedgerEntry
from langchain_claude_relay.ledger.waste import wasted_writes, write_premium
from langchain_claude_relay.models import ModelPrices
from langchain_claude_relay.usage import InputTotals

MAX_CALL_COST_USD = 1_000_000.0
"""The most one call (or keep-alive) can be taken to have cost. A stored cost above it, or not
finite, is a damaged or planted row: summaries count that call as unpriced (its cost unknown)
rather than add it, so totals stay finite (a row of 1e308 made ``stats`` print ``$inf`` and
``stats --json`` emit ``Infinity``, which is not JSON). No Claude call costs near this much."""


def _cost(value: float | None) -> float | None:
    """A stored cost, or ``None`` (unknown) when it is not a plausible amount of USD."""
    if value is None or not math.isfinite(value) or abs(value) > MAX_CALL_COST_USD:
        return None
    return value


@dataclass(frozen=True)
class LedgerSummary(InputTotals):
    """Totals over ledger entries, ready to print (``to_table``) or serialize (``to_dict``).

    Keep-alive requests (``LedgerEntry.keep_alive``) are spend, not calls: their tokens and cost
    are in the token and cost totals, and counted apart in ``keep_alive_calls`` and
    ``keep_alive_cost_usd``; calls, hit rate, predictions and wasted writes are the user's calls
    only (a keep-alive's read must not make a write look used).

    Attributes:
        calls: calls counted (keep-alive requests apart).
        calls_with_read: calls that read anything from the cache (hit rate = this / calls).
        input_tokens: plain (uncached) input tokens.
        cache_read_tokens: input read from the cache.
        cache_write_5m_tokens: input written with the 5-minute TTL.
        cache_write_1h_tokens: input written with the 1-hour TTL.
        output_tokens: output tokens.
        cost_usd: cost with cache prices, over priced calls.
        uncached_cost_usd: what the priced calls would have cost without caching.
        saved_usd: ``uncached_cost_usd - cost_usd`` (negative while writes are not repaid).
        unpriced_calls: calls of models without published prices (not in the USD totals).
        wasted_write_tokens: tokens written by calls none of whose written prefixes was read by
            a later call (of the same model and relay) before being written again. A call with
            no prefix information counts as read if any later call of the same model and relay
            read anything. A write read only in part counts as read.
        wasted_write_usd: what the wasted writes cost above plain input (the write premium).
        predicted_calls: calls with a prediction (``predicted_read_tokens`` not ``None``).
        predicted_hits: predicted calls expected to read (``predicted_read_tokens > 0``).
        actual_hits: predicted calls that did read.
        mispredictions: predicted calls whose hit or miss was not as predicted.
        missed_predicted_hits: of those, the calls expected to read that read nothing.
        miss_reasons: ``(reason, count)`` pairs, most frequent first.
        first_timestamp: the earliest call's timestamp (``None`` with no calls).
        last_timestamp: the latest call's timestamp.
        since: the lower time bound the summary was asked for, if any.
        keep_alive_calls: keep-alive requests (``keep_warm="auto"``).
        keep_alive_cost_usd: what they cost (included in ``cost_usd``).
        inference_geo_calls: ``(geo, count)`` pairs: calls whose usage reported where inference
            ran (data residency), most frequent first; calls that reported none are not in it.
        geo_premium_usd: what price multipliers above 1x (``"us"``: 1.1x) added to
            ``cost_usd``, keep-alives included: ``cost - cost / price_multiplier`` per entry.

    """

    calls: int = 0
    calls_with_read: int = 0
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    uncached_cost_usd: float = 0.0
    saved_usd: float = 0.0
    unpriced_calls: int = 0
    wasted_write_tokens: int = 0
    wasted_write_usd: float = 0.0
    predicted_calls: int = 0
    predicted_hits: int = 0
    actual_hits: int = 0
    mispredictions: int = 0
    missed_predicted_hits: int = 0
    miss_reasons: tuple[tuple[str, int], ...] = field(default=())
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    since: float | None = None
    keep_alive_calls: int = 0
    keep_alive_cost_usd: float = 0.0
    inference_geo_calls: tuple[tuple[str, int], ...] = field(default=())
    geo_premium_usd: float = 0.0

    @property
    def hit_rate(self) -> float | None:
        """Calls that read anything from the cache / calls (``None`` with no calls)."""
        return self.calls_with_read / self.calls if self.calls else None

    @property
    def read_share(self) -> float | None:
        """Share of all input tokens read from the cache (``None`` with no input)."""
        total = self.total_input_tokens
        return self.cache_read_tokens / total if total else None

    @property
    def saved_fraction(self) -> float | None:
        """``saved_usd / uncached_cost_usd`` (``None`` when nothing was priced)."""
        return self.saved_usd / self.uncached_cost_usd if self.uncached_cost_usd else None

    def to_dict(self) -> dict[str, Any]:
        """Return every field and derived figure as a JSON-able dict."""
        out = asdict(self)
        out["miss_reasons"] = dict(self.miss_reasons)
        out["inference_geo_calls"] = dict(self.inference_geo_calls)
        out["hit_rate"] = self.hit_rate
        out["cache_write_tokens"] = self.cache_write_tokens
        out["total_input_tokens"] = self.total_input_tokens
        out["read_share"] = self.read_share
        out["saved_fraction"] = self.saved_fraction
        return out

    def to_table(self) -> str:
        """Return a readable, aligned report (what ``claude-relay stats`` prints)."""
        if not self.calls and not self.keep_alive_calls:
            scope = "" if self.since is None else f" since {_when(self.since)}"
            return f"Ledger: no calls recorded{scope}."
        total_in = self.total_input_tokens
        rows: list[tuple[str, str, str]] = [
            ("Calls", _int(self.calls), _span(self.first_timestamp, self.last_timestamp)),
            (
                "Hit rate",
                _pct(self.hit_rate),
                f"{_int(self.calls_with_read)} of {_int(self.calls)} calls read from the cache",
            ),
            ("Tokens", "", "share of input"),
            ("  input (uncached)", _int(self.input_tokens), _share(self.input_tokens, total_in)),
            (
                "  cache read",
                _int(self.cache_read_tokens),
                _share(self.cache_read_tokens, total_in),
            ),
            (
                "  cache write 5m",
                _int(self.cache_write_5m_tokens),
                _share(self.cache_write_5m_tokens, total_in),
            ),
            (
                "  cache write 1h",
                _int(self.cache_write_1h_tokens),
                _share(self.cache_write_1h_tokens, total_in),
            ),
            ("  output", _int(self.output_tokens), ""),
            ("Cost (USD)", "", ""),
            ("  with caching", _usd(self.cost_usd), ""),
            ("  uncached", _usd(self.uncached_cost_usd), "same tokens, no cache"),
            ("  saved", _usd(self.saved_usd), _pct(self.saved_fraction)),
            *(
                [
                    (
                        "  keep-alive",
                        _usd(self.keep_alive_cost_usd),
                        f"{_int(self.keep_alive_calls)} keep-alive requests (in the cost above)",
                    )
                ]
                if self.keep_alive_calls
                else []
            ),
            (
                "Wasted writes",
                _int(self.wasted_write_tokens),
                f"tokens never read later; {_usd(self.wasted_write_usd)} above plain input",
            ),
        ]
        if self.predicted_calls:
            rows.append(
                (
                    "Predicted hits",
                    _int(self.predicted_hits),
                    f"of {_int(self.predicted_calls)} planned calls; "
                    f"{_int(self.actual_hits)} read, {_int(self.mispredictions)} mispredicted "
                    f"({_int(self.missed_predicted_hits)} expected a read that did not happen)",
                )
            )
        if self.miss_reasons:
            reasons = ", ".join(f"{reason} {_int(n)}" for reason, n in self.miss_reasons)
            rows.append(("Miss reasons", "", reasons))
        if self.inference_geo_calls or self.geo_premium_usd:
            geos = ", ".join(f"{geo} {_int(n)}" for geo, n in self.inference_geo_calls)
            premium = f"{_usd(self.geo_premium_usd)} of the cost is above standard rates"
            rows.append(("Inference geo", "", f"{geos} calls; {premium}" if geos else premium))
        if self.unpriced_calls:
            rows.append(
                (
                    "Unpriced calls",
                    _int(self.unpriced_calls),
                    "model without prices; not in USD totals",
                )
            )
        label_width = max(len(r[0]) for r in rows)
        value_width = max(len(r[1]) for r in rows)
        lines = [
            f"{label:<{label_width}}  {value:>{value_width}}  {note}".rstrip()
            for label, value, note in rows
        ]
        return "\n".join(lines)


def summarize(entries: Iterable[LedgerEntry], *, since: float | None = None) -> LedgerSummary:
    """Total entries into a summary (pure: no I/O, no clock).

    Entries are taken in timestamp order (ties keep the given order), which is what "later"
    means for wasted writes: a call's write is read by a later call. A stored cost that is not
    finite or exceeds ``MAX_CALL_COST_USD`` (a damaged row) makes its call unpriced: unknown,
    not summed, so every total is finite and ``to_dict`` is valid JSON.

    Args:
        entries: the entries, in any order.
        since: only entries with ``timestamp >= since`` count (also stored on the summary).

    Returns:
        The summary.

    """
    everything = sorted(
        (e for e in entries if since is None or e.timestamp >= since), key=lambda e: e.timestamp
    )
    if not everything:
        return LedgerSummary(since=since)
    ordered = [e for e in everything if not e.keep_alive]
    pings = [e for e in everything if e.keep_alive]
    wasted = wasted_writes(ordered)
    prices: dict[str, ModelPrices | None] = {}
    keep_alive_cost = sum(_cost(p.cost_usd) or 0.0 for p in pings)
    cost, saved = keep_alive_cost, -keep_alive_cost  # spent to save on the calls
    premium = sum((_premium(_cost(p.cost_usd), p.price_multiplier) for p in pings), 0.0)
    uncached = wasted_usd = 0.0
    unpriced = predicted = predicted_hits = actual_hits = mispredicted = missed = 0
    reasons: Counter[str] = Counter()
    for entry, is_wasted in zip(ordered, wasted, strict=True):
        entry_cost, entry_uncached = _cost(entry.cost_usd), _cost(entry.uncached_cost_usd)
        if entry_cost is None or (entry.uncached_cost_usd is not None and entry_uncached is None):
            unpriced += 1  # no price, or a stored cost no call can have (MAX_CALL_COST_USD)
        else:
            cost += entry_cost
            premium += _premium(entry_cost, entry.price_multiplier)
            if entry_uncached is not None:
                uncached += entry_uncached
                saved += entry_uncached - entry_cost
        if is_wasted:
            wasted_usd += write_premium(entry, prices)
        if entry.predicted_read_tokens is not None:
            predicted += 1
            expected, got = entry.predicted_read_tokens > 0, entry.cache_read_tokens > 0
            predicted_hits += expected
            actual_hits += got
            mispredicted += expected != got
            missed += expected and not got
        if entry.miss_reason is not None:
            reasons[entry.miss_reason] += 1
    return LedgerSummary(
        calls=len(ordered),
        calls_with_read=sum(e.cache_read_tokens > 0 for e in ordered),
        input_tokens=sum(e.input_tokens for e in everything),
        cache_read_tokens=sum(e.cache_read_tokens for e in everything),
        cache_write_5m_tokens=sum(e.cache_write_5m_tokens for e in everything),
        cache_write_1h_tokens=sum(e.cache_write_1h_tokens for e in everything),
        output_tokens=sum(e.output_tokens for e in everything),
        cost_usd=cost,
        uncached_cost_usd=uncached,
        saved_usd=saved,
        unpriced_calls=unpriced,
        wasted_write_tokens=sum(
            e.cache_write_tokens for e, w in zip(ordered, wasted, strict=True) if w
        ),
        wasted_write_usd=wasted_usd,
        predicted_calls=predicted,
        predicted_hits=predicted_hits,
        actual_hits=actual_hits,
        mispredictions=mispredicted,
        missed_predicted_hits=missed,
        miss_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        first_timestamp=everything[0].timestamp,
        last_timestamp=everything[-1].timestamp,
        since=since,
        keep_alive_calls=len(pings),
        keep_alive_cost_usd=keep_alive_cost,
        inference_geo_calls=tuple(
            sorted(
                Counter(e.inference_geo for e in ordered if e.inference_geo is not None).items(),
                key=lambda kv: (-kv[1], kv[0]),
            )
        ),
        geo_premium_usd=premium,
    )


def _premium(cost: float | None, multiplier: float) -> float:
    """What a multiplier above 1 added to a call's cost (0 for an unknown cost or 1x).

    Never below 0 nor above the cost, whatever was read back (entries check the multiplier).
    """
    if cost is None or multiplier <= 1.0:
        return 0.0
    premium = cost - cost / multiplier
    return premium if math.isfinite(premium) and 0.0 <= premium <= cost else 0.0


@dataclass(frozen=True)
class TimeBucket:
    """One stretch of time in ``summarize_over_time``: its own figures and the running totals.

    Attributes:
        start: the bucket's first instant (seconds, as the entries' timestamps).
        end: its last instant (the next bucket's start; the last call for the last bucket).
        summary: the bucket's calls alone (hit rate, cost, saved...).
        cumulative_cost_usd: cost with caching of every call up to the bucket's end.
        cumulative_uncached_usd: the same calls without caching.
        cumulative_saved_usd: saved so far (negative while writes are not yet repaid).
    """

    start: float
    end: float
    summary: LedgerSummary
    cumulative_cost_usd: float
    cumulative_uncached_usd: float
    cumulative_saved_usd: float


def summarize_over_time(
    entries: Iterable[LedgerEntry], buckets: int = 24, *, since: float | None = None
) -> tuple[TimeBucket, ...]:
    """Cut the entries' time span into ``buckets`` equal stretches and summarize each one.

    Pure: no I/O, no clock. Empty stretches are kept (no calls, hit rate ``None``), so the time
    axis stays linear; a span of a single instant is one bucket.

    Args:
        entries: the entries, in any order.
        buckets: how many stretches (at least 1).
        since: only entries with ``timestamp >= since`` count.

    Returns:
        The buckets in time order (none for no entries).

    >>> from langchain_claude_relay.ledger.entry import LedgerEntry
    >>> calls = [LedgerEntry(f"c{t}", float(t), "claude-sonnet-4-6", 100, 1000 * (t > 0), 0, 0,
    ...                      10, cost_usd=0.001, uncached_cost_usd=0.004) for t in range(4)]
    >>> [(b.summary.calls, b.summary.hit_rate) for b in summarize_over_time(calls, 2)]
    [(2, 0.5), (2, 1.0)]
    """
    if buckets < 1:
        msg = f"buckets={buckets} must be at least 1"
        raise ValueError(msg)
    ordered = sorted(
        (e for e in entries if since is None or e.timestamp >= since), key=lambda e: e.timestamp
    )
    if not ordered:
        return ()
    first, last = ordered[0].timestamp, ordered[-1].timestamp
    count = buckets if last > first else 1
    width = (last - first) / count
    groups: list[list[LedgerEntry]] = [[] for _ in range(count)]
    for entry in ordered:
        index = min(count - 1, int((entry.timestamp - first) / width)) if width else 0
        groups[index].append(entry)
    out: list[TimeBucket] = []
    cost = uncached = saved = 0.0
    for i, group in enumerate(groups):
        summary = summarize(group)
        cost += summary.cost_usd
        uncached += summary.uncached_cost_usd
        saved += summary.saved_usd
        end = first + (i + 1) * width if i < count - 1 else last
        out.append(TimeBucket(first + i * width, end, summary, cost, uncached, saved))
    return tuple(out)


def _int(n: int) -> str:
    return f"{n:,}"


def _usd(x: float) -> str:
    return f"-${-x:,.4f}" if x < 0 else f"${x:,.4f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _share(part: int, total: int) -> str:
    return _pct(part / total if total else None)


def _when(ts: float) -> str:
    try:
        moment = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"t={ts:g}"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return ""
    return _when(first) if first == last else f"{_when(first)} .. {_when(last)}"
