"""Checks and sanitizers for what a ledger entry may hold: hex hashes, short labels, counts.

The ledger never stores text: hashes must be hex digests, ids and models printable ASCII, and a
refused value is described by its type and length, never echoed (it might be prompt text).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

_HEX = re.compile(r"[0-9a-f]{8,128}")
_LABEL = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: ids and codes
_REASON = re.compile(r"[\x20-\x7e]{1,80}")  # one line of printable ASCII: a short code


def _safe_hash(value: str) -> str:
    text = value.strip().lower()
    if _HEX.fullmatch(text):
        return text
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def _safe_label(value: str, pattern: re.Pattern[str], limit: int) -> str:
    text = str(value)[:limit]
    if pattern.fullmatch(text):
        return text
    cleaned = "".join(c if pattern.fullmatch(c) else "_" for c in text)
    return cleaned or "_"


def _is_count(value: Any) -> bool:
    """Whether ``value`` is a non-negative int (a bool is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _safe_count(value: Any) -> int | None:
    return value if _is_count(value) else None


def _is_reason(value: Any) -> bool:
    return isinstance(value, str) and _REASON.fullmatch(value) is not None


def _check_count(name: str, value: Any) -> None:
    if not _is_count(value):
        msg = f"LedgerEntry.{name} must be a non-negative int, got {_kind(value)}"
        raise ValueError(msg)


def _check_number(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        msg = f"LedgerEntry.{name} must be a finite non-negative number, got {_kind(value)}"
        raise ValueError(msg)


def _kind(value: Any) -> str:
    """Describe a refused value without echoing it (it might be prompt text)."""
    if isinstance(value, str):
        return f"a str of {len(value)} characters"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return f"a {type(value).__name__}"


def _check_max_entries(max_entries: int) -> None:
    """Refuse a ledger bound below one entry."""
    if max_entries < 1:
        msg = f"max_entries must be at least 1, got {max_entries}"
        raise ValueError(msg)
