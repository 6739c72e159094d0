"""Checks and sanitizers for what a ledger entry may hold: hex hashes, short labels, counts.

The ledger never stores text: hashes must be hex digests, ids and models printable ASCII, and a
refused value is described by its type and length, never echoed (it might be prompt text).
"""

from __future__ import annotations

import hashlib
import re
import sys
from typing import Any

from langchain_claude_relay.models import GEO_LABEL, MAX_PRICE_MULTIPLIER, is_price_multiplier

_HEX = re.compile(r"[0-9a-f]{8,128}")
_LABEL = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: ids and codes
REASON = re.compile(r"[\x20-\x7e]{1,80}")  # one line of printable ASCII: a short code


def safe_hash(value: str) -> str:
    """A hex hash as given (lower case), anything else hashed: no text is ever kept."""
    text = value.strip().lower()
    if _HEX.fullmatch(text):
        return text
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def safe_label(value: str, pattern: re.Pattern[str], limit: int) -> str:
    """``value`` cut to ``limit`` characters, each one ``pattern`` refuses replaced by ``_``."""
    text = str(value)[:limit]
    if pattern.fullmatch(text):
        return text
    cleaned = "".join(c if pattern.fullmatch(c) else "_" for c in text)
    return cleaned or "_"


def _is_count(value: Any) -> bool:
    """Whether ``value`` is a non-negative int (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def safe_count(value: Any) -> int | None:
    """``value`` if it is a count (a non-negative int), else ``None``."""
    return value if _is_count(value) else None


def is_reason(value: Any) -> bool:
    """Whether ``value`` is a short one-line ASCII code (a miss reason)."""
    return isinstance(value, str) and REASON.fullmatch(value) is not None


def check_count(name: str, value: Any) -> None:
    """Refuse a field that is not a non-negative int (naming the field, not the value)."""
    if not _is_count(value):
        msg = f"LedgerEntry.{name} must be a non-negative int, got {type_name(value)}"
        raise ValueError(msg)


def check_number(name: str, value: Any) -> None:
    """Refuse a field that is not a finite non-negative number."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 <= value <= sys.float_info.max:  # NaN, infinity, a huge int: refused
        msg = f"LedgerEntry.{name} must be a finite non-negative number, got {type_name(value)}"
        raise ValueError(msg)


def check_geo(name: str, value: Any) -> None:
    """Refuse a geo that is not ``None`` or a short lower-case label (``"us"``)."""
    if value is not None and not (isinstance(value, str) and GEO_LABEL.fullmatch(value)):
        msg = f"LedgerEntry.{name} must be None or a geo label like 'us', got {type_name(value)}"
        raise ValueError(msg)


def check_multiplier(name: str, value: Any) -> None:
    """Refuse a price multiplier that is not a number in [1, ``MAX_PRICE_MULTIPLIER``]."""
    if not is_price_multiplier(value):  # NaN and infinity fail too
        msg = (
            f"LedgerEntry.{name} must be a number from 1 to {MAX_PRICE_MULTIPLIER:g}, "
            f"got {type_name(value)}"
        )
        raise ValueError(msg)


def type_name(value: Any) -> str:
    """Describe a refused value without echoing it (it might be prompt text)."""
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return f"a {type(value).__name__}"


def check_max_entries(max_entries: int) -> None:
    """Refuse a ledger bound below one entry."""
    if max_entries < 1:
        msg = f"max_entries must be at least 1, got {max_entries}"
        raise ValueError(msg)
