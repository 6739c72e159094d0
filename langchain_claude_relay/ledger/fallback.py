"""``FallbackLedger`` (a primary ledger until it fails, then memory) and the process default.

``default_ledger()`` is a ``DiskLedger`` in ``ledger_dir()``, opened on first use behind a
``FallbackLedger``: if the disk fails (read-only or missing directory, a file where the
directory should be, a corrupted database, a full disk) it warns once and keeps later entries
in memory; it never raises into a chat call.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from langchain_claude_relay._env import STATE_DIR_ENV, ledger_dir, redis_url
from langchain_claude_relay.errors import LedgerWarning
from langchain_claude_relay.ledger.disk import DiskLedger
from langchain_claude_relay.ledger.entry import LedgerEntry
from langchain_claude_relay.ledger.memory import Ledger, MemoryLedger
from langchain_claude_relay.ledger.redis import RedisLedger
from langchain_claude_relay.ledger.summary import LedgerSummary, summarize
from langchain_claude_relay.store.resilient import StateLocation, warn_state_failure

logger = logging.getLogger("langchain_claude_relay.ledger")  # the name it had as one module

_T = TypeVar("_T")


class FallbackLedger:
    """A ledger that never raises: a primary ledger until it fails, then memory.

    The primary is opened on first use. When opening it or writing to it fails, one
    ``LedgerWarning`` (a ``RuntimeWarning``) says so and names the remedy -- unless the planner's
    store already warned about the same state directory, which it logs instead (see
    ``store.warn_state_failure``); the entries the primary had not committed and every later
    entry are kept in a ``MemoryLedger``. Reading returns what the primary had committed (when
    it can still be read) followed by the entries kept in memory. A failure to read while
    writing still works (a locked or damaged page) is not the primary's failure: it warns once
    and later calls are still recorded in the primary.

    Args:
        open_primary: builds the primary ledger (called once, on first use).
        memory: the ledger to fall back to (a ``MemoryLedger`` when ``None``).
        location: the state directory the ledger belongs to, for ``warn_state_failure`` (a
            callable is asked on failure; default: the parent of the primary's ``directory``).

    """

    def __init__(
        self,
        open_primary: Callable[[], Ledger],
        *,
        memory: MemoryLedger | None = None,
        location: str | os.PathLike[str] | Callable[[], Path] | None = None,
    ) -> None:
        self._location = location
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

    def _through_primary(self, action: Callable[[Ledger], _T]) -> tuple[_T] | None:
        """Run ``action`` on the primary; a failure switches to memory (and warns once).

        Returns:
            ``(result,)``, or ``None`` when the primary failed (now or before): the caller then
            falls back to memory.

        """
        primary = self._get_primary()
        if primary is None:
            return None
        try:
            return (action(primary),)
        except Exception as exc:
            self._fail(exc)
            return None

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
        warn_state_failure(
            self._where(primary),
            f"langchain-claude-relay: {exc}. Calls from now on are recorded in memory only (at "
            f"most {self._memory.max_entries:,} entries, lost when the process ends{kept}).{hint}",
            LedgerWarning,
        )

    def _read_primary(self, primary: Ledger, since: float | None) -> list[LedgerEntry] | None:
        """The primary's entries; ``None`` when it failed to write (the caller falls back).

        A failure to read is not the writer's: it warns once (``warn_state_failure``) and
        returns what memory holds, and the primary keeps recording.
        """
        if self._through_primary(lambda p: p.flush()) is None:
            return None
        try:
            return primary.entries(since)
        except Exception as exc:
            if self._through_primary(lambda p: p.flush()) is None:  # the writer failed meanwhile
                return None
            warn_state_failure(
                self._where(primary),
                f"langchain-claude-relay: cannot read the cost ledger ({type(exc).__name__}: "
                f"{exc}). Calls are still recorded in it; this read returns none of them.",
                LedgerWarning,
            )
            return self._memory.entries(since)

    def _where(self, primary: Ledger | None) -> StateLocation:
        if self._location is not None:
            return self._location
        directory = getattr(primary, "directory", None)
        return Path(directory).parent if directory is not None else None

    def record(self, entry: LedgerEntry) -> None:
        """Record in the primary, or in memory once it has failed; never raises."""
        if not isinstance(entry, LedgerEntry):  # a caller's bug: dropped, never raised
            logger.warning("cost ledger: dropped a %s (not a LedgerEntry)", type(entry).__name__)
            return
        with self._lock:
            if self._through_primary(lambda primary: primary.record(entry)) is None:
                self._memory.record(entry)

    def flush(self) -> None:
        """Flush the primary; a failure switches to memory (and warns once)."""
        with self._lock:
            self._through_primary(lambda primary: primary.flush())

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """The primary's entries, or after a failure its committed ones and then memory's.

        Only a failure to write switches to memory: one to read (a locked or damaged page)
        warns once and returns what memory holds, and later calls still reach the primary.
        """
        with self._lock:
            primary = self._get_primary()
            if primary is not None:
                read = self._read_primary(primary, since)
                if read is not None:
                    return read
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
    """The process-wide ledger: a ``DiskLedger`` in ``ledger_dir()``, opened on first use.

    With ``CLAUDE_RELAY_STATE=redis://...`` it is a ``RedisLedger`` shared by the fleet instead.

    It is wrapped in a ``FallbackLedger``: if the disk fails it warns once and keeps entries in
    memory, and it never raises into a chat call. ``set_default_ledger`` replaces it.

    Returns:
        The ledger.

    """
    global _default_ledger
    if _default_ledger is None:
        with _default_lock:
            if _default_ledger is None:
                url = redis_url()
                if url is not None:  # a fleet: CLAUDE_RELAY_STATE=redis://...
                    _default_ledger = FallbackLedger(lambda: RedisLedger(url))
                else:
                    _default_ledger = FallbackLedger(
                        lambda: DiskLedger(ledger_dir()),
                        location=lambda: ledger_dir().parent,
                    )
    return _default_ledger


def current_default_ledger() -> Ledger | None:
    """The ledger ``default_ledger()`` would return, without opening one (``None``: not yet).

    Returns:
        ``set_default_ledger``'s ledger, the default once opened, or ``None``.

    """
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
