"""A row the ledger did not write is skipped with one warning, and never turns off persistence.

A reviewer planted 4 KB of nested JSON arrays (``[[[...]]]``, within ``MAX_ENTRY_CHARS``): the
decoder raised ``RecursionError``, ``claude-relay stats`` printed no calls, and the default
ledger switched to memory for good -- later calls never reached the disk.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from langchain_claude_relay.errors import LedgerWarning
from langchain_claude_relay.ledger import DiskLedger, FallbackLedger, LedgerEntry
from langchain_claude_relay.ledger.codec import decode_entry, encode_entry
from langchain_claude_relay.ledger.disk import MAX_ENTRY_CHARS

NESTED = "[" * 2_000 + "]" * 2_000  # 4 KB: within MAX_ENTRY_CHARS, far beyond the recursion limit


def _entry(call_id: str, ts: float, **changes: Any) -> LedgerEntry:
    entry = LedgerEntry(call_id, ts, "claude-sonnet-4-6", 100, 0, 10, 0, 5, 0.1, 0.2)
    return replace(entry, **{"written_prefixes": ("ab" * 16,), **changes})


def _ids(entries: list[LedgerEntry]) -> list[str]:
    return [e.call_id for e in entries]


def _rows_on_disk(directory: Path) -> int:
    with sqlite3.connect(directory / "ledger.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM entries").fetchone()
    return int(rows)


def _plant(directory: Path, *values: Any) -> None:
    with sqlite3.connect(directory / "ledger.sqlite3") as db:
        db.executemany(
            "INSERT INTO entries (timestamp, value) VALUES (2000, ?)", [(v,) for v in values]
        )


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger"


@pytest.fixture
def opened() -> Iterator[list[DiskLedger]]:
    ledgers: list[DiskLedger] = []
    yield ledgers
    for ledger in ledgers:
        ledger.close()


def _fallback(directory: Path, opened: list[DiskLedger]) -> FallbackLedger:
    def open_disk() -> DiskLedger:
        ledger = DiskLedger(directory)
        opened.append(ledger)
        return ledger

    return FallbackLedger(open_disk)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(NESTED, id="nested arrays"),
        pytest.param('{"a":' * 1_500 + "1" + "}" * 1_500, id="nested objects"),
        pytest.param(NESTED.encode(), id="nested bytes"),
        pytest.param("[1," + NESTED + "]", id="nested inside an array"),
        pytest.param(b"\xff\xfe[1]", id="not utf-8"),
        pytest.param(None, id="None"),
        pytest.param(12, id="a number"),
        pytest.param("[" + "1," * MAX_ENTRY_CHARS + "1]", id="too long"),
    ],
)
def test_decode_never_raises_on_a_row_it_did_not_write(value: Any) -> None:
    assert decode_entry(value) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"call_id": "chat[[[[{{1"},
        {"call_id": 'q"[[[\\'},
        {"miss_reason": "a [[[ b {{{ c"},
        {"written_prefixes": ("ab" * 16, "cd" * 16, "ef" * 16)},
    ],
)
def test_brackets_inside_strings_are_not_nesting(changes: dict[str, Any]) -> None:
    entry = replace(_entry("c1", 1.0), **changes)
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_entry(encode_entry(entry).encode()) == entry  # as Redis returns it


def test_a_planted_nested_row_is_skipped_with_one_warning(
    ledger_dir: Path, opened: list[DiskLedger]
) -> None:
    ledger = DiskLedger(ledger_dir, background=False)
    opened.append(ledger)
    ledger.record(_entry("before", 1.0))
    _plant(ledger_dir, NESTED, json.dumps([1, NESTED]))
    ledger.record(_entry("after", 3.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _ids(ledger.entries()) == ["before", "after"]
        assert ledger.summary().calls == 2
    messages = [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(messages) == 1
    assert "2 rows that are not entries it wrote" in messages[0]


def test_a_planted_row_never_turns_the_default_ledger_to_memory(
    ledger_dir: Path, opened: list[DiskLedger]
) -> None:
    fallback = _fallback(ledger_dir, opened)
    fallback.record(_entry("c1", 1.0))
    fallback.flush()
    _plant(ledger_dir, NESTED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _ids(fallback.entries()) == ["c1"]
        assert fallback.summary().calls == 1
        fallback.record(_entry("c2", 3.0))
        fallback.flush()
    assert not fallback.failed
    assert _rows_on_disk(ledger_dir) == 3  # the later call reached the disk
    assert len([w for w in caught if issubclass(w.category, LedgerWarning)]) == 1


def test_a_read_failure_warns_once_and_keeps_writing_to_the_primary(
    ledger_dir: Path, opened: list[DiskLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = _fallback(ledger_dir, opened)
    fallback.record(_entry("c1", 1.0))

    def unreadable(self: DiskLedger, since: float | None = None) -> list[LedgerEntry]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with monkeypatch.context() as patch:
            patch.setattr(DiskLedger, "stored_entries", unreadable)
            assert fallback.entries() == []
            assert fallback.summary().calls == 0
        fallback.record(_entry("c2", 2.0))
        got = fallback.entries()
    messages = [str(w.message) for w in caught if issubclass(w.category, LedgerWarning)]
    assert len(messages) == 1, messages
    assert "cannot read the cost ledger" in messages[0]
    assert "still recorded" in messages[0]
    assert not fallback.failed
    assert _ids(got) == ["c1", "c2"]
    assert _rows_on_disk(ledger_dir) == 2


def test_a_write_failure_found_while_reading_still_fails_over(
    ledger_dir: Path, opened: list[DiskLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    fallback = _fallback(ledger_dir, opened)
    fallback.record(_entry("c1", 1.0))
    fallback.flush()

    def full_disk(self: DiskLedger, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DiskLedger, "_insert", full_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback.record(_entry("c2", 2.0))  # queued: the write fails in entries()' flush
        got = fallback.entries()
    assert fallback.failed
    assert _ids(got) == ["c1", "c2"]
    assert len([w for w in caught if issubclass(w.category, LedgerWarning)]) == 1
