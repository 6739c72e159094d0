"""State stores: the protocol, what may be stored, bounded size, processes, and every failure."""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, request, run

from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import (
    DiskStore,
    MemoryStore,
    ResilientStore,
    StateStore,
    StateStoreWarning,
    check_key,
    check_value,
    default_state_dir,
    default_store,
)

CANARY = "ZEBRA-CANARY-91f3 the secret plan is to paint the moon green"


@pytest.fixture(params=["memory", "disk"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    store: StateStore = MemoryStore() if request.param == "memory" else DiskStore(tmp_path / "s")
    yield store
    store.close()


def test_protocol_operations(any_store: StateStore) -> None:
    assert isinstance(any_store, StateStore)
    assert any_store.get("p:01") is None
    any_store.set("p:01", {"n": 1.5, "h": [1, 2, 3]})
    assert any_store.get("p:01") == {"n": 1.5, "h": [1, 2, 3]}
    any_store.set("c:ab", [[1, 2.0, 3], [4, 5, 6]])
    assert any_store.get("c:ab") == [[1, 2.0, 3], [4, 5, 6]]
    assert any_store.incr("k:00") == 1.0
    assert any_store.incr("k:00", 2.5) == 3.5
    with any_store.transact():
        value = any_store.get("k:00")
        any_store.set("k:00", value * 2)
    assert any_store.get("k:00") == 7.0
    any_store.delete("k:00")
    any_store.delete("k:00")  # deleting twice is fine
    assert any_store.get("k:00") is None


def test_returned_values_are_copies(any_store: StateStore) -> None:
    any_store.set("p:02", {"h": [1, 2]})
    got = any_store.get("p:02")
    got["h"].append(3)
    assert any_store.get("p:02") == {"h": [1, 2]}


@pytest.mark.parametrize(
    "key", ["p:XYZ", "prompt:xyz", "p:", "p:0 1", "the system prompt", "p:" + "a" * 65, 42]
)
def test_bad_keys_are_refused(key: Any) -> None:
    with pytest.raises(ValueError, match="kind:hex"):
        check_key(key)


@pytest.mark.parametrize(
    "value",
    [
        "text",
        ["a", 1],
        {"n": "x"},
        {"Bad Key": 1},
        {"a_very_long_field_name": 1},
        True,
        None,
        float("nan"),
        float("inf"),
        [[[1]]],
        {"n": {"m": 1}},
        b"bytes",
    ],
)
def test_values_other_than_numbers_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid state"):
        check_value(value)
    with pytest.raises(ValueError):
        MemoryStore().set("p:01", value)


def test_memory_store_expiry_follows_its_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    store.set("p:01", 1, expire=10)
    clock.advance(9)
    assert store.get("p:01") == 1
    clock.advance(2)
    assert store.get("p:01") is None


def test_disk_store_expiry_and_persistence(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("p:01", 1, expire=-1)  # already expired
    store.set("p:02", 2)
    store.close()
    again = DiskStore(tmp_path)
    assert again.get("p:01") is None
    assert again.get("p:02") == 2
    again.close()


def test_disk_store_size_is_bounded(tmp_path: Path) -> None:
    limit = 256 * 1024
    store = DiskStore(tmp_path, size_limit=limit)
    for i in range(6000):
        store.set(f"p:{i:08x}", {"n": float(i), "b5": 1.0, "b60": 2.0, "last": 3.0, "cu": 4.0})
    store.flush()
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        (kept,) = db.execute("SELECT sum(length(key) + length(value) + 40) FROM state").fetchone()
        (rows,) = db.execute("SELECT count(*) FROM state").fetchone()
    file_size = (tmp_path / "state.sqlite3").stat().st_size
    assert store.get(f"p:{5999:08x}") is not None  # the newest keys stay
    store.close()
    assert 0.8 * limit <= kept <= limit, f"{kept} bytes kept for a limit of {limit}"
    assert 1000 < rows < 6000  # trimmed, not wiped
    assert file_size < 4 * limit


def test_processes_share_a_disk_store_safely(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from langchain_claude_relay.store import DiskStore\n"
        "s = DiskStore(sys.argv[1])\n"
        "for _ in range(50):\n"
        "    s.incr('k:01')\n"
    )
    command = [sys.executable, "-c", script, str(tmp_path)]
    procs = [subprocess.Popen(command) for _ in range(3)]  # noqa: S603 - our own interpreter
    assert all(p.wait(timeout=60) == 0 for p in procs)
    store = DiskStore(tmp_path)
    assert store.get("k:01") == 150.0
    store.close()


def test_default_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "here"))
    assert default_state_dir() == tmp_path / "here"
    monkeypatch.delenv("CLAUDE_RELAY_STATE_DIR")
    path = default_state_dir()
    assert path.name == "state"
    assert path.parent.name == "langchain-claude-relay"


def test_default_store_is_lazy_and_uses_the_env_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "lazy"
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(target))
    store = default_store()
    assert not target.exists()  # nothing touched before first use
    store.set("p:01", 1)
    assert (target / "state.sqlite3").exists()
    store.close()


# --------------------------------------------------------------- prompt text never stored


def test_no_prompt_text_reaches_the_disk(tmp_path: Path) -> None:
    clock = Clock()
    planner = CachePlanner(DiskStore(tmp_path / "state"), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    system = f"{CANARY}. " + prose(1500, 3)
    turns: list[tuple[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(4):
            turns += [("user", f"{CANARY} question {i} at 2025-01-01T10:0{i}:00Z")]
            req = request(system=system, turns=list(turns), document=CANARY + prose(900, 4))
            run(planner, claude, req, clock)
            turns += [("assistant", f"{CANARY} answer {i}")]
            clock.advance(90)
    planner.store.close()
    files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert files, "the disk store wrote nothing"
    needles = [CANARY.encode(), b"paint the moon", b"question 0", b"system[0]", b"2025-01-01"]
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} found in {path.name}"


# --------------------------------------------------------------- failures


def _exercise(planner: CachePlanner, clock: Clock, calls: int = 3) -> None:
    claude = ToyClaude()
    for i in range(calls):
        req = request(system=prose(1500, 1), turns=[("user", prose(20, i))])
        plan, _usage, obs = run(planner, claude, req, clock)
        assert plan.breakpoints
        assert obs.actual_total_tokens > 0
        clock.advance(60)


def _count(caught: list[warnings.WarningMessage]) -> int:
    return sum(issubclass(w.category, StateStoreWarning) for w in caught)


def _run_with_warnings(planner: CachePlanner, clock: Clock) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _exercise(planner, clock)
        _exercise(planner, clock)
    return caught


def _make_read_only(path: Path) -> None:
    path.chmod(0o555)
    probe = path / "probe"
    try:
        probe.touch()
    except OSError:
        return  # read-only as intended
    probe.unlink()
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], check=False).returncode == 0:  # noqa: S603
        return  # root: the immutable attribute stops even root
    path.chmod(0o755)
    pytest.skip("cannot make a directory read-only here (root without chattr)")


def _undo_read_only(path: Path) -> None:
    chattr = shutil.which("chattr")
    if chattr:
        subprocess.run([chattr, "-i", str(path)], capture_output=True, check=False)  # noqa: S603
    path.chmod(0o755)


def test_read_only_directory_falls_back_to_memory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    _make_read_only(locked)
    try:
        clock = Clock()
        planner = CachePlanner(default_store(locked / "state"), clock, encoding=ESTIMATOR)
        caught = _run_with_warnings(planner, clock)
        assert _count(caught) == 1
        assert planner.store.degraded  # type: ignore[attr-defined]
    finally:
        _undo_read_only(locked)


def test_existing_store_in_a_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    clock = Clock()
    first = CachePlanner(default_store(directory), clock, encoding=ESTIMATOR)
    _exercise(first, clock, calls=1)
    first.store.close()
    _make_read_only(directory)
    try:
        planner = CachePlanner(default_store(directory), clock, encoding=ESTIMATOR)
        caught = _run_with_warnings(planner, clock)
        assert _count(caught) == 1
    finally:
        _undo_read_only(directory)


def test_garbage_over_the_sqlite_file(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    store = DiskStore(directory)
    store.set("p:01", 1)
    store.close()
    (directory / "state.sqlite3").write_bytes(b"this is not a database " * 500)
    clock = Clock()
    planner = CachePlanner(default_store(directory), clock, encoding=ESTIMATOR)
    caught = _run_with_warnings(planner, clock)
    assert _count(caught) == 1


def test_directory_removed_while_running(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    clock = Clock()
    planner = CachePlanner(default_store(directory), clock, encoding=ESTIMATOR)
    _exercise(planner, clock, calls=1)
    shutil.rmtree(directory)
    caught = _run_with_warnings(planner, clock)
    assert _count(caught) == 1


class _FullDisk(DiskStore):
    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full(tmp_path: Path) -> None:
    clock = Clock()
    planner = CachePlanner(_FullDisk(tmp_path), clock, encoding=ESTIMATOR)
    caught = _run_with_warnings(planner, clock)
    assert _count(caught) == 1
    message = next(str(w.message) for w in caught if issubclass(w.category, StateStoreWarning))
    assert "No space left" in message
    assert "CLAUDE_RELAY_STATE_DIR" in message
    # learning goes on in memory after the failure
    assert planner.plan(request(system=prose(1500, 1))).calibration_observations > 0


def test_resilient_store_passes_bad_values_through() -> None:
    store = ResilientStore(MemoryStore())
    with pytest.raises(ValueError):
        store.set("p:01", "prompt text")
    assert not store.degraded
