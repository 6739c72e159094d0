"""The cache planner: where Claude's cache markers go, and with which TTL.

``CachePlanner`` (the only stateful part: a store and a clock) turns a request into a frozen
``CachePlan``; ``observe`` feeds real usage back. The logic lives in pure modules: ``rules``
(Claude's marker rules, the minimum), ``placement`` (sites and the cheapest set), ``ttl``
(expected cost of none / 5m / 1h), ``reuse`` (how often prefixes come back), ``stability``
(volatile text), ``scan`` (the request's blocks, hashes and raw counts) and ``plan`` (the plan,
its explanation and its reconciliation with usage). The planner's state lives in ``history``
(reuse records in the store) and ``inflight`` (requests sent and begun, in memory).
``protocol`` declares what the chat model asks of a planner (``Planner``); ``as_planner``
adapts a planner of the user's that has only ``plan`` (and maybe ``observe``).
"""

from __future__ import annotations

from langchain_claude_relay.planner.plan import (
    Breakpoint,
    BreakpointOutcome,
    CachePlan,
    Observation,
    PlannedBlock,
    UsageLike,
)
from langchain_claude_relay.planner.planner import CachePlanner, default_planner
from langchain_claude_relay.planner.protocol import Planner, as_planner
from langchain_claude_relay.planner.rules import validate_user_markers
from langchain_claude_relay.planner.stability import PrefixStabilityWarning
from langchain_claude_relay.planner.ttl import TTLPolicy

__all__ = [
    "CachePlanner",
    "default_planner",
    "Planner",
    "as_planner",
    "CachePlan",
    "Breakpoint",
    "PlannedBlock",
    "Observation",
    "BreakpointOutcome",
    "UsageLike",
    "TTLPolicy",
    "PrefixStabilityWarning",
    "validate_user_markers",
]
