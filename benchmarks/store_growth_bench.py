"""``DiskStore`` under growth: 100K distinct prompts, writes per key, trimming at the size limit.

Run ``python benchmarks/store_growth_bench.py [--prompts N] [--window N] [--size-limit BYTES]``.

Each distinct prompt writes what the planner's ``observe`` writes for a new prefix: its prefix
record (``p:``, a dict of six numbers, with an expiry) and its template record (``t:``), plus an
increment of a shared counter. Writes go through the store as the planner makes them (write
-behind), and each window of ``--window`` prompts ends with ``flush()``, so the time per write
includes the commits. Printed per window: milliseconds per write, rows on disk after the window,
and how many of the window's own keys read back (a store that wipes itself at its size limit
reads back none; one that trims keeps the newest). With ``--json PATH`` the rows are written
as JSON too.

The size limit defaults to 4 MiB so that 100K prompts cross it several times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from langchain_claude_relay.store import DiskStore


def _hex(i: int, kind: str) -> str:
    return hashlib.sha256(f"{kind}{i}".encode()).hexdigest()[:24]


def _rows_on_disk(directory: Path) -> int:
    """Rows in whichever database the store keeps (read with plain SQL, never unpickled)."""
    for name, table in (("state.sqlite3", "state"), ("cache.db", "Cache")):
        path = directory / name
        if path.exists():
            with sqlite3.connect(path) as db:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
    return 0


def run(prompts: int, window: int, size_limit: int) -> list[dict[str, Any]]:
    """Write ``prompts`` distinct prompts' records; one row of figures per window."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store = DiskStore(directory, size_limit=size_limit)
        now = time.time()
        for start in range(0, prompts, window):
            stop = min(prompts, start + window)
            began = time.perf_counter()
            for i in range(start, stop):
                t = now + i
                record = {"n": 1.0, "last": t, "cu": t + 300, "ct": 300.0, "r": 0.0, "w": 1.0}
                store.set(f"p:{_hex(i, 'p')}", record, expire=7 * 86400)
                store.set(f"t:{_hex(i, 't')}", {"n": 1.0, "last": t}, expire=7 * 86400)
                store.incr("k:00", 1.0)
            store.flush()
            elapsed = time.perf_counter() - began
            writes = 3 * (stop - start)
            reopened = DiskStore(directory, size_limit=size_limit, refresh=0)
            kept = sum(reopened.get(f"p:{_hex(i, 'p')}") is not None for i in range(start, stop))
            reopened.close()
            rows.append(
                {
                    "prompts": stop,
                    "ms_per_write": round(1000 * elapsed / writes, 4),
                    "rows_on_disk": _rows_on_disk(directory),
                    "window_keys_kept": kept,
                    "window_keys": stop - start,
                }
            )
            print(
                f"{stop:>8,} prompts  {rows[-1]['ms_per_write']:8.4f} ms/write  "
                f"{rows[-1]['rows_on_disk']:>8,} rows on disk  "
                f"{kept:>6,}/{stop - start:,} of this window's keys kept",
                flush=True,
            )
        store.close()
    return rows


def main() -> None:
    """Parse arguments, run, print (and optionally save) the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000, help="distinct prompts")
    parser.add_argument("--window", type=int, default=10_000, help="prompts per printed row")
    parser.add_argument("--size-limit", type=int, default=4 * 2**20, help="store size limit")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    warnings.simplefilter("default")
    rows = run(args.prompts, args.window, args.size_limit)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
