"""A benchmark phase that fails: reported in its table and JSON, exit status 1, no traceback,
and nothing left open (no ``ResourceWarning``)."""

from __future__ import annotations

import contextlib
import gc
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_claude_relay.bench import load, overhead, run_bench
from langchain_claude_relay.emulator import RelayEmulator


@contextlib.contextmanager
def _resetting_emulator() -> Iterator[str]:
    """An emulator that resets every API connection (a relay falling over under load)."""
    with RelayEmulator(fault_rate=1.0, fault_kinds="reset") as emu:
        yield emu.base_url


def _failing_after(served: int) -> Callable[[], contextlib.AbstractContextManager[str]]:
    """An emulator that serves ``served`` API requests, then resets every connection.

    The connections of the requests served stay open in the clients' pools: a client that is
    not closed leaves them to the garbage collector, which warns (``ResourceWarning``).
    """

    @contextlib.contextmanager
    def start() -> Iterator[str]:
        with RelayEmulator() as emu:
            draw = emu.core.next_request

            def next_request() -> tuple[str, str | None]:
                request_id, fault = draw()
                return request_id, "reset" if int(request_id[-6:]) > served else fault

            emu.core.next_request = next_request  # type: ignore[method-assign]
            yield emu.base_url

    return start


def _run(argv: list[str]) -> tuple[int, list[warnings.WarningMessage]]:
    """``run_bench(argv)``, and the resource warnings raised while it ran or was collected."""
    gc.collect()  # what earlier tests in this process left is collected before, not counted here
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = run_bench(argv)
        gc.collect()
    return status, [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(("where", "served"), [("paired", 8), ("async", 40)])
def test_failed_overhead_is_reported_and_closes_everything(
    where: str,
    served: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(overhead, "emulator_process", _failing_after(served))
    if where == "async":  # skip the sync phase: the failure happens in the async throughput
        monkeypatch.setattr(overhead, "_paired", lambda *_: [])
    path = tmp_path / "bench.json"
    status, leaks = _run(
        ["--quick", "--traces", "short", "--no-load", "--json", str(path), "--strict"]
    )
    out, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in out + err
    assert "Overhead: FAILED: " in out
    assert "cannot reach the relay" in out or "Connection error" in out
    assert "claude-relay bench: FAILED overhead: " in err
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["overhead"] is None
    [failure] = data["failures"]
    assert failure["phase"] == "overhead"
    assert "Traceback" in failure["traceback"]  # kept for the reader of the JSON
    assert [t["trace"] for t in data["traces"]] == ["short"]  # the other phases still ran
    assert not leaks, [str(w.message) for w in leaks]


def test_load_errors_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(load, "EMULATORS", {"resetting": _resetting_emulator})
    path = tmp_path / "bench.json"
    status, leaks = _run(["--quick", "--traces", "short", "--no-overhead", "--json", str(path)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in out + err
    assert "Emulator load: FAILED: " in out
    assert "claude-relay bench: FAILED load: " in err
    data = json.loads(path.read_text(encoding="utf-8"))
    rows: list[dict[str, Any]] = data["load"]["rows"]
    assert {r["emulator"] for r in rows} == {"resetting"}
    assert all(r["connection_errors"] == r["requests"] for r in rows)
    assert data["load"]["errors"] == sum(r["requests"] for r in rows)
    assert [f["phase"] for f in data["failures"]] == ["load"]
    assert not leaks, [str(w.message) for w in leaks]


def test_failed_trace_is_reported_and_the_others_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import langchain_claude_relay.bench as bench

    real = bench._trace_result

    def broken(session: Any, trace: Any, tokenizer: Any, budget_usd: float) -> Any:
        if trace.name == "chat":
            msg = "chat: 3 requests sent but 2 billed"
            raise bench.BenchError(msg)
        return real(session, trace, tokenizer, budget_usd)

    monkeypatch.setattr(bench, "_trace_result", broken)
    status, _ = _run(["--quick", "--traces", "chat,short", "--no-overhead", "--no-load"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in out + err
    assert "FAILED trace chat: BenchError: chat: 3 requests sent but 2 billed" in out
    assert "short" in out.split("FAILED trace chat")[0]  # the cost table still has short
