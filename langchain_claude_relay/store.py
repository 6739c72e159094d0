"""The planner's state store: hashes and numbers that outlive the process, never prompt text.

The planner remembers, per model, its token calibration and (for unknown models) what it learned
about the minimum cacheable prefix, and, per prefix hash and per template, when prefixes arrived
and whether they came back. All of it is small numbers under hashed keys, so a store can be
shared by processes and kept on disk without holding anything a prompt said.

Backends share one small protocol, ``StateStore``:

* ``MemoryStore``: a dict, for tests and for the fallback below.
* ``DiskStore``: diskcache (SQLite) with JSON values, a size limit and per-key expiry; safe across
  processes. Its directory defaults to ``platformdirs.user_cache_dir("langchain-claude-relay")``
  + ``/state``, or ``$CLAUDE_RELAY_STATE_DIR``.
* ``ResilientStore``: wraps another store; the first time it fails (read-only directory,
  corrupted file, disk full, directory removed while running) it warns once with
  ``StateStoreWarning`` and goes on with a ``MemoryStore``, so planning never fails a call.

Values are checked on the way in: a key is a short ``kind:hex`` id, a value is a number, a list of
numbers (or of lists of numbers), or a dict from short lowercase names to those. A string value is
refused, which is what keeps prompt text out of the store.

>>> store = MemoryStore()
>>> store.set("p:00ff", {"n": 1.0, "last": 12.5})
>>> store.get("p:00ff")
{'n': 1.0, 'last': 12.5}
>>> store.incr("c:01", 2)
2.0
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "STATE_DIR_ENV",
    "StoreValue",
    "StateStore",
    "StateStoreWarning",
    "MemoryStore",
    "DiskStore",
    "ResilientStore",
    "default_state_dir",
    "default_store",
    "check_key",
    "check_value",
]

STATE_DIR_ENV = "CLAUDE_RELAY_STATE_DIR"
"""Environment variable naming the state directory (read only by ``default_state_dir``)."""

DEFAULT_SIZE_LIMIT = 64 * 2**20
"""Bytes the disk store may use before diskcache evicts the least recently stored keys."""

StoreValue: TypeAlias = "float | int | list[Any] | dict[str, Any]"

_KEY = re.compile(r"[a-z]{1,8}:[0-9a-f]{1,64}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,15}")


class StateStoreWarning(UserWarning):
    """The state store failed; planning goes on in memory (statistics are not persisted)."""


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


@runtime_checkable
class StateStore(Protocol):
    """Get/set/delete/incr on ``kind:hex`` keys, plus a transaction for read-modify-write.

    ``expire`` is in seconds from now (``None``: keep until evicted). ``transact()`` makes a
    block of operations atomic with respect to other users of the same store (threads and, for
    ``DiskStore``, processes).
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

    Args:
        clock: seconds, used for key expiry; without one, keys never expire (deterministic
            tests).
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._lock = threading.RLock()
        self._clock = clock

    def get(self, key: str) -> Any:
        """See ``StateStore.get``."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and self._clock is not None and self._clock() >= expires:
                del self._data[key]
                return None
            return copy.deepcopy(value)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        check_key(key)
        check_value(value)
        expires = None
        if expire is not None and self._clock is not None:
            expires = self._clock() + expire
        with self._lock:
            self._data[key] = (copy.deepcopy(value), expires)

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

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._data)


class DiskStore:
    """A diskcache store: SQLite with JSON values, bounded in size, safe across processes.

    Args:
        directory: where the files live (default: ``default_state_dir()``).
        size_limit: bytes before the least recently stored keys are evicted.
        timeout: seconds to wait for a lock held by another process before giving up.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        timeout: float = 2.0,
    ) -> None:
        import diskcache

        self.directory = Path(directory) if directory is not None else default_state_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(self.directory),
            timeout=timeout,
            disk=diskcache.JSONDisk,
            disk_compress_level=0,  # stored as plain JSON: a text scan of the files is meaningful
            size_limit=size_limit,
            eviction_policy="least-recently-stored",
        )

    def _check_alive(self) -> None:
        # SQLite keeps writing to an unlinked file without complaint: notice a removed directory.
        if not self.directory.is_dir():
            msg = f"state directory {self.directory} was removed"
            raise FileNotFoundError(msg)

    def get(self, key: str) -> Any:
        """See ``StateStore.get``."""
        return self._cache.get(key)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        check_key(key)
        check_value(value)
        self._check_alive()
        self._cache.set(key, value, expire=expire)

    def delete(self, key: str) -> None:
        """See ``StateStore.delete``."""
        self._check_alive()
        self._cache.delete(key)

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr``."""
        with self.transact():
            current = self.get(key)
            value = float(current if isinstance(current, (int, float)) else 0.0) + delta
            self.set(key, value)
            return value

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """See ``StateStore.transact`` (an SQLite ``BEGIN IMMEDIATE`` across processes)."""
        with self._cache.transact():
            yield

    def close(self) -> None:
        """Close the SQLite connections."""
        self._cache.close()


class ResilientStore:
    """A store that never raises: on the first failure it warns once and continues in memory.

    Args:
        inner: the store to use, or a factory called on first use (so that constructing a
            planner touches no disk).
    """

    def __init__(self, inner: StateStore | Callable[[], StateStore]) -> None:
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
                warnings.warn(
                    "langchain-claude-relay's state store failed "
                    f"({self.failure}); cache planning continues in memory for this process, "
                    "so reuse statistics and token calibration are not saved. Check the state "
                    f"directory (set ${STATE_DIR_ENV} to move it) or pass another store.",
                    StateStoreWarning,
                    stacklevel=4,
                )
                inner, self._inner = self._inner, None
                if inner is not None:
                    with contextlib.suppress(Exception):
                        inner.close()
            return self._fallback

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        target = self._target()
        try:
            return getattr(target, op)(*args, **kwargs)
        except ValueError:
            raise  # a bad key or value is a bug in the caller, not a store failure
        except Exception as exc:
            if _is_lock_timeout(exc):
                return None  # another process holds the lock: skip this update, keep the store
            return getattr(self._fail(exc), op)(*args, **kwargs)

    def get(self, key: str) -> Any:
        """See ``StateStore.get``."""
        return self._call("get", key)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        self._call("set", key, value, expire=expire)

    def delete(self, key: str) -> None:
        """See ``StateStore.delete``."""
        self._call("delete", key)

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr`` (``nan`` if the update had to be skipped)."""
        value = self._call("incr", key, delta)
        return float(value) if value is not None else math.nan

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

    def close(self) -> None:
        """Close the inner store, ignoring failures."""
        if self._inner is not None:
            with contextlib.suppress(Exception):
                self._inner.close()


def _is_lock_timeout(exc: BaseException) -> bool:
    return type(exc).__name__ == "Timeout" and type(exc).__module__.startswith("diskcache")


def default_state_dir() -> Path:
    """``$CLAUDE_RELAY_STATE_DIR``, else ``user_cache_dir("langchain-claude-relay")/state``."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("langchain-claude-relay")) / "state"


def default_store(directory: str | os.PathLike[str] | None = None) -> ResilientStore:
    """The default store: a ``DiskStore`` opened on first use, wrapped in ``ResilientStore``.

    Args:
        directory: the state directory (default: ``default_state_dir()``).

    Returns:
        A store that never raises.
    """
    return ResilientStore(lambda: DiskStore(directory))
