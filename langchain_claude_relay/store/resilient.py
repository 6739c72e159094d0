"""``ResilientStore``: a store that never raises, and one warning per broken state location.

It wraps another store; the first time that store fails (read-only directory, corrupted file,
disk full, directory removed while running) it warns once with ``StateStoreWarning`` and goes
on with a ``MemoryStore``, so planning never fails a call. The ``MemoryStore`` starts with what
the failed store still held in memory (``Salvageable``: a ``DiskStore``'s cache and its unsaved
writes, up to ``SALVAGE_KEYS``), so nothing the process learned is forgotten.

One broken directory or disk usually breaks the planner's store and the cost ledger together
(the ledger lives in the state directory's ``ledger/``): ``warn_state_failure`` warns once per
state location and process, and logs the failures that follow under the same location.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langchain_claude_relay._env import STATE_DIR_ENV
from langchain_claude_relay._plumbing import external_stacklevel
from langchain_claude_relay.errors import StateStoreWarning
from langchain_claude_relay.store.base import Salvageable, StateStore, is_busy
from langchain_claude_relay.store.memory import MemoryStore

__all__ = ["ResilientStore", "StateLocation", "warn_state_failure"]

logger = logging.getLogger("langchain_claude_relay.store")

_reported: list[Path] = []
_reported_lock = threading.Lock()


StateLocation = str | os.PathLike[str] | Callable[[], str | os.PathLike[str]] | None
"""A state directory, a function that finds it (asked on failure), or ``None`` (unknown)."""


def warn_state_failure(
    location: StateLocation,
    message: str,
    category: type[Warning] = StateStoreWarning,
) -> bool:
    """Warn that saved state failed, once per state location and process; log the rest.

    The planner's store and the cost ledger share a state directory, and whatever breaks one
    (a file where the directory should be, a full disk, the directory removed) usually breaks
    the other: the user should see one warning, not one per component. A failure at a
    location that is, contains or lies inside one already reported is logged instead.

    Args:
        location: the state directory concerned, or a function finding it (``None``, or a
            function that fails: unknown, always warned).
        message: the warning text.
        category: the warning class.

    Returns:
        Whether a warning was issued.
    """
    if callable(location):
        try:
            location = location()
        except Exception:  # an unknown location only means no de-duplication
            location = None
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
    caller = sys._getframe(1)
    warnings.warn(message, category, stacklevel=external_stacklevel(caller) + 1)
    return True


SALVAGE_KEYS = 20_000
"""Values the in-memory fallback takes over from a failed store (its unsaved writes first)."""


def _salvage(store: StateStore | None) -> list[tuple[str, Any]]:
    """What a failed store still holds in memory (nothing if it cannot tell, or fails to)."""
    if not isinstance(store, Salvageable):
        return []
    try:
        return store.salvage(SALVAGE_KEYS)
    except Exception:  # a store in trouble: go on with what is known
        return []


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
    def inner(self) -> StateStore | None:
        """The store in use (``None`` before it is opened, and after a fall back to memory)."""
        return self._inner

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
        """Go on in memory, with what the failed store still held (warns once)."""
        fallback = self._fallback
        if fallback is not None:  # read without the lock: a failed store's lock may be held
            return fallback
        # The inner store's lock is taken outside ours, never under it: a thread inside the
        # inner store's transaction may be failing too, and then waits for ours.
        seed = _salvage(self._inner)
        with self._lock:
            if self._fallback is not None:
                return self._fallback
            fallback = MemoryStore()
            for key, value in seed:
                with contextlib.suppress(ValueError):
                    fallback.set(key, value)
            self._fallback = fallback
            self.failure = f"{type(exc).__name__}: {exc}"
            where = self._where()
            inner, self._inner = self._inner, None
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.close()
        warn_state_failure(
            where,
            "langchain-claude-relay's state store failed "
            f"({self.failure}); cache planning continues in memory for this process, "
            "so reuse statistics and token calibration are not saved. Check the state "
            f"directory (set ${STATE_DIR_ENV} to move it) or pass another store. Other "
            "failures under this directory (the cost ledger's) are logged, not warned.",
            StateStoreWarning,
        )
        return fallback

    def _where(self) -> StateLocation:
        if self._location is not None:
            return self._location
        return getattr(self._inner, "directory", None)

    def _recover(self, exc: Exception) -> MemoryStore | None:
        """The store to repeat a failed operation on, or ``None`` to skip it."""
        if isinstance(exc, ValueError):
            raise exc  # a bad key or value is a bug in the caller, not a store failure
        if is_busy(exc):
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
            if not is_busy(exc):
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
