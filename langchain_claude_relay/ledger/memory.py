"""The ``Ledger`` protocol, and ``MemoryLedger``: a bounded, thread-safe ledger in memory."""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol, runtime_checkable

from langchain_claude_relay.ledger.checks import check_max_entries
from langchain_claude_relay.ledger.entry import LedgerEntry, require_entry
from langchain_claude_relay.ledger.summary import LedgerSummary, summarize

DEFAULT_MEMORY_ENTRIES = 100_000
"""Entries a ``MemoryLedger`` keeps by default (also the fallback's bound)."""


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
        check_max_entries(max_entries)
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
        require_entry(entry)
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
