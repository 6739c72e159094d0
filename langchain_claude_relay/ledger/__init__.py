"""The cost ledger: one entry per chat call, numbers and hashes only, kept across processes.

Each entry holds a call's token counts by kind, its cost and what it would have cost uncached,
and what the planner predicted: the prefix hashes the call wrote at, the prefix its read is
attributed to, the tokens it expected to read and, for a miss, the reason. It never holds prompt
text, keys or URLs: prefix hashes and the relay URL's hash are hex digests, checked on entry.

Ledgers:

* ``DiskLedger``: a private SQLite file in ``ledger_directory()``
  (``$CLAUDE_RELAY_STATE_DIR/ledger`` or the user cache directory). Append-only, safe across
  processes (entries are appended in SQLite transactions under incrementing keys), bounded (the
  last ``max_entries`` entries and at most ``size_limit`` bytes). ``record`` only queues the
  entry (about a microsecond): a background thread commits queued entries in batches, so a chat
  call never waits for SQLite (a commit can take milliseconds when SQLite checkpoints or
  another process holds the lock). Queued entries are committed within ~50 ms, and by
  ``flush()``, ``entries()``, ``close()`` and at interpreter exit. A process killed with SIGKILL
  (or a hard crash) loses only the entries it had queued and not yet committed -- at most the
  last ~50 ms of calls; committed entries are never lost. A ``multiprocessing`` worker (which
  ``Pool.__exit__`` ends with SIGTERM, running no exit hook) commits inside ``record``.
* ``MemoryLedger``: a bounded list in memory (tests, notebooks, the fallback).
* ``default_ledger()``: the process-wide ledger, a ``DiskLedger`` opened on first use behind a
  ``FallbackLedger``: if the disk fails (read-only or missing directory, a file where the
  directory should be, a corrupted database, a full disk) it warns once and keeps later entries
  in memory; it never raises into a chat call.

``summarize`` (and ``Ledger.summary``) turns entries into a ``LedgerSummary``: calls, hit rate,
tokens by kind, cost, saved vs. uncached, wasted writes and predicted-vs-actual hits.

Modules: ``entry`` (``LedgerEntry``, ``hash_base_url``), ``checks`` (what an entry may hold),
``codec`` (the stored form), ``facts`` (``cache_facts``), ``summary`` and ``waste``
(``summarize``, wasted-write attribution), ``memory`` (``Ledger``, ``MemoryLedger``),
``disk`` (``DiskLedger``), ``redis`` (``RedisLedger``), ``workers`` (when those commit inside
``record``), ``fallback`` (``FallbackLedger``, and the factory ``default_ledger``: Redis when
``$CLAUDE_RELAY_STATE`` names one, else the disk).

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

from langchain_claude_relay._env import STATE_DIR_ENV
from langchain_claude_relay._env import ledger_dir as ledger_directory
from langchain_claude_relay.errors import LedgerUnavailableError, LedgerWarning
from langchain_claude_relay.ledger.chart import write_stats_chart
from langchain_claude_relay.ledger.disk import DEFAULT_MAX_ENTRIES, DEFAULT_SIZE_LIMIT, DiskLedger
from langchain_claude_relay.ledger.entry import LedgerEntry, hash_base_url
from langchain_claude_relay.ledger.facts import CacheFacts, cache_facts
from langchain_claude_relay.ledger.fallback import (
    FallbackLedger,
    default_ledger,
    set_default_ledger,
)
from langchain_claude_relay.ledger.memory import Ledger, MemoryLedger
from langchain_claude_relay.ledger.redis import RedisLedger
from langchain_claude_relay.ledger.summary import (
    LedgerSummary,
    TimeBucket,
    summarize,
    summarize_over_time,
)

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
    "TimeBucket",
    "summarize_over_time",
    "write_stats_chart",
    "Ledger",
    "MemoryLedger",
    "DiskLedger",
    "RedisLedger",
    "FallbackLedger",
    "LedgerWarning",
    "ledger_directory",
    "default_ledger",
    "set_default_ledger",
]


# ``doctest.testmod(ledger)`` only looks at objects defined here: name the examples elsewhere.
__test__ = {"hash_base_url": hash_base_url}
