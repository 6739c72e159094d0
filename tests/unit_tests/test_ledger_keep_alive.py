"""Keep-alive requests in the ledger: stored, read back by old and new readers, summed apart."""

from __future__ import annotations

import json

import pytest

from langchain_claude_relay.callbacks import CostTracker
from langchain_claude_relay.ledger import LedgerEntry, summarize
from langchain_claude_relay.ledger.codec import decode_entry, encode_entry

SONNET = "claude-sonnet-4-6"


def call(call_id: str, ts: float, *, read: int = 0, w5: int = 0, plain: int = 100) -> LedgerEntry:
    cost = (plain * 3 + read * 0.3 + w5 * 3.75) / 1e6
    uncached = (plain + read + w5) * 3 / 1e6
    return LedgerEntry(call_id, ts, SONNET, plain, read, w5, 0, 20, cost, uncached)


def ping(call_id: str, ts: float, read: int = 5000) -> LedgerEntry:
    return LedgerEntry(
        call_id, ts, SONNET, 4, read, 0, 0, 1, read * 0.3e-6, read * 3e-6, keep_alive=True
    )


def test_a_keep_alive_survives_the_stored_form() -> None:
    entry = ping("k1", 10.0)
    assert decode_entry(encode_entry(entry)) == entry
    plain = call("c1", 0.0, w5=5000)
    stored = json.loads(encode_entry(plain))
    assert stored[0] == 1  # other calls keep the version-1 form: older readers read them
    assert len(stored) == 16
    assert decode_entry(encode_entry(plain)) == plain


@pytest.mark.parametrize("keep_alive", [False, True])
def test_an_estimated_entry_survives_the_stored_form(keep_alive: bool) -> None:
    """A stream stopped before its usage: flag 2 of version 2, beside keep-alive's 1."""
    entry = LedgerEntry(
        "s1", 5.0, SONNET, 10, 0, 9000, 0, 3, 0.034, 0.027, keep_alive=keep_alive, estimated=True
    )
    row = json.loads(encode_entry(entry))
    assert (row[0], row[-1]) == (2, 3 if keep_alive else 2)
    assert decode_entry(encode_entry(entry)) == entry


@pytest.mark.parametrize("flags", [4, -1, 1.5, "1", True, None])
def test_unknown_flags_read_as_a_row_we_did_not_write(flags: object) -> None:
    row = json.loads(encode_entry(ping("k1", 10.0)))
    row[-1] = flags
    assert decode_entry(json.dumps(row)) is None


def test_an_old_reader_skips_only_the_keep_alives() -> None:
    row = json.loads(encode_entry(ping("k1", 10.0)))
    assert row[0] == 2
    assert len(row) == 17
    assert row[-1] == 1


def test_keep_alives_are_spend_not_calls() -> None:
    entries = [
        call("c1", 0.0, w5=5000),
        ping("k1", 285.0),
        ping("k2", 570.0),
        call("c2", 700.0, read=5000),
    ]
    s = summarize(entries)
    assert s.calls == 2
    assert s.calls_with_read == 1
    assert s.hit_rate == pytest.approx(0.5)
    assert s.keep_alive_calls == 2
    assert s.keep_alive_cost_usd == pytest.approx(2 * 5000 * 0.3e-6)
    assert s.cost_usd == pytest.approx(sum(e.cost_usd or 0.0 for e in entries))
    assert s.cache_read_tokens == 15_000  # the keep-alives' reads are tokens billed
    assert "keep-alive" in s.to_table()
    # what the call saved is net of the keep-alives that made it possible
    calls_saved = sum((e.uncached_cost_usd or 0) - (e.cost_usd or 0) for e in entries[::3])
    assert s.saved_usd == pytest.approx(calls_saved - s.keep_alive_cost_usd)


def test_a_keep_alive_read_does_not_make_a_write_look_used() -> None:
    # c1 wrote, only keep-alives read it, and the next call wrote it again: c1's write was wasted
    entries = [call("c1", 0.0, w5=5000), ping("k1", 285.0), call("c2", 4000.0, w5=5000)]
    assert summarize(entries).wasted_write_tokens == 10_000


def test_a_tracker_counts_keep_alives_it_is_handed() -> None:
    tracker = CostTracker()
    tracker.record_keep_alive(ping("k1", 285.0))
    tracker.record_keep_alive(ping("k1", 285.0))  # the same one twice counts once
    tracker.record_keep_alive(ping("k2", 570.0))
    assert tracker.calls == 0
    assert tracker.keep_alive_calls == 2
    assert tracker.keep_alive_cost_usd == pytest.approx(2 * 5000 * 0.3e-6)
    assert tracker.cost_usd == pytest.approx(tracker.keep_alive_cost_usd)
    assert "Keep-alive: 2 requests" in str(tracker)
