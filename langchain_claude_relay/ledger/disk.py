"""``DiskLedger``: the ledger in a ``diskcache`` directory, shared by every process.

``record`` only queues the entry (about a microsecond): a background thread commits queued
entries in batches, so a chat call never waits for SQLite. Queued entries are committed within
~50 ms, and by ``flush()``, ``entries()``, ``close()`` and at interpreter exit; open ledgers are
closed at exit and reset in a forked child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_claude_relay._env import STATE_DIR_ENV, ledger_dir
from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork
from langchain_claude_relay.errors import LedgerUnavailableError
from langchain_claude_relay.ledger.checks import check_max_entries
from langchain_claude_relay.ledger.codec import decode_entry, encode_entry
from langchain_claude_relay.ledger.entry import LedgerEntry, require_entry
from langchain_claude_relay.ledger.summary import LedgerSummary, summarize

logger = logging.getLogger("langchain_claude_relay.ledger")  # the name it had as one module

DEFAULT_MAX_ENTRIES = 1_000_000
"""Entries a ``DiskLedger`` keeps (the oldest go first)."""
DEFAULT_SIZE_LIMIT = 2**30
"""Bytes a ``DiskLedger`` may use on disk (diskcache culls the oldest entries beyond it)."""

_FLUSH_TIMEOUT = 30.0  # seconds flush()/close() wait for the writer before giving up
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never hang longer than this per ledger
_MAX_QUEUED = 100_000  # a writer this far behind is stuck: record() fails over
_LINGER = 0.05  # seconds the writer waits after the first queued entry to batch more
_BATCH_MAX = 512  # ... unless this many are queued
_DB_TIMEOUT = 10.0  # SQLite busy timeout per attempt (diskcache retries after it)


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
        check_max_entries(max_entries)
        self.directory = Path(directory) if directory is not None else ledger_dir()
        self.max_entries = max_entries
        self.size_limit = size_limit
        self.background = background
        self._init_state()
        self._cache: Any = self._open()
        on_exit_and_fork(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # the queue and the closed flag
        self._write_lock = threading.Lock()  # one write at a time; guards unwritten
        self._queue: list[LedgerEntry] = []
        self._unwritten: list[LedgerEntry] = []
        self._error: BaseException | None = None
        self._closed = False
        self._writer = WriteBehind(
            "claude-relay-ledger-writer",
            take=self._take,
            send=self._commit,
            linger=_LINGER,
            full=lambda: len(self._queue) >= _BATCH_MAX,
        )

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
        require_entry(entry)
        if not self.background:
            self._raise_if_unusable()
            if not self._write([entry]):
                with self._write_lock:
                    self._unwritten.remove(entry)
                self._raise_if_unusable()
            return
        with self._lock:
            self._raise_if_unusable()
            if self._writer.pending >= _MAX_QUEUED:
                msg = (
                    f"the cost ledger writer is {_MAX_QUEUED:,} entries behind "
                    f"(does another process hold the lock on {self.directory}?)"
                )
                raise LedgerUnavailableError(msg)
            self._queue.append(entry)
        self._writer.queued()

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

    def _commit(self, batch: list[LedgerEntry]) -> None:
        """The writer's ``send``: a failed batch is kept in ``unwritten`` (see ``_write``)."""
        self._write(batch)

    def _take(self) -> list[LedgerEntry]:
        with self._lock:
            batch, self._queue = self._queue, []
            return batch

    def _write(self, batch: list[LedgerEntry]) -> bool:
        """Commit a batch in one transaction; on failure keep it in ``unwritten``.

        Returns:
            Whether the batch was committed.

        """
        if not batch:
            return True
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
                        cache.push(encode_entry(entry), tag=entry.timestamp, retry=True)
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
        finished = self._writer.flush(timeout)
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
        with self._lock:
            queued = list(self._queue) if self._error is not None or self._closed else []
        with self._write_lock:
            return [*self._unwritten, *queued]

    def close(self, timeout: float | None = _FLUSH_TIMEOUT) -> None:
        """Commit what is queued, stop the writer and close the database (idempotent).

        Args:
            timeout: seconds to wait for the writer at most.

        """
        with self._lock:
            if self._closed:
                return
        if self._writer.stop(timeout):
            with contextlib.suppress(LedgerUnavailableError):
                self.flush(timeout)  # entries queued with no writer to take them
        with self._lock:
            self._closed = True
        try:
            self._cache.close()
        except Exception as exc:  # closing must not fail a shutdown
            logger.debug("closing the cost ledger failed: %s", type(exc).__name__)

    def _at_exit(self) -> None:
        try:
            self.close(timeout=_EXIT_TIMEOUT)
        except Exception as exc:  # exit must go on
            logger.warning("cost ledger entries may be lost at exit: %s", type(exc).__name__)

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
        out = [e for v in values if (e := decode_entry(v)) is not None]
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
