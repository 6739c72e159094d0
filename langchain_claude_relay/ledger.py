"""The cost ledger: one entry per chat call, numbers and hashes only, kept across processes.

Each entry holds a call's token counts by kind, its cost and what it would have cost uncached,
and what the planner predicted: the prefix hashes the call wrote at, the prefix its read is
attributed to, the tokens it expected to read and, for a miss, the reason. It never holds prompt
text, keys or URLs: prefix hashes and the relay URL's hash are hex digests, checked on entry.

Ledgers:

* ``DiskLedger``: ``diskcache`` in ``ledger_directory()`` (``$CLAUDE_RELAY_STATE_DIR/ledger`` or
  the user cache directory). Append-only, safe across processes (entries are appended in SQLite
  transactions under incrementing keys), bounded (the last ``max_entries`` entries and at most
  ``size_limit`` bytes). ``record`` only queues the entry (about a microsecond): a background
  thread commits queued entries in batches, so a chat call never waits for SQLite (a commit
  from the call's thread measured a median of ~200-250 µs, with a p99 of milliseconds when
  SQLite checkpoints or another process holds the lock). Queued entries are committed within
  ~50 ms, and by ``flush()``, ``entries()``, ``close()`` and at interpreter exit. A process
  killed with SIGKILL (or a hard crash) loses only the entries it had queued and not yet
  committed -- at most the last ~50 ms of calls; committed entries are never lost.
* ``MemoryLedger``: a bounded list in memory (tests, notebooks, the fallback).
* ``default_ledger()``: the process-wide ledger, a ``DiskLedger`` opened on first use behind a
  ``FallbackLedger``: if the disk fails (read-only or missing directory, a file where the
  directory should be, a corrupted database, a full disk) it warns once and keeps later entries
  in memory; it never raises into a chat call.

``summarize`` (and ``Ledger.summary``) turns entries into a ``LedgerSummary``: calls, hit rate,
tokens by kind, cost, saved vs. uncached, wasted writes and predicted-vs-actual hits.

>>> ledger = MemoryLedger()
>>> ledger.record(LedgerEntry("c1", 0.0, "claude-sonnet-4-6", 100, 0, 10_000, 0, 50,
...                           cost_usd=0.03855, uncached_cost_usd=0.03105,
...                           written_prefixes=("ab" * 16,)))
>>> ledger.record(LedgerEntry("c2", 60.0, "claude-sonnet-4-6", 100, 10_000, 0, 0, 50,
...                           cost_usd=0.00405, uncached_cost_usd=0.03105,
...                           read_prefix="ab" * 16))
>>> s = ledger.summary()
>>> (s.calls, s.hit_rate, s.wasted_write_tokens, round(s.saved_usd, 5))
(2, 0.5, 0, 0.0195)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import errno
import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import uuid
import warnings
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from langchain_claude_relay.cost import call_cost_usd, uncached_cost_usd
from langchain_claude_relay.errors import ClaudeRelayError
from langchain_claude_relay.models import ModelPrices, model_family, price_table
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "STATE_DIR_ENV",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_SIZE_LIMIT",
    "LedgerUnavailableError",
    "LedgerEntry",
    "CacheFacts",
    "cache_facts",
    "hash_base_url",
    "LedgerSummary",
    "summarize",
    "Ledger",
    "MemoryLedger",
    "DiskLedger",
    "FallbackLedger",
    "ledger_directory",
    "default_ledger",
    "set_default_ledger",
]

logger = logging.getLogger(__name__)

STATE_DIR_ENV = "CLAUDE_RELAY_STATE_DIR"
"""Environment variable naming the package's state directory (the ledger is its ``ledger/``)."""

APP_NAME = "langchain-claude-relay"
DEFAULT_MAX_ENTRIES = 1_000_000
"""Entries a ``DiskLedger`` keeps (the oldest go first)."""
DEFAULT_SIZE_LIMIT = 2**30
"""Bytes a ``DiskLedger`` may use on disk (diskcache culls the oldest entries beyond it)."""
DEFAULT_MEMORY_ENTRIES = 100_000
"""Entries a ``MemoryLedger`` keeps by default (also the fallback's bound)."""

_SCHEMA_VERSION = 1
_FLUSH_TIMEOUT = 30.0  # seconds flush()/close() wait for the writer before giving up
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never hang longer than this per ledger
_MAX_QUEUED = 100_000  # a writer this far behind is stuck: record() fails over
_LINGER = 0.05  # seconds the writer waits after the first queued entry to batch more
_BATCH_MAX = 512  # ... unless this many are queued
_DB_TIMEOUT = 10.0  # SQLite busy timeout per attempt (diskcache retries after it)
_HEX = re.compile(r"[0-9a-f]{8,128}")
_LABEL = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: ids and codes
_REASON = re.compile(r"[\x20-\x7e]{1,80}")  # one line of printable ASCII: a short code
_PER_TOKEN = 1e-6
_COUNT_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "predicted_read_tokens",
)


class LedgerUnavailableError(ClaudeRelayError):
    """The ledger cannot store entries (its directory or database failed, or it was closed)."""


# -- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    """One chat call as the ledger keeps it: numbers and hashes, never prompt text or keys.

    Attributes:
        call_id: an id for the call (the relay's response id or a random one).
        timestamp: when the call started, in seconds (from the injected clock).
        model: the model id as the relay spells it.
        input_tokens: plain (uncached) input tokens.
        cache_read_tokens: input tokens read from the cache.
        cache_write_5m_tokens: input tokens written with the 5-minute TTL.
        cache_write_1h_tokens: input tokens written with the 1-hour TTL.
        output_tokens: output tokens.
        cost_usd: the call's cost with cache prices, ``None`` if the model is unpriced.
        uncached_cost_usd: the same tokens without caching, ``None`` if unpriced.
        predicted_read_tokens: the tokens the planner expected to read (``None``: no prediction).
        written_prefixes: prefix hashes (hex) the call wrote at: its markers beyond the read.
        read_prefix: the prefix hash the read is attributed to, if known.
        miss_reason: a short code for why an expected read did not happen, if known.
        base_url_hash: ``hash_base_url(relay URL)``; never the URL itself.

    Raises:
        ValueError: (on construction) for a negative or non-integer count, a negative or
            non-finite cost or timestamp, or a hash that is not hex (text is refused, so prompt
            text cannot end up in the ledger by mistake). ``from_usage`` sanitizes instead.

    """

    call_id: str
    timestamp: float
    model: str
    input_tokens: int
    cache_read_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    output_tokens: int
    cost_usd: float | None
    uncached_cost_usd: float | None
    predicted_read_tokens: int | None = None
    written_prefixes: tuple[str, ...] = ()
    read_prefix: str | None = None
    miss_reason: str | None = None
    base_url_hash: str | None = None

    def __post_init__(self) -> None:
        if type(self.written_prefixes) is not tuple:
            object.__setattr__(self, "written_prefixes", tuple(self.written_prefixes))
        for name in ("call_id", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _LABEL.fullmatch(value):
                msg = (
                    f"LedgerEntry.{name} must be 1-200 printable ASCII characters, "
                    f"got {_kind(value)}"
                )
                raise ValueError(msg)
        for name in _COUNT_FIELDS:
            value = getattr(self, name)
            if value is not None or name != "predicted_read_tokens":
                _check_count(name, value)
        for name in ("timestamp", "cost_usd", "uncached_cost_usd"):
            value = getattr(self, name)
            if value is not None or name == "timestamp":
                _check_number(name, value)
        for value in (*self.written_prefixes, self.read_prefix, self.base_url_hash):
            if value is not None and not (isinstance(value, str) and _HEX.fullmatch(value)):
                msg = (
                    "LedgerEntry prefix and URL hashes must be 8-128 lowercase hex digits "
                    f"(the ledger never stores text), got {_kind(value)}"
                )
                raise ValueError(msg)
        if self.miss_reason is not None and not _is_reason(self.miss_reason):
            msg = (
                "LedgerEntry.miss_reason must be a short code (1-80 printable ASCII characters), "
                f"got {_kind(self.miss_reason)}"
            )
            raise ValueError(msg)

    @property
    def cache_write_tokens(self) -> int:
        """All cache writes, 5-minute and 1-hour."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def total_input_tokens(self) -> int:
        """All input: plain + cache read + cache write."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able dict (``written_prefixes`` as a list)."""
        out = asdict(self)
        out["written_prefixes"] = list(self.written_prefixes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Rebuild an entry from ``to_dict()`` output.

        Args:
            data: the dict (unknown keys are ignored).

        Returns:
            The entry.

        Raises:
            ValueError: if a field is missing or invalid.

        """
        names = cls.__dataclass_fields__
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            msg = f"not a ledger entry: {exc}"
            raise ValueError(msg) from exc

    @classmethod
    def from_usage(
        cls,
        usage: NormalizedUsage,
        *,
        model: str,
        timestamp: float,
        call_id: str | None = None,
        base_url: str | None = None,
        predicted_read_tokens: int | None = None,
        written_prefixes: Iterable[str] = (),
        read_prefix: str | None = None,
        miss_reason: str | None = None,
    ) -> LedgerEntry:
        """Build an entry from a call's normalized usage, pricing it; never raises on labels.

        Costs come from ``cost.call_cost_usd`` / ``uncached_cost_usd`` (``None`` for a model
        that is not a priced Claude model). Labels are made safe rather than refused: an id or
        model with characters outside printable ASCII has them replaced and is cut to 200
        characters, a miss reason to 80; a prefix that is not a hex hash is replaced by its
        SHA-256 (so equal prefixes still match and no text is stored); a negative or non-integer
        prediction becomes ``None``.

        Args:
            usage: the call's normalized usage.
            model: the model id as the relay spells it.
            timestamp: when the call started (seconds, from the injected clock).
            call_id: the call's id; a random one when ``None``.
            base_url: the relay URL; only ``hash_base_url(base_url)`` is kept.
            predicted_read_tokens: what the planner expected to read.
            written_prefixes: prefix hashes the call wrote at.
            read_prefix: the prefix hash the read is attributed to.
            miss_reason: why an expected read did not happen.

        Returns:
            The entry.

        Raises:
            ValueError: if ``timestamp`` is negative or not finite.

        """
        priced = _family(model) is not None
        return cls(
            call_id=_safe_label(call_id or uuid.uuid4().hex, _LABEL, 200),
            timestamp=float(timestamp),
            model=_safe_label(model, _LABEL, 200),
            input_tokens=usage.input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_5m_tokens=usage.cache_write_5m_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=call_cost_usd(usage, model) if priced else None,
            uncached_cost_usd=uncached_cost_usd(usage, model) if priced else None,
            predicted_read_tokens=_safe_count(predicted_read_tokens),
            written_prefixes=tuple(_safe_hash(p) for p in written_prefixes),
            read_prefix=None if read_prefix is None else _safe_hash(read_prefix),
            miss_reason=None if miss_reason is None else _safe_label(miss_reason, _REASON, 80),
            base_url_hash=None if base_url is None else _cached_url_hash(base_url),
        )


def hash_base_url(base_url: str) -> str:
    """Hash a relay URL without its credentials: 16 hex digits.

    User info (``user:password@``), the query string and the fragment are dropped before
    hashing, and scheme and host are lower-cased, so the same relay always hashes the same and a
    key in the URL never reaches the ledger.

    >>> hash_base_url("https://u:sk-secret@Relay.example.com/v1/?key=x") == hash_base_url(
    ...     "https://relay.example.com/v1")
    True

    Args:
        base_url: the relay's base URL.

    Returns:
        The hash.

    """
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    canonical = f"{parts.scheme.lower()}://{host}{'' if port is None else f':{port}'}"
    canonical += parts.path.rstrip("/")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


_family = functools.lru_cache(maxsize=1024)(model_family)
_cached_url_hash = functools.lru_cache(maxsize=64)(hash_base_url)


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
      ``written_prefixes``; the deepest one actually read gives ``read_prefix``; the first
      breakpoint whose outcome differs from its prediction gives ``miss_reason``. Top-level
      ``written_prefixes`` / ``read_prefix`` / ``miss_reason`` are read too when present.
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
    predicted = _safe_count((seen or {}).get("predicted_read_tokens"))
    if predicted is None:
        predicted = _safe_count(plan.get("predicted_read_tokens"))
    if seen is None:
        written: tuple[str, ...] = ()
        if read_tokens == 0 and write_tokens > 0:
            written = _hash_list([b.get("prefix_hash") for b in _mappings(plan.get("breakpoints"))])
        return CacheFacts(predicted_read_tokens=predicted, written_prefixes=written)
    written = _hash_list(seen.get("written_prefixes"))
    read = _hash_or_none(seen.get("read_prefix"))
    reason = _reason_or_none(seen.get("miss_reason"))
    for point in _mappings(seen.get("breakpoints")):
        prefix = _hash_or_none(point.get("prefix_hash"))
        actual = point.get("actual")
        if prefix is not None and actual == "write":
            written += (prefix,)
        elif prefix is not None and actual == "read":
            read = prefix  # in prefix order: the deepest read wins
        if reason is None and actual != point.get("predicted"):
            reason = _reason_or_none(point.get("miss_reason"))
    return CacheFacts(
        predicted_read_tokens=predicted,
        written_prefixes=tuple(dict.fromkeys(written)),
        read_prefix=read,
        miss_reason=reason,
    )


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _hash_or_none(value: Any) -> str | None:
    return _safe_hash(value) if isinstance(value, str) and value.strip() else None


def _reason_or_none(value: Any) -> str | None:
    return _safe_label(value, _REASON, 80) if isinstance(value, str) and value.strip() else None


def _hash_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(_safe_hash(v) for v in value if isinstance(v, str) and v)


def _safe_hash(value: str) -> str:
    text = value.strip().lower()
    if _HEX.fullmatch(text):
        return text
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def _safe_label(value: str, pattern: re.Pattern[str], limit: int) -> str:
    text = str(value)[:limit]
    if pattern.fullmatch(text):
        return text
    cleaned = "".join(c if pattern.fullmatch(c) else "_" for c in text)
    return cleaned or "_"


def _safe_count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _is_reason(value: Any) -> bool:
    return isinstance(value, str) and _REASON.fullmatch(value) is not None


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"LedgerEntry.{name} must be a non-negative int, got {_kind(value)}"
        raise ValueError(msg)


def _check_number(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        msg = f"LedgerEntry.{name} must be a finite non-negative number, got {_kind(value)}"
        raise ValueError(msg)


def _kind(value: Any) -> str:
    """Describe a refused value without echoing it (it might be prompt text)."""
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return f"a {type(value).__name__}"


def _encode(entry: LedgerEntry) -> str:
    return json.dumps(
        [
            _SCHEMA_VERSION,
            entry.call_id,
            entry.timestamp,
            entry.model,
            entry.input_tokens,
            entry.cache_read_tokens,
            entry.cache_write_5m_tokens,
            entry.cache_write_1h_tokens,
            entry.output_tokens,
            entry.cost_usd,
            entry.uncached_cost_usd,
            entry.predicted_read_tokens,
            list(entry.written_prefixes),
            entry.read_prefix,
            entry.miss_reason,
            entry.base_url_hash,
        ],
        separators=(",", ":"),
    )


def _decode(value: Any) -> LedgerEntry | None:
    """Decode a stored entry; ``None`` for a row that is not one (foreign or damaged)."""
    try:
        row = json.loads(value)
        if not isinstance(row, list) or len(row) != 16 or row[0] != _SCHEMA_VERSION:
            return None
        (call_id, ts, model, plain, read, w5, w1h, out, cost, uncached, predicted) = row[1:12]
        return LedgerEntry(
            call_id,
            ts,
            model,
            plain,
            read,
            w5,
            w1h,
            out,
            cost,
            uncached,
            predicted,
            tuple(row[12]),
            *row[13:16],
        )
    except (ValueError, TypeError):
        return None


# -- summary ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerSummary:
    """Totals over ledger entries, ready to print (``to_table``) or serialize (``to_dict``).

    Attributes:
        calls: calls counted.
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

    @property
    def hit_rate(self) -> float | None:
        """Calls that read anything from the cache / calls (``None`` with no calls)."""
        return self.calls_with_read / self.calls if self.calls else None

    @property
    def cache_write_tokens(self) -> int:
        """All cache writes."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def total_input_tokens(self) -> int:
        """All input: plain + read + write."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

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
        out["hit_rate"] = self.hit_rate
        out["cache_write_tokens"] = self.cache_write_tokens
        out["total_input_tokens"] = self.total_input_tokens
        out["read_share"] = self.read_share
        out["saved_fraction"] = self.saved_fraction
        return out

    def to_table(self) -> str:
        """Return a readable, aligned report (what ``claude-relay stats`` prints)."""
        if not self.calls:
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
    means for wasted writes: a call's write is read by a later call.

    Args:
        entries: the entries, in any order.
        since: only entries with ``timestamp >= since`` count (also stored on the summary).

    Returns:
        The summary.

    """
    ordered = sorted(
        (e for e in entries if since is None or e.timestamp >= since), key=lambda e: e.timestamp
    )
    if not ordered:
        return LedgerSummary(since=since)
    wasted = _wasted_writes(ordered)
    prices: dict[str, ModelPrices | None] = {}
    cost = uncached = saved = wasted_usd = 0.0
    unpriced = predicted = predicted_hits = actual_hits = mispredicted = missed = 0
    reasons: Counter[str] = Counter()
    for entry, is_wasted in zip(ordered, wasted, strict=True):
        if entry.cost_usd is None:
            unpriced += 1
        else:
            cost += entry.cost_usd
            if entry.uncached_cost_usd is not None:
                uncached += entry.uncached_cost_usd
                saved += entry.uncached_cost_usd - entry.cost_usd
        if is_wasted:
            wasted_usd += _write_premium(entry, prices)
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
        input_tokens=sum(e.input_tokens for e in ordered),
        cache_read_tokens=sum(e.cache_read_tokens for e in ordered),
        cache_write_5m_tokens=sum(e.cache_write_5m_tokens for e in ordered),
        cache_write_1h_tokens=sum(e.cache_write_1h_tokens for e in ordered),
        output_tokens=sum(e.output_tokens for e in ordered),
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
        first_timestamp=ordered[0].timestamp,
        last_timestamp=ordered[-1].timestamp,
        since=since,
    )


def _wasted_writes(ordered: Sequence[LedgerEntry]) -> list[bool]:
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
        group = (entry.base_url_hash, _family(entry.model) or entry.model)
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
                    last_writer[(*group, prefix)] = i
            else:
                unread_unknown.setdefault(group, set()).add(i)
    return [e.cache_write_tokens > 0 and not r for e, r in zip(ordered, read, strict=True)]


def _write_premium(entry: LedgerEntry, cache: dict[str, ModelPrices | None]) -> float:
    """What the entry's writes cost above plain input (0 for an unpriced model)."""
    if entry.model not in cache:
        family = _family(entry.model)
        spec = price_table().get(family) if family is not None else None
        cache[entry.model] = spec.prices if spec is not None else None
    prices = cache[entry.model]
    if prices is None:
        return 0.0
    return _PER_TOKEN * (
        entry.cache_write_5m_tokens * (prices.cache_write_5m - prices.input)
        + entry.cache_write_1h_tokens * (prices.cache_write_1h - prices.input)
    )


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


# -- ledgers ----------------------------------------------------------------------------------


@runtime_checkable
class Ledger(Protocol):
    """Where calls are recorded. ``record`` is on every chat call's hot path."""

    def record(self, entry: LedgerEntry) -> None:
        """Append one entry."""
        ...

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """Entries in the order recorded, only those with ``timestamp >= since`` if given."""
        ...

    def summary(self, since: float | None = None) -> LedgerSummary:
        """``summarize(self.entries(since), since=since)``."""
        ...

    def flush(self) -> None:
        """Make every entry recorded so far durable (a no-op for memory ledgers)."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class MemoryLedger:
    """A thread-safe ledger in memory, keeping the last ``max_entries`` entries.

    Args:
        max_entries: how many entries to keep (the oldest go first).

    """

    def __init__(self, max_entries: int = DEFAULT_MEMORY_ENTRIES) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, got {max_entries}"
            raise ValueError(msg)
        self.max_entries = max_entries
        self._entries: deque[LedgerEntry] = deque(maxlen=max_entries)
        self._lock = threading.Lock()

    def record(self, entry: LedgerEntry) -> None:
        """Append one entry.

        Args:
            entry: the entry.

        Raises:
            TypeError: if ``entry`` is not a ``LedgerEntry``.

        """
        if not isinstance(entry, LedgerEntry):
            msg = f"a ledger records LedgerEntry objects, got {type(entry).__name__}"
            raise TypeError(msg)
        with self._lock:
            self._entries.append(entry)

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """Entries in the order recorded (only ``timestamp >= since`` if given)."""
        with self._lock:
            snapshot = list(self._entries)
        return [e for e in snapshot if since is None or e.timestamp >= since]

    def summary(self, since: float | None = None) -> LedgerSummary:
        """Summarize the entries (see ``summarize``)."""
        return summarize(self.entries(since), since=since)

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to release (entries stay readable)."""

    def __len__(self) -> int:
        return len(self._entries)


def ledger_directory(environ: Mapping[str, str] | None = None) -> Path:
    """Where the on-disk ledger lives: ``$CLAUDE_RELAY_STATE_DIR/ledger`` or the user cache dir.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        The directory (not created here).

    """
    env = os.environ if environ is None else environ
    state = env.get(STATE_DIR_ENV, "").strip()
    if state:
        return Path(state).expanduser() / "ledger"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME)) / "ledger"


_LIVE_DISK_LEDGERS: weakref.WeakSet[DiskLedger] = weakref.WeakSet()


class DiskLedger:
    """A ledger in a ``diskcache`` directory, shared by every process that opens it.

    Each entry is one diskcache queue item (``Cache.push``: an incrementing integer key in a
    SQLite transaction, so concurrent processes never collide) holding compact JSON -- numbers,
    hashes and the model id only. Entries beyond ``max_entries`` are dropped oldest first, and
    diskcache culls the oldest entries if the database outgrows ``size_limit``.

    With ``background=True`` (the default) ``record`` queues the entry and returns in about a
    microsecond; a daemon thread commits queued entries in batches, one transaction at most
    every 50 ms (``_LINGER``) or per 512 entries. ``flush``, ``entries``, ``close`` and
    interpreter exit commit what is queued. SIGKILL loses only the entries queued and not yet
    committed (at most the last ~50 ms of calls); committed entries survive any crash of the
    process (SQLite WAL; an OS crash or power loss may also roll back the last commits, as
    SQLite's ``synchronous=NORMAL`` allows). After ``os.fork`` the child starts with an empty
    queue (diskcache reconnects by itself). ``background=False`` commits inside ``record``
    (a median ~200-250 µs per call).

    A write failure (disk full, database damaged, directory removed or replaced) makes the
    ledger unusable: ``record``, ``flush`` and ``entries`` raise ``LedgerUnavailableError``
    from then on and ``unwritten()`` returns the entries that were not committed. Use
    ``default_ledger()`` (a ``FallbackLedger``) for a ledger that never raises.

    Args:
        directory: the ledger directory (``ledger_directory()`` when ``None``); created if needed.
        max_entries: entries to keep.
        size_limit: bytes the database may use.
        background: commit in a background thread (``True``) or inside ``record``.

    Raises:
        LedgerUnavailableError: if the directory or database cannot be opened.

    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        background: bool = True,
    ) -> None:
        if max_entries < 1:
            msg = f"max_entries must be at least 1, got {max_entries}"
            raise ValueError(msg)
        self.directory = Path(directory) if directory is not None else ledger_directory()
        self.max_entries = max_entries
        self.size_limit = size_limit
        self.background = background
        self._init_state()
        self._cache: Any = self._open()
        _LIVE_DISK_LEDGERS.add(self)

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()
        self._queue: list[LedgerEntry] = []
        self._queued = 0  # entries ever queued
        self._done = 0  # entries ever taken by the writer (committed or failed)
        self._unwritten: list[LedgerEntry] = []
        self._error: BaseException | None = None
        self._flushers = 0  # threads waiting in flush(): the writer stops lingering
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def _open(self) -> Any:
        import diskcache

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            cache = diskcache.Cache(
                str(self.directory),
                timeout=_DB_TIMEOUT,
                size_limit=self.size_limit,
                eviction_policy="least-recently-stored",
            )
            self._identity = _file_identity(self._db_path)
        except Exception as exc:
            msg = (
                f"cannot open the cost ledger in {self.directory} ({type(exc).__name__}: {exc}); "
                f"make it a writable directory, remove it to start a new ledger, or set "
                f"{STATE_DIR_ENV} to another directory"
            )
            raise LedgerUnavailableError(msg) from exc
        return cache

    @property
    def _db_path(self) -> Path:
        return self.directory / "cache.db"

    def __repr__(self) -> str:
        return f"DiskLedger({str(self.directory)!r}, max_entries={self.max_entries})"

    # -- writing ------------------------------------------------------------------------------

    def record(self, entry: LedgerEntry) -> None:
        """Queue (or, without ``background``, commit) one entry.

        Args:
            entry: the entry.

        Raises:
            TypeError: if ``entry`` is not a ``LedgerEntry``.
            LedgerUnavailableError: if the ledger is closed or a write failed; ``entry`` was
                then not recorded (earlier uncommitted entries are in ``unwritten()``).

        """
        if not isinstance(entry, LedgerEntry):
            msg = f"a ledger records LedgerEntry objects, got {type(entry).__name__}"
            raise TypeError(msg)
        if not self.background:
            self._raise_if_unusable()
            if not self._write([entry]):
                with self._write_lock:
                    self._unwritten.remove(entry)
                self._raise_if_unusable()
            return
        with self._cond:
            self._raise_if_unusable()
            if self._queued - self._done >= _MAX_QUEUED:
                msg = (
                    f"the cost ledger writer is {_MAX_QUEUED:,} entries behind "
                    f"(does another process hold the lock on {self.directory}?)"
                )
                raise LedgerUnavailableError(msg)
            self._queue.append(entry)
            self._queued += 1
            if len(self._queue) == 1 or len(self._queue) >= _BATCH_MAX:
                self._cond.notify()  # wake the writer once per batch, not per entry
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="claude-relay-ledger-writer", daemon=True
                )
                self._thread.start()

    def _raise_if_unusable(self) -> None:
        if self._closed:
            msg = f"the cost ledger in {self.directory} is closed"
            raise LedgerUnavailableError(msg)
        if self._error is not None:
            msg = (
                f"the cost ledger in {self.directory} failed "
                f"({type(self._error).__name__}: {self._error})"
            )
            raise LedgerUnavailableError(msg) from self._error

    def _run(self) -> None:
        """The writer thread: commit whatever is queued, in batches, until stopped."""
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                # Linger so that calls close together share one transaction.
                deadline = time.monotonic() + _LINGER
                while self._lingering() and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch, self._queue = self._queue, []
                if not batch:
                    return  # stopping, and nothing left
            self._write(batch)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _lingering(self) -> bool:
        return not (self._stopping or self._flushers or len(self._queue) >= _BATCH_MAX)

    def _write(self, batch: list[LedgerEntry]) -> bool:
        """Commit a batch in one transaction; on failure keep it in ``unwritten``.

        Returns:
            Whether the batch was committed.

        """
        with self._write_lock:
            if self._error is not None:
                self._unwritten.extend(batch)
                return False
            cache = self._cache
            try:
                if _file_identity(self._db_path) != self._identity:
                    msg = f"the ledger database {self._db_path} was replaced while in use"
                    raise LedgerUnavailableError(msg)
                with cache.transact(retry=True):  # all or nothing: a failure rolls back
                    for entry in batch:
                        cache.push(_encode(entry), tag=entry.timestamp, retry=True)
            except Exception as exc:
                self._error = exc
                self._unwritten.extend(batch)
                logger.debug("cost ledger write failed: %s", type(exc).__name__)
                return False
            try:
                excess = len(cache) - self.max_entries
                if excess > 0:
                    with cache.transact(retry=True):
                        for _ in range(excess):
                            cache.pull(retry=True)
            except Exception as exc:
                # The commit went through but the database now fails (damaged under us): the
                # batch may be unreadable, so it is also handed back (readers drop duplicates).
                self._error = exc
                self._unwritten.extend(batch)
                logger.debug("cost ledger trim failed: %s", type(exc).__name__)
                return False
            return True

    def flush(self, timeout: float | None = _FLUSH_TIMEOUT) -> None:
        """Wait until every entry recorded so far is committed.

        Args:
            timeout: seconds to wait at most (``None``: no limit).

        Raises:
            LedgerUnavailableError: if a write failed or the writer did not finish in time.

        """
        batch: list[LedgerEntry] = []
        with self._cond:
            target = self._queued
            if self._queue and (self._thread is None or not self._thread.is_alive()):
                batch, self._queue = self._queue, []  # no writer (exit, fork): commit here
        if batch:
            self._write(batch)
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()
            try:
                finished = self._cond.wait_for(lambda: self._done >= target, timeout)
            finally:
                self._flushers -= 1
        if self._error is not None:
            self._raise_if_unusable()
        if not finished:
            msg = (
                f"the cost ledger writer did not commit within {timeout} s "
                f"(does another process hold the lock on {self.directory}?)"
            )
            raise LedgerUnavailableError(msg)

    def unwritten(self) -> list[LedgerEntry]:
        """Entries recorded but not committed because a write failed (queued ones included)."""
        with self._cond:
            queued = list(self._queue) if self._error is not None or self._closed else []
        with self._write_lock:
            return [*self._unwritten, *queued]

    def close(self, timeout: float | None = _FLUSH_TIMEOUT) -> None:
        """Commit what is queued, stop the writer and close the database (idempotent).

        Args:
            timeout: seconds to wait for the writer at most.

        """
        with self._cond:
            if self._closed:
                return
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            with contextlib.suppress(LedgerUnavailableError):
                self.flush(timeout)  # entries queued with no writer to take them
        with self._cond:
            self._closed = True
        try:
            self._cache.close()
        except Exception as exc:  # closing must not fail a shutdown
            logger.debug("closing the cost ledger failed: %s", type(exc).__name__)

    # -- reading ------------------------------------------------------------------------------

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """Commit what is queued, then read entries from every process, in commit order.

        Args:
            since: only entries with ``timestamp >= since``.

        Returns:
            At most ``max_entries`` entries, the newest.

        Raises:
            LedgerUnavailableError: if the ledger failed or cannot be read.

        """
        if not self._closed:
            self.flush()
        return self.stored_entries(since)

    def stored_entries(self, since: float | None = None) -> list[LedgerEntry]:
        """Read the committed entries without flushing (also after a failure).

        Args:
            since: only entries with ``timestamp >= since``.

        Returns:
            At most ``max_entries`` entries, the newest.

        Raises:
            LedgerUnavailableError: if the database cannot be read.

        """
        try:
            values = list(_stored_values(self._cache, since))
        except Exception as exc:
            msg = f"cannot read the cost ledger in {self.directory} ({type(exc).__name__}: {exc})"
            raise LedgerUnavailableError(msg) from exc
        out = [e for v in values if (e := _decode(v)) is not None]
        out = [e for e in out if since is None or e.timestamp >= since]
        return out[-self.max_entries :]

    def summary(self, since: float | None = None) -> LedgerSummary:
        """Summarize the entries (see ``summarize``)."""
        return summarize(self.entries(since), since=since)

    def _after_fork_in_child(self) -> None:
        """The parent's queue and writer are not the child's (diskcache reconnects by itself)."""
        self._init_state()


def _stored_values(cache: Any, since: float | None) -> Iterator[Any]:
    """The stored values in key (commit) order, pre-filtered on the ``tag`` (timestamp)."""
    sql = getattr(cache, "_sql", None)
    if sql is None:  # diskcache internals changed: the slower public path
        for key in cache.iterkeys():
            yield cache.get(key)
        return
    if since is None:
        rows = sql("SELECT value FROM Cache WHERE raw = 1 ORDER BY key").fetchall()
    else:
        rows = sql(
            "SELECT value FROM Cache WHERE raw = 1 AND tag >= ? ORDER BY key", (since,)
        ).fetchall()
    for (value,) in rows:
        yield value


def _file_identity(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        msg = f"the ledger database {path} was removed while in use"
        raise LedgerUnavailableError(msg) from exc
    return stat.st_dev, stat.st_ino


def _close_all_at_exit() -> None:
    for ledger in list(_LIVE_DISK_LEDGERS):
        try:
            ledger.close(timeout=_EXIT_TIMEOUT)
        except Exception as exc:  # exit must go on
            logger.warning("cost ledger entries may be lost at exit: %s", type(exc).__name__)


def _reset_ledgers_in_child() -> None:
    for ledger in list(_LIVE_DISK_LEDGERS):
        ledger._after_fork_in_child()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_ledgers_in_child)


class FallbackLedger:
    """A ledger that never raises: a primary ledger until it fails, then memory.

    The primary is opened on first use. When opening it or writing to it fails, one
    ``RuntimeWarning`` says so and names the remedy; the entries the primary had not committed
    and every later entry are kept in a ``MemoryLedger``. Reading returns what the primary had
    committed (when it can still be read) followed by the entries kept in memory.

    Args:
        open_primary: builds the primary ledger (called once, on first use).
        memory: the ledger to fall back to (a ``MemoryLedger`` when ``None``).

    """

    def __init__(
        self, open_primary: Callable[[], Ledger], *, memory: MemoryLedger | None = None
    ) -> None:
        self._open_primary = open_primary
        self._primary: Ledger | None = None
        self._memory = memory if memory is not None else MemoryLedger()
        self._failure: BaseException | None = None
        self._lock = threading.RLock()

    @property
    def failed(self) -> bool:
        """Whether the primary failed and entries are kept in memory."""
        return self._failure is not None

    def _get_primary(self) -> Ledger | None:
        if self._primary is None and self._failure is None:
            try:
                self._primary = self._open_primary()
            except Exception as exc:
                self._fail(exc)
        return self._primary if self._failure is None else None

    def _fail(self, exc: BaseException) -> None:
        if self._failure is not None:
            return
        self._failure = exc
        primary, rescued = self._primary, []
        if primary is not None:
            try:
                primary.close()
            except Exception as close_exc:
                logger.debug("closing the failed ledger: %s", type(close_exc).__name__)
            unwritten = getattr(primary, "unwritten", None)
            if callable(unwritten):
                rescued = list(unwritten())
        for entry in rescued:
            self._memory.record(entry)
        cause = exc.__cause__ or exc
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = " Free disk space to keep a persistent ledger."
        elif STATE_DIR_ENV in str(exc):
            hint = ""
        else:
            hint = f" Set {STATE_DIR_ENV} to a writable directory to keep a persistent ledger."
        kept = f"; {len(rescued)} uncommitted entries were kept" if rescued else ""
        warnings.warn(
            f"langchain-claude-relay: {exc}. Calls from now on are recorded in memory only (at "
            f"most {self._memory.max_entries:,} entries, lost when the process ends{kept}).{hint}",
            RuntimeWarning,
            stacklevel=4,
        )

    def record(self, entry: LedgerEntry) -> None:
        """Record in the primary, or in memory once it has failed; never raises."""
        if not isinstance(entry, LedgerEntry):  # a caller's bug: dropped, never raised
            logger.warning("cost ledger: dropped a %s (not a LedgerEntry)", type(entry).__name__)
            return
        with self._lock:
            primary = self._get_primary()
            if primary is not None:
                try:
                    primary.record(entry)
                    return
                except Exception as exc:
                    self._fail(exc)
            self._memory.record(entry)

    def flush(self) -> None:
        """Flush the primary; a failure switches to memory (and warns once)."""
        with self._lock:
            primary = self._get_primary()
            if primary is not None:
                try:
                    primary.flush()
                except Exception as exc:
                    self._fail(exc)

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """The primary's entries, or after a failure its committed ones and then memory's."""
        with self._lock:
            primary = self._get_primary()
            if primary is not None:
                try:
                    return primary.entries(since)
                except Exception as exc:
                    self._fail(exc)
            stored: list[LedgerEntry] = []
            reader = getattr(self._primary, "stored_entries", None)
            if callable(reader):
                try:
                    stored = list(reader(since))
                except Exception as exc:
                    logger.debug("failed ledger unreadable: %s", type(exc).__name__)
            seen = set(stored)
            return [*stored, *(e for e in self._memory.entries(since) if e not in seen)]

    def summary(self, since: float | None = None) -> LedgerSummary:
        """Summarize the entries (see ``summarize``)."""
        return summarize(self.entries(since), since=since)

    def close(self) -> None:
        """Close the primary (memory entries stay readable)."""
        with self._lock:
            if self._primary is not None and self._failure is None:
                try:
                    self._primary.close()
                except Exception as exc:
                    self._fail(exc)


_default_ledger: Ledger | None = None
_default_lock = threading.Lock()


def default_ledger() -> Ledger:
    """The process-wide ledger: a ``DiskLedger`` in ``ledger_directory()``, opened on first use.

    It is wrapped in a ``FallbackLedger``: if the disk fails it warns once and keeps entries in
    memory, and it never raises into a chat call. ``set_default_ledger`` replaces it.

    Returns:
        The ledger.

    """
    global _default_ledger
    if _default_ledger is None:
        with _default_lock:
            if _default_ledger is None:
                _default_ledger = FallbackLedger(lambda: DiskLedger(ledger_directory()))
    return _default_ledger


def set_default_ledger(ledger: Ledger | None) -> Ledger | None:
    """Replace the process-wide ledger (``None``: a new default on next use).

    Args:
        ledger: the ledger to use, e.g. a ``MemoryLedger`` in a notebook.

    Returns:
        The ledger in force before (not closed).

    """
    global _default_ledger
    with _default_lock:
        previous, _default_ledger = _default_ledger, ledger
    return previous
