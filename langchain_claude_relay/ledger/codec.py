"""How a ledger entry is stored: one compact JSON array, versioned, holding numbers and hashes.

Version 2 adds ``keep_alive`` (a 1 at the end). Entries that are not keep-alives are still
written as version 1 (16 fields), so a reader from before keep-alives (another worker on the
same Redis ledger) reads every call and skips only the keep-alive requests.

A persistent ledger passes its installation's hash key: the prefix hashes are then stored keyed
(``_plumbing.keyed_hash``, same length), so a stored hash cannot be matched against a guessed
prompt without the key, while equal prefixes still get equal stored hashes (the waste
attribution pairs writes and reads by them).

>>> from langchain_claude_relay.ledger.entry import LedgerEntry
>>> e = LedgerEntry("c1", 0.0, "m", 1, 0, 0, 0, 1, None, None, written_prefixes=("ab" * 16,))
>>> decode_entry(encode_entry(e)) == e
True
>>> keyed = decode_entry(encode_entry(e, hash_key=bytes(32)))
>>> keyed.written_prefixes != e.written_prefixes and len(keyed.written_prefixes[0]) == 32
True
"""

from __future__ import annotations

import json
from typing import Any

from langchain_claude_relay._plumbing import keyed_hash
from langchain_claude_relay.ledger.entry import LedgerEntry

_SCHEMA_VERSION = 2
_V1_FIELDS = 16


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
    if entry.keep_alive:
        row[0] = _SCHEMA_VERSION
        row.append(1)
    return json.dumps(row, separators=(",", ":"))


def decode_entry(value: Any) -> LedgerEntry | None:
    """Decode a stored entry; ``None`` for a row that is not one (foreign or damaged)."""
    try:
        row = json.loads(value)
        if not isinstance(row, list) or not row:
            return None
        if not (row[0] == 1 and len(row) == _V1_FIELDS) and not (
            row[0] == _SCHEMA_VERSION and len(row) == _V1_FIELDS + 1
        ):
            return None
        (call_id, ts, model, plain, read, w5, w1h, out, cost, uncached, predicted) = row[1:12]
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
            keep_alive=len(row) > _V1_FIELDS and row[16] == 1,
        )
    except (ValueError, TypeError):
        return None
