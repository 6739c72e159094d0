"""The lookback counts positions: a run of tool_use blocks is one, so is a run of tool_result
blocks. The planner places no lookback guard an agent turn of parallel tool calls does not need,
and predicts reads through such runs (and still guards when 20+ separate positions intervene)."""

from __future__ import annotations

import itertools

import pytest
from planner_helpers import ESTIMATOR, MODEL, Clock, ToyClaude, prose, run, text

from langchain_claude_relay.models import ModelPrices
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.planner.placement import BlockInfo, Option, choose_markers, guard_site
from langchain_claude_relay.planner.reuse import ReuseOdds
from langchain_claude_relay.planner.rules import (
    LOOKBACK_BLOCKS,
    lookback_positions,
    within_lookback,
)
from langchain_claude_relay.planner.ttl import Rates, future_cost
from langchain_claude_relay.request import Block, ClaudeRequest, Message
from langchain_claude_relay.store import MemoryStore

POSITION_TABLE = {
    "no blocks": ([], []),
    "text blocks one each": (["text", "text", "text"], [0, 1, 2]),
    "tool definitions one each": (["tool", "tool", "text"], [0, 1, 2]),
    "a tool_use run": (["tool_use"] * 3, [0, 0, 0]),
    "calls then results": (["tool_use", "tool_use", "tool_result", "tool_result"], [0, 0, 1, 1]),
    "alternating single calls": (
        ["tool_use", "tool_result", "tool_use", "tool_result"],
        [0, 1, 2, 3],
    ),
    "text breaks a result run": (["tool_result", "text", "tool_result"], [0, 1, 2]),
    "thinking before calls": (["thinking", "tool_use", "tool_use"], [0, 1, 1]),
    "images do not run": (["image", "image", "document"], [0, 1, 2]),
    "run after text": (["text", "tool_result", "tool_result", "text"], [0, 1, 1, 2]),
    "12 parallel calls": (
        ["text", *["tool_use"] * 12, *["tool_result"] * 12],
        [0, *[1] * 12, *[2] * 12],
    ),
}


@pytest.mark.parametrize(
    ("kinds", "expected"), list(POSITION_TABLE.values()), ids=list(POSITION_TABLE)
)
def test_position_table(kinds: list[str], expected: list[int]) -> None:
    assert lookback_positions(kinds) == expected


def test_within_lookback() -> None:
    runs = lookback_positions(["text", *["tool_use"] * 12, *["tool_result"] * 12])
    assert within_lookback(runs, 24, 0)  # 24 blocks, 2 positions
    assert not within_lookback(runs, 0, 24)  # a marker never reads past itself
    flat = lookback_positions(["text"] * 21)
    assert within_lookback(flat, 19, 0)
    assert not within_lookback(flat, 20, 0)  # 20 positions: out of reach
    assert LOOKBACK_BLOCKS == 20


# ------------------------------------------------------------------------- placement (pure)

TOOL_BLOCK = 50.0


def _agent_blocks(rounds: list[int]) -> tuple[list[BlockInfo], list[float]]:
    """A system prompt (block 0), a user question (block 1, the cached tail), then rounds of
    parallel tool calls (an assistant message) and their results (a user message)."""
    blocks = [
        BlockInfo("system", -1, "system", True, 2000.0, "text"),
        BlockInfo("messages", 0, "user", True, 50.0, "text"),
    ]
    for r, width in enumerate(rounds):
        use = BlockInfo("messages", 2 * r + 1, "assistant", True, TOOL_BLOCK, "tool_use")
        result = BlockInfo("messages", 2 * r + 2, "user", True, TOOL_BLOCK, "tool_result")
        blocks += [use] * width + [result] * width
    return blocks, list(itertools.accumulate(b.tokens for b in blocks))


@pytest.mark.parametrize(
    ("rounds", "guard"),
    [
        ([12], None),  # 24 blocks, 2 positions after the cached tail: the new tail reads it
        ([5] * 9, None),  # 90 blocks, 18 positions
        ([1] * 9, None),  # 18 separate positions
        ([1] * 10, 1),  # 20 separate positions: out of reach, guard the cached prefix
        ([3] * 10, 1),  # 60 blocks, 20 positions
        ([12, *[1] * 9], 1),  # 20 positions
    ],
)
def test_guard_counts_positions(rounds: list[int], guard: int | None) -> None:
    blocks, cumulative = _agent_blocks(rounds)
    site = guard_site(blocks, cumulative, [0, 1], minimum=1024, margin=0.04)
    assert (site.index if site else None) == guard


def test_guard_window_counts_positions() -> None:
    # the cached prefix's own block cannot carry a marker: the guard is the first markable
    # block after it within 20 positions, here the last block of a run
    blocks, cumulative = _agent_blocks([12, *[1] * 9])
    blocks[1] = blocks[1]._replace(markable=False)
    blocks[2:26] = [b._replace(markable=False) for b in blocks[2:25]] + [blocks[25]]
    site = guard_site(blocks, cumulative, [1], minimum=1024, margin=0.04)
    assert site is not None
    assert site.index == 25  # 24 blocks after the cached prefix, 2 positions


def test_user_marker_within_positions_makes_the_guard_unneeded() -> None:
    blocks, cumulative = _agent_blocks([12, *[1] * 9])
    # block 30 is 24 blocks after the cached prefix but only 4 positions: a user marker there
    # keeps it within reach
    assert (
        guard_site(blocks, cumulative, [1], minimum=1024, margin=0.04, taken=frozenset({30}))
        is None
    )


RATES = Rates.from_prices(ModelPrices.standard(3.0, 15.0))
GOOD = ReuseOdds(0.95, 0.95)


def _option(index: int) -> Option:
    return Option(index, future_cost("1h", GOOD, RATES), future_cost("5m", GOOD, RATES))


@pytest.mark.parametrize(("rounds", "reads"), [([12], True), ([5] * 9, True), ([1] * 10, False)])
def test_reads_are_predicted_through_runs(rounds: list[int], reads: bool) -> None:
    blocks, cumulative = _agent_blocks(rounds)
    tail = len(blocks) - 1
    placed = choose_markers(
        [_option(tail)], [], cumulative, {1: "5m"}, RATES, "auto", 4, blocks=blocks
    )
    assert placed.read_index == (1 if reads else -1)


def test_without_blocks_each_block_is_a_position() -> None:
    _blocks, cumulative = _agent_blocks([12])
    placed = choose_markers([_option(25)], [], cumulative, {1: "5m"}, RATES, "auto", 4)
    assert placed.read_index == -1  # the old contract: 24 blocks apart


# --------------------------------------------------------------------------- end to end

SYSTEM = prose(1500, 2)
QUESTION = prose(40, 1)


def _agent_request(rounds: list[int]) -> ClaudeRequest:
    messages = [Message("user", (text(QUESTION),))]
    for r, width in enumerate(rounds):
        uses = tuple(
            Block(
                "tool_use",
                {"id": f"call_{r}_{k}", "name": "lookup", "input": {"q": prose(6, 50 + k)}},
            )
            for k in range(width)
        )
        results = tuple(
            Block("tool_result", {"tool_use_id": f"call_{r}_{k}", "content": prose(8, 80 + k)})
            for k in range(width)
        )
        messages += [Message("assistant", uses), Message("user", results)]
    return ClaudeRequest(MODEL, system=(text(SYSTEM),), messages=tuple(messages))


@pytest.mark.parametrize(("rounds", "guarded"), [([12], False), ([1] * 10, True)])
def test_agent_turn_of_parallel_calls_needs_no_guard(rounds: list[int], guarded: bool) -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    _first, usage, _ = run(planner, claude, _agent_request([]), clock)
    written = usage.cache_write_tokens
    assert written > 0
    clock.advance(30)
    plan, usage, obs = run(planner, claude, _agent_request(rounds), clock)
    guards = [b for b in plan.breakpoints if b.reason.startswith("lookback guard")]
    assert bool(guards) == guarded, plan.explain()
    if guarded:
        assert "20 lookback positions" in guards[0].reason
    assert usage.cache_read_tokens >= written  # the turn-1 prefix is read either way
    assert obs.predicted_read_tokens > 0
