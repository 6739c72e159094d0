"""The state stores' hot path: frozen values, and the disk store's cache and write-behind."""

from __future__ import annotations

import copy
import errno
import math
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_claude_relay.store import (
    DiskStore,
    MemoryStore,
    ResilientStore,
    StateStore,
    StateStoreWarning,
    check_value,
)
from langchain_claude_relay.store.base import freeze, thaw

# ------------------------------------------------------------------ frozen values

SHAPES = [
    pytest.param(3, id="int"),
    pytest.param(2.5, id="float"),
    pytest.param([1, 2.0, 3], id="flat list"),
    pytest.param((1, 2), id="tuple"),
    pytest.param([], id="empty list"),
    pytest.param([[1, 2], 3, [4.5]], id="nested list"),
    pytest.param({"n": 1.0, "last": 2}, id="flat dict"),
    pytest.param({"a": [1.0, 2.0], "n": 3}, id="nested dict"),
    pytest.param({}, id="empty dict"),
    pytest.param([10**308, 10**308, 1], id="huge ints"),  # fit a float, not their float sum
    pytest.param([1e308, 1e308], id="sum overflows"),
]


def _plain(value: Any) -> Any:
    """What a store hands back for ``value``: tuples as lists, like a JSON round trip."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _mutate(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _mutate(item)
        value.append(99)
    elif isinstance(value, dict):
        for item in value.values():
            _mutate(item)
        value["zz"] = 99


@pytest.fixture(params=["memory", "disk", "disk-sync"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        made: StateStore = MemoryStore()
    else:
        made = DiskStore(tmp_path / "s", background=request.param == "disk")
    yield made
    made.close()


@pytest.mark.parametrize("value", SHAPES)
def test_values_go_in_and_come_out_as_copies(store: StateStore, value: Any) -> None:
    given_value = copy.deepcopy(value)
    store.set("p:01", given_value)
    _mutate(given_value)  # changing what was given changes nothing stored
    got = store.get("p:01")
    assert got == _plain(value)
    _mutate(got)  # nor does changing what was got
    assert store.get("p:01") == _plain(value)
    assert type(store.get("p:01")) is type(_plain(value))


def test_disk_values_survive_a_reopen(tmp_path: Path) -> None:
    values = {f"p:{i:02x}": _plain(p.values[0]) for i, p in enumerate(SHAPES) if i != 9}
    first = DiskStore(tmp_path)
    for key, value in values.items():
        first.set(key, value)
    first.close()
    again = DiskStore(tmp_path)
    assert {key: again.get(key) for key in values} == values
    again.close()


NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
LEAVES = st.one_of(NUMBERS, st.text(max_size=3), st.none())
FIELDS = st.one_of(st.sampled_from(["n", "b5", "last", "a_b"]), st.text(max_size=4), st.integers())
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(FIELDS, inner, max_size=4),
    ),
    max_leaves=12,
)


@given(VALUES)
def test_freezing_refuses_exactly_what_check_value_refuses(value: Any) -> None:
    try:
        check_value(value)
    except ValueError:
        with pytest.raises(ValueError):
            freeze(value)
        return
    frozen, shape = freeze(value)
    thawed = thaw(frozen, shape)
    assert thawed == _plain(value)
    assert thaw(frozen, shape) is not thawed or not isinstance(thawed, (list, dict))


# ------------------------------------------------------------------ disk: write-behind


def test_writes_are_seen_at_once_here_and_after_flush_elsewhere(tmp_path: Path) -> None:
    writer = DiskStore(tmp_path, refresh=0)
    reader = DiskStore(tmp_path, refresh=0)
    writer.set("p:01", {"n": 1.0})
    assert writer.get("p:01") == {"n": 1.0}
    writer.flush()
    assert reader.get("p:01") == {"n": 1.0}
    writer.delete("p:01")
    assert writer.get("p:01") is None
    writer.flush()
    assert reader.get("p:01") is None
    writer.close()
    reader.close()


def test_the_background_writer_commits_without_a_flush(tmp_path: Path) -> None:
    writer = DiskStore(tmp_path)
    reader = DiskStore(tmp_path, refresh=0)
    writer.set("p:01", 1)
    deadline = time.monotonic() + 10
    while reader.get("p:01") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader.get("p:01") == 1
    writer.close()
    reader.close()


def test_without_background_each_write_and_transaction_commits(tmp_path: Path) -> None:
    writer = DiskStore(tmp_path, background=False)
    reader = DiskStore(tmp_path, refresh=0)
    writer.set("p:01", 1)
    assert reader.get("p:01") == 1
    with writer.transact():
        writer.set("p:02", 2)
        writer.set("p:03", 3)
    assert (reader.get("p:02"), reader.get("p:03")) == (2, 3)
    writer.close()
    reader.close()


def test_other_processes_writes_are_seen_after_refresh(tmp_path: Path) -> None:
    writer = DiskStore(tmp_path)
    reader = DiskStore(tmp_path, refresh=0.2)
    assert reader.get("p:01") is None  # a miss is cached too
    writer.set("p:01", 5)
    writer.flush()
    assert reader.get("p:01") is None  # still within refresh
    time.sleep(0.25)
    assert reader.get("p:01") == 5
    writer.close()
    reader.close()


def test_a_process_that_exits_saves_its_writes(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from langchain_claude_relay.store import DiskStore\n"
        "s = DiskStore(sys.argv[1])\n"
        "s.set('p:01', {'n': 7.0})\n"
        "s.delete('p:02')\n"
    )
    seed = DiskStore(tmp_path)
    seed.set("p:02", 1)
    seed.close()
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)  # noqa: S603
    again = DiskStore(tmp_path)
    assert again.get("p:01") == {"n": 7.0}
    assert again.get("p:02") is None
    again.close()


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("incr", 2.0)], 102.0),
        ([("set", 5), ("incr", 2.0)], 7.0),
        ([("incr", 1.0), ("incr", 2.0)], 103.0),
        ([("incr", 1.0), ("set", 10)], 10),
        ([("delete", None), ("incr", 4.0)], 4.0),
        ([("set", {"n": 1}), ("incr", 1.0)], 1.0),
    ],
)
def test_increments_combine_with_queued_writes(
    tmp_path: Path, steps: list[tuple[str, Any]], expected: float
) -> None:
    seed = DiskStore(tmp_path)
    seed.set("k:01", 100.0)  # on disk before: a queued set or delete replaces it, an incr adds
    seed.close()
    store = DiskStore(tmp_path)
    for op, arg in steps:
        if op == "set":
            store.set("k:01", arg)
        elif op == "delete":
            store.delete("k:01")
        else:
            store.incr("k:01", arg)
    assert store.get("k:01") == expected
    store.close()
    again = DiskStore(tmp_path)
    assert again.get("k:01") == expected
    again.close()


def test_threads_lose_no_update(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)

    def work() -> None:
        for _ in range(200):
            store.incr("k:01")
            with store.transact():
                value = store.get("k:02") or 0
                store.set("k:02", value + 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (store.get("k:01"), store.get("k:02")) == (800.0, 800)
    store.close()
    again = DiskStore(tmp_path)
    assert (again.get("k:01"), again.get("k:02")) == (800.0, 800)
    again.close()


def test_memory_is_bounded_and_evicted_keys_are_read_again(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, max_cached_keys=10)
    for i in range(50):
        store.set(f"p:{i:02x}", i)
    store.flush()
    store.get("p:00")
    assert len(store._memory) <= 10
    assert [store.get(f"p:{i:02x}") for i in range(50)] == list(range(50))
    store.close()


def test_expiry_is_kept_in_memory(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("p:01", 1, expire=0.1)
    assert store.get("p:01") == 1
    time.sleep(0.15)
    assert store.get("p:01") is None
    store.close()


@pytest.mark.parametrize(
    "setting", [{"refresh": -1}, {"refresh": math.nan}, {"max_cached_keys": 0}]
)
def test_bad_settings_are_refused(tmp_path: Path, setting: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"refresh|max_cached_keys"):
        DiskStore(tmp_path, **setting)


def test_flush_and_close_inside_a_transaction_are_refused(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("p:01", 1)
    with store.transact():
        with pytest.raises(RuntimeError, match="inside transact"):
            store.flush()
        with pytest.raises(RuntimeError, match="inside transact"):
            store.close()
    store.close()


def test_a_read_failure_inside_a_transaction_falls_back_without_deadlock(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    store = ResilientStore(disk)
    store.set("p:01", 1)  # the writer is busy with this while the transaction below fails
    disk._read_row = _full_disk  # type: ignore[method-assign]
    done = threading.Event()

    def observe() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with store.transact():
                time.sleep(0.1)  # the writer now waits for the lock
                store.get("p:99")  # a miss read from disk fails: fall back, close the store
                store.set("p:02", 2)
        done.set()

    thread = threading.Thread(target=observe, daemon=True)
    thread.start()
    assert done.wait(20), "the fallback deadlocked with the writer"
    assert store.degraded
    assert store.get("p:02") == 2


# ------------------------------------------------------------------ disk: failures


def _full_disk(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_commit_is_raised_by_every_later_operation(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("p:01", 1)
    store._write = _full_disk  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space left"):
        store.flush()
    with pytest.raises(OSError, match="No space left"):
        store.get("p:01")
    with pytest.raises(OSError, match="No space left"):
        store.set("p:02", 1)
    with pytest.raises(OSError, match="No space left"), store.transact():
        pass
    store.close()  # a store that already failed closes quietly


def test_a_failed_background_commit_falls_back_with_one_warning(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path)
    store = ResilientStore(disk)
    store.set("p:00", 1)
    disk._write = _full_disk  # type: ignore[method-assign]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.set("p:01", 2)
        deadline = time.monotonic() + 10
        while disk._error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(5):
            store.set(f"p:{i + 2:02x}", i)
            with store.transact():
                store.get("p:01")
    assert sum(issubclass(w.category, StateStoreWarning) for w in caught) == 1
    assert store.degraded
    assert "No space left" in (store.failure or "")
    assert store.get("p:06") == 4  # it goes on in memory


def test_a_lock_held_elsewhere_only_delays_the_commit(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, timeout=0.05)
    reader = DiskStore(tmp_path, refresh=0)
    store.set("p:01", 1)
    other = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.flush()
    store.incr("k:01")  # queued on top of the writes that wait
    other.execute("COMMIT")
    other.close()
    store.flush()
    assert (reader.get("p:01"), reader.get("k:01")) == (1, 1.0)
    store.close()
    reader.close()
