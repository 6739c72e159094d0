"""``DiskStore``: the state store in a diskcache directory, shared by processes, cached in memory.

diskcache (SQLite) with JSON values, a size limit and per-key expiry, behind an in-process cache:
reads are served from memory (read through on a miss, re-read after ``refresh`` seconds), writes
land in memory at once and a background thread commits them in batches. Its directory defaults
to ``platformdirs.user_cache_dir("langchain-claude-relay")`` + ``/state``, or
``$CLAUDE_RELAY_STATE_DIR``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from langchain_claude_relay._env import state_dir
from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork
from langchain_claude_relay.store.base import (
    ATOM,
    check_key,
    freeze,
    freeze_loaded,
    is_busy,
    thaw,
)

__all__ = ["DiskStore", "DEFAULT_SIZE_LIMIT", "DEFAULT_REFRESH", "DEFAULT_MAX_CACHED_KEYS"]

logger = logging.getLogger("langchain_claude_relay.store")

DEFAULT_SIZE_LIMIT = 64 * 2**20
"""Bytes the disk store may use before diskcache evicts the least recently stored keys."""

DEFAULT_REFRESH = 1.0
"""Seconds a ``DiskStore`` serves a key from memory before reading it from disk again."""

DEFAULT_MAX_CACHED_KEYS = 20_000
"""Keys a ``DiskStore`` keeps in memory (the least recently loaded go first; never unsaved ones)."""

_LINGER = 0.05  # seconds the writer waits after the first queued write to batch more
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never wait longer than this per store
_IDLE_EXIT = 2.0  # seconds the writer waits for work before it ends (restarted on a write)


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
    """A diskcache store (SQLite, JSON values, bounded in size) behind an in-process cache.

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

    A failed write (disk full, database damaged, directory removed or replaced) is raised by
    every later operation (``ResilientStore`` then falls back to memory); a lock held by
    another process for longer than ``timeout`` only delays the batch to the next commit.

    Args:
        directory: where the files live (default: ``default_state_dir()``).
        size_limit: bytes before the least recently stored keys are evicted.
        timeout: seconds a commit waits for a lock held by another process before retrying.
        refresh: seconds a key is served from memory before it is read from disk again.
        background: commit in a background thread (``True``) or at each write.
        max_cached_keys: keys kept in memory (the least recently loaded are dropped first;
            keys with uncommitted writes never are).
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
    ) -> None:
        import diskcache

        if not refresh >= 0:
            msg = f"refresh must be seconds >= 0 (0: always read from disk), got {refresh!r}"
            raise ValueError(msg)
        if max_cached_keys < 1:
            msg = f"max_cached_keys must be at least 1, got {max_cached_keys!r}"
            raise ValueError(msg)
        self.directory = Path(directory) if directory is not None else state_dir()
        self.refresh = float(refresh)
        self.background = background
        self.max_cached_keys = max_cached_keys
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(self.directory),
            timeout=timeout,
            disk=diskcache.JSONDisk,
            disk_compress_level=0,  # stored as plain JSON: a text scan of the files is meaningful
            size_limit=size_limit,
            eviction_policy="least-recently-stored",
        )
        self._db_path = str(self.directory / "cache.db")
        self._identity = _file_identity(self._db_path)
        self._memory: dict[str, _Loaded] = {}
        self._error: BaseException | None = None
        self._init_threads()
        on_exit_and_fork(self)

    def _init_threads(self) -> None:
        """Locks, queue and writer (again in a forked child: the parent commits its queue)."""
        self._lock = threading.RLock()  # memory and queue; held through transact()
        self._pending: dict[str, _Write] = {}  # queued, not yet taken by a commit
        self._committing: dict[str, _Write] = {}  # taken by the commit in progress
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

    # -- checks ---------------------------------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _check_alive(self) -> None:
        # SQLite keeps writing to an unlinked file without complaint: notice a removed directory
        # (one stat per transaction or write outside one).
        if _file_identity(self._db_path) != self._identity:
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

    def _load(self, key: str) -> _Loaded:
        value, expires = self._cache.get(key, expire_time=True)
        frozen, shape = (None, ATOM) if value is None else freeze_loaded(value)
        entry = (frozen, shape, expires, time.monotonic())
        self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: _Loaded) -> None:
        memory = self._memory
        memory.pop(key, None)  # re-inserted last: the dict's order is the loading order
        memory[key] = entry
        if len(memory) > self.max_cached_keys:
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently loaded keys down to 3/4 of the bound (never unsaved ones)."""
        memory, dirty = self._memory, (self._pending, self._committing)
        excess = len(memory) - self.max_cached_keys * 3 // 4
        for old in [k for k in memory if not any(k in d for d in dirty)][: max(0, excess)]:
            del memory[old]

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
        """Apply a batch in one SQLite transaction.

        Returns:
            The stored number of each incremented key.
        """
        self._check_alive()
        cache, now = self._cache, time.time()
        totals: dict[str, float] = {}
        with cache.transact():
            for key, (operation, frozen, _shape, expires) in batch.items():
                if operation == _SET and (expires is None or expires > now):
                    cache.set(key, frozen, expire=None if expires is None else expires - now)
                elif operation == _ADD:
                    current = cache.get(key)
                    total = float(current if isinstance(current, (int, float)) else 0.0) + frozen
                    cache.set(key, total)
                    totals[key] = total
                else:  # a delete, or a set that has already expired
                    cache.delete(key)
        return totals

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
            self._cache.close()

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
        self._init_threads()


def _file_identity(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:
        msg = f"the state database {path} was removed while in use"
        raise FileNotFoundError(msg) from exc
    return stat.st_dev, stat.st_ino
