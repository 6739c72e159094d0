"""A store that fails mid-run: the in-memory fallback goes on with what the process knew."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, request, run

from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import DiskStore, ResilientStore, StateStoreWarning


def _warnings(caught: list[warnings.WarningMessage]) -> int:
    return sum(issubclass(w.category, StateStoreWarning) for w in caught)


def test_a_removed_directory_keeps_what_was_learned(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    clock = Clock()
    planner = CachePlanner(DiskStore(directory), clock, encoding=ESTIMATOR)
    claude, req = ToyClaude(), request(system=prose(1500, 1))
    for _ in range(5):
        run(planner, claude, req, clock)
        clock.advance(60)
    learned = planner.plan(req).calibration_observations
    assert learned > 4
    shutil.rmtree(directory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(planner, claude, req, clock)  # the failure shows here; the call goes on
        after = planner.plan(req)
    assert _warnings(caught) == 1
    assert planner.store.degraded  # type: ignore[attr-defined]
    # one more observation on top of what was learned, not a fresh start (1.0)
    assert after.calibration_observations > learned
    assert after.predicted_read_tokens > 0  # the cached prefix is still known


def test_writes_of_a_batch_whose_commit_failed_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskStore(tmp_path / "state", background=False)
    store = ResilientStore(disk)
    store.set("p:01", {"n": 1.0})
    store.set("p:02", 7)
    store.delete("p:02")

    def broken(batch: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(disk, "_write", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with store.transact():  # committed at the end: the commit fails
            store.set("k:01", {"a": [1.0, 2.0]})
            store.incr("m:01", 2.0)
        assert store.get("k:01") == {"a": [1.0, 2.0]}
        assert store.incr("m:01") == 3.0
        store.set("k:02", 1)
    assert _warnings(caught) == 1
    assert store.degraded
    assert store.get("p:01") == {"n": 1.0}  # saved before the failure, still known
    assert store.get("p:02") is None  # a delete stays a delete
    assert store.get("k:02") == 1


def test_salvage_is_bounded_and_keeps_unsaved_writes_first(tmp_path: Path) -> None:
    disk = DiskStore(tmp_path / "state", background=False)
    for i in range(10):
        disk.set(f"p:{i:02x}", i)
    with disk.transact():  # queued, not committed yet
        disk.set("k:01", 1.5)
        assert disk.salvage(3) == [("k:01", 1.5), ("p:09", 9), ("p:08", 8)]
    assert len(disk.salvage(100)) == 11
    disk.close()
