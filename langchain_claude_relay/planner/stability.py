"""Prefix stability: volatile text in blocks meant to be static, and templates that keep changing.

Claude's cache matches prefixes byte for byte. A timestamp, a UUID or a request counter in the
system prompt makes every call write a new entry that is never read. Two pure checks:

* ``find_volatile(text)``: timestamps, dates, times with seconds, UUIDs, long hex ids and
  counters such as ``request #123``. It runs in a few milliseconds per megabyte: the text is
  mapped byte-wise to character classes (digits to ``0``, hex digits to ``x``), so that each
  pattern becomes a literal searched at C speed.
* ``note_block_hash(history, h)``: whether the block at one template position (for example the
  first system block of an app) is new again, given the hashes seen there on recent calls.

``PrefixStabilityWarning`` is the warning category the planner uses for both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PrefixStabilityWarning",
    "VolatileMatch",
    "find_volatile",
    "HASH_HISTORY",
    "CHANGE_STREAK",
    "note_block_hash",
]

HASH_HISTORY = 16
"""Hashes remembered per template position, so that an app rotating among several static
prompts (tenants, documents) is not taken for one whose prompt keeps changing."""
CHANGE_STREAK = 5
"""Consecutive calls with a never-seen hash at one position before it is reported (a rotation
of up to five prompts seen for the first time stays quiet; a timestamp never repeats)."""


class PrefixStabilityWarning(UserWarning):
    """A block before a cache marker looks volatile, so the cached prefix may never be read."""


@dataclass(frozen=True)
class VolatileMatch:
    """One piece of volatile-looking text.

    Attributes:
        kind: ``"timestamp"``, ``"date"``, ``"time"``, ``"uuid"``, ``"hex id"`` or ``"counter"``.
        excerpt: the matched text (ids shortened to their first 8 characters).
    """

    kind: str
    excerpt: str


def _table(mapping: dict[int, int], default_letter: int) -> bytes:
    table = bytearray(range(256))
    for byte in range(256):
        char = chr(byte)
        if byte >= 0x80 or char.isalpha():
            table[byte] = default_letter
        if byte in mapping:
            table[byte] = mapping[byte]
    return bytes(table)


# Digits -> "0", letters and non-ASCII bytes -> "a", everything else kept.
_DIGITS = _table({b: ord("0") for b in b"0123456789"}, ord("a"))
# Hex digits -> "x", other letters and non-ASCII -> "z", everything else kept.
_HEX = _table({b: ord("x") for b in b"0123456789abcdefABCDEF"}, ord("z"))

# Each pattern starts with a literal, which SRE searches for at C speed.
_ON_DIGITS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("timestamp", re.compile(rb"0000-00-00[a ]00:00")),  # "T" is a letter: class "a"
    ("date", re.compile(rb"0000-00-00|0/0?0/00")),
    ("time", re.compile(rb"0:00:00")),
    ("counter", re.compile(rb"# ?0")),  # kept only after a word: "request #123"
)
_UUID = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
_HEX_RUN = b"x" * 16


def _grow(classes: bytes, start: int, end: int, left: bytes, right: bytes) -> tuple[int, int]:
    while start > 0 and classes[start - 1] in left:
        start -= 1
    while end < len(classes) and classes[end] in right:
        end += 1
    return start, end


def find_volatile(text: str, limit: int = 3) -> tuple[VolatileMatch, ...]:
    """Find volatile-looking text (at most ``limit`` matches, first kinds first).

    Args:
        text: the block's text.
        limit: the most matches to return.

    Returns:
        The matches, in pattern order then text order.

    >>> [m.excerpt for m in find_volatile("Now: 2025-03-01T09:30:00Z, request #42")]
    ['2025-03-01T09:30:00Z', 'request #42']
    >>> find_volatile("session 3f2a9c1e-0d4b-4e8a-9b7c-1a2b3c4d5e6f")
    (VolatileMatch(kind='uuid', excerpt='3f2a9c1e…'),)
    >>> find_volatile("You are a helpful assistant.")
    ()
    """
    if not text:
        return ()
    raw = text.encode("utf-8", "replace")
    found: list[VolatileMatch] = []
    covered: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int, shorten: bool = False) -> None:
        if any(s <= start < e for s, e in covered):
            return
        covered.append((start, end))
        excerpt = raw[start:end].decode("utf-8", "replace")
        if shorten and len(excerpt) > 8:
            excerpt = excerpt[:8] + "…"
        found.append(VolatileMatch(kind, excerpt[:40]))

    digits = raw.translate(_DIGITS)
    for kind, pattern in _ON_DIGITS:
        for match in pattern.finditer(digits):
            if kind == "counter":  # grow over the word before and the digits after
                start = match.start() - (
                    1 if digits[match.start() - 1 : match.start()] == b" " else 0
                )
                if start < 1 or digits[start - 1] != ord("a"):
                    continue
                start, end = _grow(digits, start, match.end(), b"a", b"0")
            else:
                start, end = _grow(digits, match.start(), match.end(), b"0", b"0:.+-")
                while end > start and raw[end - 1 : end] in (b".", b":", b"-", b"+"):
                    end -= 1
                if raw[end : end + 1] == b"Z":
                    end += 1
            add(kind, start, end)
            if len(found) >= limit:
                return tuple(found)
    hexes = raw.translate(_HEX)
    for kind, needle in (("uuid", _UUID), ("hex id", _HEX_RUN)):
        at = hexes.find(needle)
        while at >= 0:
            start, end = _grow(hexes, at, at + len(needle), b"x", b"x")
            bounded = (start == 0 or hexes[start - 1] != ord("z")) and (
                end == len(hexes) or hexes[end] != ord("z")
            )
            if kind == "uuid" or (bounded and any(48 <= c <= 57 for c in raw[start:end])):
                add(kind, start, end if kind == "hex id" else at + len(needle), shorten=True)
                if len(found) >= limit:
                    return tuple(found)
            at = hexes.find(needle, end)
    return tuple(found)


def _readable(history: Sequence[Any]) -> bool:
    """Whether a stored history is one ``note_block_hash`` could have written (untrusted)."""
    return isinstance(history, Sequence) and all(
        type(v) in (int, float) and 0 <= v < 2**48 and math.isfinite(v) for v in history
    )


def note_block_hash(history: Sequence[float], block_hash: int) -> tuple[list[float], int]:
    """Record the hash seen at one template position and count consecutive new ones.

    Args:
        history: ``[h1, ..., hk, streak]`` as stored (recent hashes, then the current streak of
            consecutive never-seen hashes), or empty.
        block_hash: this call's block hash (an int).

    Returns:
        The new history and the new streak; the position keeps changing when the streak
        reaches ``CHANGE_STREAK``.

    >>> h, streak = note_block_hash([], 1)
    >>> h, streak = note_block_hash(h, 2)
    >>> note_block_hash(h, 3)
    ([1, 2, 3, 2], 2)
    >>> note_block_hash([float("nan"), -1], 3)  # a damaged row reads as no history
    ([3, 0], 0)
    """
    if not _readable(history):  # damaged or planted: as never seen
        history = []
    hashes = [int(h) for h in history[:-1]][-HASH_HISTORY:] if history else []
    streak = int(history[-1]) if history else 0
    if block_hash in hashes:
        hashes.remove(block_hash)
        streak = 0
    elif hashes:
        streak += 1
    hashes = [*hashes, block_hash][-HASH_HISTORY:]
    return [*hashes, streak], streak
