"""Writes a relay reports without their TTLs, under markers that mix 1h and 5m.

OpenRouter reports only a total (``cache_write_tokens``). Claude bills the tokens from the
highest read to the last 1h marker at the 1h price and the rest, to the last marker, at 5m: all
of them booked at 5m (as before) under-priced the writes by about a third.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_relay import FakeRelay, completion
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner.plan import write_split_hints
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message, Position
from langchain_claude_relay.usage import normalize_usage

OPENROUTER = {  # prompt_tokens includes the writes; no TTL split
    "prompt_tokens": 5115,
    "completion_tokens": 20,
    "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 5105},
}


@pytest.mark.parametrize(
    ("share", "reads", "expected_1h"),
    [
        (None, 0, 0),  # no share: the hint (5m) takes them all, as before
        (0.2, 0, 2000),  # 2,000 of the 10,000 input tokens up to the last 1h marker
        (0.2, 1500, 500),  # what was read is not written again
        (0.2, 2500, 0),  # a read past the last 1h marker: only 5m writes
        (0.5, 0, 3000),  # never more than the writes
        (1.7, 0, 3000),  # a share out of range is clamped
    ],
)
def test_unsplit_writes_follow_the_last_one_hour_marker(
    share: float | None, reads: int, expected_1h: int
) -> None:
    raw = {  # Claude's dialect: 10,000 input tokens, 3,000 of them written
        "input_tokens": 7000 - reads,
        "cache_read_input_tokens": reads,
        "cache_creation_input_tokens": 3000,
        "output_tokens": 5,
    }
    usage = normalize_usage(raw, one_hour_share=share)
    assert usage.cache_write_1h_tokens == expected_1h
    assert usage.cache_write_5m_tokens == 3000 - expected_1h
    assert not usage.write_split_known


def test_a_reported_split_is_kept_whatever_the_share() -> None:
    raw = {
        "input_tokens": 10,
        "cache_creation_input_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    }
    usage = normalize_usage(raw, one_hour_share=0.01)
    assert (usage.cache_write_1h_tokens, usage.cache_write_5m_tokens) == (200, 100)
    assert usage.write_split_known


def test_a_planned_call_books_mixed_writes_by_ttl(relay: FakeRelay, make_llm: Any) -> None:
    doc = "The relay forwards requests to Claude and reports usage in its own dialect. " * 300
    question = "Question context " * 100
    messages = [
        SystemMessage(
            [{"type": "text", "text": doc, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        ),
        HumanMessage(
            [
                {"type": "text", "text": question, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "What?"},
            ]
        ),
    ]
    ledger = MemoryLedger()
    relay.queue(completion(usage=OPENROUTER, model="anthropic/claude-sonnet-4.6"))
    llm = make_llm(model="anthropic/claude-sonnet-4.6", cache="auto", ledger=ledger)
    message = llm.invoke(messages)
    plan = message.response_metadata["cache_plan"]
    one_hour = [bp for bp in plan["breakpoints"] if bp["ttl"] == "1h"]
    assert len(one_hour) == 1
    details = message.usage_metadata["input_token_details"]
    written_1h = details["ephemeral_1h_input_tokens"]
    # the plan's estimate of the 1h prefix, scaled to the input the relay reported
    assert written_1h == pytest.approx(one_hour[0]["estimated_prefix_tokens"], rel=0.1)
    assert written_1h + details["ephemeral_5m_input_tokens"] == 5105
    assert details["ephemeral_5m_input_tokens"] > 0
    entry = ledger.entries()[-1]
    assert entry.cache_write_1h_tokens == written_1h


class _Plan:
    """What ``write_split_hints`` reads of a plan."""

    one_hour_share = 0.25


def _sent(block_ttls: tuple[str, ...], top: str | None) -> ClaudeRequest:
    system = tuple(Block("text", {"text": f"part {i}"}) for i in range(len(block_ttls)))
    request = ClaudeRequest(
        "claude-sonnet-5-5",
        system=system,
        messages=(Message("user", (Block("text", {"text": "q"}),)),),
        cache_control=None if top is None else CacheControl(top),  # type: ignore[arg-type]
    )
    return request.with_markers(
        {Position("system", i): CacheControl(t) for i, t in enumerate(block_ttls)}  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("block_ttls", "top", "planned", "expected"),
    [
        ((), None, True, (None, None)),  # nothing marked: nothing written
        (("5m", "5m"), None, True, ("5m", None)),
        (("1h",), None, False, ("1h", None)),
        ((), "1h", False, ("1h", None)),  # automatic caching alone: its TTL
        (("1h",), "5m", True, (None, 0.25)),  # mixed: the plan's 1h share
        (("1h", "5m"), None, True, (None, 0.25)),
        (("1h", "5m"), None, False, (None, None)),  # mixed, no plan: the writes stay 5m
    ],
)
def test_the_split_hints_come_from_the_markers_sent_and_the_plan(
    block_ttls: tuple[str, ...],
    top: str | None,
    planned: bool,
    expected: tuple[str | None, float | None],
) -> None:
    plan: Any = _Plan() if planned else None
    assert write_split_hints(_sent(block_ttls, top), plan) == expected
