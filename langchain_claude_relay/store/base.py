"""The state store's interface: ``StateStore``, and the checks that keep prompt text out.

The planner remembers, per model, its token calibration and (for unknown models) what it learned
about the minimum cacheable prefix, and, per prefix hash and per template, when prefixes arrived
and whether they came back. All of it is small numbers under hashed keys, so a store can be
shared by processes and kept on disk without holding anything a prompt said.

Values are checked on the way in: a key is a short ``kind:hex`` id, a value is a number, a list of
numbers (or of lists of numbers), or a dict from short lowercase names to those. A string value is
refused, which is what keeps prompt text out of the store. Stores keep values frozen (tuples
and private dicts) and hand out fresh lists and dicts, so a caller cannot change stored state
through a value it got or gave; lists come back as lists whether tuples or lists went in.

>>> check_key("p:00ff")
>>> check_value({"n": 1.0, "last": 12.5})
>>> check_value("a prompt")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: invalid state value of type str: the store holds numbers, ... (never text)
"""

from __future__ import annotations

import contextlib
import math
import re
import sys
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "StoreValue",
    "StateStore",
    "check_key",
    "check_value",
    "Frozen",
    "freeze",
    "freeze_loaded",
    "thaw",
    "ATOM",
    "is_busy",
    "Salvageable",
]

StoreValue: TypeAlias = "float | int | list[Any] | dict[str, Any]"

_KEY = re.compile(r"[a-z]{1,8}:[0-9a-f]{1,64}")
_LARGEST = sys.float_info.max  # an integer beyond it is no finite number (``float()`` fails)
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,15}")


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
        ValueError: for a string, a bool, a non-finite number (or an integer no float holds), an
            unknown type, a dict key that is not a short lowercase name, or nesting deeper than
            two levels.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            msg = f"invalid state value {value!r}: numbers must be finite"
            raise ValueError(msg)
        if isinstance(value, int) and not -_LARGEST <= value <= _LARGEST:
            msg = "invalid state value: an integer too large for a float (numbers must be finite)"
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

ATOM, _FLAT_LIST, _NESTED_LIST, _FLAT_DICT, _NESTED_DICT, _ANY = range(6)
Frozen: TypeAlias = "tuple[Any, int]"
"""A frozen value and its shape."""

_NUMBERS = frozenset({int, float})
_known_fields: set[str] = set()  # field names already checked (a small vocabulary)


def _numbers(items: tuple[Any, ...] | list[Any]) -> bool:
    """Whether every item is a finite ``int`` or ``float`` (a fast test; ``False`` if unsure)."""
    if not set(map(type, items)) <= _NUMBERS:
        return False
    try:  # a float sum is finite only if every term is (it can overflow: then check slowly)
        return math.isfinite(math.fsum(items))  # fsum: each int as a float, too large raises
    except (OverflowError, ValueError):  # ValueError: inf - inf
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


def freeze(value: Any) -> Frozen:
    """Check a value as ``check_value`` does and freeze it.

    Raises:
        ValueError: if ``check_value`` refuses the value.
    """
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite
            return value, ATOM
    elif kind is int:
        if -_LARGEST <= value <= _LARGEST:
            return value, ATOM
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


def freeze_loaded(value: Any) -> Frozen:
    """Freeze a value read from disk (written by any version, or by hand: not refused)."""
    try:
        return freeze(value)
    except ValueError:
        return _freeze_any(value), _ANY


def thaw(frozen: Any, shape: int) -> Any:
    """A fresh, mutable copy of a frozen value."""
    if shape == ATOM:
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


@runtime_checkable
class Salvageable(Protocol):
    """A store that can hand over the values it still holds in memory once it has failed.

    ``ResilientStore`` seeds its in-memory fallback with them, so a store that fails mid-run
    loses neither what the process learned nor the writes it had not saved yet.
    """

    def salvage(self, limit: int) -> list[tuple[str, Any]]:
        """At most ``limit`` ``(key, value)`` pairs held in memory, unsaved writes first."""
        ...


def is_busy(exc: BaseException) -> bool:
    """Whether a store failed only because another process holds its lock (skip, don't fail).

    >>> import sqlite3
    >>> is_busy(sqlite3.OperationalError("database is locked"))
    True
    >>> is_busy(sqlite3.OperationalError("disk I/O error"))
    False
    """
    if type(exc).__name__ != "OperationalError" or type(exc).__module__ != "sqlite3":
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text
