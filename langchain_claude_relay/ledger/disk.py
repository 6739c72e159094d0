"""``DiskLedger``: the ledger in a private SQLite file, shared by every process.

``record`` only queues the entry (about a microsecond): a background thread commits queued
entries in batches, so a chat call never waits for SQLite. Queued entries are committed within
~50 ms, and by ``flush()``, ``entries()``, ``close()`` and at interpreter exit; open ledgers are
closed at exit and reset in a forked child. In a ``multiprocessing`` worker, which may be ended
by SIGTERM with no exit hook run, ``record`` commits before it returns.

**Older versions' ledger.** Versions before 0.2 kept the ledger in a diskcache database
(``cache.db``). On first open its entries are migrated with SQL alone -- rows holding an
entry's JSON inline, in their order; anything else (a pickled or file-backed row) is dropped
unread with one ``LedgerWarning`` -- and ``cache.db`` is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
from pathlib import Path

from langchain_claude_relay._env import STATE_DIR_ENV, ledger_dir
from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork, warn_once
from langchain_claude_relay.errors import LedgerUnavailableError, LedgerWarning
from langchain_claude_relay.ledger.checks import check_max_entries
from langchain_claude_relay.ledger.codec import MAX_ENTRY_CHARS, decode_entry, encode_entry
from langchain_claude_relay.ledger.entry import LedgerEntry, require_entry
from langchain_claude_relay.ledger.summary import LedgerSummary, summarize
from langchain_claude_relay.ledger.workers import in_multiprocessing_worker
from langchain_claude_relay.store.sqlite import (
    LEGACY_DATABASE,
    begin_immediate,
    check_header,
    database_hash_key,
    file_identity,
    legacy_rows,
    open_database,
    remove_legacy_files,
    report_migration,
)

logger = logging.getLogger("langchain_claude_relay.ledger")  # the name it had as one module

DATABASE = "ledger.sqlite3"
"""The ledger's database file in its directory."""
DEFAULT_MAX_ENTRIES = 1_000_000
"""Entries a ``DiskLedger`` keeps (the oldest go first)."""
DEFAULT_SIZE_LIMIT = 2**30
"""Bytes of entries a ``DiskLedger`` keeps (the oldest go first beyond it)."""

_FLUSH_TIMEOUT = 30.0  # seconds flush()/close() wait for the writer before giving up
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never hang longer than this per ledger
_MAX_QUEUED = 100_000  # a writer this far behind is stuck: record() fails over
_LINGER = 0.05  # seconds the writer waits after the first queued entry to batch more
_BATCH_MAX = 512  # ... unless this many are queued
_DB_TIMEOUT = 10.0  # SQLite busy timeout
_TRIM_TO = 0.9  # trimming at the size limit goes down to this share of it

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "timestamp REAL NOT NULL, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    # the size, kept by triggers in every writer's transaction: no scan to know it
    "CREATE TABLE IF NOT EXISTS size (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "bytes INTEGER NOT NULL, rows INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO size (id, bytes, rows) VALUES (0, 0, 0)",
    "CREATE TRIGGER IF NOT EXISTS entry_added AFTER INSERT ON entries BEGIN "
    "UPDATE size SET bytes = bytes + length(NEW.value) + 24, rows = rows + 1 WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS entry_removed AFTER DELETE ON entries BEGIN "
    "UPDATE size SET bytes = bytes - length(OLD.value) - 24, rows = rows - 1 WHERE id = 0; END",
)
_INSERT = "INSERT INTO entries (timestamp, value) VALUES (?, ?)"


class DiskLedger:
    """A ledger in a private SQLite file, shared by every process that opens it.

    Each entry is one row (an ``AUTOINCREMENT`` key given inside a SQLite transaction, so
    concurrent processes never collide and the keys keep commit order) holding compact JSON --
    numbers, hashes and the model id only; prefix hashes are stored keyed by the installation's
    key (see ``codec``), so entries read back carry those. Entries beyond ``max_entries`` are
    dropped oldest first, and so are the oldest beyond ``size_limit`` bytes (both known from
    counters kept by triggers, so no commit scans the table). The directory is ``0700`` and
    the database ``0600``.

    A row that is not an entry this ledger wrote (planted or damaged: a blob, a pickle, a
    value longer than ``MAX_ENTRY_CHARS``, foreign JSON) is skipped when reading, with one
    ``LedgerWarning``; nothing in a row is ever executed or names a file.

    With ``background=True`` (the default) ``record`` queues the entry and returns in about a
    microsecond; a daemon thread commits queued entries in batches, one transaction at most
    every 50 ms (``_LINGER``) or per 512 entries. ``flush``, ``entries``, ``close`` and
    interpreter exit commit what is queued. SIGKILL loses only the entries queued and not yet
    committed (at most the last ~50 ms of calls); committed entries survive any crash of the
    process (SQLite WAL; an OS crash or power loss may also roll back the last commits, as
    SQLite's ``synchronous=NORMAL`` allows). After ``os.fork`` the child starts with an empty
    queue and its own connection. ``background=False`` commits inside ``record``, and so does a
    ``multiprocessing`` worker (``Pool.__exit__`` ends its workers with SIGTERM, which runs no
    exit hook: see ``ledger.workers``).

    A write failure (disk full, database damaged, directory removed or replaced) makes the
    ledger unusable: ``record``, ``flush`` and ``entries`` raise ``LedgerUnavailableError``
    from then on and ``unwritten()`` returns the entries that were not committed. Use
    ``default_ledger()`` (a ``FallbackLedger``) for a ledger that never raises.

    Args:
        directory: the ledger directory (``ledger_directory()`` when ``None``); created if needed.
        max_entries: entries to keep.
        size_limit: bytes the database may use.
        background: commit in a background thread (``True``) or inside ``record``.
        hash_key: the key prefix hashes are stored under (default: ``$CLAUDE_RELAY_HASH_KEY``,
            else a random key kept in the database).

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
        hash_key: bytes | None = None,
    ) -> None:
        check_max_entries(max_entries)
        self.directory = Path(directory) if directory is not None else ledger_dir()
        self.max_entries = max_entries
        self.size_limit = size_limit
        self.background = background
        self._init_state()
        self._db: sqlite3.Connection | None = None
        self._hash_key = self._open(hash_key)
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

    def _open(self, hash_key: bytes | None) -> bytes:
        """Open the database (schema, hash key, an older version's entries); returns the key."""
        try:
            db = self._connection()
            with begin_immediate(db):
                for statement in _SCHEMA:
                    db.execute(statement)
            key = database_hash_key(db, hash_key)
            self._identity = _file_identity(self._db_path)
            if (self.directory / LEGACY_DATABASE).exists():
                self._migrate_legacy(db, key)
        except Exception as exc:
            msg = (
                f"cannot open the cost ledger in {self.directory} ({type(exc).__name__}: {exc}); "
                f"make it a writable directory, remove it to start a new ledger, or set "
                f"{STATE_DIR_ENV} to another directory"
            )
            raise LedgerUnavailableError(msg) from exc
        return key

    def _connection(self, *, create: bool = True) -> sqlite3.Connection:
        """The ledger's connection (callers hold ``_write_lock``, or are opening the ledger).

        Args:
            create: create the directory and file if missing (not to read after a failure).
        """
        if self._db is None:
            self._db = open_database(self._db_path, timeout=_DB_TIMEOUT, create=create)
        return self._db

    @property
    def _db_path(self) -> Path:
        return self.directory / DATABASE

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
        if not self.background or in_multiprocessing_worker():  # a worker may end by SIGTERM
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
            try:
                if _file_identity(self._db_path) != self._identity:
                    msg = f"the ledger database {self._db_path} was replaced while in use"
                    raise LedgerUnavailableError(msg)
                check_header(self._db_path)
                db = self._connection()
                rows = [(entry.timestamp, encode_entry(entry, self._hash_key)) for entry in batch]
                with begin_immediate(db):  # all or nothing: a failure rolls back
                    self._insert(db, rows)
                    self._trim(db)
            except Exception as exc:
                self._error = exc
                self._unwritten.extend(batch)
                logger.debug("cost ledger write failed: %s", type(exc).__name__)
                return False
            return True

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple[float, str]]) -> None:
        """Insert encoded entries (inside the caller's transaction)."""
        db.executemany(_INSERT, rows)

    def _trim(self, db: sqlite3.Connection) -> None:
        """Drop the oldest entries beyond ``max_entries`` or ``size_limit`` (no table scan)."""
        size, rows = db.execute("SELECT bytes, rows FROM size WHERE id = 0").fetchone()
        excess = rows - self.max_entries
        if size > self.size_limit and rows > 0:
            excess = max(excess, math.ceil(rows * (size - self.size_limit * _TRIM_TO) / size))
        if excess > 0:
            db.execute(
                "DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY id LIMIT ?)",
                (excess,),
            )

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
        with self._write_lock:
            db, self._db = self._db, None
        try:
            if db is not None:
                db.close()
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
            with self._write_lock:
                values = self._stored_values(since)
        except Exception as exc:
            msg = f"cannot read the cost ledger in {self.directory} ({type(exc).__name__}: {exc})"
            raise LedgerUnavailableError(msg) from exc
        out = [e for v in values if v is not None and (e := decode_entry(v)) is not None]
        if len(out) < len(values):
            warn_once(
                ("ledger_row", str(self.directory)),
                f"the cost ledger in {self.directory} holds {len(values) - len(out)} rows that "
                "are not entries it wrote (planted or damaged); they are skipped, never executed",
                LedgerWarning,
            )
        out = [e for e in out if since is None or e.timestamp >= since]
        return out[-self.max_entries :]

    def _stored_values(self, since: float | None) -> list[str | None]:
        """The stored values in commit order (``None`` for a row that is not bounded text)."""
        db = self._connection(create=False)
        select = (
            "SELECT CASE WHEN typeof(value) = 'text' AND length(value) <= ? THEN value END "
            "FROM entries"
        )
        if since is None:
            rows = db.execute(f"{select} ORDER BY id", (MAX_ENTRY_CHARS,)).fetchall()
        else:
            rows = db.execute(
                f"{select} WHERE NOT timestamp < ? ORDER BY id", (MAX_ENTRY_CHARS, since)
            ).fetchall()
        return [value for (value,) in rows]

    def summary(self, since: float | None = None) -> LedgerSummary:
        """Summarize the entries (see ``summarize``)."""
        return summarize(self.entries(since), since=since)

    def _after_fork_in_child(self) -> None:
        """The parent's queue, writer and connection are not the child's (it opens its own)."""
        if self._db is not None:
            _INHERITED.append(self._db)  # SQLite's rule: never used, nor closed, in the child
        self._db = None
        self._init_state()

    # -- an older version's ledger ------------------------------------------------------------

    def _migrate_legacy(self, db: sqlite3.Connection, key: bytes) -> None:
        """Copy an older version's entries (JSON rows only, in order), then delete its database.

        Runs once per directory (a ``meta`` row says it ran), in one transaction, so that
        processes opening the ledger together migrate it once. An old database that cannot be
        read is left in place, unread, with a log line.
        """
        try:
            with begin_immediate(db):
                if db.execute("SELECT 1 FROM meta WHERE name = 'migrated'").fetchone():
                    copied = dropped = -1
                else:
                    values, dropped = legacy_rows(
                        self.directory, text=True, max_value_bytes=MAX_ENTRY_CHARS
                    )
                    entries = [e for (v,) in values if (e := decode_entry(v)) is not None]
                    dropped += len(values) - len(entries)
                    db.executemany(_INSERT, [(e.timestamp, encode_entry(e, key)) for e in entries])
                    copied = len(entries)
                    db.execute("INSERT INTO meta (name, value) VALUES ('migrated', ?)", (copied,))
                    self._trim(db)
            remove_legacy_files(self.directory)
        except (sqlite3.Error, OSError) as exc:
            logger.warning(
                "the old cost ledger %s could not be migrated (%s); it is left in place, unread",
                self.directory / LEGACY_DATABASE,
                type(exc).__name__,
            )
            return
        report_migration(
            self.directory,
            copied,
            dropped,
            what="the cost ledger",
            unit="entries",
            category=LedgerWarning,
            log=logger,
        )


_INHERITED: list[sqlite3.Connection] = []  # connections a forked child must neither use nor close


def _file_identity(path: Path) -> tuple[int, int]:
    try:
        return file_identity(path)
    except FileNotFoundError as exc:
        msg = f"the ledger database {path} was removed while in use"
        raise LedgerUnavailableError(msg) from exc
