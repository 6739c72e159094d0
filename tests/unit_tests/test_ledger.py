"""Tests for langchain_claude_relay.ledger: entries, summary math by hand, disk, failures."""

from __future__ import annotations

import doctest
import errno
import json
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay import ledger as ledger_module
from langchain_claude_relay._plumbing import keyed_hash
from langchain_claude_relay.ledger import (
    DiskLedger,
    FallbackLedger,
    Ledger,
    LedgerEntry,
    LedgerSummary,
    LedgerUnavailableError,
    MemoryLedger,
    cache_facts,
    default_ledger,
    hash_base_url,
    ledger_directory,
    set_default_ledger,
    summarize,
)
from langchain_claude_relay.ledger import codec as codec_module
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.usage import NormalizedUsage

P1, P2, P3 = "a1" * 16, "b2" * 16, "c3" * 16
SONNET = "claude-sonnet-4-6"  # $3 in, $15 out, $0.30 read, $3.75 write 5m, $6 write 1h per MTok


def entry(
    call_id: str,
    ts: float,
    *,
    plain: int = 0,
    read: int = 0,
    w5: int = 0,
    w1h: int = 0,
    out: int = 0,
    cost: float | None = None,
    uncached: float | None = None,
    written: tuple[str, ...] = (),
    read_prefix: str | None = None,
    predicted: int | None = None,
    reason: str | None = None,
    model: str = SONNET,
    base: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        call_id, ts, model, plain, read, w5, w1h, out, cost, uncached,
        predicted_read_tokens=predicted, written_prefixes=written, read_prefix=read_prefix,
        miss_reason=reason, base_url_hash=base,
    )  # fmt: skip


def ids(entries: list[LedgerEntry]) -> list[str]:
    return [e.call_id for e in entries]


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger"


@pytest.fixture
def open_ledgers() -> Iterator[list[DiskLedger]]:
    """Ledgers a test opens, closed afterwards (no writer threads left behind)."""
    opened: list[DiskLedger] = []
    yield opened
    for led in opened:
        led.close()


@pytest.fixture
def disk(ledger_dir: Path, open_ledgers: list[DiskLedger]) -> DiskLedger:
    led = DiskLedger(ledger_dir)
    open_ledgers.append(led)
    return led


# -- entries -------------------------------------------------------------------------------------


def test_entry_round_trips_through_dict_json_and_storage() -> None:
    e = entry(
        "chatcmpl-1", 12.5, plain=1, read=2, w5=3, w1h=4, out=5, cost=0.5, uncached=0.75,
        written=(P1, P2), read_prefix=P3, predicted=7, reason="ttl_expired", base="ab" * 8,
    )  # fmt: skip
    data = e.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["written_prefixes"] == [P1, P2]
    assert LedgerEntry.from_dict(data) == e
    assert codec_module.decode_entry(codec_module.encode_entry(e)) == e
    assert (e.cache_write_tokens, e.total_input_tokens) == (7, 10)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("input_tokens", -1, "input_tokens must be a non-negative int"),
        ("output_tokens", True, "output_tokens must be a non-negative int"),
        ("cache_read_tokens", 1.5, "cache_read_tokens must be a non-negative int"),
        ("predicted_read_tokens", -3, "predicted_read_tokens must be"),
        ("cost_usd", float("nan"), "cost_usd must be a finite non-negative number"),
        ("uncached_cost_usd", -0.01, "uncached_cost_usd must be"),
        ("timestamp", float("inf"), "timestamp must be"),
        ("timestamp", -1.0, "timestamp must be"),
        ("written_prefixes", ("Summarize the secret plan",), "never stores text"),
        ("written_prefixes", ("A1" * 16,), "lowercase hex"),
        ("read_prefix", "short", "hex"),
        ("base_url_hash", "https://relay.example.com", "hex"),
        ("miss_reason", "line one\nline two", "miss_reason must be a short code"),
        ("model", "claude sonnet", "model must be 1-200 printable ASCII"),
        ("call_id", "", "call_id must be"),
    ],
)
def test_invalid_entries_are_refused_without_echoing_the_value(
    field: str, value: Any, fragment: str
) -> None:
    fields = entry("c", 1.0).to_dict()
    fields[field] = value
    with pytest.raises(ValueError, match=fragment) as info:
        LedgerEntry.from_dict(fields)
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(info.value)
    if isinstance(value, tuple):
        assert value[0] not in str(info.value)


def test_from_dict_reports_missing_fields() -> None:
    with pytest.raises(ValueError, match="not a ledger entry"):
        LedgerEntry.from_dict({"call_id": "x"})


def test_from_usage_prices_and_sanitizes() -> None:
    usage = NormalizedUsage(input_tokens=100, cache_read_tokens=0, cache_write_5m_tokens=10_000,
                            cache_write_1h_tokens=0, output_tokens=50)  # fmt: skip
    e = LedgerEntry.from_usage(
        usage,
        model="anthropic/claude-sonnet-4.6 (eu) é",
        timestamp=3,
        base_url="https://user:sk-canary-url@relay.example.com/v1?key=sk-canary-q",
        predicted_read_tokens=-5,
        written_prefixes=["The whole static document text", P1.upper()],
        read_prefix=P2,
        miss_reason="prefix changed\nsecret",
    )
    # 100*$3 + 10,000*$3.75 + 50*$15 = $0.03855; uncached: 10,100*$3 + 50*$15 = $0.03105
    assert e.cost_usd == pytest.approx(0.03855)
    assert e.uncached_cost_usd == pytest.approx(0.03105)
    assert e.model == "anthropic/claude-sonnet-4.6_(eu)__"
    assert e.predicted_read_tokens is None
    assert len(e.written_prefixes[0]) == 32
    assert e.written_prefixes[1] == P1
    assert e.miss_reason == "prefix changed_secret"
    assert e.base_url_hash == hash_base_url("https://relay.example.com/v1")
    text = json.dumps(e.to_dict())
    for secret in ("static document", "sk-canary", "user", "relay.example.com"):
        assert secret not in text
    assert len(e.call_id) == 32  # a random id when none is given


def test_from_usage_leaves_unpriced_models_unpriced() -> None:
    usage = NormalizedUsage(10, 0, 0, 0, 5)
    e = LedgerEntry.from_usage(usage, model="my-local-model", timestamp=0)
    assert (e.cost_usd, e.uncached_cost_usd) == (None, None)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://relay.example.com/v1", "https://relay.example.com/v1/", True),
        ("https://relay.example.com/v1", "HTTPS://Relay.Example.com/v1", True),
        ("https://relay.example.com/v1", "https://u:sk-secret@relay.example.com/v1", True),
        ("https://relay.example.com/v1", "https://relay.example.com/v1?api_key=sk-1#x", True),
        ("https://relay.example.com/v1", "https://relay.example.com:8443/v1", False),
        ("https://relay.example.com/v1", "https://other.example.com/v1", False),
        ("https://relay.example.com/v1", "https://relay.example.com/v2", False),
        ("http://127.0.0.1:8787/v1", "http://127.0.0.1:8788/v1", False),
    ],
)
def test_hash_base_url_ignores_credentials_only(a: str, b: str, same: bool) -> None:
    assert (hash_base_url(a) == hash_base_url(b)) is same
    assert len(hash_base_url(a)) == 16
    assert "sk-" not in hash_base_url(b)


@pytest.mark.parametrize(
    ("plan", "observation", "read", "write", "expected"),
    [
        (None, None, 0, 0, ledger_module.CacheFacts()),
        (
            {"predicted_read_tokens": 900},
            {"written_prefixes": [P1, P2], "read_prefix": P3, "miss_reason": "ttl_expired"},
            0,
            10,
            ledger_module.CacheFacts(900, (P1, P2), P3, "ttl_expired"),
        ),
        (  # the planner's Observation.to_dict(): outcomes per breakpoint
            {"predicted_read_tokens": 900},
            {
                "predicted_read_tokens": 900,
                "breakpoints": [
                    {"prefix_hash": P1, "predicted": "read", "actual": "read", "miss_reason": None},
                    {
                        "prefix_hash": P2,
                        "predicted": "read",
                        "actual": "write",
                        "miss_reason": "expired",
                    },
                    {
                        "prefix_hash": P3,
                        "predicted": "write",
                        "actual": "write",
                        "miss_reason": "new prefix",
                    },
                ],
            },
            900,
            10,
            ledger_module.CacheFacts(900, (P2, P3), P1, "expired"),
        ),
        (  # a predicted write that was not cached at all is a miss too
            None,
            {
                "breakpoints": [
                    {
                        "prefix_hash": P1,
                        "predicted": "write",
                        "actual": "none",
                        "miss_reason": "relay dropped marker?",
                    }
                ]
            },
            0,
            0,
            ledger_module.CacheFacts(None, (), None, "relay dropped marker?"),
        ),
        (  # outcomes without prefix hashes: the reason is kept, the prefixes are unknown
            None,
            {"breakpoints": [{"predicted": "read", "actual": "write", "miss_reason": "expired"}]},
            0,
            10,
            ledger_module.CacheFacts(None, (), None, "expired"),
        ),
        (  # the observation's prediction wins
            {"predicted_read_tokens": 900},
            {"predicted_read_tokens": 100},
            100,
            0,
            ledger_module.CacheFacts(100),
        ),
        (  # plan only, nothing read: written at every planned breakpoint
            {"breakpoints": [{"prefix_hash": P1}, {"prefix_hash": P2}, {"ttl": "5m"}]},
            None,
            0,
            10,
            ledger_module.CacheFacts(None, (P1, P2)),
        ),
        (  # plan only, something read: which breakpoint was hit is unknown
            {"breakpoints": [{"prefix_hash": P1}]},
            None,
            10,
            10,
            ledger_module.CacheFacts(),
        ),
        (  # garbage is ignored, never raised
            {"predicted_read_tokens": "many", "breakpoints": "x"},
            {"written_prefixes": "P1", "read_prefix": 7, "miss_reason": ["x"], "breakpoints": [3]},
            0,
            10,
            ledger_module.CacheFacts(),
        ),
    ],
)
def test_cache_facts(plan: Any, observation: Any, read: int, write: int, expected: Any) -> None:
    assert cache_facts(plan, observation, read_tokens=read, write_tokens=write) == expected


def test_cache_facts_hashes_text_it_is_given() -> None:
    facts = cache_facts(None, {"written_prefixes": ["system: you are a pirate"]})
    assert len(facts.written_prefixes[0]) == 32
    assert "pirate" not in facts.written_prefixes[0]


# -- summary ---------------------------------------------------------------------------------------

# Worked by hand with Sonnet 4.6 prices (USD per million tokens: in 3, out 15, read 0.30,
# write 5m 3.75, write 1h 6):
#   A: 100 in + 10,000 written 5m at P1 + 50 out = 300 + 37,500 + 750 = $0.03855;
#      uncached 10,100*3 + 750 = $0.03105. Predicted to read nothing.
#   B: 100 in + 10,000 read at P1 + 50 out = 300 + 3,000 + 750 = $0.00405; uncached $0.03105.
#      Predicted 10,000: a hit as predicted.
#   C: 100 in + 5,000 written 1h at P2 + 50 out = 300 + 30,000 + 750 = $0.03105;
#      uncached 5,100*3 + 750 = $0.01605. Predicted 5,000 but read nothing (ttl_expired).
#   D: an unpriced model, 1,000 in + 10 out.
HAND = [
    entry("A", 10, plain=100, w5=10_000, out=50, cost=0.03855, uncached=0.03105, written=(P1,),
          predicted=0),
    entry("B", 20, plain=100, read=10_000, out=50, cost=0.00405, uncached=0.03105, read_prefix=P1,
          predicted=10_000),
    entry("C", 30, plain=100, w1h=5_000, out=50, cost=0.03105, uncached=0.01605, written=(P2,),
          predicted=5_000, reason="ttl_expired"),
    entry("D", 40, plain=1_000, out=10, model="my-local-model"),
]  # fmt: skip


def test_summary_by_hand() -> None:
    s = summarize(reversed(HAND))  # order given does not matter: timestamps do
    assert (s.calls, s.calls_with_read, s.hit_rate) == (4, 1, 0.25)
    assert (s.input_tokens, s.cache_read_tokens, s.output_tokens) == (1_300, 10_000, 160)
    assert (s.cache_write_5m_tokens, s.cache_write_1h_tokens) == (10_000, 5_000)
    assert s.total_input_tokens == 26_300
    assert s.cost_usd == pytest.approx(0.07365)
    assert s.uncached_cost_usd == pytest.approx(0.07815)
    assert s.saved_usd == pytest.approx(0.0045)
    assert s.saved_fraction == pytest.approx(0.0045 / 0.07815)
    assert s.unpriced_calls == 1
    # A's write was read by B; C's was never read: 5,000 tokens, premium (6 - 3) $/MTok.
    assert s.wasted_write_tokens == 5_000
    assert s.wasted_write_usd == pytest.approx(0.015)
    assert (s.predicted_calls, s.predicted_hits, s.actual_hits) == (3, 2, 1)
    assert (s.mispredictions, s.missed_predicted_hits) == (1, 1)
    assert s.miss_reasons == (("ttl_expired", 1),)
    assert (s.first_timestamp, s.last_timestamp) == (10, 40)


def test_empty_summary() -> None:
    s = summarize([])
    assert (s.calls, s.hit_rate, s.read_share, s.saved_fraction) == (0, None, None, None)
    assert s.to_table() == "Ledger: no calls recorded."
    assert "since" in summarize([], since=5.0).to_table()


def w(call_id: str, ts: float, tokens: int, *prefixes: str, **kw: Any) -> LedgerEntry:
    return entry(call_id, ts, w5=tokens, written=prefixes, **kw)


def r(call_id: str, ts: float, prefix: str | None, tokens: int = 100, **kw: Any) -> LedgerEntry:
    return entry(call_id, ts, read=tokens, read_prefix=prefix, **kw)


@pytest.mark.parametrize(
    ("entries", "wasted"),
    [
        pytest.param([w("a", 1, 1000, P1), r("b", 2, P1)], 0, id="write-then-read"),
        pytest.param([w("a", 1, 1000, P1)], 1000, id="never-read"),
        pytest.param([w("a", 1, 1000, P1), r("b", 2, P2)], 1000, id="other-prefix-read"),
        pytest.param([r("b", 1, P1), w("a", 2, 1000, P1)], 1000, id="read-before-write"),
        pytest.param(
            [w("a", 1, 1000, P1), w("b", 2, 700, P1), r("c", 3, P1)], 1000, id="rewritten-then-read"
        ),
        pytest.param(
            [w("a", 1, 1000, P1, P2), r("b", 2, P2)], 0, id="read-at-any-written-prefix"
        ),
        pytest.param(
            [w("a", 1, 1000, P1), r("b", 2, P1, model="claude-haiku-4-5")], 1000, id="other-model"
        ),
        pytest.param(
            [w("a", 1, 1000, P1, base="11" * 8), r("b", 2, P1, base="22" * 8)], 1000,
            id="other-relay",
        ),
        pytest.param(
            [w("a", 1, 1000, P1, model="claude-sonnet-4-6"),
             r("b", 2, P1, model="anthropic/claude-sonnet-4.6")], 0,
            id="model-aliases-share-a-cache",
        ),
        pytest.param([w("a", 1, 1000), r("b", 2, None)], 0, id="unknown-prefix-later-read"),
        pytest.param([w("a", 1, 1000), r("b", 2, P3)], 0, id="unknown-prefix-any-read"),
        pytest.param([w("a", 1, 1000), entry("b", 2, plain=50)], 1000, id="unknown-prefix-no-read"),
        pytest.param(
            [w("a", 1, 1000, P1), w("b", 2, 300, P2), r("c", 3, None)], 0,
            id="unattributed-read-credits-all-earlier",
        ),
        pytest.param(
            [w("a", 1, 1000, P1), r("b", 2, P1), w("c", 3, 200, P2), r("d", 4, P2)], 0,
            id="chain",
        ),
    ],
)  # fmt: skip
def test_wasted_writes(entries: list[LedgerEntry], wasted: int) -> None:
    assert summarize(entries).wasted_write_tokens == wasted


_prefix = st.sampled_from([P1, P2, P3])
_entries = st.lists(
    st.builds(
        entry,
        call_id=st.text("abcdef0123", min_size=1, max_size=6),
        ts=st.floats(0, 1e6),
        plain=st.integers(0, 10**6),
        read=st.integers(0, 10**6),
        w5=st.integers(0, 10**6),
        w1h=st.integers(0, 10**6),
        out=st.integers(0, 10**5),
        cost=st.none() | st.floats(0, 10),
        uncached=st.none() | st.floats(0, 10),
        written=st.lists(_prefix, max_size=2).map(tuple),
        read_prefix=st.none() | _prefix,
        predicted=st.none() | st.integers(0, 10**6),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(_entries, st.randoms(use_true_random=False))
def test_summary_properties(entries: list[LedgerEntry], rnd: Any) -> None:
    s = summarize(entries)
    assert s.calls == len(entries)
    assert s.cache_write_tokens == sum(e.cache_write_tokens for e in entries)
    assert 0 <= s.wasted_write_tokens <= s.cache_write_tokens
    assert 0 <= s.mispredictions <= s.predicted_calls
    assert s.calls_with_read == sum(e.cache_read_tokens > 0 for e in entries)
    # Only time order matters: shuffling entries with distinct timestamps changes nothing.
    if len({e.timestamp for e in entries}) == len(entries):
        shuffled = list(entries)
        rnd.shuffle(shuffled)
        again = summarize(shuffled)
        assert again.wasted_write_tokens == s.wasted_write_tokens
        assert again.cost_usd == pytest.approx(s.cost_usd)
    # A final call reading at every written prefix, one per prefix, leaves only the writes
    # that were superseded before being read.
    last = max((e.timestamp for e in entries), default=0.0)
    readers = [r(f"z{i}", last + 1 + i, p) for i, p in enumerate([P1, P2, P3])]
    assert summarize([*entries, *readers]).wasted_write_tokens <= s.wasted_write_tokens


def test_since_filters_and_is_recorded() -> None:
    mem = MemoryLedger()
    for e in (entry("a", 10), entry("b", 20), entry("c", 30)):
        mem.record(e)
    assert ids(mem.entries(since=20)) == ["b", "c"]
    s = mem.summary(since=20)
    assert (s.calls, s.since, s.first_timestamp) == (2, 20, 20)
    assert ids(mem.entries()) == ["a", "b", "c"]


def test_to_dict_and_table_are_ready_to_print() -> None:
    s = summarize(HAND)
    data = s.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["hit_rate"] == 0.25
    assert data["miss_reasons"] == {"ttl_expired": 1}
    assert data["total_input_tokens"] == 26_300
    table = s.to_table()
    lines = table.splitlines()
    assert lines[0].startswith("Calls")
    assert "1970-01-01 00:00:10 UTC" in lines[0]
    by_label = {line.strip().split("  ")[0]: line for line in lines}
    assert "25.0%" in by_label["Hit rate"]
    assert "1 of 4 calls" in by_label["Hit rate"]
    assert "10,000" in by_label["cache read"]
    assert "38.0%" in by_label["cache read"]
    assert "$0.0736" in by_label["with caching"]
    assert "$0.0045" in by_label["saved"]
    assert "5,000" in by_label["Wasted writes"]
    assert "$0.0150" in by_label["Wasted writes"]
    assert "ttl_expired 1" in by_label["Miss reasons"]
    assert "1" in by_label["Unpriced calls"]
    assert "of 3 planned calls" in by_label["Predicted hits"]
    # values are right-aligned in one column
    value_ends = {m.end(2) for ln in lines if (m := re.match(r"^(\s*\S.*?)\s{2,}([$\d,.%-]+)", ln))}
    assert len(value_ends) == 1


def test_negative_savings_are_printed_with_a_sign() -> None:
    s = summarize([HAND[0]])
    assert s.saved_usd == pytest.approx(-0.0075)
    assert "-$0.0075" in s.to_table()


# -- memory ledger --------------------------------------------------------------------------------


def test_memory_ledger_is_bounded_and_type_checked() -> None:
    mem = MemoryLedger(max_entries=3)
    for i in range(5):
        mem.record(entry(f"e{i}", i))
    assert ids(mem.entries()) == ["e2", "e3", "e4"]
    assert len(mem) == 3
    with pytest.raises(TypeError):
        mem.record({"call_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entries"):
        MemoryLedger(max_entries=0)


# -- disk ledger ----------------------------------------------------------------------------------


def test_every_ledger_satisfies_the_protocol(disk: DiskLedger) -> None:
    assert isinstance(disk, Ledger)
    assert isinstance(MemoryLedger(), Ledger)


def test_two_instances_share_one_directory(
    ledger_dir: Path, open_ledgers: list[DiskLedger]
) -> None:
    a, b = DiskLedger(ledger_dir), DiskLedger(ledger_dir)
    open_ledgers += [a, b]
    for i in range(3):
        a.record(entry(f"a{i}", i))
    a.flush()
    b.record(entry("b0", 10))
    b.record(entry("b1", 11))
    assert ids(b.entries()) == ["a0", "a1", "a2", "b0", "b1"]
    assert ids(a.entries(since=10)) == ["b0", "b1"]
    assert a.summary().calls == 5


def test_sync_mode_commits_inside_record(ledger_dir: Path, open_ledgers: list[DiskLedger]) -> None:
    led = DiskLedger(ledger_dir, background=False)
    other = DiskLedger(ledger_dir)
    open_ledgers += [led, other]
    led.record(entry("s0", 1))
    assert ids(other.stored_entries()) == ["s0"]  # no flush needed


def test_entries_survive_close_and_reopen(ledger_dir: Path) -> None:
    led = DiskLedger(ledger_dir)
    led.record(entry("x", 1, plain=5, cost=0.1, uncached=0.2, written=(P1,)))
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerUnavailableError, match="closed"):
        led.record(entry("y", 2))
    again = DiskLedger(ledger_dir)
    try:
        # prefix hashes come back keyed by the installation's key (the same key on reopening)
        keyed = (keyed_hash(again._hash_key, P1),)
        assert again.entries() == [entry("x", 1, plain=5, cost=0.1, uncached=0.2, written=keyed)]
        assert keyed != (P1,)
    finally:
        again.close()


def test_foreign_or_damaged_rows_are_skipped(disk: DiskLedger) -> None:
    disk.record(entry("ok", 1))
    disk.flush()
    with sqlite3.connect(disk.directory / "ledger.sqlite3") as db:
        db.executemany(
            "INSERT INTO entries (timestamp, value) VALUES (1, ?)",
            [
                ("not json",),
                (json.dumps([99, "future format"]),),
                (
                    json.dumps(
                        [1, "bad", 1.0, "m", -1, 0, 0, 0, 0, None, None, None, [], None, None, None]
                    ),
                ),
                (b"\x80\x04pickled bytes",),
                ("[" * 100_000,),
            ],
        )
    disk.record(entry("ok2", 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ids(disk.entries()) == ["ok", "ok2"]
        assert ids(disk.entries()) == ["ok", "ok2"]
    assert [str(w.message) for w in caught if "not entries it wrote" in str(w.message)] != []
    assert len(caught) == 1


def test_disk_ledger_is_bounded(ledger_dir: Path, open_ledgers: list[DiskLedger]) -> None:
    led = DiskLedger(ledger_dir, max_entries=50)
    open_ledgers.append(led)
    for i in range(120):
        led.record(entry(f"e{i:03d}", i))
        if i % 37 == 0:
            led.flush()
    assert ids(led.entries()) == [f"e{i:03d}" for i in range(70, 120)]
    with sqlite3.connect(ledger_dir / "ledger.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM entries").fetchone()
    assert rows <= 50  # trimmed on disk, not only when read


_WRITER = textwrap.dedent(
    """
    import sys
    from langchain_claude_relay.ledger import DiskLedger, LedgerEntry
    directory, tag, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    led = DiskLedger(directory)
    for i in range(count):
        led.record(LedgerEntry(f"{tag}{i:04d}", float(i), "claude-sonnet-4-6", 1, 0, 0, 0, 1,
                               None, None))
    if mode == "kill":
        led.flush()
        led.record(LedgerEntry("unflushed", 1e9, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    # mode "exit": no flush, no close: the atexit hook commits what is queued
    """
)


def _writer(directory: Path, tag: str, count: int, mode: str = "exit") -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - this interpreter running the script above
        [sys.executable, "-c", _WRITER, str(directory), tag, str(count), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_concurrent_processes_append_without_loss(
    ledger_dir: Path, open_ledgers: list[DiskLedger]
) -> None:
    led = DiskLedger(ledger_dir)
    open_ledgers.append(led)
    procs = [_writer(ledger_dir, tag, 200) for tag in ("p", "q")]
    for i in range(50):
        led.record(entry(f"m{i:04d}", float(i)))
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    got = ids(led.entries())
    assert len(got) == len(set(got)) == 450
    for tag, n in (("p", 200), ("q", 200), ("m", 50)):
        assert [c for c in got if c[0] == tag] == [f"{tag}{i:04d}" for i in range(n)]


def test_sigkill_loses_only_unflushed_entries(ledger_dir: Path, disk: DiskLedger) -> None:
    proc = _writer(ledger_dir, "k", 100, mode="kill")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    got = ids(disk.entries())
    assert got[:100] == [f"k{i:04d}" for i in range(100)]
    assert set(got) <= {*got[:100], "unflushed"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_queue(disk: DiskLedger) -> None:
    disk.record(entry("parent-before", 1))  # queued, maybe not committed at fork time
    pid = os.fork()
    if pid == 0:  # the child: its queue starts empty, so the parent's entry is not written twice
        code = 0
        try:
            for i in range(10):
                disk.record(entry(f"child{i}", 10 + i))
            disk.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    disk.record(entry("parent-after", 30))
    got = ids(disk.entries())
    assert sorted(got) == sorted(
        ["parent-before", "parent-after", *(f"child{i}" for i in range(10))]
    )


def _record_and_leave(directory: str, inherited: DiskLedger | None) -> None:
    """A multiprocessing worker's last act: record, neither flush nor close, and return."""
    led = inherited if inherited is not None else DiskLedger(directory)
    led.record(entry("worker-last", 5))


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_multiprocessing_workers_last_entry_is_kept(
    method: str, ledger_dir: Path, disk: DiskLedger
) -> None:
    # A worker ends with os._exit (no atexit): its queued entry was lost on fork and forkserver
    # until the exit hooks also ran from multiprocessing's own exit function.
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    inherited = disk if method == "fork" else None  # a forked worker uses the parent's object
    worker = multiprocessing.get_context(method).Process(
        target=_record_and_leave, args=(str(ledger_dir), inherited)
    )
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    assert ids(disk.entries()) == ["worker-last"]


def test_record_refuses_non_entries(disk: DiskLedger) -> None:
    with pytest.raises(TypeError):
        disk.record("text")  # type: ignore[arg-type]


def test_max_entries_must_be_positive(ledger_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        DiskLedger(ledger_dir, max_entries=0)


# -- failure modes: one warning, entries kept in memory, nothing raised into the call ----------


def _fallback(directory: Path, opened: list[DiskLedger]) -> FallbackLedger:
    def open_disk() -> DiskLedger:
        led = DiskLedger(directory)
        opened.append(led)
        return led

    return FallbackLedger(open_disk)


def _record_range(ledger: Any, start: int, stop: int) -> None:
    for i in range(start, stop):
        ledger.record(entry(f"e{i}", float(i), plain=1))


def _ledger_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "cost ledger" in str(w.message)]


def _break_file_where_dir_should_be(directory: Path) -> None:
    directory.parent.mkdir(parents=True)
    directory.write_text("not a directory")


def _break_garbage_database(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "ledger.sqlite3").write_bytes(os.urandom(4096))


@pytest.mark.parametrize(
    ("breaker", "fragment"),
    [
        (_break_file_where_dir_should_be, "cannot open"),
        (_break_garbage_database, "not a database"),
    ],
)
def test_unopenable_ledger_falls_back_to_memory(
    ledger_dir: Path, open_ledgers: list[DiskLedger], breaker: Any, fragment: str
) -> None:
    breaker(ledger_dir)
    fb = _fallback(ledger_dir, open_ledgers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _record_range(fb, 0, 5)
        fb.flush()
        got = fb.entries()
        summary = fb.summary()
    messages = _ledger_warnings(caught)
    assert len(messages) == 1
    assert fragment in messages[0]
    assert "in memory only" in messages[0]
    assert "CLAUDE_RELAY_STATE_DIR" in messages[0]
    assert fb.failed
    assert ids(got) == [f"e{i}" for i in range(5)]
    assert summary.calls == 5


@pytest.mark.parametrize("when", ["before-open", "mid-run"])
def test_write_failures_fall_back_with_one_warning(
    ledger_dir: Path,
    open_ledgers: list[DiskLedger],
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    """A read-only database or a full disk: root ignores chmod, so the write is made to fail."""
    fb = _fallback(ledger_dir, open_ledgers)
    if when == "mid-run":
        _record_range(fb, 0, 3)
        fb.flush()

    def full_disk(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DiskLedger, "_insert", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _record_range(fb, 3, 6)  # queued: the writer fails in the background
        fb.flush()
        _record_range(fb, 6, 9)  # after the failure: straight to memory
        got = fb.entries()
    messages = _ledger_warnings(caught)
    assert len(messages) == 1, messages
    assert "No space left" in messages[0]
    assert "Free disk space" in messages[0]
    expected = [f"e{i}" for i in range(0 if when == "mid-run" else 3, 9)]
    assert ids(got) == expected
    assert "3 uncommitted entries were kept" in messages[0]


def test_readonly_database_falls_back(
    ledger_dir: Path, open_ledgers: list[DiskLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    fb = _fallback(ledger_dir, open_ledgers)
    _record_range(fb, 0, 2)
    fb.flush()

    def readonly(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(DiskLedger, "_insert", readonly)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _record_range(fb, 2, 4)
        got = fb.entries()
        _record_range(fb, 4, 6)
        got_later = fb.entries()
    messages = _ledger_warnings(caught)
    assert len(messages) == 1
    assert "readonly" in messages[0]
    assert ids(got) == ["e0", "e1", "e2", "e3"]
    assert ids(got_later) == [f"e{i}" for i in range(6)]


def test_garbage_over_the_database_mid_run(
    ledger_dir: Path, open_ledgers: list[DiskLedger]
) -> None:
    fb = _fallback(ledger_dir, open_ledgers)
    _record_range(fb, 0, 3)
    fb.flush()
    with open(ledger_dir / "ledger.sqlite3", "r+b") as db:
        db.write(os.urandom(256 * 1024))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _record_range(fb, 3, 6)
        fb.flush()
        _record_range(fb, 6, 8)
        got = fb.entries()
    assert len(_ledger_warnings(caught)) == 1
    assert fb.failed
    assert set(ids(got)) >= {f"e{i}" for i in range(3, 8)}  # what was written before is gone
    assert len(ids(got)) == len(set(ids(got)))


def test_directory_deleted_mid_run(ledger_dir: Path, open_ledgers: list[DiskLedger]) -> None:
    fb = _fallback(ledger_dir, open_ledgers)
    _record_range(fb, 0, 3)
    fb.flush()
    shutil.rmtree(ledger_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _record_range(fb, 3, 6)
        got = fb.entries()
        _record_range(fb, 6, 8)
        got_later = fb.entries()
    messages = _ledger_warnings(caught)
    assert len(messages) == 1
    assert "removed" in messages[0]
    assert ids(got) == ["e3", "e4", "e5"]
    assert ids(got_later) == [f"e{i}" for i in range(3, 8)]
    assert not ledger_dir.exists()  # not silently recreated


def test_fallback_never_raises_into_a_call(
    ledger_dir: Path, open_ledgers: list[DiskLedger]
) -> None:
    fb = _fallback(ledger_dir, open_ledgers)
    fb.record("not an entry")  # type: ignore[arg-type]
    fb.record(entry("ok", 1))
    assert ids(fb.entries()) == ["ok"]
    assert not fb.failed
    fb.close()


def test_default_ledger_is_one_lazy_process_wide_ledger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path))
    previous = set_default_ledger(None)
    try:
        first = default_ledger()
        assert isinstance(first, Ledger)
        assert default_ledger() is first
        assert not (tmp_path / "ledger").exists()  # nothing opened until used
        first.record(entry("d0", 1))
        first.flush()
        assert (tmp_path / "ledger" / "ledger.sqlite3").exists()
        assert ids(first.entries()) == ["d0"]
        first.close()
        mem = MemoryLedger()
        assert set_default_ledger(mem) is first
        assert default_ledger() is mem
    finally:
        set_default_ledger(previous)


def test_ledger_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert ledger_directory({"CLAUDE_RELAY_STATE_DIR": str(tmp_path)}) == tmp_path / "ledger"
    home_default = ledger_directory({})
    assert home_default.name == "ledger"
    assert "langchain-claude-relay" in str(home_default)
    assert ledger_directory({"CLAUDE_RELAY_STATE_DIR": "  "}) == home_default
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "x"))
    assert ledger_directory() == tmp_path / "x" / "ledger"


# -- privacy ---------------------------------------------------------------------------------

PROMPT_CANARY = "canary-prompt-5d1f0a9e"
KEY_CANARY = "sk-canary-key-8b7c6d5e4f"
URL_CANARY = "canary-url-password-3e2f"


def test_no_prompt_text_key_or_url_in_the_ledger_files(disk: DiskLedger) -> None:
    request = ClaudeRequest(
        model=SONNET,
        system=(Block("text", {"text": f"You are helpful. {PROMPT_CANARY} " * 50}),),
        messages=(Message("user", (Block("text", {"text": f"Question {PROMPT_CANARY}"}),)),),
    )
    prefixes = request.prefix_hashes()
    usage = NormalizedUsage(10, 2_000, 500, 0, 20)
    base_url = f"https://user:{URL_CANARY}@relay.example.com/v1?key={KEY_CANARY}"
    for i in range(20):
        disk.record(
            LedgerEntry.from_usage(
                usage, model=SONNET, timestamp=float(i), base_url=base_url,
                written_prefixes=[prefixes[-1], f"raw text {PROMPT_CANARY}"],
                read_prefix=prefixes[0], predicted_read_tokens=2_000,
                miss_reason="prefix_changed",
            )
        )  # fmt: skip
    assert len(disk.entries()) == 20
    disk.close()
    blobs = b"".join(p.read_bytes() for p in disk.directory.rglob("*") if p.is_file())
    assert blobs  # the database and its WAL were read
    for canary in (PROMPT_CANARY, KEY_CANARY, URL_CANARY, "relay.example.com"):
        assert canary.encode() not in blobs
    # keyed hashes are what is stored: the plain prefix hash, which anyone could compute from
    # a guessed prompt, is not
    assert keyed_hash(disk._hash_key, prefixes[-1]).encode() in blobs
    assert prefixes[-1].encode() not in blobs
    assert prefixes[0].encode() not in blobs


def test_summary_type_is_frozen() -> None:
    s = LedgerSummary(calls=1)
    with pytest.raises(AttributeError):
        s.calls = 2  # type: ignore[misc]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(ledger_module)
    assert result.attempted >= 5
    assert result.failed == 0


def test_an_entry_is_priced_at_the_prices_given() -> None:
    """A relay's published prices (``pricing=``) replace the model table's for the entry."""
    from dataclasses import replace as replaced

    from langchain_claude_relay.models import ModelPrices, lookup_model

    usage = NormalizedUsage(
        input_tokens=1_000,
        cache_read_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        output_tokens=0,
    )
    table = LedgerEntry.from_usage(usage, model="claude-sonnet-5-5", timestamp=0.0)
    doubled = replaced(lookup_model("claude-sonnet-5-5"), prices=ModelPrices.standard(4.0, 20.0))
    relay = LedgerEntry.from_usage(usage, model="claude-sonnet-5-5", timestamp=0.0, pricing=doubled)
    assert table.cost_usd is not None
    assert relay.cost_usd == pytest.approx(2 * table.cost_usd)
