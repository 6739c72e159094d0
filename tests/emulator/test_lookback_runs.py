"""The lookback counts positions, not blocks: a run of tool_use blocks is one, so is a run of
tool_result blocks (DESIGN "Isolation and timing"), on the chat and the native path.

Sizes are WordCounter tokens (one per standalone "w"). The reviewer's scenario: turn 1 writes a
2,406-token user text; turn 2 adds 12 parallel tool calls and their 12 results (8 tokens each)
with a marker on the last result. That marker sits 24 blocks but 2 positions after the entry,
so it reads the 2,406 tokens and writes the 192 new ones.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from langchain_claude_relay.emulator.engine import (
    LOOKBACK_BOUNDARIES,
    CacheEngine,
    PrefixBlock,
    lookback_positions,
    parse_anthropic,
    parse_openai,
)

from .conftest import MODEL, WordCounter, cache_fields, usage_of, words

MARK = {"cache_control": {"type": "ephemeral"}}
DOC, TOOL_TOKENS = 2406, 8


def _doc(marked: bool) -> dict[str, Any]:
    return {"type": "text", "text": words(DOC, "doc"), **(MARK if marked else {})}


def _input(r: int, k: int) -> dict[str, str]:
    return {"q": words(TOOL_TOKENS, f"in{r}_{k}")}


def _output(r: int, k: int) -> str:
    return words(TOOL_TOKENS, f"out{r}_{k}")


def chat_turns(rounds: list[int]) -> dict[str, Any]:
    """OpenAI payload: the marked-later document, then rounds of parallel calls and results.

    ``rounds``: the number of parallel tool calls per round. The last result carries the only
    marker; with no rounds, the document carries it (turn 1).
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": [_doc(not rounds)]}]
    for r, width in enumerate(rounds):
        calls = [
            {
                "id": f"call_{r}_{k}",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps(_input(r, k))},
            }
            for k in range(width)
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        messages.extend(
            {"role": "tool", "tool_call_id": f"call_{r}_{k}", "content": _output(r, k)}
            for k in range(width)
        )
    if rounds:
        messages[-1].update(MARK)
    return {"model": MODEL, "messages": messages}


def native_turns(rounds: list[int]) -> dict[str, Any]:
    """The same conversation as ``chat_turns``, as an Anthropic Messages payload."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": [_doc(not rounds)]}]
    for r, width in enumerate(rounds):
        uses = [
            {"type": "tool_use", "id": f"call_{r}_{k}", "name": "lookup", "input": _input(r, k)}
            for k in range(width)
        ]
        results = [
            {"type": "tool_result", "tool_use_id": f"call_{r}_{k}", "content": _output(r, k)}
            for k in range(width)
        ]
        messages.append({"role": "assistant", "content": uses})
        messages.append({"role": "user", "content": results})
    if rounds:
        messages[-1]["content"][-1].update(MARK)
    return {"model": MODEL, "max_tokens": 10, "messages": messages}


PATHS = {"chat": (chat_turns, parse_openai), "native": (native_turns, parse_anthropic)}


def second_turn(path: str, rounds: list[int]) -> tuple[int, int, int]:
    """(read, write, plain input) of turn 2 after turn 1 wrote the document."""
    build, parse = PATHS[path]
    engine = CacheEngine(WordCounter())
    first = engine.plan(parse(build([])), 0.0)
    engine.commit(first)
    assert first.split.cache_write_5m == DOC
    bill = engine.plan(parse(build(rounds)), 10.0)
    split = bill.split
    return split.cache_read, split.cache_write, split.input_tokens


def new_tokens(rounds: list[int]) -> int:
    return 2 * TOOL_TOKENS * sum(rounds)


@pytest.mark.parametrize("path", list(PATHS))
def test_reviewers_scenario_reads_through_12_parallel_calls(path: str) -> None:
    assert new_tokens([12]) == 192
    assert second_turn(path, [12]) == (DOC, 192, 0)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize(
    ("rounds", "reads"),
    [
        # round r of width w adds one tool_use position and one tool_result position
        ([1] * 9, True),  # 18 blocks, 18 positions: the entry is 19 positions back
        ([1] * 10, False),  # 20 separate positions intervene: unreachable
        ([1] * 12, False),
        ([3] * 9, True),  # 54 blocks but 18 positions
        ([5] * 9, True),  # 90 blocks, still 18 positions
        ([3] * 10, False),  # 60 blocks, 20 positions
        ([12, 1, 1, 1, 1, 1, 1, 1, 1], True),  # 18 positions: runs of any width count once
        ([12, 1, 1, 1, 1, 1, 1, 1, 1, 1], False),  # 20 positions
    ],
)
def test_runs_count_once_and_separate_positions_still_limit(
    path: str, rounds: list[int], reads: bool
) -> None:
    fresh = new_tokens(rounds)
    expected = (DOC, fresh, 0) if reads else (0, DOC + fresh, 0)
    assert second_turn(path, rounds) == expected


def test_text_between_tool_calls_breaks_the_run() -> None:
    payload = chat_turns([12])
    assistant = payload["messages"][1]
    assistant["content"] = "checking"  # the assistant text precedes its tool_use blocks
    request = parse_openai(payload)
    kinds = [b.kind for b in request.blocks]
    assert kinds == ["text", "text", *["tool_use"] * 12, *["tool_result"] * 12]
    assert lookback_positions(request.blocks) == [0, 1, *[2] * 12, *[3] * 12]


@pytest.mark.parametrize("path", list(PATHS))
def test_parsed_kinds_form_the_runs(path: str) -> None:
    build, parse = PATHS[path]
    request = parse(build([3, 2]))
    assert [b.kind for b in request.blocks] == [
        "text",
        *["tool_use"] * 3,
        *["tool_result"] * 3,
        *["tool_use"] * 2,
        *["tool_result"] * 2,
    ]
    assert lookback_positions(request.blocks) == [0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4]


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
}


@pytest.mark.parametrize(
    ("kinds", "expected"), list(POSITION_TABLE.values()), ids=list(POSITION_TABLE)
)
def test_position_table(kinds: list[str], expected: list[int]) -> None:
    blocks = [PrefixBlock("messages", k, "user", str(i), "", None, "") for i, k in enumerate(kinds)]
    assert lookback_positions(blocks) == expected


def test_the_window_is_20_positions() -> None:
    assert LOOKBACK_BOUNDARIES == 20


def test_reviewers_scenario_through_the_sdk(emu: Any, client: openai.OpenAI) -> None:
    first = usage_of(client.chat.completions.create(**chat_turns([])))
    written = cache_fields(first)[1]
    assert written > 1024
    second = usage_of(client.chat.completions.create(**chat_turns([12])))
    read, write = cache_fields(second)
    assert read == written
    assert 0 < write < written


def test_reviewers_scenario_through_v1_messages(emu: Any, http: httpx.Client) -> None:
    first = http.post("/v1/messages", json=native_turns([])).json()["usage"]
    written = first["cache_creation_input_tokens"]
    assert written > 1024
    second = http.post("/v1/messages", json=native_turns([12])).json()["usage"]
    assert second["cache_read_input_tokens"] == written
    assert 0 < second["cache_creation_input_tokens"] < written
