"""The planner's state store: hashes and numbers that outlive the process, never prompt text.

One interface, ``StateStore`` (``base``: get/set/delete/incr/transact on ``kind:hex`` keys, and
the checks that refuse text), and one module per backend:

* ``MemoryStore`` (``memory``): a dict, for tests and for the fallbacks below.
* ``DiskStore`` (``disk``): a private SQLite file with JSON values, shared by processes, behind an
  in-process cache with write-behind commits. In ``$CLAUDE_RELAY_STATE_DIR`` or the user cache
  directory.
* ``RedisStore`` (``redis``): one Redis for a fleet of workers; local state while Redis is down.
* ``ResilientStore`` (``resilient``): wraps another; on its first failure it warns once with
  ``StateStoreWarning`` and goes on in memory, so planning never fails a call.

The fleet's warm-prefix registry (``warm``) rides on a ``RedisStore``. ``default_store()``
chooses the backend: Redis when ``$CLAUDE_RELAY_STATE`` names one, else the disk.

>>> store = MemoryStore()
>>> store.set("p:00ff", {"n": 1.0, "last": 12.5})
>>> store.get("p:00ff")
{'n': 1.0, 'last': 12.5}
"""

from __future__ import annotations

import os
from pathlib import Path

from langchain_claude_relay._env import STATE_DIR_ENV, redis_url, state_dir
from langchain_claude_relay.errors import StateStoreWarning, StateWarning
from langchain_claude_relay.store.base import StateStore, StoreValue, check_key, check_value
from langchain_claude_relay.store.disk import DiskStore
from langchain_claude_relay.store.memory import MemoryStore
from langchain_claude_relay.store.redis import RedisStore
from langchain_claude_relay.store.resilient import ResilientStore, warn_state_failure
from langchain_claude_relay.store.warm import WarmPrefixRegistry, warm_registry

__all__ = [
    "StateStore",
    "StoreValue",
    "MemoryStore",
    "DiskStore",
    "RedisStore",
    "ResilientStore",
    "WarmPrefixRegistry",
    "warm_registry",
    "default_store",
    "default_state_dir",
    "check_key",
    "check_value",
    "warn_state_failure",
    "StateWarning",
    "StateStoreWarning",
    "STATE_DIR_ENV",
]


def default_state_dir() -> Path:
    """``$CLAUDE_RELAY_STATE_DIR``, else ``user_cache_dir("langchain-claude-relay")/state``."""
    return state_dir()


def default_store(directory: str | os.PathLike[str] | None = None) -> ResilientStore:
    """The default store, opened on first use and wrapped in ``ResilientStore``.

    A ``RedisStore`` when ``$CLAUDE_RELAY_STATE`` holds a Redis URL (``redis://...``) and no
    ``directory`` is given (it keeps going in memory by itself while Redis is down), else a
    ``DiskStore``.

    Args:
        directory: the state directory (default: ``default_state_dir()``).

    Returns:
        A store that never raises.
    """
    if directory is None:
        url = redis_url()
        if url is not None:
            return ResilientStore(lambda: RedisStore(url))
    where = Path(directory) if directory is not None else None
    return ResilientStore(
        lambda: DiskStore(where), location=where if where is not None else default_state_dir
    )
