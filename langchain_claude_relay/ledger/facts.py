"""Cache facts: what a call's cache plan and observation say about the prefixes it used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_claude_relay.ledger.checks import REASON, safe_count, safe_hash, safe_label


@dataclass(frozen=True)
class CacheFacts:
    """What a call's cache plan and observation say about prefixes (see ``cache_facts``)."""

    predicted_read_tokens: int | None = None
    written_prefixes: tuple[str, ...] = ()
    read_prefix: str | None = None
    miss_reason: str | None = None


def cache_facts(
    cache_plan: Mapping[str, Any] | None,
    cache_observation: Mapping[str, Any] | None,
    *,
    read_tokens: int = 0,
    write_tokens: int = 0,
) -> CacheFacts:
    """Read the prefix facts from ``response_metadata["cache_plan"]`` / ``["cache_observation"]``.

    Keys read (anything else is ignored; wrong types are treated as missing):

    * observation (the planner's ``Observation.to_dict()``): ``predicted_read_tokens``, and
      ``breakpoints``: per breakpoint ``prefix_hash``, ``predicted`` and ``actual`` (``"read"``,
      ``"write"`` or ``"none"``) and ``miss_reason``. Breakpoints actually written give
      ``written_prefixes``; the observation's ``read_prefix`` (the entry the read hit, which
      may be no breakpoint of the call: an earlier turn's tail found by lookback) gives
      ``read_prefix``, else the deepest breakpoint actually read; the first breakpoint whose
      outcome differs from its prediction gives ``miss_reason``. Top-level
      ``written_prefixes`` / ``miss_reason`` are read too when present.
    * plan (``CachePlan.to_dict()``), used without an observation: ``predicted_read_tokens``
      and ``breakpoints[].prefix_hash``. A call that read nothing and wrote something is taken
      to have written at every planned breakpoint; a call that read something has no known
      prefixes (which breakpoint was hit cannot be told from the plan alone).

    Without prefix hashes the facts hold no prefixes, and wasted writes fall back to "did any
    later call of the same model and relay read anything".

    Args:
        cache_plan: the plan's ``to_dict()``, or ``None``.
        cache_observation: the observation's ``to_dict()``, or ``None``.
        read_tokens: the call's cache-read tokens.
        write_tokens: the call's cache-write tokens.

    Returns:
        The facts (empty when neither is present).

    """
    plan = cache_plan if isinstance(cache_plan, Mapping) else {}
    seen = cache_observation if isinstance(cache_observation, Mapping) else None
    predicted = safe_count((seen or {}).get("predicted_read_tokens"))
    if predicted is None:
        predicted = safe_count(plan.get("predicted_read_tokens"))
    if seen is None:
        written: tuple[str, ...] = ()
        if read_tokens == 0 and write_tokens > 0:
            written = _hash_list([b.get("prefix_hash") for b in _mappings(plan.get("breakpoints"))])
        return CacheFacts(predicted_read_tokens=predicted, written_prefixes=written)
    written = _hash_list(seen.get("written_prefixes"))
    read = _hash_or_none(seen.get("read_prefix"))  # the entry hit, where the observation says
    reason = _reason_or_none(seen.get("miss_reason"))
    deepest_read: str | None = None
    for point in _mappings(seen.get("breakpoints")):
        prefix = _hash_or_none(point.get("prefix_hash"))
        actual = point.get("actual")
        if prefix is not None and actual == "write":
            written += (prefix,)
        elif prefix is not None and actual == "read":
            deepest_read = prefix  # in prefix order: the deepest read wins
        if reason is None and actual != point.get("predicted"):
            reason = _reason_or_none(point.get("miss_reason"))
    read = read if read is not None else deepest_read
    return CacheFacts(
        predicted_read_tokens=predicted,
        written_prefixes=tuple(dict.fromkeys(written)),
        read_prefix=read,
        miss_reason=reason,
    )


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _hash_or_none(value: Any) -> str | None:
    return safe_hash(value) if isinstance(value, str) and value.strip() else None


def _reason_or_none(value: Any) -> str | None:
    return safe_label(value, REASON, 80) if isinstance(value, str) and value.strip() else None


def _hash_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(safe_hash(v) for v in value if isinstance(v, str) and v)
