"""The planner through ChatClaudeRelay against the emulator: what users should see happen."""

from __future__ import annotations

import itertools
import random
import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from langchain_claude_relay import CachePlanner, ChatClaudeRelay, RequestValidationError
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner import PrefixStabilityWarning
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.usage import from_usage_metadata

MODEL = "claude-sonnet-4-6"
WORDS = [
    "relay",
    "cache",
    "prefix",
    "token",
    "window",
    "system",
    "marker",
    "budget",
    "latency",
    "answer",
    "model",
]


def document(tokens_approx: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(tokens_approx))


def make(emu: RelayEmulator, **kwargs: Any) -> tuple[ChatClaudeRelay, CachePlanner]:
    planner = CachePlanner(store=MemoryStore(), clock=lambda: emu.now)
    llm = ChatClaudeRelay(
        model=MODEL,
        base_url=emu.base_url,
        api_key="test",
        cache=planner,
        ledger=MemoryLedger(),
        **kwargs,
    )
    return llm, planner


def details(message: Any) -> dict[str, int]:
    return message.usage_metadata["input_token_details"]


def test_multi_turn_conversation_reads_from_its_second_turn(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator)
    history: list[Any] = [SystemMessage(document(3000)), HumanMessage("First question?")]
    reads = []
    for turn in range(5):
        reply = llm.invoke(history)
        reads.append(details(reply)["cache_read"])
        history += [reply, HumanMessage(f"Follow-up question number {turn}?")]
        emulator.advance(30)
    assert reads[0] == 0
    assert all(r > 3000 for r in reads[1:]), reads
    assert reads == sorted(reads), "each turn reads at least what the previous one did"


@tool
def lookup(section: str) -> str:
    """Look up a section of the manual."""
    return f"Section {section}: " + document(400, seed=len(section))


def test_agent_tool_loop_reads_its_growing_history(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator)
    bound = llm.bind_tools([lookup])
    history: list[Any] = [
        SystemMessage(document(2500)),
        HumanMessage("Use lookup to read section A."),
    ]
    reads = []
    for step in range(12):
        reply = bound.invoke(history)
        reads.append(details(reply)["cache_read"])
        call_id = f"call_{step}"
        history += [
            AIMessage(
                "", tool_calls=[{"name": "lookup", "args": {"section": f"S{step}"}, "id": call_id}]
            ),
            ToolMessage(lookup.invoke({"section": f"S{step}"}), tool_call_id=call_id),
        ]
        emulator.advance(10)
    assert all(b > a for a, b in itertools.pairwise(reads[1:])), (
        f"reads should grow with the history: {reads}"
    )
    assert reads[-1] > 2500 + 10 * 400


def test_sparse_traffic_switches_to_one_hour(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator)
    rng = random.Random(7)
    system = SystemMessage(document(4000, seed=3))
    ttls, reads = [], []
    for i in range(8):
        reply = llm.invoke([system, HumanMessage(f"Question {i}?")])
        ttls.append([bp["ttl"] for bp in reply.response_metadata["cache_plan"]["breakpoints"]])
        reads.append(details(reply)["cache_read"])
        emulator.advance(rng.uniform(10 * 60, 50 * 60))
    first_1h = next(i for i, t in enumerate(ttls) if "1h" in t)
    assert first_1h <= 3, ttls
    assert all(r > 4000 for r in reads[first_1h + 1 :]), reads


def test_dense_traffic_stays_on_five_minutes(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator)
    system = SystemMessage(document(4000, seed=4))
    for i in range(6):
        reply = llm.invoke([system, HumanMessage(f"Question {i}?")])
        assert all(bp["ttl"] == "5m" for bp in reply.response_metadata["cache_plan"]["breakpoints"])
        emulator.advance(60)
    assert details(reply)["cache_read"] > 4000


@pytest.mark.parametrize(("ratio", "overhead"), [(1.45, 8), (1.05, 1)])
def test_calibration_reaches_the_emulator_counts_within_five_calls(
    ratio: float, overhead: int
) -> None:
    """A tokenizer unlike the prior (more and fewer tokens than cl100k): within 5% by call 5."""
    with RelayEmulator(token_ratio=ratio, block_overhead_tokens=overhead) as emulator:
        _calibration_errors(emulator)


def _calibration_errors(emulator: RelayEmulator) -> None:
    llm, planner = make(emulator)
    errors = []
    for i in range(6):
        messages = [SystemMessage(document(2000 + 500 * i, seed=10 + i)), HumanMessage(f"q{i}")]
        plan = planner.plan(messages, model=MODEL)
        reply = llm.invoke(messages)
        actual = reply.usage_metadata["input_tokens"]
        errors.append(abs(plan.total_estimated_tokens - actual) / actual)
        emulator.advance(400)
    assert errors[0] > 0.05, "tiktoken alone should be off: the emulator counts differently"
    assert errors[5] <= 0.05, errors


def test_a_timestamp_in_the_system_prompt_is_reported(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reply = llm.invoke(
            [
                SystemMessage(f"Now: 2026-11-22T10:{11:02d}:00Z. " + document(3000)),
                HumanMessage("hi"),
            ]
        )
    assert any(issubclass(w.category, PrefixStabilityWarning) for w in caught)
    assert any(
        "timestamp" in w or "2026-11-22" in w
        for w in reply.response_metadata["cache_plan"]["warnings"]
    )


def test_cache_creation_is_reported_with_its_ttl_split(emulator: RelayEmulator) -> None:
    llm, _ = make(emulator, cache_ttl="1h")
    reply = llm.invoke([SystemMessage(document(3000, seed=99)), HumanMessage("hi")])
    d = details(reply)
    assert d["ephemeral_1h_input_tokens"] > 3000
    assert d["ephemeral_5m_input_tokens"] == 0
    assert d["cache_creation"] == 0  # ChatAnthropic's convention: the split says it all
    billed = emulator.billing_log[-1]
    assert billed.cache_write_1h == d["ephemeral_1h_input_tokens"]
    assert reply.response_metadata["cost_usd"] == pytest.approx(billed.cost_usd)


def test_cache_off_sends_exactly_what_was_given(emulator: RelayEmulator) -> None:
    llm = ChatClaudeRelay(
        model=MODEL, base_url=emulator.base_url, api_key="test", cache="off", ledger=False
    )
    reply = llm.invoke([SystemMessage(document(3000)), HumanMessage("hi")])
    assert reply.response_metadata["cache_plan"] == {
        "planned": False,
        "reason": "caching is off (cache='off')",
        "breakpoints": [],
        "warnings": [],
    }
    assert from_usage_metadata(reply.usage_metadata or {}).cache_write_tokens == 0
    assert emulator.billing_log[-1].marker_indices == ()


def test_streaming_feeds_the_planner_and_the_ledger(emulator: RelayEmulator) -> None:
    ledger = MemoryLedger()
    planner = CachePlanner(store=MemoryStore(), clock=lambda: emulator.now)
    llm = ChatClaudeRelay(
        model=MODEL, base_url=emulator.base_url, api_key="test", cache=planner, ledger=ledger
    )
    messages = [SystemMessage(document(3000, seed=5)), HumanMessage("hi")]
    for _ in range(2):
        full = None
        for chunk in llm.stream(messages):
            full = chunk if full is None else full + chunk
        emulator.advance(5)
    assert full.usage_metadata["input_token_details"]["cache_read"] > 3000
    assert full.response_metadata["cache_observation"]["breakpoints"]
    entries = ledger.entries()
    assert len(entries) == 2
    assert sum(e.cost_usd for e in entries) == pytest.approx(
        sum(b.cost_usd for b in emulator.billing_log)
    )


def test_dense_traffic_with_an_occasional_long_pause_rewrites_at_one_hour(
    emulator: RelayEmulator,
) -> None:
    """Reads every minute, then a 6-minute pause: the rewrite is 1h, so later pauses read."""
    llm, _ = make(emulator)
    system = SystemMessage(document(4000, seed=6))
    for i in range(15):  # a long run: the old weighting then read the pause as a fluke (0.99)
        reply = llm.invoke([system, HumanMessage(f"Question {i}?")])
        emulator.advance(60)
    assert details(reply)["cache_read"] > 4000
    emulator.advance(300)  # the 5m entry has expired
    reply = llm.invoke([system, HumanMessage("After a pause?")])
    assert details(reply)["ephemeral_1h_input_tokens"] > 4000, details(reply)
    emulator.advance(15 * 60)
    reply = llm.invoke([system, HumanMessage("After a longer pause?")])
    assert details(reply)["cache_read"] > 4000


def test_a_top_level_marker_per_call_is_sent_and_counted_as_a_slot(
    emulator: RelayEmulator,
) -> None:
    """``cache_control=`` on a call is automatic caching: Claude marks the last block itself."""
    llm, _ = make(emulator)
    messages = [SystemMessage(document(3000, seed=7)), HumanMessage("hi")]
    reply = llm.invoke(messages, cache_control={"type": "ephemeral", "ttl": "1h"})
    billed = emulator.billing_log[-1]
    assert billed.cache_write_1h > 0  # the automatic marker wrote the tail at 1h
    assert len(billed.marker_indices) <= 4
    assert reply.response_metadata["cost_usd"] == pytest.approx(billed.cost_usd)
    with pytest.raises(RequestValidationError, match="top-level cache_control"):
        llm.invoke(messages, cache_control={"type": "persistent"})


@pytest.mark.parametrize("dialect", ["openrouter", "litellm"])
def test_a_one_hour_top_level_marker_is_priced_at_one_hour_without_a_split(
    dialect: str,
) -> None:
    # these relays report writes without the 5m/1h split: the top-level marker, the request's
    # only one, tells the TTL (it used to be read as 5m: the write priced 36% low)
    with RelayEmulator(dialect=dialect) as emu:
        llm = ChatClaudeRelay(
            model=MODEL, base_url=emu.base_url, api_key="test", cache="off", ledger=False
        )
        messages = [SystemMessage(document(3000, seed=8)), HumanMessage("hi")]
        reply = llm.invoke(messages, cache_control={"type": "ephemeral", "ttl": "1h"})
        billed = emu.billing_log[-1]
    assert billed.cache_write_1h > 0
    assert details(reply)["ephemeral_1h_input_tokens"] == billed.cache_write_1h
    assert reply.response_metadata["cost_usd"] == pytest.approx(billed.cost_usd)


def test_a_conversation_wastes_only_its_last_tail_write(emulator: RelayEmulator) -> None:
    # Each turn reads through the previous turn's tail entry, which is no marker of the new
    # request (found by lookback). The ledger took the deepest marker read (the system prompt)
    # as the entry hit, so every tail write but the first counted as never read: the ledger,
    # track_costs and `claude-relay stats` overstated wasted writes (1,802 tokens in
    # cookbook/03, where only the final answer's write is never read).
    ledger = MemoryLedger()
    llm = ChatClaudeRelay(
        model=MODEL,
        base_url=emulator.base_url,
        api_key="test",
        cache=CachePlanner(store=MemoryStore(), clock=lambda: emulator.now),
        ledger=ledger,
    )
    messages: list[Any] = [SystemMessage(document(2500, 41))]
    for turn in range(4):
        messages.append(HumanMessage(f"Question {turn}: what about item {turn}?"))
        reply = llm.invoke(messages)
        messages.append(AIMessage(str(reply.content)))
        if turn:
            assert details(reply)["cache_read"] > 2500  # through the previous turn's tail
        emulator.advance(30)
    entries = ledger.entries()
    assert all(e.cache_write_tokens > 0 for e in entries)
    assert ledger.summary().wasted_write_tokens == entries[-1].cache_write_tokens


def test_a_changed_system_prompt_after_the_tools_is_a_write_and_its_read_is_credited(
    emulator: RelayEmulator,
) -> None:
    # Three tools (~1.6K tokens), a one-line system prompt that changes once (A, A, B, B).
    # The changed prompt just after the read point was labelled "read" (its marker sat within
    # the estimate's slack of the read), losing "prefix changed", and the read that followed
    # was put on the tools block: its write counted as wasted though the next call read it.
    def make_tool(i: int) -> Any:
        def lookup(q: str) -> str:
            return q

        lookup.__doc__ = f"Tool {i}. " + document(2500, 7)[:2000]
        lookup.__name__ = f"lookup_{i}"
        return tool(lookup)

    ledger = MemoryLedger()
    llm = ChatClaudeRelay(
        model=MODEL,
        base_url=emulator.base_url,
        api_key="test",
        cache=CachePlanner(store=MemoryStore(), clock=lambda: emulator.now),
        ledger=ledger,
    ).bind_tools([make_tool(i) for i in range(3)])
    outcomes = []
    for turn, version in enumerate("AABB"):
        system = SystemMessage(f"You are terse. Version {version} of the rules, answer shortly.")
        reply = llm.invoke([system, HumanMessage(f"Question {turn}?")])
        points = reply.response_metadata["cache_observation"]["breakpoints"]
        outcomes.append(
            [(p["actual"], p["miss_reason"]) for p in points if p["position"] == "system[0]"]
        )
        emulator.advance(30)
    assert outcomes[2] == [("write", "prefix changed")]
    assert outcomes[3] == [("read", None)]
    entries = ledger.entries()
    # the tails of turns 1 and 3 are never read; turn 2's write (system B) is read by turn 3
    wasted = entries[1].cache_write_tokens + entries[3].cache_write_tokens
    assert ledger.summary().wasted_write_tokens == wasted
