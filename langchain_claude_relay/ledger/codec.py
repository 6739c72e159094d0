"""How a ledger entry is stored: one compact JSON array, versioned, holding numbers and hashes."""

from __future__ import annotations

import json
from typing import Any

from langchain_claude_relay.ledger.entry import LedgerEntry

_SCHEMA_VERSION = 1


def encode_entry(entry: LedgerEntry) -> str:
    """The stored form of an entry: one compact JSON array, schema version first."""
    return json.dumps(
        [
            _SCHEMA_VERSION,
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
            list(entry.written_prefixes),
            entry.read_prefix,
            entry.miss_reason,
            entry.base_url_hash,
        ],
        separators=(",", ":"),
    )


def decode_entry(value: Any) -> LedgerEntry | None:
    """Decode a stored entry; ``None`` for a row that is not one (foreign or damaged)."""
    try:
        row = json.loads(value)
        if not isinstance(row, list) or len(row) != 16 or row[0] != _SCHEMA_VERSION:
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
            *row[13:16],
        )
    except (ValueError, TypeError):
        return None
