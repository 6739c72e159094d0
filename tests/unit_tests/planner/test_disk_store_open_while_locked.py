"""Opening an existing state database waits for no writer: it reads when the schema exists."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

from langchain_claude_relay.store import DiskStore, ResilientStore
from langchain_claude_relay.store.disk import DATABASE


def test_a_store_opens_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    first = DiskStore(tmp_path, background=False)
    first.set("c:01", 5.0)
    first.close()
    other = sqlite3.connect(tmp_path / DATABASE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process committing (a trim, a migration...)
    try:
        store = ResilientStore(lambda: DiskStore(tmp_path, timeout=0.2, background=False))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.get("c:01") == 5.0  # what was saved, read at once
        assert not store.degraded
    finally:
        other.execute("COMMIT")
        other.close()
    store.set("c:02", 7.0)  # and what it learns is still saved
    store.close()
    assert DiskStore(tmp_path).get("c:02") == 7.0
