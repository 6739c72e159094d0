"""How a ledger entry is stored: one compact JSON array, versioned, holding numbers and hashes.

Version 2 adds a last field of flags: 1 for ``keep_alive``, 2 for ``estimated`` (counts the
planner estimated: a stream stopped before its usage came). Entries with neither are still
written as version 1 (16 fields), so a reader from before keep-alives (another worker on the
same Redis ledger) reads every plain call and skips only the flagged ones; a reader from before
``estimated`` reads an estimated call as a call.

Version 3 adds, after the flags, the call's ``inference_geo`` and ``price_multiplier`` (data
residency: what every price of the call was multiplied by). Only an entry with a geo or a
multiplier other than 1 is written as version 3 (19 fields); every other entry keeps the version 1
or 2 form, byte for byte. A reader from before version 3 skips those rows (it could not know
their price); this reader reads versions 1 and 2 as ``inference_geo=None``,
``price_multiplier=1.0``: what they were priced at.

A persistent ledger passes its installation's hash key: the prefix hashes are then stored keyed
(``_plumbing.keyed_hash``, same length), so a stored hash cannot be matched against a guessed
prompt without the key, while equal prefixes still get equal stored hashes (the waste
attribution pairs writes and reads by them).

>>> from langchain_claude_relay.ledger.entry import LedgerEntry
>>> e = LedgerEntry("c1", 0.0, "m", 1, 0, 0, 0, 1, None, None, written_prefixes=("ab" * 16,))
>>> decode_entry(encode_entry(e)) == e
True
>>> us = LedgerEntry("c2", 0.0, "m", 1, 0, 0, 0, 1, 1.1e-5, 1.1e-5, inference_geo="us",
...                  price_multiplier=1.1)
>>> decode_entry(encode_entry(us)) == us, encode_entry(us)[:2], encode_entry(e)[:2]
(True, '[3', '[1')
>>> keyed = decode_entry(encode_entry(e, hash_key=bytes(32)))
>>> keyed.written_prefixes != e.written_prefixes and len(keyed.written_prefixes[0]) == 32
True
"""

from __future__ import annotations

import json
from typing import Any

from langchain_claude_relay._plumbing import keyed_hash
from langchain_claude_relay.ledger.entry import LedgerEntry

MAX_ENTRY_CHARS = 1 << 14
"""A stored entry longer than this is not read (a planted or damaged row)."""

_SCHEMA_VERSION = 2
_GEO_VERSION = 3
_V1_FIELDS = 16
_V3_FIELDS = _V1_FIELDS + 3  # the flags, the geo, the multiplier
_MAX_NESTING = 2  # an entry is an array holding one array (the written prefixes)
_KEEP_ALIVE, _ESTIMATED = 1, 2  # version 2's flags


def _keyed(prefix: str | None, hash_key: bytes | None) -> str | None:
    if prefix is None or hash_key is None:
        return prefix
    return keyed_hash(hash_key, prefix, len(prefix))


def encode_entry(entry: LedgerEntry, hash_key: bytes | None = None) -> str:
    """The stored form of an entry: one compact JSON array, schema version first.

    Args:
        entry: the entry.
        hash_key: the installation's key: prefix hashes are stored keyed (``None``: as given).
    """
    row = [
        1,
        entry.call_id,
        entry.timestamp,
        entry.model,
        entry.input_tokens,
        entry.cache_read_tokens,
        entry.cache_write_5m_tokens,
        entry.cache_write_1h_tokens,
        entry.output_tokens,
        entry.cost_usd,
        entry.uncached_cost_usd,
        entry.predicted_read_tokens,
        [_keyed(p, hash_key) for p in entry.written_prefixes],
        _keyed(entry.read_prefix, hash_key),
        entry.miss_reason,
        entry.base_url_hash,
    ]
    flags = (_KEEP_ALIVE if entry.keep_alive else 0) | (_ESTIMATED if entry.estimated else 0)
    if entry.price_multiplier != 1.0:  # a 1x geo ("global") is left out: older readers
        row[0] = _GEO_VERSION  # drop v3 rows, and need nothing to cost a 1x call
        row += [flags, entry.inference_geo, entry.price_multiplier]
    elif flags:
        row[0] = _SCHEMA_VERSION
        row.append(flags)
    return json.dumps(row, separators=(",", ":"))


def _nests_too_deep(text: str) -> bool:
    """Whether JSON ``text`` nests arrays or objects deeper than an entry does (strings skipped).

    >>> _nests_too_deep('[1,["ab"],"[[[x"]'), _nests_too_deep("[[[1]]]")
    (False, True)
    """
    if text.count("[") + text.count("{") <= _MAX_NESTING:
        return False  # the usual row: nothing to scan
    depth = 0
    in_string = escaped = False
    for char in text:  # linear, whatever the text (a regex over strings could backtrack)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > _MAX_NESTING:
                return True
        elif char in "]}":
            depth -= 1
    return False


def decode_entry(value: Any) -> LedgerEntry | None:
    """Decode a stored entry; ``None`` for a row that is not one (foreign or damaged).

    Never raises: whatever a row holds (text, bytes, deep nesting, wrong types), a failure to
    decode it means it is not an entry this package wrote.
    """
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
        if not isinstance(text, str) or len(text) > MAX_ENTRY_CHARS or _nests_too_deep(text):
            return None
        row = json.loads(text)
        if not isinstance(row, list) or not row:
            return None
        version = row[0]
        if (version, len(row)) not in (
            (1, _V1_FIELDS),
            (_SCHEMA_VERSION, _V1_FIELDS + 1),
            (_GEO_VERSION, _V3_FIELDS),
        ):
            return None
        (call_id, ts, model, plain, read, w5, w1h, out, cost, uncached, predicted) = row[1:12]
        flags = row[16] if len(row) > _V1_FIELDS else 0
        if type(flags) is not int or not 0 <= flags <= _KEEP_ALIVE | _ESTIMATED:
            return None
        geo, multiplier = row[17:19] if version == _GEO_VERSION else (None, 1.0)
        return LedgerEntry(
            call_id,
            ts,
            model,
            plain,
            read,
            w5,
            w1h,
            out,
            cost,
            uncached,
            predicted,
            tuple(row[12]),
            row[13],
            row[14],
            row[15],
            keep_alive=bool(flags & _KEEP_ALIVE),
            estimated=bool(flags & _ESTIMATED),
            inference_geo=geo,
            price_multiplier=multiplier,
        )
    except Exception:  # RecursionError, a check's ValueError, anything: a row we did not write
        return None
