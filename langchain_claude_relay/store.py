"""The planner's state store: hashes and numbers that outlive the process, never prompt text.

The planner remembers, per model, its token calibration and (for unknown models) what it learned
about the minimum cacheable prefix, and, per prefix hash and per template, when prefixes arrived
and whether they came back. All of it is small numbers under hashed keys, so a store can be
shared by processes and kept on disk without holding anything a prompt said.

Backends share one small protocol, ``StateStore``:

* ``MemoryStore``: a dict, for tests and for the fallback below.
* ``DiskStore``: diskcache (SQLite) with JSON values, a size limit and per-key expiry, shared by
  processes, behind an in-process cache: reads are served from memory (read through on a miss,
  re-read after ``refresh`` seconds), writes land in memory at once and a background thread
  commits them in batches. Its directory defaults to
  ``platformdirs.user_cache_dir("langchain-claude-relay")`` + ``/state``, or
  ``$CLAUDE_RELAY_STATE_DIR``.
* ``ResilientStore``: wraps another store; the first time it fails (read-only directory,
  corrupted file, disk full, directory removed while running) it warns once with
  ``StateStoreWarning`` and goes on with a ``MemoryStore``, so planning never fails a call.

One broken directory or disk usually breaks the planner's store and the cost ledger together
(the ledger lives in the state directory's ``ledger/``): ``warn_state_failure`` warns once per
state location and process, and logs the failures that follow under the same location.

Values are checked on the way in: a key is a short ``kind:hex`` id, a value is a number, a list of
numbers (or of lists of numbers), or a dict from short lowercase names to those. A string value is
refused, which is what keeps prompt text out of the store. Stores keep values frozen (tuples
and private dicts) and hand out fresh lists and dicts, so a caller cannot change stored state
through a value it got or gave; lists come back as lists whether tuples or lists went in.

>>> store = MemoryStore()
>>> store.set("p:00ff", {"n": 1.0, "last": 12.5})
>>> store.get("p:00ff")
{'n': 1.0, 'last': 12.5}
>>> store.incr("c:01", 2)
2.0
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "STATE_DIR_ENV",
    "StoreValue",
    "StateStore",
    "StateWarning",
    "StateStoreWarning",
    "warn_state_failure",
    "MemoryStore",
    "DiskStore",
    "ResilientStore",
    "default_state_dir",
    "default_store",
    "check_key",
    "check_value",
]

logger = logging.getLogger("langchain_claude_relay.store")

STATE_DIR_ENV = "CLAUDE_RELAY_STATE_DIR"
"""Environment variable naming the state directory (read only by ``default_state_dir``)."""

DEFAULT_SIZE_LIMIT = 64 * 2**20
"""Bytes the disk store may use before diskcache evicts the least recently stored keys."""

DEFAULT_REFRESH = 1.0
"""Seconds a ``DiskStore`` serves a key from memory before reading it from disk again."""

DEFAULT_MAX_CACHED_KEYS = 20_000
"""Keys a ``DiskStore`` keeps in memory (the least recently loaded go first; never unsaved ones)."""

_LINGER = 0.05  # seconds the writer waits after the first queued write to batch more
_EXIT_TIMEOUT = 5.0  # at interpreter exit, never wait longer than this per store
_IDLE_EXIT = 2.0  # seconds the writer waits for work before it ends (restarted on a write)

StoreValue: TypeAlias = "float | int | list[Any] | dict[str, Any]"

_KEY = re.compile(r"[a-z]{1,8}:[0-9a-f]{1,64}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,15}")


class StateWarning(UserWarning):
    """Saved state (planner statistics, the cost ledger) failed; it is kept in memory instead."""


class StateStoreWarning(StateWarning):
    """The state store failed; planning goes on in memory (statistics are not persisted)."""


_reported: list[Path] = []
_reported_lock = threading.Lock()


def warn_state_failure(
    location: str | os.PathLike[str] | None,
    message: str,
    category: type[Warning] = StateStoreWarning,
    *,
    stacklevel: int = 2,
) -> bool:
    """Warn that saved state failed, once per state location and process; log the rest.

    The planner's store and the cost ledger share a state directory, and whatever breaks one
    (a file where the directory should be, a full disk, the directory removed) usually breaks
    the other: the user should see one warning, not one per component. A failure at a
    location that is, contains or lies inside one already reported is logged instead.

    Args:
        location: the state directory concerned (``None``: unknown, always warned).
        message: the warning text.
        category: the warning class.
        stacklevel: as for ``warnings.warn``, counted from the caller of this function.

    Returns:
        Whether a warning was issued.
    """
    where = Path(os.path.abspath(os.fspath(location))) if location is not None else None
    with _reported_lock:
        repeated = where is not None and any(
            where == seen or where in seen.parents or seen in where.parents for seen in _reported
        )
        if where is not None and not repeated:
            _reported.append(where)
    if repeated:
        logger.warning("%s", message)
        return False
    warnings.warn(message, category, stacklevel=stacklevel + 1)
    return True


def check_key(key: str) -> None:
    """Refuse anything but a short ``kind:hex`` key (so no text can hide in a key).

    Raises:
        ValueError: if the key is not of the form ``[a-z]{1,8}:[0-9a-f]{1,64}``.
    """
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        msg = f"invalid state key {key!r}: keys are 'kind:hex' (e.g. 'p:3fa2'), never text"
        raise ValueError(msg)


def check_value(value: Any, *, _depth: int = 0) -> None:
    """Refuse values that are not numbers, lists of numbers or dicts of numbers.

    Raises:
        ValueError: for a string, a bool, a non-finite number, an unknown type, a dict key that
            is not a short lowercase name, or nesting deeper than two levels.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"invalid state value {value!r}: numbers must be finite"
            raise ValueError(msg)
        return
    if isinstance(value, (list, tuple)) and _depth < 2:
        for item in value:
            check_value(item, _depth=_depth + 1)
        return
    if isinstance(value, dict) and _depth == 0:
        for name, item in value.items():
            if not isinstance(name, str) or not _FIELD.fullmatch(name):
                msg = f"invalid state field name {name!r}: use short lowercase names"
                raise ValueError(msg)
            check_value(item, _depth=1)
        return
    msg = (
        f"invalid state value of type {type(value).__name__}: the store holds numbers, lists "
        "of numbers and dicts of numbers only (never text)"
    )
    raise ValueError(msg)


# ------------------------------------------------------------------------- frozen values
#
# A stored value is kept frozen: numbers as they are, lists as tuples, dicts as private dicts
# no caller ever sees. Its *shape*, found once when it is stored, says how to hand out a
# fresh copy without walking it generically (``copy.deepcopy`` was most of a store call).

_ATOM, _FLAT_LIST, _NESTED_LIST, _FLAT_DICT, _NESTED_DICT, _ANY = range(6)
Frozen: TypeAlias = "tuple[Any, int]"
"""A frozen value and its shape."""

_NUMBERS = frozenset({int, float})
_known_fields: set[str] = set()  # field names already checked (a small vocabulary)


def _numbers(items: tuple[Any, ...] | list[Any]) -> bool:
    """Whether every item is a finite ``int`` or ``float`` (a fast test; ``False`` if unsure)."""
    if not set(map(type, items)) <= _NUMBERS:
        return False
    try:  # a sum is finite only if every term is (it can also overflow: then check slowly)
        return math.isfinite(sum(items))
    except OverflowError:
        return False


def _fields_known(names: Any) -> bool:
    if names <= _known_fields:
        return True
    for name in names:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            return False
    if len(_known_fields) < 4096:
        _known_fields.update(names)
    return True


def _freeze(value: Any) -> Frozen:
    """Check a value as ``check_value`` does and freeze it.

    Raises:
        ValueError: if ``check_value`` refuses the value.
    """
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite
            return value, _ATOM
    elif kind is int:
        return value, _ATOM
    elif kind is list or kind is tuple:
        items = tuple(value)
        if _numbers(items):
            return items, _FLAT_LIST
        nested = tuple(tuple(v) if type(v) in (list, tuple) else v for v in items)
        if all(type(v) is not tuple or _numbers(v) for v in nested) and _numbers(
            [v for v in nested if type(v) is not tuple]
        ):
            return nested, _NESTED_LIST
    elif kind is dict and _fields_known(value.keys()):
        if _numbers(tuple(value.values())):
            return dict(value), _FLAT_DICT
        fields = {k: tuple(v) if type(v) in (list, tuple) else v for k, v in value.items()}
        if all(type(v) is not tuple or _numbers(v) for v in fields.values()) and _numbers(
            [v for v in fields.values() if type(v) is not tuple]
        ):
            return fields, _NESTED_DICT
    check_value(value)  # raises for what is not allowed; accepts what the fast tests doubted
    return _freeze_any(value), _ANY


def _freeze_any(value: Any) -> Any:
    """Freeze anything JSON can hold (lists to tuples, dicts to new dicts), deeply."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze_any(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze_any(v) for k, v in value.items()}
    return value


def _freeze_loaded(value: Any) -> Frozen:
    """Freeze a value read from disk (written by any version, or by hand: not refused)."""
    try:
        return _freeze(value)
    except ValueError:
        return _freeze_any(value), _ANY


def _thaw(frozen: Any, shape: int) -> Any:
    """A fresh, mutable copy of a frozen value."""
    if shape == _ATOM:
        return frozen
    if shape == _FLAT_LIST:
        return list(frozen)
    if shape == _FLAT_DICT:
        return frozen.copy()
    if shape == _NESTED_DICT:
        return {k: list(v) if type(v) is tuple else v for k, v in frozen.items()}
    if shape == _NESTED_LIST:
        return [list(v) if type(v) is tuple else v for v in frozen]
    return _thaw_any(frozen)


def _thaw_any(frozen: Any) -> Any:
    if type(frozen) is tuple:
        return [_thaw_any(v) for v in frozen]
    if type(frozen) is dict:
        return {k: _thaw_any(v) for k, v in frozen.items()}
    return frozen


@runtime_checkable
class StateStore(Protocol):
    """Get/set/delete/incr on ``kind:hex`` keys, plus a transaction for read-modify-write.

    ``expire`` is in seconds from now (``None``: keep until evicted). ``transact()`` makes a
    block of operations atomic with respect to the other threads using the same store object
    (a ``DiskStore`` shared by processes: see its docstring for what holds across processes).
    """

    def get(self, key: str) -> Any:
        """The stored value, or ``None``."""
        ...

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """Store a value (checked with ``check_value``)."""
        ...

    def delete(self, key: str) -> None:
        """Remove a key if present."""
        ...

    def incr(self, key: str, delta: float = 1.0) -> float:
        """Add ``delta`` to a number (missing: 0) and return the new value."""
        ...

    def transact(self) -> contextlib.AbstractContextManager[None]:
        """A context manager making the enclosed operations atomic."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


class MemoryStore:
    """A process-local store (tests, and the fallback of ``ResilientStore``).

    Values are kept frozen and copied out cheaply (see the module docstring): a ``get`` costs
    about a microsecond.

    Args:
        clock: seconds, used for key expiry; without one, keys never expire (deterministic
            tests).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._data: dict[str, tuple[Any, int, float | None]] = {}
        self._lock = threading.RLock()
        self._clock = clock

    def get(self, key: str) -> Any:
        """See ``StateStore.get``."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            frozen, shape, expires = item
            if expires is not None and self._clock is not None and self._clock() >= expires:
                del self._data[key]
                return None
            return _thaw(frozen, shape)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        check_key(key)
        frozen, shape = _freeze(value)
        expires = None
        if expire is not None and self._clock is not None:
            expires = self._clock() + expire
        with self._lock:
            self._data[key] = (frozen, shape, expires)

    def delete(self, key: str) -> None:
        """See ``StateStore.delete``."""
        with self._lock:
            self._data.pop(key, None)

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr``."""
        with self._lock:
            current = self.get(key)
            value = float(current if isinstance(current, (int, float)) else 0.0) + delta
            self.set(key, value)
            return value

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """See ``StateStore.transact``."""
        with self._lock:
            yield

    def flush(self) -> None:
        """Nothing to write (for symmetry with ``DiskStore.flush``)."""

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._data)


# Queued writes of a DiskStore: (operation, frozen value or delta, shape, absolute expiry).
_SET, _DELETE, _ADD = range(3)
_Write: TypeAlias = "tuple[int, Any, int, float | None]"
_Loaded: TypeAlias = "tuple[Any, int, float | None, float]"  # frozen, shape, expiry, loaded at


def _combine(older: _Write | None, newer: _Write) -> _Write:
    """One queued write doing what ``older`` then ``newer`` do."""
    if older is None or newer[0] != _ADD:
        return newer
    if older[0] == _ADD:
        return (_ADD, older[1] + newer[1], _ATOM, None)
    base = older[1] if older[0] == _SET and isinstance(older[1], (int, float)) else 0.0
    return (_SET, float(base) + newer[1], _ATOM, None)


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
        self.directory = Path(directory) if directory is not None else default_state_dir()
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
        _LIVE_DISK_STORES.add(self)

    def _init_threads(self) -> None:
        """Locks, queue and writer (again in a forked child: the parent commits its queue)."""
        self._lock = threading.RLock()  # memory and queue; held through transact()
        self._write_lock = threading.Lock()  # one commit at a time, in queue order
        self._wake = threading.Condition(threading.Lock())
        self._pending: dict[str, _Write] = {}  # queued, not yet taken by a commit
        self._committing: dict[str, _Write] = {}  # taken by the commit in progress
        self._depth = 0  # transact() nesting of the thread holding _lock
        self._owner: int | None = None  # that thread
        self._stopping = False
        self._thread: threading.Thread | None = None

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
            return _thaw(frozen, shape)

    def _load(self, key: str) -> _Loaded:
        value, expires = self._cache.get(key, expire_time=True)
        frozen, shape = (None, _ATOM) if value is None else _freeze_loaded(value)
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
        frozen, shape = _freeze(value)
        expires = None if expire is None else time.time() + expire
        if self._queue(key, (_SET, frozen, shape, expires)):
            self._commit()

    def delete(self, key: str) -> None:
        """See ``StateStore.delete`` (in memory at once, on disk with the next commit)."""
        if self._queue(key, (_DELETE, None, _ATOM, None)):
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
                write = _combine(older, (_ADD, float(delta), _ATOM, None))
            else:  # a queued set or delete: it becomes a set of the new value
                write = (_SET, value, _ATOM, None)
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
                self._remember(key, (value, _ATOM, None, now))
            if self.background and (first or self._thread is None):
                self._wake_writer()
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

    def _wake_writer(self) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="claude-relay-state-writer", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        """The writer thread: commit what is queued, in batches, until stopped or failed."""
        while True:
            with self._wake:
                if not self._pending and not self._stopping:
                    self._wake.wait(_IDLE_EXIT)
                if not self._pending and not self._stopping:
                    # Idle: end, so that a store nobody uses can be collected (nothing is queued).
                    self._thread = None
                    return
                # Linger so that the writes of calls close together share one transaction.
                self._wake.wait_for(lambda: self._stopping, _LINGER)
                if self._stopping:
                    return  # close() commits what is left
            try:
                self._commit()
            except Exception as exc:
                logger.debug("state store commit failed: %s", type(exc).__name__)
            if self._error is not None:
                return

    def _commit(self, timeout: float | None = None) -> None:
        """Commit the queued writes in one transaction, in order with any other commit.

        Raises:
            TimeoutError: if the locks were not free within ``timeout`` seconds.
            Exception: what the write raised; a lock held by another process leaves the
                writes queued, any other failure is kept and raised by later operations.
        """
        wait = -1.0 if timeout is None else timeout
        if self._owner == threading.get_ident():
            msg = "DiskStore.flush() cannot be called inside transact()"
            raise RuntimeError(msg)
        if not self._write_lock.acquire(timeout=wait):
            msg = f"the state store in {self.directory} is still committing"
            raise TimeoutError(msg)
        try:
            if not self._lock.acquire(timeout=wait):
                msg = f"the state store in {self.directory} is held by a transaction"
                raise TimeoutError(msg)
            try:
                self._raise_error()
                batch, self._pending = self._pending, {}
                self._committing = batch
            finally:
                self._lock.release()
            if not batch:
                return
            try:
                totals = self._write(batch)
            except Exception as exc:
                with self._lock:
                    self._committing = {}
                    if _is_lock_timeout(exc):  # try again with the next commit
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
                        self._remember(key, (total, _ATOM, None, now))
                if len(self._memory) > self.max_cached_keys:
                    self._evict()
        finally:
            self._write_lock.release()

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
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        try:
            if self._error is None:
                self._commit(timeout)
        finally:
            with self._wake:
                self._stopping = False
                if thread is None or not thread.is_alive():
                    self._thread = None
            self._cache.close()

    def _after_fork_in_child(self) -> None:
        self._init_threads()


class ResilientStore:
    """A store that never raises: on the first failure it warns once and continues in memory.

    Args:
        inner: the store to use, or a factory called on first use (so that constructing a
            planner touches no disk).
        location: the state directory, for ``warn_state_failure`` (a callable is asked on
            failure; default: the inner store's ``directory``, if it has one).
    """

    def __init__(
        self,
        inner: StateStore | Callable[[], StateStore],
        *,
        location: str | os.PathLike[str] | Callable[[], Path] | None = None,
    ) -> None:
        self._location = location
        self._factory: Callable[[], StateStore] | None = None
        self._inner: StateStore | None = None
        if callable(inner) and not isinstance(inner, StateStore):
            self._factory = inner
        else:
            self._inner = inner
        self._fallback: MemoryStore | None = None
        self._lock = threading.RLock()
        self.failure: str | None = None
        """Why the store fell back to memory (``None`` while it works)."""

    @property
    def degraded(self) -> bool:
        """Whether the store has fallen back to memory."""
        return self._fallback is not None

    def _target(self) -> StateStore:
        if self._fallback is not None:
            return self._fallback
        if self._inner is None:
            try:
                if self._factory is None:
                    msg = "ResilientStore has neither a store nor a factory"
                    raise RuntimeError(msg)
                self._inner = self._factory()
            except Exception as exc:
                return self._fail(exc)
        return self._inner

    def _fail(self, exc: BaseException) -> MemoryStore:
        with self._lock:
            if self._fallback is None:
                self._fallback = MemoryStore()
                self.failure = f"{type(exc).__name__}: {exc}"
                warn_state_failure(
                    self._where(),
                    "langchain-claude-relay's state store failed "
                    f"({self.failure}); cache planning continues in memory for this process, "
                    "so reuse statistics and token calibration are not saved. Check the state "
                    f"directory (set ${STATE_DIR_ENV} to move it) or pass another store. Other "
                    "failures under this directory (the cost ledger's) are logged, not warned.",
                    StateStoreWarning,
                    stacklevel=4,
                )
                inner, self._inner = self._inner, None
                if inner is not None:
                    with contextlib.suppress(Exception):
                        inner.close()
            return self._fallback

    def _where(self) -> Any:
        location = self._location
        if callable(location):
            try:
                return location()
            except Exception:  # an unknown location only means no de-duplication
                return None
        return location if location is not None else getattr(self._inner, "directory", None)

    def _recover(self, exc: Exception) -> MemoryStore | None:
        """The store to repeat a failed operation on, or ``None`` to skip it."""
        if isinstance(exc, ValueError):
            raise exc  # a bad key or value is a bug in the caller, not a store failure
        if _is_lock_timeout(exc):
            return None  # another process holds the lock: skip this update, keep the store
        return self._fail(exc)

    def get(self, key: str) -> Any:
        """See ``StateStore.get``."""
        target = self._target()
        try:
            return target.get(key)
        except Exception as exc:
            fallback = self._recover(exc)
            return None if fallback is None else fallback.get(key)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        target = self._target()
        try:
            target.set(key, value, expire=expire)
        except Exception as exc:
            fallback = self._recover(exc)
            if fallback is not None:
                fallback.set(key, value, expire=expire)

    def delete(self, key: str) -> None:
        """See ``StateStore.delete``."""
        target = self._target()
        try:
            target.delete(key)
        except Exception as exc:
            fallback = self._recover(exc)
            if fallback is not None:
                fallback.delete(key)

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr`` (``nan`` if the update had to be skipped)."""
        target = self._target()
        try:
            return float(target.incr(key, delta))
        except Exception as exc:
            fallback = self._recover(exc)
            return math.nan if fallback is None else fallback.incr(key, delta)

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """See ``StateStore.transact``; a failing transaction falls back like any operation."""
        target = self._target()
        try:
            manager = target.transact()
            manager.__enter__()
        except Exception as exc:
            if not _is_lock_timeout(exc):
                self._fail(exc)
            yield
            return
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(Exception):
                manager.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            try:
                manager.__exit__(None, None, None)
            except Exception as exc:
                self._fail(exc)

    def flush(self) -> None:
        """Commit the inner store's queued writes, if it queues any (a failure falls back)."""
        target = self._target()
        flush = getattr(target, "flush", None)
        if flush is None:
            return
        try:
            flush()
        except Exception as exc:
            self._recover(exc)

    def close(self) -> None:
        """Close the inner store, ignoring failures."""
        if self._inner is not None:
            with contextlib.suppress(Exception):
                self._inner.close()


def _is_lock_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "Timeout" and type(exc).__module__.startswith("diskcache")


def _file_identity(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except FileNotFoundError as exc:
        msg = f"the state database {path} was removed while in use"
        raise FileNotFoundError(msg) from exc
    return stat.st_dev, stat.st_ino


def default_state_dir() -> Path:
    """``$CLAUDE_RELAY_STATE_DIR``, else ``user_cache_dir("langchain-claude-relay")/state``."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("langchain-claude-relay")) / "state"


def default_store(directory: str | os.PathLike[str] | None = None) -> ResilientStore:
    """The default store: a ``DiskStore`` opened on first use, wrapped in ``ResilientStore``.

    When ``$CLAUDE_RELAY_STATE`` holds a Redis URL (``redis://...``) and no ``directory`` is
    given, the store is a ``redis_state.RedisStore`` instead (also opened on first use; it
    keeps going in memory by itself while Redis is down).

    Args:
        directory: the state directory (default: ``default_state_dir()``).

    Returns:
        A store that never raises.
    """
    if directory is None:
        from langchain_claude_relay.redis_conn import redis_url_from_env

        url = redis_url_from_env()
        if url is not None:

            def open_redis() -> StateStore:
                from langchain_claude_relay.redis_state import RedisStore

                return RedisStore(url)

            return ResilientStore(open_redis)
    where = Path(directory) if directory is not None else None
    return ResilientStore(
        lambda: DiskStore(where), location=where if where is not None else default_state_dir
    )


# ------------------------------------------------------------------ exit and fork

_LIVE_DISK_STORES: weakref.WeakSet[DiskStore] = weakref.WeakSet()


def _close_all_at_exit() -> None:
    for store in list(_LIVE_DISK_STORES):
        try:
            store.close(timeout=_EXIT_TIMEOUT)
        except Exception as exc:  # exit must go on
            logger.warning(
                "langchain-claude-relay's state store in %s could not save its last updates at "
                "exit (%s: %s)",
                store.directory,
                type(exc).__name__,
                exc,
            )


def _reset_stores_in_child() -> None:
    for store in list(_LIVE_DISK_STORES):
        store._after_fork_in_child()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_stores_in_child)
