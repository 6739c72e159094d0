"""Cost over a block of code: a LangChain callback and a ``with track_costs()`` block.

>>> from langchain_claude_relay.callbacks import track_costs
>>> with track_costs() as costs:        # every chat model call inside is counted
...     pass                            # llm.invoke(...), chain.batch(...), await llm.ainvoke(...)
>>> (costs.calls, costs.cost_usd)
(0, 0.0)

``track_costs`` works like ``get_openai_callback``: it sets a ``ContextVar`` that LangChain's
callback configuration reads (``register_configure_hook``), so ``invoke``, ``stream``,
``batch`` (LangChain copies the context into its worker threads) and the async methods are all
counted without passing ``callbacks=``. A thread you start yourself is counted when it runs in
a copy of the context (``contextvars.copy_context().run``). Blocks nest: a call in an inner
block counts in the inner and the outer trackers.

Per call, the tracker reads the chat generation's message:

* usage: ``usage_metadata`` when it reports cache writes (``input_token_details.cache_creation``,
  as ``ChatClaudeRelay`` and ``ChatAnthropic`` do), else the relay's raw usage in
  ``response_metadata["usage"]`` or ``["token_usage"]`` (normalized: recovers the cache writes
  that ``ChatOpenAI`` drops), else whatever ``usage_metadata`` has;
* cost: ``response_metadata["cost_usd"]`` when it is a number, else priced from the usage and
  the model name (``response_metadata["model_name"]``); a model without prices is counted in
  ``unpriced_calls``;
* prefixes: ``response_metadata["cache_plan"]`` / ``["cache_observation"]`` (see
  ``ledger.cache_facts``), for wasted writes and predicted-vs-actual hits.

A LangChain response-cache hit (``usage_metadata["total_cost"] == 0``, no relay call) is counted
in ``llm_cache_hits`` only. Keep-alive requests (``ChatClaudeRelay(keep_warm="auto")``) are no
LangChain calls: the chat model hands each one to the trackers that counted the call it keeps
warm (``record_keep_alive``), also when it is sent later, from the keep-alive thread. They count
as spend (``keep_alive_calls``, ``keep_alive_cost_usd``, and in ``cost_usd``), not as calls.
A tracker passed as ``callbacks=[tracker]`` to ``stream`` is not told by LangChain about what the
chat model does outside the run (a stream stopped early, an attempt whose answer was lost before
the first chunk, a keep-alive sent later): the stream's first chunk carries a random key
(``response_metadata[WATCH_KEY]``), the tracker remembers the keys of the runs it saw, and the
chat model asks ``trackers_of_call`` for them (or keeps what it recorded before, for the
tracker to collect: ``stopped_call``). A stream closed after its last chunk (usage and cost) is
counted from it, as if it had ended. A stream whose every attempt lost its answer sends no
chunk, so such a tracker cannot be told of them (``track_costs`` blocks and the ledger are).
The totals are computed by ``ledger.summarize`` over the block's calls, so they mean exactly
what ``claude-relay stats`` means.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from langchain_claude_relay.errors import ClaudeRelayError
from langchain_claude_relay.ledger import LedgerEntry, LedgerSummary, cache_facts, summarize
from langchain_claude_relay.usage import (
    NormalizedUsage,
    from_usage_metadata,
    inference_geo_of,
    normalize_usage,
)

__all__ = [
    "CostTracker",
    "track_costs",
    "active_tracker",
    "trackers_of_call",
    "stopped_call",
    "WATCH_KEY",
]

WATCH_KEY = "claude_relay_stream_key"
"""The ``response_metadata`` key of a stream's first chunk that trackers remember it by."""
_KEY_CHARS = frozenset("0123456789abcdef")

_UNKNOWN_MODEL = "unknown"


class CostTracker(BaseCallbackHandler):
    """Totals tokens, cost, savings and wasted cache writes over chat model calls (thread-safe).

    Pass it as a callback (``llm.invoke(..., config={"callbacks": [tracker]})``) or get one
    from ``track_costs()``. It keeps one small ledger entry per call (numbers and hashes), so
    that wasted writes can be found across the block's calls.

    Args:
        clock: seconds, for the call start times that order calls (``time.time`` by default).
        parent: a tracker that also receives every call this one counts (nested blocks).

    """

    raise_error = False
    run_inline = True  # cheap and lock-protected: no executor hop in async code

    def __init__(
        self, *, clock: Callable[[], float] = time.time, parent: CostTracker | None = None
    ) -> None:
        super().__init__()
        self._clock = clock
        self._parent = parent
        self._lock = threading.Lock()
        self._entries: list[LedgerEntry] = []
        self._seen: set[str] = set()
        self._starts: dict[UUID, float] = {}
        self._summary: LedgerSummary | None = None
        self._calls_without_usage = 0
        self._llm_cache_hits = 0

    # -- LangChain callbacks ------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """Note when the call started (calls are ordered by start for wasted writes)."""
        self._note_start(run_id)

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """Note when the call started."""
        self._note_start(run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a call that failed; a stream stopped after it began is counted when recorded.

        LangChain passes the chunks received so far (``response``): the stream's key on its
        first chunk lets the chat model hand this tracker the stopped stream's estimated cost
        (``record_stopped``), and a closing chunk received (usage and cost) counts the call.
        """
        with self._lock:
            started = self._starts.pop(run_id, None)
        response = kwargs.get("response")
        if not isinstance(response, LLMResult):
            return
        for key, stopped in _watch_calls(self, response):  # recorded before LangChain told us
            self.record_stopped(stopped, key)
        received = response.generations[0] if response.generations else []
        if any(_has_usage(g) for g in received):  # closed after its last chunk: it ended
            timestamp = started if started is not None else self._now()
            self._count(received, {}, call_id=f"{run_id}-0", timestamp=timestamp)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID | None = None, **kwargs: Any) -> None:
        """Count the call(s) in ``response``: one per prompt, usage from its first generation.

        Args:
            response: the result; for a stream, LangChain passes the merged generation.
            run_id: the run's id (calls seen twice, e.g. through a nested block, count once).
            **kwargs: other callback arguments (ignored).

        """
        with self._lock:
            started = self._starts.pop(run_id, None) if run_id is not None else None
        timestamp = started if started is not None else self._now()
        # its keep-alives, sent later, come here too; attempts lost before it were recorded
        for key, lost in _watch_calls(self, response):
            self.record_stopped(lost, key)
        llm_output = response.llm_output or {}
        for i, generations in enumerate(response.generations):
            call_id = f"{run_id}-{i}" if run_id is not None else None
            self._count(generations, llm_output, call_id=call_id, timestamp=timestamp)

    # -- counting -----------------------------------------------------------------------------

    def _note_start(self, run_id: UUID) -> None:
        now = self._now()
        with self._lock:
            self._starts[run_id] = now

    def _now(self) -> float:
        now = float(self._clock())
        return now if math.isfinite(now) and now >= 0 else 0.0

    def _count(
        self,
        generations: list[Any],
        llm_output: Mapping[str, Any],
        *,
        call_id: str | None,
        timestamp: float,
    ) -> None:
        message = next((g.message for g in generations if isinstance(g, ChatGeneration)), None)
        if message is None:
            self._add(None, call_id, cache_hit=False)
            return
        usage_metadata = getattr(message, "usage_metadata", None) or {}
        if usage_metadata.get("total_cost") == 0:  # LangChain's response cache: no call made
            self._add(None, call_id, cache_hit=True)
            return
        meta = message.response_metadata or {}
        usage = usage_of(usage_metadata, meta)
        if usage is None:
            self._add(None, call_id, cache_hit=False)
            return
        model = meta.get("model_name") or meta.get("model") or llm_output.get("model_name")
        facts = cache_facts(
            meta.get("cache_plan"),
            meta.get("cache_observation"),
            read_tokens=usage.cache_read_tokens,
            write_tokens=usage.cache_write_tokens,
        )
        entry = LedgerEntry.from_usage(
            usage,
            model=model if isinstance(model, str) and model else _UNKNOWN_MODEL,
            timestamp=timestamp,
            call_id=call_id,
            predicted_read_tokens=facts.predicted_read_tokens,
            written_prefixes=facts.written_prefixes,
            read_prefix=facts.read_prefix,
            miss_reason=facts.miss_reason,
        )
        reported = _amount(meta.get("cost_usd"))
        if reported is not None:  # priced as the call was (a relay's own prices, if probed)
            uncached = _amount(meta.get("uncached_cost_usd"))
            entry = replace(
                entry,
                cost_usd=reported,
                uncached_cost_usd=uncached if uncached is not None else entry.uncached_cost_usd,
            )
        self._add(entry, call_id, cache_hit=False)

    def _add(self, entry: LedgerEntry | None, call_id: str | None, *, cache_hit: bool) -> None:
        with self._lock:
            if call_id is not None:
                if call_id in self._seen:
                    return
                self._seen.add(call_id)
            if entry is not None:
                self._entries.append(entry)
                self._summary = None
            elif cache_hit:
                self._llm_cache_hits += 1
            else:
                self._calls_without_usage += 1
        if self._parent is not None:
            self._parent._add(entry, call_id, cache_hit=cache_hit)

    def record_stopped(self, entry: LedgerEntry, key: str | None = None) -> None:
        """Count a call billed without its usage (``entry.estimated``).

        A stream that stopped before its usage came, or an answer cut part-way (each attempt):
        LangChain reports no result for it, but Claude billed it once it began.

        Args:
            entry: its ledger entry.
            key: what it is counted under, once however many ways it reaches the tracker:
                the stream's key (``WATCH_KEY``) for a stopped stream, a key per attempt for
                one whose answer was lost (``None``: a key of its own).
        """
        self._add(entry, f"stopped:{key or uuid.uuid4().hex}", cache_hit=False)

    def record_keep_alive(self, entry: LedgerEntry) -> None:
        """Count a keep-alive request sent for a call this tracker counted.

        Args:
            entry: its ledger entry (``entry.keep_alive`` is ``True``).
        """
        self._add(entry, f"keep-alive:{entry.call_id}:{entry.timestamp}", cache_hit=False)

    # -- results ------------------------------------------------------------------------------

    def ledger_summary(self) -> LedgerSummary:
        """The block's calls with usage, summarized like the ledger (``ledger.summarize``)."""
        with self._lock:
            if self._summary is None:
                self._summary = summarize(self._entries)
            return self._summary

    def entries(self) -> list[LedgerEntry]:
        """The calls counted so far, as ledger entries (numbers and hashes only)."""
        with self._lock:
            return list(self._entries)

    @property
    def calls(self) -> int:
        """Chat model calls that ended, with or without usage.

        Response-cache hits and keep-alive requests are not calls.
        """
        with self._lock:
            calls = sum(1 for e in self._entries if not e.keep_alive)
            return calls + self._calls_without_usage

    @property
    def calls_without_usage(self) -> int:
        """Calls whose response carried no usage (not in the token and cost totals)."""
        with self._lock:
            return self._calls_without_usage

    @property
    def llm_cache_hits(self) -> int:
        """Answers served from LangChain's response cache (no relay call, no cost)."""
        with self._lock:
            return self._llm_cache_hits

    @property
    def input_tokens(self) -> int:
        """Plain (uncached) input tokens."""
        return self.ledger_summary().input_tokens

    @property
    def cache_read_tokens(self) -> int:
        """Input tokens read from the cache."""
        return self.ledger_summary().cache_read_tokens

    @property
    def cache_write_tokens(self) -> int:
        """Input tokens written to the cache (5m and 1h)."""
        return self.ledger_summary().cache_write_tokens

    @property
    def total_input_tokens(self) -> int:
        """All input tokens: plain + read + write."""
        return self.ledger_summary().total_input_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens."""
        return self.ledger_summary().output_tokens

    @property
    def cost_usd(self) -> float:
        """Cost with cache prices, over priced calls."""
        return self.ledger_summary().cost_usd

    @property
    def uncached_cost_usd(self) -> float:
        """What the priced calls would have cost without caching."""
        return self.ledger_summary().uncached_cost_usd

    @property
    def saved_usd(self) -> float:
        """``uncached_cost_usd - cost_usd``."""
        return self.ledger_summary().saved_usd

    @property
    def hit_rate(self) -> float:
        """Calls with usage that read anything from the cache / calls with usage (0.0 if none)."""
        return self.ledger_summary().hit_rate or 0.0

    @property
    def wasted_write_tokens(self) -> int:
        """Tokens written by calls in the block whose writes no later call in the block read."""
        return self.ledger_summary().wasted_write_tokens

    @property
    def keep_alive_calls(self) -> int:
        """Keep-alive requests sent for the block's calls (not in ``calls``)."""
        return self.ledger_summary().keep_alive_calls

    @property
    def keep_alive_cost_usd(self) -> float:
        """What those keep-alive requests cost (included in ``cost_usd``)."""
        return self.ledger_summary().keep_alive_cost_usd

    @property
    def unpriced_calls(self) -> int:
        """Calls of models without published prices (not in the USD totals)."""
        return self.ledger_summary().unpriced_calls

    def summary(self) -> dict[str, Any]:
        """Return every total as a JSON-able dict (the ledger summary's fields and more)."""
        out = self.ledger_summary().to_dict()
        out["calls_with_usage"] = out.pop("calls")
        out["calls"] = self.calls
        out["calls_without_usage"] = self.calls_without_usage
        out["llm_cache_hits"] = self.llm_cache_hits
        return out

    def __str__(self) -> str:
        s = self.ledger_summary()
        hit = "-" if s.hit_rate is None else f"{100 * s.hit_rate:.1f}%"
        lines = [
            f"Calls: {self.calls:,} (cache hit rate {hit})",
            f"Tokens: input {s.input_tokens:,}, cache read {s.cache_read_tokens:,}, "
            f"cache write {s.cache_write_tokens:,}, output {s.output_tokens:,}",
            f"Cost: ${s.cost_usd:.4f} (uncached ${s.uncached_cost_usd:.4f}, "
            f"saved ${s.saved_usd:.4f})",
            f"Wasted cache writes: {s.wasted_write_tokens:,} tokens",
        ]
        if s.keep_alive_calls:
            lines.append(
                f"Keep-alive: {s.keep_alive_calls:,} requests, ${s.keep_alive_cost_usd:.4f} "
                "(in the cost above)"
            )
        if s.unpriced_calls:
            lines.append(f"Unpriced calls: {s.unpriced_calls:,} (model without prices)")
        if self.calls_without_usage:
            lines.append(f"Calls without usage: {self.calls_without_usage:,}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"CostTracker(calls={self.calls}, cost_usd={self.cost_usd:.6f}, "
            f"saved_usd={self.saved_usd:.6f})"
        )


def usage_of(
    usage_metadata: Mapping[str, Any], response_metadata: Mapping[str, Any]
) -> NormalizedUsage | None:
    """A generation's usage as ``NormalizedUsage`` (sources in the module doc), or ``None``.

    Args:
        usage_metadata: the message's ``usage_metadata`` (``{}`` if none).
        response_metadata: the message's ``response_metadata``.

    Returns:
        The usage, or ``None`` when the response reported none.

    """
    details = usage_metadata.get("input_token_details") or {}
    if usage_metadata and isinstance(details, Mapping) and "cache_creation" in details:
        usage = from_usage_metadata(usage_metadata)
        for key in ("usage", "token_usage"):  # usage_metadata has no place for the geo
            geo = inference_geo_of(response_metadata.get(key))
            if geo is not None:
                return dataclasses.replace(usage, inference_geo=geo)
        return usage
    for key in ("usage", "token_usage"):
        raw = response_metadata.get(key)
        if isinstance(raw, Mapping) and raw:
            try:
                return normalize_usage(raw)
            except ClaudeRelayError:
                continue  # garbage usage: fall back to what LangChain kept
    return from_usage_metadata(usage_metadata) if usage_metadata else None


def _amount(value: Any) -> float | None:
    """A reported USD amount, or ``None`` when it is missing or not a usable number."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and value >= 0 else None


_current_tracker: ContextVar[CostTracker | None] = ContextVar(
    "langchain_claude_relay_cost_tracker", default=None
)
register_configure_hook(_current_tracker, inheritable=True)


_WATCHED_CALLS = 4096
"""Streams (by key) whose trackers, or stopped streams' entries, are remembered; the oldest
are forgotten first."""
_TRACKERS_PER_CALL = 16
"""Trackers remembered per stream (nested ``track_costs`` blocks, callbacks)."""
_watched: OrderedDict[str, list[weakref.ref[CostTracker]]] = OrderedDict()
_stopped: OrderedDict[str, dict[str, LedgerEntry]] = OrderedDict()
"""Per stream key, the entries recorded outside the run (a stop, lost attempts) by record key."""
_watched_lock = threading.Lock()


def _has_usage(generation: Any) -> bool:
    return isinstance(generation, ChatGeneration) and bool(
        getattr(generation.message, "usage_metadata", None)
    )


def _watch_keys(response: LLMResult) -> set[str]:
    """The stream keys (``WATCH_KEY``) of the generations in ``response``."""
    keys: set[str] = set()
    for generations in response.generations:
        for generation in generations:
            if isinstance(generation, ChatGeneration):
                key = (generation.message.response_metadata or {}).get(WATCH_KEY)
                if isinstance(key, str) and len(key) == 32 and set(key) <= _KEY_CHARS:
                    keys.add(key)
    return keys


def _watch_calls(tracker: CostTracker, response: LLMResult) -> list[tuple[str, LedgerEntry]]:
    """Remember that ``tracker`` saw the streams of ``response`` (by their keys).

    Returns:
        The entries of those streams already recorded outside the run (``stopped_call``), with
        their record keys: a sync stream's generator is closed, and its stop recorded, before
        LangChain reports the error; an attempt lost before the first chunk is recorded
        before the tracker saw the stream's key.
    """
    keys = _watch_keys(response)
    with _watched_lock:
        for key in keys:
            refs = [ref for ref in _watched.pop(key, []) if ref() is not None]
            if all(ref() is not tracker for ref in refs):
                refs.append(weakref.ref(tracker))
            _watched[key] = refs[-_TRACKERS_PER_CALL:]
        while len(_watched) > _WATCHED_CALLS:
            _watched.popitem(last=False)
        return [pair for key in keys for pair in _stopped.get(key, {}).items()]


def stopped_call(key: str, entry: LedgerEntry, record_key: str | None = None) -> None:
    """Keep an entry of a stream for a tracker LangChain tells of it afterwards.

    Args:
        key: the stream's key (``WATCH_KEY``).
        entry: the entry: the stream stopped, or one of its attempts lost its answer.
        record_key: what a tracker counts it under, once (``record_stopped``); default
            ``key`` (the stream's stop).
    """
    with _watched_lock:
        _stopped.setdefault(key, {})[record_key or key] = entry
        _stopped.move_to_end(key)
        while len(_stopped) > _WATCHED_CALLS:
            _stopped.popitem(last=False)


def trackers_of_call(key: str | None) -> tuple[CostTracker, ...]:
    """The trackers that saw the stream keyed ``key`` (``WATCH_KEY``), if remembered.

    For what happens after the run, outside LangChain's callbacks: a stream stopped early, the
    keep-alives of its prefix.
    """
    if key is None:
        return ()
    with _watched_lock:
        refs = list(_watched.get(key, ()))
    return tuple(t for t in (ref() for ref in refs) if t is not None)


def active_tracker() -> CostTracker | None:
    """The innermost ``track_costs`` block's tracker in this context, if any.

    For what LangChain reports to no callback: a stream's ``_stream`` gets no run manager from
    ``BaseChatModel.stream``, so its keep-alives and an early stop are counted here.
    """
    return _current_tracker.get()


@contextmanager
def track_costs(*, clock: Callable[[], float] = time.time) -> Iterator[CostTracker]:
    """Count every chat model call made inside the block (no ``callbacks=`` needed).

    Args:
        clock: seconds, for call start times (inject a virtual clock in tests).

    Yields:
        The tracker; read its totals during or after the block.

    """
    tracker = CostTracker(clock=clock, parent=_current_tracker.get())
    token = _current_tracker.set(tracker)
    try:
        yield tracker
    finally:
        try:
            _current_tracker.reset(token)
        except ValueError:  # exited in another context (e.g. another task): restore by value
            _current_tracker.set(tracker._parent)
