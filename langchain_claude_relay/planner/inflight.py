"""Requests in flight: sent but not begun (*pending*), and begun but not yet observed.

Claude makes an entry readable only once the first response that wrote it has begun, so N
requests sent together on a new prefix would all pay its write. After ``sent`` a plan's predicted
writes are *pending*: a plan made meanwhile gives a write of a pending prefix no future value
(``placement.Option.future_start``), which leaves it unmarked unless a read is predicted there.
After ``began`` they are *believed cached* until the marker's TTL runs out (a plan made before
``observe`` predicts a read); ``observed`` drops the belief, which the store's records replace
with what the usage shows. Reading (``snapshot``) changes nothing, so a plan that is only
previewed holds nothing back.

In memory, per planner, thread-safe; times come from the planner's clock, passed in.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from langchain_claude_relay.planner.plan import CachePlan, PlanTrace, trace_of
from langchain_claude_relay.planner.rules import TTL_SECONDS
from langchain_claude_relay.request import CacheTTL

__all__ = ["PENDING_SECONDS", "PENDING_CAP", "InFlight", "InFlightState"]

PENDING_SECONDS = 60.0
"""How long a sent request's writes stay *pending* without ``began``/``observe`` (planner clock).

Claude's first bytes arrive within seconds, so a request that has said nothing for a minute has
failed or was never reported; its writes stop holding back other requests then. The planner's
clock is the one used (virtual in the benchmark and in tests, ``time.time`` otherwise); a clock
that stands still while nothing is reported is bounded by ``PENDING_CAP`` and ``abandoned()``."""
PENDING_CAP = 1024
"""At most this many requests tracked as pending, and as begun-but-not-observed (oldest dropped)."""


class InFlightState(NamedTuple):
    """What plans made now take from the requests in flight.

    Attributes:
        pending: prefix hashes that a sent request is writing (not readable yet).
        believed: prefix hashes that a begun request has written, with the marker's TTL.
    """

    pending: frozenset[str]
    believed: dict[str, CacheTTL]


class _Flight(NamedTuple):
    """A sent (pending) or begun request's writes, keyed in the registry by ``id(trace)``."""

    trace: PlanTrace  # held so that its id stays unique while registered
    at: float  # pending: when sent (planner clock); begun: unused (each write has its expiry)
    writes: tuple[tuple[str, float, CacheTTL], ...]  # (prefix hash, believed expiry, TTL)


class InFlight:
    """The planner's registry of requests in flight.

    >>> registry = InFlight()
    >>> registry.snapshot(now=0.0)
    InFlightState(pending=frozenset(), believed={})
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, _Flight] = {}
        self._begun: dict[int, _Flight] = {}

    def sent(self, plan: CachePlan, now: float) -> None:
        """The plan's request was sent at ``now``: its predicted writes are pending.

        Args:
            plan: a plan made by ``CachePlanner.plan``; sending it again restarts its wait.
            now: the planner's clock.

        Raises:
            ValueError: if the plan has no trace.
        """
        trace = trace_of(plan, "sent")
        writes = tuple(
            (bp.prefix_hash, 0.0, bp.ttl) for bp in plan.breakpoints if bp.predicted == "write"
        )
        with self._lock:
            self._pending.pop(id(trace), None)
            _expire_pending(self._pending, now)
            if writes:
                self._pending[id(trace)] = _Flight(trace, now, writes)
                _cap(self._pending)

    def began(self, plan: CachePlan, now: float) -> tuple[tuple[str, float, CacheTTL], ...]:
        """The plan's response began at ``now``: its writes are believed cached, not pending.

        Each predicted write is believed cached until the plan's time plus its marker's TTL
        (as ``observe`` records a write).

        Args:
            plan: a plan made by ``CachePlanner.plan``.
            now: the planner's clock.

        Returns:
            The writes now believed cached: ``(prefix hash, expiry, TTL)`` each.

        Raises:
            ValueError: if the plan has no trace.
        """
        trace = trace_of(plan, "began")
        writes = tuple(
            (bp.prefix_hash, trace.planned_at + TTL_SECONDS[bp.ttl], bp.ttl)
            for bp in plan.breakpoints
            if bp.predicted == "write"
        )
        with self._lock:
            self._pending.pop(id(trace), None)
            self._begun.pop(id(trace), None)
            for key in [k for k, f in self._begun.items() if _last_expiry(f) <= now]:
                del self._begun[key]
            if writes:
                self._begun[id(trace)] = _Flight(trace, now, writes)
                _cap(self._begun)
        return writes

    def abandoned(self, plan: CachePlan) -> None:
        """The plan's request failed before its response began: its writes are not pending.

        Args:
            plan: a plan made by ``CachePlanner.plan``.

        Raises:
            ValueError: if the plan has no trace.
        """
        trace = trace_of(plan, "abandoned")
        with self._lock:
            self._pending.pop(id(trace), None)

    def observed(self, trace: PlanTrace) -> None:
        """The usage of the plan with this trace was observed: it is no longer in flight."""
        with self._lock:
            self._pending.pop(id(trace), None)
            self._begun.pop(id(trace), None)

    def snapshot(self, now: float) -> InFlightState:
        """Pending prefixes, and those believed cached at ``now`` (reading changes nothing)."""
        believed: dict[str, tuple[float, CacheTTL]] = {}
        with self._lock:
            pending = frozenset(
                h
                for f in self._pending.values()
                if now - f.at <= PENDING_SECONDS
                for h, _e, _t in f.writes
            )
            for flight in self._begun.values():
                for h, expires, ttl in flight.writes:
                    if expires > now and expires > believed.get(h, (0.0, ttl))[0]:
                        believed[h] = (expires, ttl)
        return InFlightState(pending, {h: ttl for h, (_e, ttl) in believed.items()})


def _expire_pending(registry: dict[int, _Flight], now: float) -> None:
    for key in [k for k, f in registry.items() if now - f.at > PENDING_SECONDS]:
        del registry[key]


def _last_expiry(flight: _Flight) -> float:
    return max((expires for _h, expires, _t in flight.writes), default=0.0)


def _cap(registry: dict[int, _Flight]) -> None:
    while len(registry) > PENDING_CAP:
        del registry[next(iter(registry))]  # the oldest (insertion order)
