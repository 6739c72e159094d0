"""``DiskStore``: the state store in a private SQLite file, shared by processes, cached in memory.

Plain ``sqlite3`` with JSON values (numbers and lists or dicts of numbers: nothing is ever
unpickled, no row names a file), a size limit with least-recently-used trimming and per-key
expiry, behind an in-process cache: reads are served from memory (read through on a miss,
re-read after ``refresh`` seconds), writes land in memory at once and a background thread
commits them in batches. Its directory defaults to
``platformdirs.user_cache_dir("langchain-claude-relay")`` + ``/state``, or
``$CLAUDE_RELAY_STATE_DIR``; the directory is ``0700`` and the database ``0600``.

Keys are written keyed (``kind:`` + a keyed hash of the key, see ``_plumbing.keyed_hash``), so
the prefix hashes the planner uses as keys cannot be matched against a guessed prompt without
the installation's key (kept in the database, or given as ``hash_key`` /
``$CLAUDE_RELAY_HASH_KEY``).

**Older versions' state.** Versions before 0.2 kept this store in a diskcache database
(``cache.db``). On first open it is migrated with SQL alone: rows holding plain JSON inline are
copied (keyed), anything else -- a pickled row, a file-backed row, a damaged one -- is dropped
unread with one ``StateStoreWarning``; then ``cache.db`` is deleted (no file a row names is
touched).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from langchain_claude_relay._env import state_dir
from langchain_claude_relay._plumbing import (
    WriteBehind,
    keyed_hash,
    on_exit_and_fork,
    private_dir,
    warn_once,
)
from langchain_claude_relay.errors import StateStoreWarning
from langchain_claude_relay.store.base import (
    ATOM,
    check_key,
    freeze,
    is_busy,
    thaw,
)
from langchain_claude_relay.store.sqlite import (
    LEGACY_DATABASE,
    begin_immediate,
    check_header,
    database_hash_key,
    file_identity,
    inflate_json_bytes,
    legacy_rows,
    open_database,
    remove_legacy_files,
    report_migration,
)

__all__ = [
    "DiskStore",
    "DATABASE",
    "DEFAULT_SIZE_LIMIT",
    "DEFAULT_REFRESH",
    "DEFAULT_MAX_CACHED_KEYS",
    "MAX_VALUE_CHARS",
]

logger = logging.getLogger("langchain_claude_relay.store")

DATABASE = "state.sqlite3"
"""The store's database file in its directory."""

DEFAULT_SIZE_LIMIT = 64 * 2**20
"""Bytes of keys and values the disk store keeps before trimming the least recently used keys."""

MAX_VALUE_CHARS = 1 << 16
"""A stored value longer than this (JSON characters) is not read: a planted or damaged row."""

DEFAULT_REFRESH = 1.0
"""Seconds a ``DiskStore`` serves a key from memory before reading it from disk again."""

DEFAULT_MAX_CACHED_KEYS = 20_000
"""Keys a ``DiskStore`` keeps in memory (the least recently loaded go first; never unsaved ones)."""

_LINGER = 0.05  # seconds the writer waits after the first queued write to batch more
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never wait longer than this per store
_IDLE_EXIT = 2.0  # seconds the writer waits for work before it ends (restarted on a write)
_TRIM_TO = 0.9  # trimming at the size limit goes down to this share of it
_ORDER_STEP = 1e-6  # seconds between the last-use times of consecutive keys in one commit
_NUMBER_CHARS = 64  # a stored number longer than this is not one

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
    "expires REAL, last_used REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS state_last_used ON state (last_used)",
    "CREATE INDEX IF NOT EXISTS state_expires ON state (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    # the size, kept by triggers in every writer's transaction (40 bytes a row on top of its
    # key and value): no scan to know it
    "CREATE TABLE IF NOT EXISTS size (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "bytes INTEGER NOT NULL, rows INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO size (id, bytes, rows) VALUES (0, 0, 0)",
    "CREATE TRIGGER IF NOT EXISTS state_added AFTER INSERT ON state BEGIN "
    "UPDATE size SET bytes = bytes + length(NEW.key) + length(NEW.value) + 40, "
    "rows = rows + 1 WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS state_changed AFTER UPDATE OF value ON state BEGIN "
    "UPDATE size SET bytes = bytes + length(NEW.value) - length(OLD.value) WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS state_removed AFTER DELETE ON state BEGIN "
    "UPDATE size SET bytes = bytes - length(OLD.key) - length(OLD.value) - 40, "
    "rows = rows - 1 WHERE id = 0; END",
)
_UPSERT = (
    "INSERT INTO state (key, value, expires, last_used) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, "
    "last_used = excluded.last_used"
)
_SELECT = (
    "SELECT CASE WHEN typeof(value) = 'text' AND length(value) <= ? THEN value END, "
    "CASE WHEN typeof(expires) IN ('real', 'integer') THEN expires END, typeof(expires) "
    "FROM state WHERE key = ?"
)


# Queued writes of a DiskStore: (operation, frozen value or delta, shape, absolute expiry).
_SET, _DELETE, _ADD = range(3)
_Write: TypeAlias = "tuple[int, Any, int, float | None]"
_Loaded: TypeAlias = "tuple[Any, int, float | None, float]"  # frozen, shape, expiry, loaded at


def _combine(older: _Write | None, newer: _Write) -> _Write:
    """One queued write doing what ``older`` then ``newer`` do."""
    if older is None or newer[0] != _ADD:
        return newer
    if older[0] == _ADD:
        return (_ADD, older[1] + newer[1], ATOM, None)
    base = older[1] if older[0] == _SET and isinstance(older[1], (int, float)) else 0.0
    return (_SET, float(base) + newer[1], ATOM, None)


class DiskStore:
    """A private SQLite store (JSON values, bounded in size) behind an in-process cache.

    The hot path never waits for SQLite: ``get`` serves a key from memory (reading it from
    disk on a miss, misses included, and again once it is ``refresh`` seconds old), and
    ``set``/``delete``/``incr`` change memory at once and queue the write; a daemon thread
    commits queued writes in one transaction per batch, ~50 ms after the first (``_LINGER``).
    ``flush()`` and ``close()`` commit what is queued, and open stores are closed at interpreter
    exit; a SIGKILL loses at most the last ~50 ms of writes. With ``background=False`` each
    write is committed at once (at the end of the outermost ``transact()`` when inside one).

    Across processes sharing the directory: a process sees the others' writes within
    ``refresh`` seconds (``0``: read every key from disk each time); ``incr`` deltas are applied
    to the stored number inside the commit's SQLite transaction, so none is lost; ``set`` is
    last-writer-wins per key, and ``transact()`` is atomic against this process's threads only,
    so two processes updating the same record concurrently may each overwrite the other's
    update. The planner's records are decayed rates and ratios, which tolerate both.

    **Size.** Every row's key and value length is summed by triggers in the commit's own
    transaction. A commit that takes the store past ``size_limit`` deletes the expired keys,
    then the least recently written ones (an index on that time) down to 90% of the limit: one
    trim per tenth of the limit written, so writes stay O(1) amortised, and the statistics in
    use -- the planner rewrites a record each time it uses it -- are the ones kept.

    **What is read.** A row is read only if its value is JSON text of at most
    ``MAX_VALUE_CHARS`` characters holding what ``check_value`` accepts; any other row (planted
    or damaged: a blob, a pickle, a huge or non-JSON value) is ignored with one
    ``StateStoreWarning`` -- the key reads as missing and the next write replaces it.

    A failed write (disk full, database damaged, directory removed or replaced) is raised by
    every later operation (``ResilientStore`` then falls back to memory, starting with what
    ``salvage`` hands over: unsaved writes included); a lock held by another process for
    longer than ``timeout`` only delays the batch to the next commit.

    Args:
        directory: where the files live (default: ``default_state_dir()``).
        size_limit: bytes of keys and values before the least recently written keys go.
        timeout: seconds a commit waits for a lock held by another process before retrying.
        refresh: seconds a key is served from memory before it is read from disk again.
        background: commit in a background thread (``True``) or at each write.
        max_cached_keys: keys kept in memory (the least recently loaded are dropped first;
            keys with uncommitted writes never are).
        hash_key: the key that keys the stored key names (default: ``$CLAUDE_RELAY_HASH_KEY``,
            else a random key kept in the database). Processes sharing the database share it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        timeout: float = 2.0,
        refresh: float = DEFAULT_REFRESH,
        background: bool = True,
        max_cached_keys: int = DEFAULT_MAX_CACHED_KEYS,
        hash_key: bytes | None = None,
    ) -> None:
        if not refresh >= 0:
            msg = f"refresh must be seconds >= 0 (0: always read from disk), got {refresh!r}"
            raise ValueError(msg)
        if max_cached_keys < 1:
            msg = f"max_cached_keys must be at least 1, got {max_cached_keys!r}"
            raise ValueError(msg)
        if not size_limit > 0:
            msg = f"size_limit must be a positive number of bytes, got {size_limit!r}"
            raise ValueError(msg)
        self.directory = Path(directory) if directory is not None else state_dir()
        self.size_limit = int(size_limit)
        self.timeout = float(timeout)
        self.refresh = float(refresh)
        self.background = background
        self.max_cached_keys = max_cached_keys
        self._db_path = self.directory / DATABASE
        private_dir(self.directory)
        self._reader: sqlite3.Connection | None = None
        self._writer_db: sqlite3.Connection | None = None
        db = self._read_db()
        if not _has_schema(db):  # a write lock only to create it: opening waits for no writer
            with begin_immediate(db):
                for statement in _SCHEMA:
                    db.execute(statement)
        self._hash_key = database_hash_key(db, hash_key)
        self._identity = file_identity(self._db_path)
        self._memory: dict[str, _Loaded] = {}
        self._evict_at = max_cached_keys
        self._error: BaseException | None = None
        self._init_threads()
        if (self.directory / LEGACY_DATABASE).exists():
            self._migrate_legacy()
        on_exit_and_fork(self)

    def _init_threads(self) -> None:
        """Locks, queue and writer (again in a forked child: the parent commits its queue)."""
        self._lock = threading.RLock()  # memory, queue and the reading connection
        self._pending: dict[str, _Write] = {}  # queued, not yet taken by a commit
        self._committing: dict[str, _Write] = {}  # taken by the commit in progress
        self._lost: dict[str, _Write] = {}  # the batch whose commit failed (see ``salvage``)
        self._depth = 0  # transact() nesting of the thread holding _lock
        self._owner: int | None = None  # that thread
        self._writer = WriteBehind(
            "claude-relay-state-writer",
            take=self._take,
            send=self._send,
            linger=_LINGER,
            idle_exit=_IDLE_EXIT,
        )

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r})"

    # -- the database -----------------------------------------------------------------------

    def _read_db(self) -> sqlite3.Connection:
        """The connection reads use (under ``_lock``); opened on first use and after a fork."""
        if self._reader is None:
            self._reader = open_database(self._db_path, timeout=self.timeout)
        return self._reader

    def _write_db(self) -> sqlite3.Connection:
        """The connection commits use (one commit at a time: the writer's send lock)."""
        if self._writer_db is None:
            self._writer_db = open_database(self._db_path, timeout=self.timeout)
        return self._writer_db

    def _stored_key(self, key: str) -> str:
        """The key's name in the database: its kind, then a keyed hash of the whole key."""
        kind = key.partition(":")[0]
        return f"{kind}:{keyed_hash(self._hash_key, key)}"

    def _bad_row(self, why: str) -> None:
        warn_once(
            ("state_row", str(self.directory)),
            f"langchain-claude-relay's state store in {self.directory} holds a row it did not "
            f"write ({why}); the row is ignored (never executed) and replaced by the next "
            "write to its key. Remove the directory to start over if this repeats.",
            StateStoreWarning,
        )

    # -- checks ---------------------------------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _check_alive(self) -> None:
        # SQLite keeps writing to an unlinked file without complaint: notice a removed directory
        # (one stat per transaction or write outside one).
        if file_identity(self._db_path) != self._identity:
            msg = f"the state database {self._db_path} was replaced while in use"
            raise OSError(msg)

    # -- reading --------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """See ``StateStore.get`` (from memory; from disk on a miss or after ``refresh``)."""
        with self._lock:
            if self._error is not None:
                self._raise_error()
            entry = self._memory.get(key)
            if entry is None or (
                time.monotonic() - entry[3] >= self.refresh
                and key not in self._pending
                and key not in self._committing
            ):
                entry = self._load(key)
            frozen, shape, expires, _loaded = entry
            if expires is not None and time.time() >= expires:
                return None
            return thaw(frozen, shape)

    def _read_row(self, key: str) -> tuple[Any, Any, str] | None:
        """The key's row: its value if text within the cap, its expiry, the expiry's type."""
        cursor = self._read_db().execute(_SELECT, (MAX_VALUE_CHARS, self._stored_key(key)))
        found: tuple[Any, Any, str] | None = cursor.fetchone()
        return found

    def _load(self, key: str) -> _Loaded:
        found = self._read_row(key)
        frozen, shape, expires = None, ATOM, None
        if found is not None:
            text, expires, expires_type = found
            decoded = self._decode(text, expires_type)
            if decoded is None:
                expires = None
            else:
                frozen, shape = decoded
        entry = (frozen, shape, expires, time.monotonic())
        self._remember(key, entry)
        return entry

    def _decode(self, text: str | None, expires_type: str) -> tuple[Any, int] | None:
        """A stored value, frozen; ``None`` (with one warning) for a row we did not write."""
        if text is None:
            self._bad_row("a value that is not JSON text, or longer than the cap")
            return None
        if expires_type not in ("real", "integer", "null"):
            self._bad_row("an expiry that is not a number")
            return None
        try:
            return freeze(json.loads(text))
        except (ValueError, RecursionError):
            self._bad_row("a value that is not numbers in JSON")
            return None

    def _remember(self, key: str, entry: _Loaded) -> None:
        memory = self._memory
        memory.pop(key, None)  # re-inserted last: the dict's order is the loading order
        memory[key] = entry
        if len(memory) > self._evict_at:
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently loaded keys down to 3/4 of the bound (never unsaved ones).

        Keys with unsaved writes stay; if they alone keep memory above the bound, the next
        eviction waits for a quarter of the bound more keys, so a long backlog of unsaved keys
        costs O(1) amortised per write rather than a scan per write.
        """
        memory, pending, committing = self._memory, self._pending, self._committing
        excess = len(memory) - self.max_cached_keys * 3 // 4
        victims: list[str] = []
        if excess > 0:
            for key in memory:
                if key not in pending and key not in committing:
                    victims.append(key)
                    if len(victims) >= excess:
                        break
        for key in victims:
            del memory[key]
        self._evict_at = max(self.max_cached_keys, len(memory) + self.max_cached_keys // 4)

    def salvage(self, limit: int) -> list[tuple[str, Any]]:
        """The values this store holds in memory, for a fallback to go on with (``Salvageable``).

        Every write that is not on disk (queued, being committed, or in the batch whose commit
        failed) is in memory, and so are the keys used lately: their values come first, then
        the others, the most recently used first. Deleted, missing and expired keys are left
        out.

        Args:
            limit: the most pairs to return.

        Returns:
            ``(key, value)`` pairs (fresh copies).
        """
        now = time.time()
        with self._lock:
            memory = self._memory
            unsaved = [k for k in (*self._lost, *self._committing, *self._pending) if k in memory]
            keys = dict.fromkeys([*unsaved, *reversed(memory)])  # unsaved first, no repeats
            entries = [(key, memory[key]) for key in keys]
        salvaged: list[tuple[str, Any]] = []
        for key, (frozen, shape, expires, _loaded) in entries:
            if len(salvaged) >= limit:
                break
            if frozen is not None and (expires is None or expires > now):
                salvaged.append((key, thaw(frozen, shape)))
        return salvaged

    # -- writing --------------------------------------------------------------------------

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set`` (in memory at once, on disk with the next commit)."""
        check_key(key)
        frozen, shape = freeze(value)
        expires = None if expire is None else time.time() + expire
        if self._queue(key, (_SET, frozen, shape, expires)):
            self._commit()

    def delete(self, key: str) -> None:
        """See ``StateStore.delete`` (in memory at once, on disk with the next commit)."""
        if self._queue(key, (_DELETE, None, ATOM, None)):
            self._commit()

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr``.

        The delta is added to the number on disk inside the commit's transaction, so
        increments from several processes all count; the value returned is this process's
        view (the number as read at most ``refresh`` seconds ago, plus its own increments).
        """
        with self._lock:
            current = self.get(key)
            value = float(current if isinstance(current, (int, float)) else 0.0) + delta
            older = self._pending.get(key)
            if older is None or older[0] == _ADD:
                write = _combine(older, (_ADD, float(delta), ATOM, None))
            else:  # a queued set or delete: it becomes a set of the new value
                write = (_SET, value, ATOM, None)
            commit = self._queue(key, write, value)
        if commit:  # never while holding the lock: a commit takes the locks in its own order
            self._commit()
        return value

    def _queue(self, key: str, write: _Write, value: Any = None) -> bool:
        """Queue a write and apply it to memory (``value``: what an increment came to).

        Returns:
            Whether the caller must commit now (``background=False``, outside a transaction).
        """
        with self._lock:
            if self._error is not None:
                self._raise_error()
            if self._depth == 0:
                self._check_alive()
            first = not self._pending
            self._pending.pop(key, None)  # re-queued last: the commit keeps the order of use
            self._pending[key] = write
            now = time.monotonic()
            if write[0] == _SET:
                self._remember(key, (write[1], write[2], write[3], now))
            else:
                self._remember(key, (value, ATOM, None, now))
            if self.background and first:
                self._writer.queued()
            return not self.background and self._depth == 0

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """See ``StateStore.transact``: atomic against this process's other threads.

        Other processes are not locked out (see the class docstring); a store that failed
        raises here.
        """
        with self._lock:
            if self._depth == 0:
                if self._error is not None:
                    self._raise_error()
                self._check_alive()
                self._owner = threading.get_ident()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                outermost = self._depth == 0
                if outermost:
                    self._owner = None
        if outermost and not self.background:
            self._commit()

    def _take(self) -> dict[str, _Write]:
        """The writer's ``take``: the queued writes become the commit in progress."""
        with self._lock:
            self._raise_error()
            batch, self._pending = self._pending, {}
            self._committing = batch
            return batch

    def _send(self, batch: dict[str, _Write]) -> None:
        """The writer's ``send``: commit a batch in one SQLite transaction.

        Raises:
            Exception: what the write raised; a lock held by another process leaves the
                writes queued, any other failure is kept and raised by later operations.
        """
        if not batch:
            return
        try:
            totals = self._write(batch)
        except Exception as exc:
            with self._lock:
                self._committing = {}
                if is_busy(exc):  # try again with the next commit
                    for key, write in batch.items():
                        newer = self._pending.pop(key, None)
                        self._pending[key] = write if newer is None else _combine(write, newer)
                else:
                    self._error = exc
                    self._lost = batch
            raise
        with self._lock:
            self._committing = {}
            now = time.monotonic()
            for key, total in totals.items():  # what the increments came to on disk
                if key not in self._pending:
                    self._remember(key, (total, ATOM, None, now))
            if len(self._memory) > self.max_cached_keys:
                self._evict()

    def _commit(self, timeout: float | None = None) -> None:
        """Commit the queued writes now, in this thread, in order with any other commit.

        Raises:
            RuntimeError: if called inside ``transact()`` by the thread holding it.
            TimeoutError: if a commit in progress did not finish within ``timeout`` seconds.
            Exception: what the write raised (see ``_send``).
        """
        if self._owner == threading.get_ident():
            msg = "DiskStore.flush() cannot be called inside transact()"
            raise RuntimeError(msg)
        self._raise_error()
        if not self._writer.flush(timeout, force=True):  # force: writes queued without a thread
            msg = f"the state store in {self.directory} is still committing"
            raise TimeoutError(msg)
        self._raise_error()

    def _write(self, batch: dict[str, _Write]) -> dict[str, float]:
        """Apply a batch in one SQLite transaction, trimming at the size limit.

        Returns:
            The stored number of each incremented key.
        """
        self._check_alive()
        check_header(self._db_path)
        db, now = self._write_db(), time.time()
        totals: dict[str, float] = {}
        with begin_immediate(db):
            for order, (key, (operation, frozen, _shape, expires)) in enumerate(batch.items()):
                stored = self._stored_key(key)
                used = now + order * _ORDER_STEP  # within a batch, in the order keys were queued
                if operation == _SET and (expires is None or expires > now):
                    db.execute(_UPSERT, (stored, _dumps(frozen), expires, used))
                elif operation == _ADD:
                    total = _stored_number(db, stored, now) + frozen
                    db.execute(_UPSERT, (stored, _dumps(total), None, used))
                    totals[key] = total
                else:  # a delete, or a set that has already expired
                    db.execute("DELETE FROM state WHERE key = ?", (stored,))
            self._trim(db, now)
        return totals

    def _trim(self, db: sqlite3.Connection, now: float) -> None:
        """Past the size limit: drop expired keys, then the least recently written ones."""
        size, rows = db.execute("SELECT bytes, rows FROM size WHERE id = 0").fetchone()
        if size <= self.size_limit:
            return
        db.execute("DELETE FROM state WHERE expires IS NOT NULL AND expires <= ?", (now,))
        size, rows = db.execute("SELECT bytes, rows FROM size WHERE id = 0").fetchone()
        target = self.size_limit * _TRIM_TO
        if size <= target or rows <= 0:
            return
        drop = max(1, math.ceil(rows * (size - target) / size))
        db.execute(
            "DELETE FROM state WHERE key IN (SELECT key FROM state ORDER BY last_used LIMIT ?)",
            (drop,),
        )

    def flush(self, timeout: float | None = None) -> None:
        """Commit every write made so far.

        Args:
            timeout: seconds to wait for a commit in progress (``None``: no limit).

        Raises:
            RuntimeError: if called inside ``transact()``.
            TimeoutError: if a commit in progress did not finish in time.
            Exception: what the write raised (see ``_commit``).
        """
        self._commit(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, stop the writer and close the SQLite connections.

        The store may be used again afterwards (it reconnects). A store that already failed
        closes without raising.

        Args:
            timeout: seconds to wait for the writer and a commit in progress.

        Raises:
            RuntimeError: if called inside ``transact()`` (the writer may be waiting for it).
            Exception: what the last commit raised.
        """
        if self._owner == threading.get_ident():
            msg = "DiskStore.close() cannot be called inside transact()"
            raise RuntimeError(msg)
        self._writer.stop(timeout)
        try:
            if self._error is None:
                self._commit(timeout)
        finally:
            with self._lock:
                connections, self._reader, self._writer_db = (
                    (self._reader, self._writer_db),
                    None,
                    None,
                )
            for db in connections:
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        db.close()

    def _at_exit(self) -> None:
        try:
            self.close(timeout=_EXIT_TIMEOUT)
        except Exception as exc:  # exit must go on
            logger.warning(
                "langchain-claude-relay's state store in %s could not save its last updates at "
                "exit (%s: %s)",
                self.directory,
                type(exc).__name__,
                exc,
            )

    def _after_fork_in_child(self) -> None:
        # The parent's connections are not the child's to use or close (SQLite's rule): they are
        # left alone and the child opens its own on first use.
        _INHERITED.extend(c for c in (self._reader, self._writer_db) if c is not None)
        self._reader = self._writer_db = None
        self._init_threads()

    # -- an older version's state -------------------------------------------------------------

    def _migrate_legacy(self) -> None:
        """Copy an older version's diskcache rows that are plain JSON, then delete its database.

        Runs once per directory (a ``meta`` row says it ran), in one transaction: processes
        opening the store together migrate it once.
        """
        db = self._write_db()
        try:
            with begin_immediate(db):
                done = db.execute("SELECT 1 FROM meta WHERE name = 'migrated'").fetchone()
                if done is None:
                    copied, dropped = self._copy_legacy_rows(db)
                    db.execute("INSERT INTO meta (name, value) VALUES ('migrated', ?)", (copied,))
                    self._trim(db, time.time())
                else:
                    copied = dropped = -1
            remove_legacy_files(self.directory)
        except (sqlite3.Error, OSError) as exc:  # an unreadable old file: state starts afresh
            logger.warning(
                "the old state database %s could not be migrated (%s); it is left in place "
                "and not read",
                self.directory / LEGACY_DATABASE,
                type(exc).__name__,
            )
            return
        report_migration(
            self.directory,
            copied,
            dropped,
            what="langchain-claude-relay's state",
            unit="rows",
            category=StateStoreWarning,
            log=logger,
        )

    def _copy_legacy_rows(self, db: sqlite3.Connection) -> tuple[int, int]:
        rows, dropped = legacy_rows(self.directory, text=False, max_value_bytes=MAX_VALUE_CHARS)
        now, copied = time.time(), 0
        for raw_key, expires, raw_value in rows:
            try:
                key = inflate_json_bytes(raw_key, 512)
                check_key(key)
                frozen, _shape = freeze(inflate_json_bytes(raw_value, MAX_VALUE_CHARS))
            except (ValueError, TypeError, RecursionError):
                dropped += 1
                continue
            if expires is not None and not isinstance(expires, (int, float)):
                dropped += 1
                continue
            if expires is not None and expires <= now:
                continue  # expired: nothing to keep (and nothing to delete but the row)
            db.execute(_UPSERT, (self._stored_key(key), _dumps(frozen), expires, now))
            copied += 1
        return copied, dropped


_INHERITED: list[sqlite3.Connection] = []  # connections a forked child must neither use nor close


_SCHEMA_NAMES = frozenset(
    name for statement in _SCHEMA for name in re.findall(r"IF NOT EXISTS (\w+)", statement)
)
"""The tables, indexes and triggers ``_SCHEMA`` creates."""


def _has_schema(db: sqlite3.Connection) -> bool:
    """Whether the tables, indexes, triggers and size row exist (a read: no write lock)."""
    names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    if not names >= _SCHEMA_NAMES:
        return False
    return db.execute("SELECT 1 FROM size WHERE id = 0").fetchone() is not None


def _dumps(frozen: Any) -> str:
    """A frozen value as compact JSON (tuples are arrays)."""
    return json.dumps(frozen, separators=(",", ":"))


def _stored_number(db: sqlite3.Connection, stored: str, now: float) -> float:
    """The number under a stored key (0 when missing, expired, or not a number)."""
    found = db.execute(
        "SELECT CASE WHEN typeof(value) = 'text' AND length(value) <= ? THEN value END "
        "FROM state WHERE key = ? AND (expires IS NULL OR expires > ?)",
        (_NUMBER_CHARS, stored, now),
    ).fetchone()
    if found is None or found[0] is None:
        return 0.0
    try:
        value = json.loads(found[0])
    except ValueError:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    try:
        number = float(value)  # an integer too large for a float raises
    except OverflowError:
        return 0.0
    return number if math.isfinite(number) else 0.0
