"""Wasted writes: which calls wrote to the cache and were never read by a later call.

Writes are attributed by prefix hash within a group of calls sharing a cache (same relay, same
model family); what a wasted write cost is its premium above plain input.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_claude_relay.ledger.entry import LedgerEntry, family_of
from langchain_claude_relay.models import ModelPrices, price_table

_PER_TOKEN = 1e-6


def wasted_writes(ordered: Sequence[LedgerEntry]) -> list[bool]:
    """For each entry (in time order), whether it wrote and no later call read what it wrote.

    A read at prefix P credits the latest earlier writer at P (an earlier writer whose entry was
    written again had expired or raced: its write was wasted). A read with no attributed prefix
    credits every unread earlier writer of the group, and any read credits the writers whose
    prefixes are unknown. Groups are (relay, model family): caches are per model and account.
    """
    read = [False] * len(ordered)
    last_writer: dict[tuple[str | None, str, str], int] = {}
    unread: dict[tuple[str | None, str], set[int]] = {}
    unread_unknown: dict[tuple[str | None, str], set[int]] = {}
    for i, entry in enumerate(ordered):
        group = (entry.base_url_hash, family_of(entry.model) or entry.model)
        if entry.cache_read_tokens > 0:
            if entry.read_prefix is None:
                credited = unread.pop(group, set())
                unread_unknown.pop(group, None)
            else:
                credited = unread_unknown.pop(group, set())
                writer = last_writer.get((*group, entry.read_prefix))
                if writer is not None:
                    credited.add(writer)
                unread.get(group, set()).difference_update(credited)
            for writer in credited:
                read[writer] = True
        if entry.cache_write_tokens > 0:
            unread.setdefault(group, set()).add(i)
            if entry.written_prefixes:
                for prefix in entry.written_prefixes:
                    last_writer[group + (prefix,)] = i  # noqa: RUF005 - mypy misreads a starred index on 3.10
            else:
                unread_unknown.setdefault(group, set()).add(i)
    return [e.cache_write_tokens > 0 and not r for e, r in zip(ordered, read, strict=True)]


def write_premium(entry: LedgerEntry, cache: dict[str, ModelPrices | None]) -> float:
    """What the entry's writes cost above plain input (0 for an unpriced model).

    Priced like the call itself (``ModelPrices.charges``): at the long-context tier when the
    whole prompt passes it, where every input price, plain and writes alike, is multiplied; and
    at the entry's ``price_multiplier`` (data residency), as its ``cost_usd`` was.

    Args:
        entry: the entry.
        cache: model id -> its base prices, filled as models are met.

    Returns:
        USD.

    >>> haiku = LedgerEntry("c", 0.0, "claude-haiku-5-5", 20, 0, 120_000, 0, 0, None, None)
    >>> round(write_premium(haiku, {}), 6)   # 120K * (0.625 - 0.5) / 1e6: the 5x tier
    0.015
    >>> from dataclasses import replace
    >>> round(write_premium(replace(haiku, inference_geo="us", price_multiplier=1.1), {}), 6)
    0.0165
    """
    if entry.model not in cache:
        family = family_of(entry.model)
        spec = price_table().get(family) if family is not None else None
        cache[entry.model] = spec.prices if spec is not None else None
    base = cache[entry.model]
    if base is None:
        return 0.0
    prices = base.for_prompt(entry.total_input_tokens, entry.price_multiplier)
    return _PER_TOKEN * (
        entry.cache_write_5m_tokens * (prices.cache_write_5m - prices.input)
        + entry.cache_write_1h_tokens * (prices.cache_write_1h - prices.input)
    )
