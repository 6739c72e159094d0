"""One normalizer for every relay usage dialect: plain input, cache reads, cache writes by TTL.

Relays report Claude's usage in many shapes (the dialects are the tables below).
``normalize_usage`` turns any of them into one ``NormalizedUsage`` where the four input kinds
are disjoint, so ``total_input_tokens == input + cache read + cache write`` and nothing is counted
twice.

Fields read (everything else is ignored; field names are data, in the tables below):

* prompt count: ``prompt_tokens`` (OpenAI style), else ``input_tokens``.
* output: ``completion_tokens``, else ``output_tokens``; reasoning:
  ``completion_tokens_details.reasoning_tokens`` or ``output_tokens_details.reasoning_tokens``.
* cache reads: ``prompt_tokens_details.cached_tokens``, ``input_tokens_details.cached_tokens``,
  top-level ``cache_read_input_tokens`` and DeepSeek-style ``prompt_cache_hit_tokens``.
* cache writes: ``cache_creation_input_tokens``, ``cache_write_tokens``,
  ``cache_creation_tokens``, ``cached_creation_tokens``, ``write_cached_tokens``,
  ``cache_write_input_tokens``, at the top level or in ``prompt_tokens_details`` /
  ``input_tokens_details``.
* writes by TTL: ``cache_creation.{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``
  (also ``cache_creation_token_details``, LiteLLM), at the top level or in the details, and the
  flat new-api style fields (``claude_cache_creation_5_m_tokens``, ``cached_creation_1h_tokens``,
  ...).
* where inference ran: top-level ``inference_geo`` (Anthropic's data residency: ``"us"`` is
  billed at 1.1x on Opus 4.6, Sonnet 4.6 and later; OpenAI-format relays that pass it through
  are read the same). See rule 5.

Rules (each is tested):

1. **One fact, several fields: take the max, never the sum.** Relays copy the same reads into
   ``cached_tokens`` and ``cache_read_input_tokens`` (LiteLLM sends both); the writes into
   ``cache_creation_input_tokens`` and ``cache_write_tokens``. They are the same tokens.
2. **Does the prompt count include the cached tokens?** Anthropic's ``input_tokens`` excludes
   them. For a ``prompt_tokens`` count, three dialects exist: it includes reads and writes (OpenAI,
   OpenRouter, current LiteLLM, new-api), it includes reads only (LiteLLM before cache writes were
   added: ``prompt_tokens = input + cache_read``), or it includes neither (one-api and older
   new-api relays copy Anthropic's ``input_tokens`` into it). Decided in this order:

   a. reads and writes both 0: it does not matter (both flags ``None``);
   b. the dialect says so: new-api's ``usage_semantic`` about ``prompt_tokens``
      (``"anthropic"``: neither included; ``"openai"``: both, when that is not negative); or
      the count is an ``input_tokens`` (no or a zero ``prompt_tokens``) next to Anthropic's own
      cache fields (``cache_read_input_tokens``, ``cache_creation_input_tokens``,
      ``cache_creation``): Anthropic's convention, neither included. An ``input_tokens`` in any
      other company (OpenAI's Responses API, gateways that put the full input there) is read
      like ``prompt_tokens``;
   c. ``total_tokens`` present and ``!= prompt + completion``: it tells the dialect when it equals
      ``prompt + read + write + completion`` (neither included) or ``prompt + write +
      completion`` (reads only);
   d. otherwise the interpretation that **subtracts the most without going negative**: all of
      reads and writes if ``prompt >= read + write``, else reads only if ``prompt >= read``, else
      neither.

   Rule (d) never yields a negative count and never counts a cached token twice. Its ambiguous
   case: a relay that excludes cached tokens from a ``prompt_tokens`` that is nevertheless at
   least ``read + write`` (and says nothing in ``total_tokens`` or ``usage_semantic``) is read as
   including them, so plain input is *under*-reported by the cached amount: the price of never
   double counting. The flags ``prompt_includes_cached``/``prompt_includes_writes`` tell what was
   assumed.
3. **Writes by TTL.** No split reported: every write goes to ``write_ttl_hint`` (default
   ``"5m"``, what a marker without ``ttl`` gets) and ``write_split_known`` is ``False``. When
   the request's markers mix 1h and 5m, ``one_hour_share`` (the share of the input up to its
   last 1h marker, by the plan's estimate) splits them as Claude bills them: 1h writes from the
   highest read to the last 1h marker, 5m writes after it. A split
   that adds up to the total write field (or with no total field) is used as is
   (``write_split_known=True``). A split that disagrees with the total: the total is trusted. If
   the split is short, the reported parts stand and the remainder goes to the hinted TTL; if it
   is over, both parts are scaled down in proportion (1h rounded down, 5m takes the rest). Either
   way ``write_split_known`` is ``False``.
4. **Garbage.** A missing field or JSON ``null`` is 0 (or "not reported"). A count must be a
   non-negative integer no larger than ``MAX_TOKEN_COUNT``; relays that send numbers as strings
   are accepted (``"12"`` is 12), and so are integral floats (``12.0``). Anything else -- a
   negative number, a non-numeric or signed string, a fractional float, NaN, infinity, a bool, a
   list or object where a count belongs, a non-object where an object belongs -- raises
   ``APIResponseError`` naming the field. Nothing else escapes.
5. **Labels are not counts.** ``inference_geo`` is kept only when it is a geo the model table
   prices (``models.INFERENCE_GEO``: ``"global"``, ``"us"``; case and surrounding spaces
   ignored). Anything else -- another type, a long or odd string, a geo the table does not know
   -- is ignored (``None``: priced at 1x), never an error: a bad label must not void the
   counts. A well-formed geo the table does not know is warned about once, since its price
   may differ.

>>> u = normalize_usage({"prompt_tokens": 1200, "completion_tokens": 50,
...                      "prompt_tokens_details": {"cached_tokens": 1000}})
>>> (u.input_tokens, u.cache_read_tokens, u.total_input_tokens)
(200, 1000, 1200)
>>> normalize_usage({"input_tokens": 25, "output_tokens": 150, "inference_geo": "us"}).inference_geo
'us'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, cast

from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata

from langchain_claude_relay._plumbing import warn_once
from langchain_claude_relay.errors import APIResponseError, RequestValidationError
from langchain_claude_relay.models import GEO_LABEL, INFERENCE_GEO

__all__ = [
    "WriteTTL",
    "inference_geo_of",
    "MAX_TOKEN_COUNT",
    "NormalizedUsage",
    "normalize_usage",
    "reports_cache_writes",
    "with_inferred_writes",
    "chat_anthropic_usage_metadata",
    "from_usage_metadata",
]

WriteTTL = Literal["5m", "1h"]

MAX_TOKEN_COUNT = 10**12
"""Largest count accepted: a trillion tokens in one call is not a count but garbage."""

_MAX_DIGITS = len(str(MAX_TOKEN_COUNT))

# Containers of OpenAI-style details (Chat Completions, then the Responses API spelling).
_DETAIL_CONTAINERS = ("prompt_tokens_details", "input_tokens_details")
_OUTPUT_DETAIL_CONTAINERS = ("completion_tokens_details", "output_tokens_details")

# Fields that report cache reads: at the top level, and inside a details container.
_READ_FIELDS_TOP = ("cache_read_input_tokens", "prompt_cache_hit_tokens")
_READ_FIELDS_DETAILS = ("cached_tokens", "cache_read_input_tokens", "cache_read_tokens")

# Fields that report the total of cache writes (top level or inside a details container).
_WRITE_FIELDS = (
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "cached_creation_tokens",
    "write_cached_tokens",
    "cache_write_input_tokens",
)

# Objects holding writes by TTL (Anthropic's ``cache_creation``, LiteLLM's details name).
_SPLIT_CONTAINERS = ("cache_creation", "cache_creation_token_details")
_SPLIT_5M_IN_CONTAINER = "ephemeral_5m_input_tokens"
_SPLIT_1H_IN_CONTAINER = "ephemeral_1h_input_tokens"
# Flat fields holding writes by TTL (new-api and its forks, other gateways).
_SPLIT_5M_FLAT = (
    "claude_cache_creation_5_m_tokens",
    "cached_creation_5m_tokens",
    "cache_creation_5m_tokens",
    "write_cached_5min_tokens",
)
_SPLIT_1H_FLAT = (
    "claude_cache_creation_1_h_tokens",
    "cached_creation_1h_tokens",
    "cache_creation_1h_tokens",
    "write_cached_1hour_tokens",
)

# Fields whose presence marks Anthropic's convention (input_tokens excludes cached tokens).
_ANTHROPIC_CACHE_FIELDS = (
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
)
# Where inference ran (Anthropic's data residency), at the top level of the usage.
_GEO_FIELD = "inference_geo"
_GEO_MAX_CHARS = 32  # longer is not a geo: not even looked at
_NO_GEO = frozenset({"not_available"})  # what the API reports where no geo applies: 1x, quietly

# new-api's ``usage_semantic``: whether prompt_tokens includes the cached tokens.
_SEMANTICS: dict[str, bool] = {"openai": True, "anthropic": False}


class InputTotals:
    """Input totals derived from the counts by kind (of a call, a ledger entry or a summary)."""

    input_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int

    @property
    def cache_write_tokens(self) -> int:
        """All cache writes, 5-minute and 1-hour."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def total_input_tokens(self) -> int:
        """All input: plain + cache read + cache write (what the model actually read)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True)
class NormalizedUsage(InputTotals):
    """One call's token usage with disjoint input kinds.

    Attributes:
        input_tokens: plain (uncached) input tokens.
        cache_read_tokens: input tokens read from the cache.
        cache_write_5m_tokens: input tokens written to the cache with the 5-minute TTL.
        cache_write_1h_tokens: input tokens written to the cache with the 1-hour TTL.
        output_tokens: output tokens (reasoning included, as relays report it).
        reasoning_tokens: reasoning tokens within ``output_tokens``, when reported.
        write_split_known: ``True`` when the relay reported the 5m/1h split consistently.
        prompt_includes_cached: whether the relay's prompt count included the cache *reads*
            (OpenAI's "cached tokens"); ``None`` when there were none or it could not matter.
        prompt_includes_writes: whether the relay's prompt count included the cache writes;
            ``None`` when there were none or it could not matter.
        inference_geo: where inference ran, as ``usage.inference_geo`` reported it (a geo of
            ``models.INFERENCE_GEO``: ``"global"`` or ``"us"``); ``None`` when not reported.
            ``"us"`` costs 1.1x on every token kind of Opus 4.6, Sonnet 4.6 and later models.

    """

    input_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    reasoning_tokens: int | None = None
    write_split_known: bool = False
    prompt_includes_cached: bool | None = None
    prompt_includes_writes: bool | None = None
    inference_geo: str | None = None

    def __post_init__(self) -> None:
        counts = {
            "input_tokens": self.input_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_5m_tokens": self.cache_write_5m_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "output_tokens": self.output_tokens,
        }
        if self.reasoning_tokens is not None:
            counts["reasoning_tokens"] = self.reasoning_tokens
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                msg = f"NormalizedUsage.{name} must be a non-negative int, got {value!r}"
                raise ValueError(msg)
        if self.inference_geo is not None and self.inference_geo not in INFERENCE_GEO.geos:
            msg = (
                f"NormalizedUsage.inference_geo must be None or one of "
                f"{sorted(INFERENCE_GEO.geos)}, got {self.inference_geo!r}"
            )
            raise ValueError(msg)

    def to_usage_metadata(self) -> UsageMetadata:
        """LangChain's ``UsageMetadata`` for this usage, as ``ChatAnthropic`` reports a call.

        See ``chat_anthropic_usage_metadata``: ``input_tokens`` counts all input, the details
        never add up to more, and ``cache_creation`` is 0 once the 5m/1h split is given.
        """
        return chat_anthropic_usage_metadata(self)

    def to_dict(self) -> dict[str, int | bool | str | None]:
        """Return a JSON-able dict of the fields plus the two derived totals.

        ``inference_geo`` is in it only when the usage reported one (the dict is otherwise
        what it was before the field existed).
        """
        out: dict[str, int | bool | str | None] = asdict(self)
        if self.inference_geo is None:
            del out["inference_geo"]
        out["cache_write_tokens"] = self.cache_write_tokens
        out["total_input_tokens"] = self.total_input_tokens
        return out


def chat_anthropic_usage_metadata(usage: NormalizedUsage) -> UsageMetadata:
    """LangChain's ``UsageMetadata`` for a call, exactly as ``ChatAnthropic`` reports it.

    langchain-anthropic (1.7.10, 2026-11; the rule since langchain PR #35845, 2026-03) builds
    ``input_token_details`` from Anthropic's usage so that the details never add up to more
    than ``input_tokens``: ``cache_read``; the writes split by TTL in
    ``ephemeral_5m_input_tokens`` and ``ephemeral_1h_input_tokens``; and ``cache_creation``, the
    generic total, set to 0 once the split is there ("to avoid double counting"). Anthropic's
    API always sends the split, so ``ChatAnthropic`` always reports ``cache_creation == 0``.
    ``input_tokens`` counts all input (plain + reads + writes). LangSmith prices each detail at
    its own rate and the remainder (``input_tokens`` minus the details) at the input rate, so
    the same call costs the same through either model.

    Writes whose TTL the relay did not report are given under the TTL they were booked at
    (``write_ttl_hint``: what the markers asked for), the same as ``cost_usd`` prices them.

    >>> usage = NormalizedUsage(input_tokens=20, cache_read_tokens=3000,
    ...                         cache_write_5m_tokens=0, cache_write_1h_tokens=1500,
    ...                         output_tokens=40)
    >>> meta = chat_anthropic_usage_metadata(usage)
    >>> meta["input_tokens"], sorted(meta["input_token_details"].items())[:2]
    (4520, [('cache_creation', 0), ('cache_read', 3000)])
    >>> meta["input_token_details"]["ephemeral_1h_input_tokens"]
    1500

    Args:
        usage: the call's normalized usage.

    Returns:
        The usage metadata (``output_token_details.reasoning`` when reasoning was reported).
    """
    split = usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
    creation = 0 if split > 0 else usage.cache_write_tokens
    details = {
        "cache_read": usage.cache_read_tokens,
        "cache_creation": creation,
        "ephemeral_5m_input_tokens": usage.cache_write_5m_tokens,
        "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
    }
    metadata = UsageMetadata(
        input_tokens=usage.total_input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_input_tokens + usage.output_tokens,
        # InputTokenDetails allows provider-specific keys; the TTL split is Anthropic's.
        input_token_details=cast(InputTokenDetails, details),
    )
    if usage.reasoning_tokens is not None:
        metadata["output_token_details"] = OutputTokenDetails(reasoning=usage.reasoning_tokens)
    return metadata


def normalize_usage(
    raw: Mapping[str, Any] | None,
    *,
    write_ttl_hint: WriteTTL | None = None,
    one_hour_share: float | None = None,
) -> NormalizedUsage:
    """Normalize a relay's ``usage`` object, whatever its dialect (rules in the module doc).

    Args:
        raw: the ``usage`` object as parsed from JSON (``None`` or ``{}`` when the relay sent
            none: all counts are 0).
        write_ttl_hint: the TTL to book cache writes under when the relay does not report the
            5m/1h split (the TTL the request's markers asked for); ``None`` means ``"5m"``.
        one_hour_share: for a request whose markers mix 1h and 5m, the share of its input
            (0 to 1) up to its last 1h marker: unsplit writes up to there are booked at 1h,
            the rest at 5m (rule 3). Ignored when the relay reports the split.

    Returns:
        The normalized usage.

    Raises:
        APIResponseError: if the usage holds garbage (negative, non-numeric, fractional or
            absurdly large counts, or a non-object where an object belongs).
        RequestValidationError: if ``write_ttl_hint`` is not ``"5m"``, ``"1h"`` or ``None``.

    """
    if write_ttl_hint not in (None, "5m", "1h"):
        msg = f"write_ttl_hint must be '5m', '1h' or None, got {write_ttl_hint!r}"
        raise RequestValidationError(msg)
    if raw is None:
        raw = {}
    usage = _mapping(raw, "usage")
    details = [
        (f"usage.{name}", d)
        for name in _DETAIL_CONTAINERS
        if (d := _optional_mapping(usage, name, "usage")) is not None
    ]

    prompt_tokens = _count(usage, "prompt_tokens")
    input_tokens = _count(usage, "input_tokens")
    completion = _first_nonzero(_count(usage, "completion_tokens"), _count(usage, "output_tokens"))
    total = _count(usage, "total_tokens")

    reads = _max_of(
        [_count(usage, f) for f in _READ_FIELDS_TOP]
        + [_count(d, f, path) for path, d in details for f in _READ_FIELDS_DETAILS]
    )
    writes_total = _max_of(
        [_count(usage, f) for f in _WRITE_FIELDS]
        + [_count(d, f, path) for path, d in details for f in _WRITE_FIELDS]
    )
    split_5m, split_1h = _write_split(usage, details)
    write_5m, write_1h, split_known = _reconcile_writes(
        writes_total, split_5m, split_1h, write_ttl_hint or "5m"
    )
    writes = write_5m + write_1h
    reads_n = reads or 0

    declared: bool | None
    if prompt_tokens or input_tokens is None:
        prompt = prompt_tokens or 0
        semantic = usage.get("usage_semantic")  # describes prompt_tokens only
        declared = _SEMANTICS.get(semantic.lower()) if isinstance(semantic, str) else None
    else:
        prompt = input_tokens
        anthropic_shaped = any(usage.get(f) is not None for f in _ANTHROPIC_CACHE_FIELDS)
        declared = False if anthropic_shaped else None
    plain, includes_reads, includes_writes = _infer_plain_input(
        prompt, reads_n, writes, completion or 0, total, declared=declared
    )
    if one_hour_share is not None and not split_known and split_5m is None and writes:
        # Claude bills 1h from the highest read to the last 1h marker, 5m after it
        up_to_last_1h = round(min(max(one_hour_share, 0.0), 1.0) * (plain + reads_n + writes))
        write_1h = min(writes, max(0, up_to_last_1h - reads_n))
        write_5m = writes - write_1h
    return NormalizedUsage(
        input_tokens=plain,
        cache_read_tokens=reads_n,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=completion or 0,
        reasoning_tokens=_reasoning(usage),
        write_split_known=split_known,
        prompt_includes_cached=includes_reads,
        prompt_includes_writes=includes_writes,
        inference_geo=inference_geo_of(usage),
    )


def inference_geo_of(usage: Any) -> str | None:
    """Where inference ran, from a raw usage object's ``inference_geo`` (rule 5 of the module).

    Never raises: a geo the model table prices is returned in lower case; anything else
    (missing, another type, an unknown or malformed label) is ``None``.

    >>> inference_geo_of({"inference_geo": " US "}), inference_geo_of({"inference_geo": 1})
    ('us', None)

    Args:
        usage: the ``usage`` object as parsed from JSON (any value).

    Returns:
        The geo, or ``None``.
    """
    value = usage.get(_GEO_FIELD) if isinstance(usage, Mapping) else None
    if not isinstance(value, str) or len(value) > _GEO_MAX_CHARS:
        return None
    geo = value.strip().lower()
    if geo in INFERENCE_GEO.geos:
        return geo
    if GEO_LABEL.fullmatch(geo) and geo not in _NO_GEO:
        warn_once(  # one key, one message: a relay inventing labels grows nothing
            ("unknown_inference_geo",),
            "the usage reports an inference_geo that langchain-claude-relay's model table does "
            f"not price (it knows {sorted(INFERENCE_GEO.geos)}): such calls are costed at "
            "standard rates (1x). Check Anthropic's data-residency pricing.",
        )
    return None


def _infer_plain_input(
    prompt: int,
    reads: int,
    writes: int,
    completion: int,
    total: int | None,
    *,
    declared: bool | None,
) -> tuple[int, bool | None, bool | None]:
    """Return plain input and what the prompt count included (rule 2 of the module).

    ``declared`` is what the dialect states: ``False`` for Anthropic's convention (excludes),
    ``True`` for new-api's ``usage_semantic: "openai"`` (includes), ``None`` when unstated.
    """
    if reads == 0 and writes == 0:
        return prompt, None, None
    included: tuple[bool, bool]
    if declared is False or total == prompt + reads + writes + completion:
        included = (False, False)
    elif declared is True and prompt >= reads + writes:
        included = (True, True)
    elif writes and reads <= prompt and total == prompt + writes + completion:
        included = (True, False)
    elif prompt >= reads + writes:
        included = (True, True)
    elif prompt >= reads:
        included = (True, False)
    else:
        included = (False, False)
    plain = prompt - (reads if included[0] else 0) - (writes if included[1] else 0)
    return (
        plain,
        included[0] if reads else None,
        included[1] if writes else None,
    )


def reports_cache_writes(raw: Mapping[str, Any] | None) -> bool:
    """Whether a usage object gives a cache-write field of any dialect (a 0 included, not null).

    A relay in OpenAI's own shape reports ``cached_tokens`` (reads) and nothing for writes: the
    tokens written then look like plain input, although Claude bills them at 1.25x (5m) or 2x
    (1h).

    >>> reports_cache_writes({"prompt_tokens_details": {"cached_tokens": 900}})
    False
    >>> reports_cache_writes({"cache_write_tokens": 0})  # OpenRouter's field, a 0 included
    True
    >>> reports_cache_writes({"cache_creation_input_tokens": None})  # a null tells nothing
    False
    """
    if not isinstance(raw, Mapping):
        return False
    containers = (raw.get(name) for name in _DETAIL_CONTAINERS)
    scopes = [raw, *(c for c in containers if isinstance(c, Mapping))]
    names = (*_WRITE_FIELDS, *_SPLIT_CONTAINERS, *_SPLIT_5M_FLAT, *_SPLIT_1H_FLAT)
    return any(scope.get(name) is not None for scope in scopes for name in names)


def with_inferred_writes(
    usage: NormalizedUsage, writer_ends: Sequence[tuple[int, WriteTTL]]
) -> NormalizedUsage | None:
    """``usage`` with the cache writes a relay did not report, inferred from the markers sent.

    For a relay whose usage reports reads but has no write field (``reports_cache_writes`` is
    false: OpenAI's own shape), where the markers are known to reach Claude. Claude's rule:
    everything from the highest read to the last marker whose prefix reaches the minimum is
    written, 1h up to the last 1h marker. The prefix lengths are the plan's calibrated
    estimates, so the result is an estimate; it never takes more than the plain input there is.

    Args:
        usage: the relay's usage, normalized (no writes: they are in ``input_tokens``).
        writer_ends: ``(estimated prefix tokens, TTL)`` of each marker that writes unless read
            (its prefix reaches the model's minimum).

    Returns:
        The usage with writes moved out of the plain input, or ``None`` when no marker ends
        past what was read (nothing to infer) or the usage already has writes.

    >>> u = NormalizedUsage(input_tokens=5000, cache_read_tokens=2000, cache_write_5m_tokens=0,
    ...     cache_write_1h_tokens=0, output_tokens=10)
    >>> w = with_inferred_writes(u, [(2000, "1h"), (6900, "5m")])
    >>> w.cache_write_5m_tokens, w.cache_write_1h_tokens, w.input_tokens
    (4900, 0, 100)
    >>> with_inferred_writes(u, [(1500, "5m")]) is None      # the read covered it
    True
    """
    read = usage.cache_read_tokens
    if usage.cache_write_tokens or not writer_ends:
        return None
    end_all = max(end for end, _ in writer_ends)
    end_1h = max((end for end, ttl in writer_ends if ttl == "1h"), default=read)
    write_all = min(max(0, end_all - read), usage.input_tokens)
    if write_all <= 0:
        return None
    write_1h = min(max(0, end_1h - read), write_all)
    return replace(
        usage,
        input_tokens=usage.input_tokens - write_all,
        cache_write_5m_tokens=write_all - write_1h,
        cache_write_1h_tokens=write_1h,
    )


def _write_split(
    usage: Mapping[str, Any], details: list[tuple[str, Mapping[str, Any]]]
) -> tuple[int | None, int | None]:
    """Return the reported writes by TTL (max over the fields carrying them), or ``None``."""
    scopes: list[tuple[str, Mapping[str, Any]]] = [("usage", usage), *details]
    fives: list[int | None] = []
    ones: list[int | None] = []
    for path, scope in scopes:
        for name in _SPLIT_CONTAINERS:
            box = _optional_mapping(scope, name, path)
            if box is not None:
                fives.append(_count(box, _SPLIT_5M_IN_CONTAINER, f"{path}.{name}"))
                ones.append(_count(box, _SPLIT_1H_IN_CONTAINER, f"{path}.{name}"))
        fives.extend(_count(scope, f, path) for f in _SPLIT_5M_FLAT)
        ones.extend(_count(scope, f, path) for f in _SPLIT_1H_FLAT)
    five, one = _max_of(fives), _max_of(ones)
    if five is None and one is None:
        return None, None
    return five or 0, one or 0


def _reconcile_writes(
    total: int | None, five: int | None, one: int | None, hint: WriteTTL
) -> tuple[int, int, bool]:
    """Return the writes by TTL and whether the split is known (rule 3 of the module)."""
    if five is None or one is None:  # no split reported
        all_writes = total or 0
        return (all_writes, 0, False) if hint == "5m" else (0, all_writes, False)
    reported = five + one
    if total is None or total == reported:
        return five, one, True
    if reported < total:
        rest = total - reported
        return (five + rest, one, False) if hint == "5m" else (five, one + rest, False)
    scaled_one = one * total // reported
    return total - scaled_one, scaled_one, False


def _reasoning(usage: Mapping[str, Any]) -> int | None:
    values: list[int | None] = []
    for name in _OUTPUT_DETAIL_CONTAINERS:
        box = _optional_mapping(usage, name, "usage")
        if box is not None:
            values.append(_count(box, "reasoning_tokens", f"usage.{name}"))
    return _max_of(values)


def _max_of(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _first_nonzero(first: int | None, second: int | None) -> int | None:
    """Return ``first`` unless it is missing or 0 and ``second`` was reported."""
    return second if not first and second is not None else first


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        msg = (
            f"the relay sent a malformed usage: {path} must be a JSON object, "
            f"got {type(value).__name__} {_show(value)}"
        )
        raise APIResponseError(msg)
    return value


def _optional_mapping(scope: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any] | None:
    value = scope.get(name)
    return None if value is None else _mapping(value, f"{path}.{name}")


def _count(scope: Mapping[str, Any], name: str, path: str = "usage") -> int | None:
    """Return the count in ``scope[name]``, ``None`` if missing or null (rule 4 of the module)."""
    value = scope.get(name)
    if value is None:
        return None
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value  # the usual case, without the checks below (a bool is no int here)
    where = f"{path}.{name}"
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text.lstrip("0") or "0"
        if text.isascii() and text.isdigit() and len(digits) <= _MAX_DIGITS:
            number = int(digits)
    if number is None or number < 0 or number > MAX_TOKEN_COUNT:
        msg = (
            f"the relay sent a malformed usage: {where} must be a token count (a non-negative "
            f"integer up to {MAX_TOKEN_COUNT}), got {type(value).__name__} {_show(value)}"
        )
        raise APIResponseError(msg)
    return number


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace our error
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_usage_metadata(usage_metadata: Mapping[str, Any]) -> NormalizedUsage:
    """A LangChain ``usage_metadata`` (any chat model's) split into disjoint kinds.

    ``input_tokens`` counts all input. Writes are ``cache_creation`` or the 5m/1h split,
    whichever is larger, so both conventions read right: ``ChatAnthropic``'s (``cache_creation``
    0 once the split is there) and the older one (``cache_creation`` the total, split again).
    A write without a TTL is a 5m write (a marker without ``ttl``).

    >>> meta = {"input_tokens": 4520, "output_tokens": 40, "input_token_details": {
    ...     "cache_read": 3000, "cache_creation": 0, "ephemeral_1h_input_tokens": 1500}}
    >>> usage = from_usage_metadata(meta)
    >>> usage.input_tokens, usage.cache_read_tokens, usage.cache_write_1h_tokens
    (20, 3000, 1500)
    """
    details = usage_metadata.get("input_token_details") or {}
    if not isinstance(details, Mapping):
        details = {}
    total = _positive(usage_metadata.get("input_tokens"))
    read = _positive(details.get("cache_read"))
    write_1h = _positive(details.get("ephemeral_1h_input_tokens"))
    write_5m = _positive(details.get("ephemeral_5m_input_tokens"))
    writes = max(_positive(details.get("cache_creation")), write_5m + write_1h)
    return NormalizedUsage(
        input_tokens=max(total - read - writes, 0),
        cache_read_tokens=read,
        cache_write_5m_tokens=writes - write_1h,
        cache_write_1h_tokens=write_1h,
        output_tokens=_positive(usage_metadata.get("output_tokens")),
    )


def _positive(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
