"""Old import paths, kept working for one release: each warns once, then forwards to the new home.

The 0.1 layout had one module per file at the top (``redis_state``, ``redis_conn``, ``limiting``,
``limiter_redis``, ``apis``, ``retry``, ``convert``, ``fanout``, ``ledger.location``). They now
live in packages (``store``, ``limiter``, ``transport``) or are private. An import finder
installed by the package's ``__init__`` answers for the old names with a small module that
issues one ``DeprecationWarning`` naming the new path and forwards every attribute to it.
Modules that kept their path but lost names (``probe``, ``chat_models``) forward those names
through ``moved_names``.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     from langchain_claude_relay.limiting import relay_limiter_key
>>> relay_limiter_key.__module__
'langchain_claude_relay.limiter.booking'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["MOVED_MODULES", "install", "moved_names"]

_PKG = "langchain_claude_relay"

MOVED_MODULES: Mapping[str, Sequence[str]] = {
    f"{_PKG}.redis_state": (f"{_PKG}.store.redis", f"{_PKG}.store.warm"),
    f"{_PKG}.redis_conn": (f"{_PKG}._redis", f"{_PKG}._env", f"{_PKG}.errors"),
    f"{_PKG}.limiting": (f"{_PKG}.limiter.booking",),
    f"{_PKG}.limiter_redis": (f"{_PKG}.limiter.redis",),
    f"{_PKG}.apis": (f"{_PKG}.transport.apis",),
    f"{_PKG}.retry": (f"{_PKG}.transport.retry",),
    f"{_PKG}.convert": (f"{_PKG}._convert",),
    f"{_PKG}.fanout": (f"{_PKG}._fanout",),
    f"{_PKG}.ledger.location": (f"{_PKG}._env",),
}
"""Old module -> the modules its names now live in (searched in order)."""

_RENAMED: Mapping[str, Mapping[str, str]] = {
    f"{_PKG}.redis_conn": {"redis_url_from_env": "redis_url"},
    f"{_PKG}.ledger.location": {"ledger_directory": "ledger_dir"},
}
"""Old module -> {old name: its new name} where a name changed too."""

_warned: set[str] = set()


def _deprecated(old: str, new: str) -> None:
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"{old} moved to {new}; the old path keeps working until 0.3",
        DeprecationWarning,
        stacklevel=_caller_level(),
    )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this module and the import machinery.

    ``warnings.warn`` skips importlib's frames by itself when it counts, so only this module's
    frames are counted here.
    """
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if name == __file__:
            level += 1
        elif not (name.startswith("<frozen importlib") or "importlib" in name):
            break
        frame = frame.f_back  # type: ignore[assignment]
    return level


class _OldPathFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers for the old module names with forwarding modules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__
        homes = MOVED_MODULES[old]
        _deprecated(old, homes[0])
        renamed = _RENAMED.get(old, {})
        names: list[str] = []
        for home in homes:
            names += list(getattr(importlib.import_module(home), "__all__", ()))
        module.__all__ = sorted(set(names) | set(renamed))  # type: ignore[attr-defined]
        module.__getattr__ = _forwarder(old, homes, renamed)  # type: ignore[method-assign]


def _forwarder(old: str, homes: Sequence[str], renamed: Mapping[str, str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        wanted = renamed.get(name, name)
        for home in homes:
            module = importlib.import_module(home)
            if hasattr(module, wanted):
                return getattr(module, wanted)
        msg = f"module {old!r} has no attribute {name!r}"
        raise AttributeError(msg)

    return __getattr__


def moved_names(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` forwarding names that moved elsewhere, warning once per name.

    Args:
        module: the module that used to hold the names (``__name__``).
        homes: name -> the module it lives in now.

    Returns:
        The function to assign to the module's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            msg = f"module {module!r} has no attribute {name!r}"
            raise AttributeError(msg)
        _deprecated(f"{module}.{name}", f"{home}.{name}")
        return getattr(importlib.import_module(home), name)

    return __getattr__


def install() -> None:
    """Put the old-path finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())
