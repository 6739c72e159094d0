"""The fleet's warm-prefix registry: which prefixes are cached right now, seen by every worker.

A worker whose response writes a prefix marks it as soon as the response begins (the entry is
readable from then on); ``RedisStore.get`` of the prefix's planner record (``p:<hash>``) overlays
that mark on the record's ``cu`` / ``ct`` fields (cached until, its TTL), which is exactly what
``CachePlanner.plan`` reads to predict a read: worker B's plan predicts reading what worker A
has just written, before A's ``observe``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from langchain_claude_relay.store.base import check_key
from langchain_claude_relay.store.redis import RedisStore
from langchain_claude_relay.store.resilient import ResilientStore

__all__ = ["WarmPrefixRegistry", "warm_registry"]


_PREFIX_CHARS = 24  # the planner keys its prefix records with the first 24 hex digits


class WarmPrefixRegistry:
    """Which prefixes are cached right now, as every worker on one Redis sees it.

    A worker whose response writes a prefix marks it as soon as the response begins (the entry
    is readable from then on); any worker's planner on the same ``RedisStore`` (the same Redis
    and namespace) then predicts a read of that prefix, because ``RedisStore.get`` overlays the
    mark on the prefix's record. Marks only move forward (the later expiry wins) and expire
    with the cache entry. ``claim`` lets one worker warm a new prefix while others wait.

    Times are on the planner's clock (``CachePlanner.clock``, ``time.time`` by default); the
    mark expires in Redis after ``until - clock()`` seconds.

    Args:
        store: the fleet's ``RedisStore``.
        clock: the planner's clock.

    ``CachePlanner.began`` marks a plan's writes itself (at the response's first byte); by hand:

    >>> registry = WarmPrefixRegistry(RedisStore("redis://127.0.0.1:6379"))  # doctest: +SKIP
    >>> registry.mark(bp.prefix_hash, until=plan.trace.planned_at + 300, ttl=300)  # doctest: +SKIP
    """

    def __init__(self, store: RedisStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    @staticmethod
    def _hex(prefix_hash: str) -> str:
        check_key(f"p:{prefix_hash[:_PREFIX_CHARS]}")
        return prefix_hash[:_PREFIX_CHARS]

    def mark(self, prefix_hash: str, *, until: float, ttl: float) -> bool:
        """Record that a prefix is cached until ``until`` with a TTL of ``ttl`` seconds.

        Args:
            prefix_hash: the prefix hash (``Breakpoint.prefix_hash``; hex).
            until: when the entry expires, on the planner's clock.
            ttl: the entry's TTL in seconds (300 or 3600).

        Returns:
            Whether Redis took the mark (``False``: an equal or later one was there, the
            mark had already expired, or Redis is down and only this process has it).

        Raises:
            ValueError: if ``prefix_hash`` is not hex.
        """
        prefix_hex = self._hex(prefix_hash)
        remaining = until - self._clock()
        if remaining <= 0:
            return False
        return self.store.mark_warm(prefix_hex, float(until), float(ttl), remaining)

    def warm_until(self, prefix_hash: str) -> float | None:
        """When the prefix's cache entry is believed to expire, or ``None`` if not warm now.

        Raises:
            ValueError: if ``prefix_hash`` is not hex.
        """
        record = self.store.get(f"p:{self._hex(prefix_hash)}")
        until = record.get("cu") if isinstance(record, dict) else None
        if isinstance(until, (int, float)) and until > self._clock():
            return float(until)
        return None

    def claim(self, prefix_hash: str, seconds: float) -> bool:
        """Claim the warm-up of a new prefix for ``seconds`` (one worker wins; others wait).

        Returns:
            Whether this worker holds the claim (also ``True`` while Redis is down: each
            worker then warms for itself).

        Raises:
            ValueError: if ``prefix_hash`` is not hex.
        """
        key = f"f:{self._hex(prefix_hash)}"
        ms = max(1, math.ceil(seconds * 1000))
        store = self.store
        done = store.call(lambda: store.client.set(store.redis_key(key), 1, nx=True, px=ms))
        return True if done is None else bool(done[0])

    def release(self, prefix_hash: str) -> None:
        """Give up a claim (e.g. the warm-up failed), letting another worker claim it.

        Raises:
            ValueError: if ``prefix_hash`` is not hex.
        """
        key = f"f:{self._hex(prefix_hash)}"
        self.store.call(lambda: self.store.client.delete(self.store.redis_key(key)))


def warm_registry(store: Any, clock: Callable[[], float] = time.time) -> WarmPrefixRegistry | None:
    """The registry of a planner's store when it is (or wraps) a ``RedisStore``, else ``None``.

    Args:
        store: ``CachePlanner.store`` (a ``ResilientStore`` around the store given), or a store.
        clock: the planner's clock (``CachePlanner.clock``).

    Returns:
        A ``WarmPrefixRegistry`` on that store, or ``None`` for any other store.
    """
    inner = store.inner if isinstance(store, ResilientStore) else store
    return WarmPrefixRegistry(inner, clock) if isinstance(inner, RedisStore) else None
