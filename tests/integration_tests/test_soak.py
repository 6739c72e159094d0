"""Fault soak: 2,000 mixed calls against the emulator with faults injected at random.

Sync ``invoke`` and ``stream`` run in worker threads while async ``ainvoke`` and ``astream`` run
as bounded tasks on the event loop, all through one ``ChatClaudeRelay`` sharing one planner and one
``MemoryLedger``. The emulator draws a fault for about 15% of requests over every kind it knows
(500, 502 HTML, 503, 529, connection reset, malformed JSON, a 200 HTML page, a cut body/stream),
and a requests-per-minute limit on its virtual clock adds 429s with ``retry-after``. Retry waits
are injected: they advance the emulator's virtual clock instead of sleeping.

What must hold:

* every call either succeeds or raises a ``ClaudeRelayError`` subclass (nothing else escapes);
* every attempt reached the emulator: its request log holds ``calls + retries`` requests;
* the ledger matches the emulator's billing log exactly for every request whose usage reached
  the client: one entry per such request (joined on the response id), the same tokens per
  kind, the same cost; nothing lost, nothing twice;
* a cut response is billed all the same (Claude bills a request that began), and is in the
  ledger as an estimate from its plan (``LedgerEntry.estimated``), its input within 2% of the
  bill. A cut stream reaches the user as a typed error after some content, its output known as
  far as it was streamed (the rest of what was generated is billed, unseen). A cut plain body
  (JSON that ends part-way, told from an error page, which is not billed) is retried like
  other bad answers, and each cut attempt is recorded under the id its first bytes hold, its
  output unknown.

Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.faults import FAULT_KINDS
from langchain_claude_relay.errors import APIResponseError, ClaudeRelayError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

MODEL = "claude-sonnet-4-6"
CALLS = 2_000
FAULT_RATE = 0.15
FAULT_SEED = 20_261_122
RPM = 150  # with ~0.25 virtual seconds per call, some minutes go over it: 429s
SECONDS_PER_CALL = 0.25
SYNC_WORKERS = 2
ASYNC_WORKERS = 6
MAX_RETRIES = 2
MODES = ("invoke", "stream", "ainvoke", "astream")
WORDS = ("relay", "cache", "prefix", "token", "window", "system", "marker", "budget", "ledger")


def document(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


@tool
def lookup(section: str) -> str:
    """Look up a section of the handbook."""
    return f"section {section}"


@dataclass
class Tally:
    """What the callers saw, shared by threads and tasks."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    successes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    cut_streams: int = 0  # streams that delivered content, then raised "cut"
    escaped: list[str] = field(default_factory=list)  # anything not a ClaudeRelayError
    retries: int = 0

    def ok(self, mode: str) -> None:
        with self.lock:
            self.successes[mode] += 1

    def failed(self, mode: str, exc: BaseException, chunks: int = 0) -> None:
        with self.lock:
            if not isinstance(exc, ClaudeRelayError):
                self.escaped.append(f"{mode}: {type(exc).__name__}: {exc}")
                return
            self.failures[type(exc).__name__] += 1
            if isinstance(exc, APIResponseError) and "cut" in str(exc) and chunks > 0:
                self.cut_streams += 1

    def retried(self) -> None:
        with self.lock:
            self.retries += 1


def cut_bills_by_id(bills: list[Any]) -> list[tuple[str, Any]]:
    """The cut responses' bills under the ids their answers carry."""
    return [(f"chatcmpl-{b.request_id}", b) for b in bills]


def workload(seed: int) -> list[tuple[str, list[BaseMessage], bool]]:
    """``CALLS`` calls: mode, messages, and whether tools are bound.

    Three static documents above the 1,024-token minimum, so calls write and read the cache.
    """
    rng = random.Random(seed)
    docs = [SystemMessage(document(1_200, seed=s)) for s in range(3)]
    calls = []
    for i in range(CALLS):
        messages: list[BaseMessage] = [
            rng.choice(docs),
            HumanMessage(f"Question {i % 37}: what about section {i % 11}?"),
        ]
        calls.append((MODES[i % len(MODES)], messages, rng.random() < 0.2))
    rng.shuffle(calls)
    return calls


def run_soak(emu: RelayEmulator, llm: ChatClaudeRelay, tally: Tally) -> None:
    bound = llm.bind_tools([lookup])
    calls = workload(seed=7)
    sync_calls = [c for c in calls if c[0] in ("invoke", "stream")]
    async_calls = [c for c in calls if c[0] in ("ainvoke", "astream")]

    def sync_worker(queue: list[tuple[str, list[BaseMessage], bool]]) -> None:
        while True:
            with tally.lock:
                if not queue:
                    return
                mode, messages, tools = queue.pop()
            runnable = bound if tools else llm
            emu.advance(SECONDS_PER_CALL)
            chunks = 0
            try:
                if mode == "invoke":
                    runnable.invoke(messages)
                else:
                    for _ in runnable.stream(messages):
                        chunks += 1
                tally.ok(mode)
            except Exception as exc:
                tally.failed(mode, exc, chunks)

    async def async_worker(queue: list[tuple[str, list[BaseMessage], bool]]) -> None:
        while queue:
            mode, messages, tools = queue.pop()
            runnable = bound if tools else llm
            emu.advance(SECONDS_PER_CALL)
            chunks = 0
            try:
                if mode == "ainvoke":
                    await runnable.ainvoke(messages)
                else:
                    async for _ in runnable.astream(messages):
                        chunks += 1
                tally.ok(mode)
            except Exception as exc:
                tally.failed(mode, exc, chunks)

    async def main() -> None:
        threads = [asyncio.to_thread(sync_worker, sync_calls) for _ in range(SYNC_WORKERS)]
        tasks = [async_worker(async_calls) for _ in range(ASYNC_WORKERS)]
        await asyncio.gather(*threads, *tasks)

    asyncio.run(main())


def same_bill(entry: Any, billed: Any) -> bool:
    """A ledger entry and a billing-log entry hold the same tokens per kind and the same cost."""
    mine = (
        entry.input_tokens,
        entry.cache_read_tokens,
        entry.cache_write_5m_tokens,
        entry.cache_write_1h_tokens,
        entry.output_tokens,
    )
    theirs = (
        billed.input_tokens,
        billed.cache_read,
        billed.cache_write_5m,
        billed.cache_write_1h,
        billed.output_tokens,
    )
    if entry.cost_usd is None or billed.cost_usd is None:
        return mine == theirs and entry.cost_usd is billed.cost_usd
    return mine == theirs and math.isclose(
        entry.cost_usd, billed.cost_usd, rel_tol=1e-9, abs_tol=1e-12
    )


def wait_for_log(emu: RelayEmulator, expected: int, timeout: float = 5.0) -> int:
    """The request log's length, once the server has recorded the last stream's outcome."""
    deadline = time.monotonic() + timeout
    while len(emu.request_log) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(emu.request_log)


# Three static documents take turns in system[0]: the planner's stability check notices that
# the first system block changes from call to call and warns. That is this workload's shape.
@pytest.mark.filterwarnings("ignore::langchain_claude_relay.planner.PrefixStabilityWarning")
def test_soak_with_faults_keeps_the_ledger_exact() -> None:
    started = time.perf_counter()
    with RelayEmulator(fault_rate=FAULT_RATE, fault_seed=FAULT_SEED, rpm=RPM) as emu:
        tally = Tally()
        ledger = MemoryLedger()
        planner = CachePlanner(store=MemoryStore(), clock=lambda: emu.now)
        llm = ChatClaudeRelay(
            model=MODEL,
            base_url=emu.base_url,
            api_key="sk-soak-test-key-000000",
            cache=planner,
            ledger=ledger,
            max_retries=MAX_RETRIES,
            timeout=20,
        )

        # Retry waits advance the virtual clock (a 429's retry-after then really frees the
        # window) and are counted: one wait per retry.
        def sleep(seconds: float) -> None:
            tally.retried()
            emu.advance(seconds)

        async def asleep(seconds: float) -> None:
            sleep(seconds)

        llm._transport._sleep = sleep
        llm._transport._asleep = asleep

        run_soak(emu, llm, tally)
        calls_done = (
            sum(tally.successes.values()) + sum(tally.failures.values()) + len(tally.escaped)
        )
        attempts = wait_for_log(emu, calls_done + tally.retries)
        requests = emu.request_log
        billing = emu.billing_log
        entries = ledger.entries()
    elapsed = time.perf_counter() - started

    outcomes = Counter(r.outcome for r in requests)
    faults = Counter(
        {k.removeprefix("fault:"): v for k, v in outcomes.items() if k.startswith("fault:")}
    )
    rate_limited = sum(v for k, v in outcomes.items() if k.startswith("error:429"))
    other_errors = {
        k: v
        for k, v in outcomes.items()
        if k.startswith("error:") and not k.startswith("error:429")
    }

    # -- the ledger against the billing log, entry by entry -------------------------------------
    estimated = [e for e in entries if e.estimated]
    entries = [e for e in entries if not e.estimated]
    outcome_of = {r.request_id: r.outcome for r in requests}
    cut_bills = [b for b in billing if outcome_of.get(b.request_id) == "fault:cut"]
    billing = [b for b in billing if outcome_of.get(b.request_id) == "billed"]  # usage sent
    billed = {f"chatcmpl-{b.request_id}": b for b in billing}
    recorded = {e.call_id: e for e in entries}
    missing = sorted(set(billed) - set(recorded))
    extra = sorted(set(recorded) - set(billed))
    token_diffs = {
        kind: sum(getattr(e, mine) for e in entries) - sum(getattr(b, theirs) for b in billing)
        for kind, mine, theirs in (
            ("input", "input_tokens", "input_tokens"),
            ("cache_read", "cache_read_tokens", "cache_read"),
            ("cache_write_5m", "cache_write_5m_tokens", "cache_write_5m"),
            ("cache_write_1h", "cache_write_1h_tokens", "cache_write_1h"),
            ("output", "output_tokens", "output_tokens"),
        )
    }
    mismatched = [
        call_id
        for call_id, e in recorded.items()
        if call_id in billed and not same_bill(e, billed[call_id])
    ]
    ledger_cost = sum(e.cost_usd or 0.0 for e in entries)
    billed_cost = sum(b.cost_usd or 0.0 for b in billing)
    cut_ids = {f"chatcmpl-{r.request_id}" for r in requests if r.outcome == "fault:cut"}
    cut_streams_billed = {f"chatcmpl-{b.request_id}": b for b in cut_bills if b.streamed}
    cut_plain_billed = {f"chatcmpl-{b.request_id}": b for b in cut_bills if not b.streamed}
    estimated_cost = sum(e.cost_usd or 0.0 for e in estimated)
    estimated_ids = {e.call_id for e in estimated}
    estimated_streams = [e for e in estimated if e.call_id in cut_streams_billed]
    estimated_plain = [e for e in estimated if e.call_id in cut_plain_billed]
    estimated_bills = [b for k, b in cut_bills_by_id(cut_bills) if k in estimated_ids]
    cut_streams_cost = sum(b.cost_usd or 0.0 for b in estimated_bills if b.streamed)
    cut_plain_cost = sum(b.cost_usd or 0.0 for b in cut_plain_billed.values())
    estimated_input = sum(
        e.input_tokens + e.cache_read_tokens + e.cache_write_5m_tokens + e.cache_write_1h_tokens
        for e in estimated
    )
    billed_input = sum(b.input_tokens + b.cache_read + b.cache_write for b in estimated_bills)

    read = sum(b.cache_read for b in billing)
    written = sum(b.cache_write for b in billing)
    print(
        f"\nsoak: {calls_done} calls in {elapsed:.1f} s ({dict(tally.successes)} succeeded)"
        f"\n  attempts {attempts} = calls {calls_done} + retries {tally.retries}"
        f"\n  faults injected {dict(sorted(faults.items()))} (total {sum(faults.values())}),"
        f" 429s {rate_limited}"
        f"\n  failures by type {dict(tally.failures)}"
        f" (cut streams seen by the caller: {tally.cut_streams})"
        f"\n  escaped (not ClaudeRelayError): {len(tally.escaped)}"
        f"\n  ledger {len(entries)} entries vs billed {len(billing)}; missing {len(missing)},"
        f" extra {len(extra)}, mismatched {len(mismatched)}; token differences {token_diffs};"
        f" cost ${ledger_cost:.6f} vs ${billed_cost:.6f}"
        f"\n  cache read {read:,} / written {written:,} tokens"
        f"\n  cut and billed: {len(cut_bills)} ({len(cut_streams_billed)} streams,"
        f" {len(cut_plain_billed)} plain bodies); in the ledger as estimates: {len(estimated)},"
        f" ${estimated_cost:.6f} vs billed ${cut_streams_cost + cut_plain_cost:.6f}; input tokens"
        f" {estimated_input:,} vs {billed_input:,}; output tokens"
        f" {sum(e.output_tokens for e in estimated):,} vs"
        f" {sum(b.output_tokens for b in estimated_bills):,} (streams: as far as streamed;"
        " plain bodies: unknown)"
    )

    assert tally.escaped == [], tally.escaped[:5]
    assert calls_done == CALLS
    assert set(tally.successes) == set(MODES), "every mode must have succeeded at least once"
    assert sum(tally.successes.values()) >= 0.9 * CALLS
    # every kind was injected, plus 429s, and retries happened
    assert set(faults) == set(FAULT_KINDS), faults
    assert rate_limited > 0
    assert other_errors == {}, other_errors  # no 400s: every request we sent was valid
    assert tally.retries > 0
    assert attempts == calls_done + tally.retries, (
        "every attempt (and only those) reached the emulator"
    )
    # the ledger is the billing log: nothing lost, nothing counted twice
    assert len(entries) == len(billing) == sum(tally.successes.values())
    assert missing == []
    assert extra == []
    assert mismatched == []
    assert all(v == 0 for v in token_diffs.values()), token_diffs
    assert math.isclose(ledger_cost, billed_cost, rel_tol=1e-9)
    assert read > 0
    assert written > 0
    # cut streams: the caller got content then a typed error; in the ledger as estimates only
    assert tally.cut_streams > 0
    assert tally.cut_streams <= faults["cut"]
    assert not cut_ids & set(billed)
    assert not cut_ids & set(recorded)
    assert len(cut_bills) == faults["cut"]  # every cut response had begun: all billed
    assert len(estimated_streams) == tally.cut_streams
    # every cut plain body is in the ledger, once, under its id (retried or not)
    assert sorted(e.call_id for e in estimated_plain) == sorted(cut_plain_billed)
    assert len(estimated) == len(estimated_streams) + len(estimated_plain)
    assert all(e.cost_usd for e in estimated)
    # the input side is known from the plan (calibrated: within 2%); the output only as far as
    # it was streamed (Claude, like the emulator, bills what it generated): a lower bound
    assert estimated_input == pytest.approx(billed_input, rel=0.02)
    assert sum(e.output_tokens for e in estimated) <= sum(b.output_tokens for b in estimated_bills)
    assert 0 < estimated_cost <= cut_streams_cost + cut_plain_cost
    assert elapsed < 120
