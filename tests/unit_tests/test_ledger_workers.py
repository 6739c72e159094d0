"""A ``multiprocessing`` worker's entries are committed before ``record`` returns.

``with Pool(4) as pool: pool.map(...)`` ends the workers with ``terminate()`` (SIGTERM): no
``atexit``, no ``multiprocessing`` finalizer runs, so an entry still queued for the write-behind
thread was lost (a reviewer counted 12 of 16 entries with fork, 15 with spawn). Here the
write-behind waits an hour before committing, so without the fix no entry would survive at all:
what the test checks does not depend on timing.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from langchain_claude_relay.ledger import DiskLedger, LedgerEntry
from langchain_claude_relay.ledger import disk as disk_module
from langchain_claude_relay.ledger.workers import in_multiprocessing_worker

CALLS = 8
_worker_ledger: list[DiskLedger] = []  # the one ledger a worker process opens


def _open_in_worker(directory: str) -> None:
    """The pool's initializer: a ledger whose write-behind would wait an hour."""
    disk_module._LINGER = 3600.0
    _worker_ledger.append(DiskLedger(directory))


def _call(i: int) -> bool:
    """A worker's "chat call": record its entry, neither flush nor close."""
    _worker_ledger[-1].record(
        LedgerEntry(f"c{i:02d}", float(i), "claude-sonnet-4-6", 100, 0, 0, 0, 5, 0.001, 0.001)
    )
    return in_multiprocessing_worker()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_entries_of_a_terminated_pool_are_all_kept(method: str, tmp_path: Path) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    directory = str(tmp_path / "ledger")
    context = multiprocessing.get_context(method)
    with context.Pool(2, initializer=_open_in_worker, initargs=(directory,)) as pool:
        in_worker = pool.map(_call, range(CALLS), chunksize=1)
    # leaving the block ran terminate(): SIGTERM, no exit hook in the workers
    assert all(in_worker)
    reader = DiskLedger(directory)
    try:
        got = sorted(e.call_id for e in reader.entries())
    finally:
        reader.close()
    assert got == [f"c{i:02d}" for i in range(CALLS)]


def test_the_main_process_keeps_its_write_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not in_multiprocessing_worker()
    monkeypatch.setattr(disk_module, "_LINGER", 3600.0)
    ledger = DiskLedger(tmp_path / "ledger")
    try:
        ledger.record(LedgerEntry("c1", 1.0, "claude-sonnet-4-6", 1, 0, 0, 0, 1, None, None))
        assert ledger._writer.pending == 1  # queued for the writer, not committed in record
        assert ledger.stored_entries() == []
    finally:
        ledger.close()
    reader = DiskLedger(tmp_path / "ledger")
    try:
        assert [e.call_id for e in reader.entries()] == ["c1"]  # committed by close
    finally:
        reader.close()


def _worker_says() -> bool:
    return in_multiprocessing_worker()


def test_other_processes_keep_their_write_behind() -> None:
    """A ProcessPoolExecutor's (or a server's) workers end normally and commit at exit: only a
    Pool's, which it ends with SIGTERM, commit inside record."""
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method here")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert pool.submit(_worker_says).result() is False
