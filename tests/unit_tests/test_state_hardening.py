"""Saved state that cannot run code, touch files or be read by others (issue 14, rows 1, 2, 8, 9).

Rows planted in the planner's store and the cost ledger -- in today's SQLite files and in the
diskcache files of older versions -- are ignored with one warning: a pickle is never unpickled,
a row naming a file never makes us delete it, a huge or non-JSON value is never decoded. The
files are ``0600`` in ``0700`` directories whatever the umask, keys and prefix hashes are stored
keyed, and a store at its size limit trims the least recently used keys instead of wiping.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import stat
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import pytest

from langchain_claude_relay._plumbing import forget_warnings, keyed_hash
from langchain_claude_relay.capabilities import RelayCapabilities, save_capabilities
from langchain_claude_relay.errors import LedgerWarning, StateStoreWarning, StateWarning
from langchain_claude_relay.ledger import DiskLedger, LedgerEntry
from langchain_claude_relay.ledger.codec import encode_entry
from langchain_claude_relay.store import DiskStore

P1 = "ab" * 16


class _Bomb:
    """Unpickling this creates the directory ``marker``: proof that a pickle was run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def _entry(call_id: str, ts: float, written: tuple[str, ...] = ()) -> LedgerEntry:
    return LedgerEntry(call_id, ts, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None, None, written)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    forget_warnings()
    yield
    forget_warnings()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _state_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, StateWarning)]


# ----------------------------------------------------------- an older version's diskcache files


def _legacy_store(directory: Path) -> diskcache.Cache:
    """The planner store as versions before 0.2 wrote it (diskcache, JSONDisk, no compression)."""
    return diskcache.Cache(str(directory), disk=diskcache.JSONDisk, disk_compress_level=0)


def _legacy_key(key: str) -> bytes:
    return zlib.compress(json.dumps(key).encode(), 0)


def _plant_legacy_row(directory: Path, key: bytes, **columns: Any) -> None:
    row = {"raw": 1, "store_time": 0.0, "access_time": 0.0, "mode": 1, "size": 0, **columns}
    names = ", ".join(["key", *row])
    marks = ", ".join("?" * (len(row) + 1))
    with sqlite3.connect(directory / "cache.db") as db:
        db.execute(f"INSERT INTO Cache ({names}) VALUES ({marks})", (key, *row.values()))  # noqa: S608


def test_a_pickle_planted_in_old_store_files_never_runs(tmp_path: Path) -> None:
    state, marker = tmp_path / "state", tmp_path / "pwned"
    legacy = _legacy_store(state)
    legacy.set("p:01", {"n": 2.0})
    legacy.close()
    bomb = pickle.dumps(_Bomb(marker))
    _plant_legacy_row(state, _legacy_key("p:0bad"), mode=4, value=sqlite3.Binary(bomb))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = DiskStore(state)
        assert store.get("p:0bad") is None
        assert store.get("p:01") == {"n": 2.0}  # the plain JSON row was kept
        store.set("p:02", 1)
        store.close()
    assert not marker.exists(), "a planted pickle was unpickled"
    assert len(_state_warnings(caught)) == 1
    assert "dropped without being read" in _state_warnings(caught)[0]
    assert not (state / "cache.db").exists()


def test_a_pickle_planted_in_an_old_ledger_never_runs_even_when_trimming(tmp_path: Path) -> None:
    directory, marker = tmp_path / "ledger", tmp_path / "pwned"
    legacy = diskcache.Cache(str(directory))
    legacy.push(_Bomb(marker))  # the oldest item: the first one trimming pulls
    legacy.push(encode_entry(_entry("old", 1.0)), tag=1.0)
    legacy.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        led = DiskLedger(directory, max_entries=1)
        led.record(_entry("new", 2.0))
        got = [e.call_id for e in led.entries()]
        led.close()
    assert not marker.exists(), "a planted pickle was unpickled"
    assert got == ["new"]
    assert any(issubclass(w.category, LedgerWarning) for w in caught)


def test_an_expired_old_row_naming_a_file_never_deletes_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name, opener in (
        ("state", lambda d: DiskStore(d, background=False)),
        ("ledger", lambda d: DiskLedger(d, background=False, max_entries=1)),
    ):
        directory = tmp_path / name
        legacy = _legacy_store(directory) if name == "state" else diskcache.Cache(str(directory))
        legacy.close()
        _plant_legacy_row(
            directory, _legacy_key("p:0f"), mode=2, filename=str(victim), expire_time=1.0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opened = opener(directory)
            for i in range(30):  # writes that expire and trim, as diskcache culled on set
                if name == "state":
                    opened.set(f"p:{i:02x}", i)
                else:
                    opened.record(_entry(f"e{i}", float(i)))
            opened.close()
        assert victim.read_text() == "keep me", f"the {name} deleted a file a row named"


# --------------------------------------------------------------------------- today's files


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(sqlite3.Binary(b"\x80\x04pickle"), id="blob"),
        pytest.param("cos\nsystem\n(S'true'\ntR.", id="protocol-0 pickle text"),
        pytest.param("not json", id="not json"),
        pytest.param('"a prompt"', id="text"),
        pytest.param("[" * 50_000 + "]" * 50_000, id="deep"),
        pytest.param(json.dumps(list(range(30_000))), id="huge"),
        pytest.param("NaN", id="nan"),
    ],
)
def test_a_planted_row_in_the_store_is_ignored_with_one_warning(tmp_path: Path, value: Any) -> None:
    store = DiskStore(tmp_path, refresh=0)
    store.set("p:01", 1)
    store.flush()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute(
            "INSERT INTO state (key, value, expires, last_used) VALUES (?, ?, NULL, 0)",
            (store._stored_key("p:02"), value),
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.get("p:02") is None
        assert store.get("p:02") is None
        assert store.get("p:01") == 1
    assert [issubclass(w.category, StateStoreWarning) for w in caught] == [True]
    store.set("p:02", 5)  # the next write replaces the row
    store.flush()
    assert store.get("p:02") == 5
    store.close()


def test_an_increment_over_a_planted_row_starts_from_zero(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, background=False)
    store.set("k:01", 1)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        db.execute(
            "UPDATE state SET value = ? WHERE key = ?",
            ("9" * 10_000, store._stored_key("k:01")),
        )
    store.close()
    again = DiskStore(tmp_path, background=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert again.incr("k:01", 2) == 2.0
    again.close()


def test_the_store_has_no_file_column_and_never_pickles(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("p:01", {"n": 1.0})
    store.close()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(state)")]
        (value,) = db.execute("SELECT value FROM state").fetchone()
    assert columns == ["key", "value", "expires", "last_used"]
    assert json.loads(value) == {"n": 1.0}


# ------------------------------------------------------------------------- private and keyed


def test_state_files_are_private_whatever_the_umask(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "cache" / "state"
    store = DiskStore(state)
    store.set("p:01", 1)
    store.flush()
    led = DiskLedger(state / "ledger")
    led.record(_entry("c", 1.0))
    led.flush()
    caps = RelayCapabilities(True, True, True, False, True, (), "claude-sonnet-4-6", time.time())
    save_capabilities("http://127.0.0.1:1/v1", caps, state)
    for directory in (tmp_path / "cache", state, state / "ledger"):
        assert _mode(directory) == 0o700, directory
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "state.sqlite3",
        "state.sqlite3-wal",
        "ledger.sqlite3",
        "relay_capabilities.json",
    }
    for path in files:
        assert _mode(path) == 0o600, path
    store.close()
    led.close()


def test_a_probe_result_saved_first_is_private(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "fresh" / "state"
    caps = RelayCapabilities(True, True, True, False, True, (), "claude-sonnet-4-6", time.time())
    save_capabilities("http://127.0.0.1:1/v1", caps, state)
    assert (_mode(tmp_path / "fresh"), _mode(state)) == (0o700, 0o700)
    assert _mode(state / "relay_capabilities.json") == 0o600


def test_an_older_versions_open_directory_is_tightened(tmp_path: Path, umask_022: None) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    old = state / "state.sqlite3"
    old.touch(mode=0o644)
    os.chmod(old, 0o644)
    DiskStore(state).close()
    assert (_mode(state), _mode(old)) == (0o700, 0o600)


def test_a_shared_sticky_directory_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 -- a /tmp-like shared directory, on purpose
    DiskStore(shared / "state").close()
    assert _mode(shared) == 0o1777
    assert _mode(shared / "state") == 0o700


def test_stored_keys_are_keyed_hashes(tmp_path: Path) -> None:
    prefix = "0123456789abcdef01234567"
    store = DiskStore(tmp_path)
    store.set(f"p:{prefix}", {"n": 1.0})
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert prefix.encode() not in blob  # a guessed prompt's hash cannot be looked up
    assert keyed_hash(store._hash_key, f"p:{prefix}").encode() in blob
    again = DiskStore(tmp_path)  # the key is kept with the state: the same on reopening
    assert again.get(f"p:{prefix}") == {"n": 1.0}
    again.close()


def test_two_installations_store_different_hashes(tmp_path: Path) -> None:
    first, second = DiskStore(tmp_path / "a"), DiskStore(tmp_path / "b")
    assert first._stored_key("p:01") != second._stored_key("p:01")
    first.close()
    second.close()


def test_a_hash_key_setting_is_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_HASH_KEY", "one fleet, one key")
    first, second = DiskStore(tmp_path / "a"), DiskStore(tmp_path / "b")
    assert first._stored_key("p:01") == second._stored_key("p:01")
    first.close()
    second.close()


def test_old_store_rows_are_migrated_keyed(tmp_path: Path) -> None:
    legacy = _legacy_store(tmp_path)
    legacy.set("k:0a", 3.5)
    legacy.set("p:0b", {"n": 1.0, "cu": 10.0}, expire=3600)
    legacy.set("p:0c", [1, 2, 3], expire=-1)  # expired: not carried over
    legacy.close()
    store = DiskStore(tmp_path)
    assert (store.get("k:0a"), store.get("p:0b"), store.get("p:0c")) == (
        3.5,
        {"n": 1.0, "cu": 10.0},
        None,
    )
    store.close()
    assert not (tmp_path / "cache.db").exists()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        keys = {k for (k,) in db.execute("SELECT key FROM state")}
    assert "k:0a" not in keys
    assert store._stored_key("k:0a") in keys


def test_relative_directories_work_and_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    legacy = diskcache.Cache("ledger")
    legacy.push(encode_entry(_entry("old", 1.0)), tag=1.0)
    legacy.close()
    led = DiskLedger("ledger")
    led.record(_entry("new", 2.0))
    assert [e.call_id for e in led.entries()] == ["old", "new"]
    led.close()
    store = DiskStore("state")
    store.set("p:01", 1)
    store.close()
    assert DiskStore("state").get("p:01") == 1


def test_old_ledger_entries_are_migrated_in_order(tmp_path: Path) -> None:
    legacy = diskcache.Cache(str(tmp_path))
    for i in range(5):
        legacy.push(encode_entry(_entry(f"e{i}", float(i), (P1,))), tag=float(i))
    legacy.close()
    led = DiskLedger(tmp_path)
    got = led.entries()
    led.close()
    assert [e.call_id for e in got] == [f"e{i}" for i in range(5)]
    assert {e.written_prefixes for e in got} == {(keyed_hash(led._hash_key, P1),)}
    assert not (tmp_path / "cache.db").exists()
    again = DiskLedger(tmp_path)  # migrated once
    assert len(again.entries()) == 5
    again.close()


# ---------------------------------------------------------------------------------- trimming


def test_a_store_at_its_size_limit_trims_the_least_recently_used(tmp_path: Path) -> None:
    # about 2,200 of these keys; served from memory for the whole test (a refresh after the
    # default second, on a loaded machine, re-read the trimmed keys from disk: flaky)
    store = DiskStore(tmp_path, size_limit=256 * 1024, refresh=3600.0)
    for window in range(6):
        for i in range(1000):
            store.set(f"p:{window:02x}{i:04x}", {"n": float(i), "last": 1.0, "cu": 2.0})
        store.set("k:01", window)  # used in every window: never trimmed
        store.flush()
        reader = DiskStore(tmp_path, refresh=0)
        kept = sum(reader.get(f"p:{window:02x}{i:04x}") is not None for i in range(1000))
        assert reader.get("k:01") == window
        reader.close()
        assert kept == 1000, f"window {window}: only {kept} of its keys kept (wiped?)"
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM state").fetchone()
    assert 1000 < rows < 3000  # trimmed to the limit, never wiped
    first_window = sum(store.get(f"p:00{i:04x}") is not None for i in range(1000))
    store.close()
    assert DiskStore(tmp_path).get("p:000000") is None  # the least recently used went first
    assert first_window == 1000  # (this process still remembers them: memory, not disk)


def test_a_backlog_of_unsaved_keys_does_not_scan_memory_per_write(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, max_cached_keys=100)
    calls = 0
    evict = store._evict

    def counting() -> None:
        nonlocal calls
        calls += 1
        evict()

    store._evict = counting  # type: ignore[method-assign]
    with store.transact():  # the writer cannot take the queue: every key stays unsaved
        for i in range(2000):
            store.set(f"p:{i:04x}", i)
    assert calls <= 2000 // 25 + 2, f"{calls} evictions for 2,000 writes"
    store.close()
    assert DiskStore(tmp_path).get("p:07cf") == 1999


def test_one_commit_over_the_limit_keeps_what_was_used_last(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, size_limit=64 * 1024, background=False)
    with store.transact():  # one commit, several times the limit
        for i in range(3000):
            store.set(f"p:{i:04x}", {"n": float(i)})
            store.incr("k:00")  # used all along: it must survive
    store.close()
    reader = DiskStore(tmp_path)
    kept = [i for i in range(3000) if reader.get(f"p:{i:04x}") is not None]
    assert reader.get("k:00") == 3000.0
    assert kept == list(range(3000 - len(kept), 3000))  # the newest, whatever their names
    assert len(kept) > 300
    reader.close()
