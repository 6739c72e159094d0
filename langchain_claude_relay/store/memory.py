"""``MemoryStore``: the state store in a dict, for tests and for the fallback of the others.

>>> store = MemoryStore()
>>> store.set("p:00ff", {"n": 1.0, "last": 12.5})
>>> store.get("p:00ff")
{'n': 1.0, 'last': 12.5}
>>> store.incr("c:01", 2)
2.0
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from langchain_claude_relay.store.base import check_key, freeze, thaw

__all__ = ["MemoryStore"]


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
            return thaw(frozen, shape)

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set``."""
        check_key(key)
        frozen, shape = freeze(value)
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
