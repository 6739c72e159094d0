"""The pure cache engine: Claude's caching rules as tables, with a stand-in tokenizer.

Block sizes are in WordCounter tokens (one per standalone "w"), so every expected split below is
derived from the rule by hand: reads up to the highest hit, 1h writes to the last 1h marker, 5m
writes to the last marker, the rest plain input.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay.emulator.engine import (
    BUDGET_NOT_BELOW_MAX,
    THINKING_FORCED_TOOL,
    WARMUP_ONLY,
    CacheEngine,
    InvalidRequest,
    apply_bad_relay,
    parse_anthropic,
    parse_openai,
)
from langchain_claude_relay.errors import explain_status

from .conftest import MODEL, WordCounter, words

Spec = list[tuple[int, str | None]]


def marker(ttl: str | None) -> dict[str, Any]:
    if ttl is None:
        return {}
    return {"cache_control": {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}}


def chat(
    system: Spec = (),  # type: ignore[assignment]
    user: Spec = ((10, None),),  # type: ignore[assignment]
    tools: Spec = (),  # type: ignore[assignment]
    model: str = MODEL,
    **extra: Any,
) -> dict[str, Any]:
    """An OpenAI payload: tools, one system message, one user message, sized per block."""
    messages: list[dict[str, Any]] = []
    if system:
        parts = [
            {"type": "text", "text": words(n, f"s{i}"), **marker(t)}
            for i, (n, t) in enumerate(system)
        ]
        messages.append({"role": "system", "content": parts})
    parts = [
        {"type": "text", "text": words(n, f"u{i}"), **marker(t)} for i, (n, t) in enumerate(user)
    ]
    messages.append({"role": "user", "content": parts})
    payload: dict[str, Any] = {"model": model, "messages": messages, **extra}
    if tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": f"tool{i}",
                    "description": words(n, f"t{i}"),
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
                **marker(t),
            }
            for i, (n, t) in enumerate(tools)
        ]
    return payload


def run(engine: CacheEngine, payload: dict[str, Any], t: float) -> tuple[int, int, int, int]:
    bill = engine.plan(parse_openai(payload), t)
    engine.commit(bill)
    s = bill.split
    return s.cache_read, s.cache_write_5m, s.cache_write_1h, s.input_tokens


@pytest.fixture
def engine() -> CacheEngine:
    return CacheEngine(WordCounter())


# (read, write 5m, write 1h, plain input) of one request on an empty cache
SINGLE_REQUEST = [
    ("5m marker on system", chat([(1200, "5m")]), (0, 1200, 0, 10)),
    ("1h then 5m", chat([(2000, "1h"), (1500, "5m")]), (0, 1500, 2000, 10)),
    ("two 5m markers", chat([(1200, "5m"), (300, "5m")]), (0, 1500, 0, 10)),
    ("prefix below minimum", chat([(1000, "5m")]), (0, 0, 0, 1010)),
    ("prefix exactly the minimum", chat([(1024, "5m")]), (0, 1024, 0, 10)),
    ("prefix one below the minimum", chat([(1023, "5m")]), (0, 0, 0, 1033)),
    ("short 1h marker, long 5m marker", chat([(500, "1h"), (800, "5m")]), (0, 1300, 0, 10)),
    ("marker on the user turn", chat([(1200, None)], [(10, "5m")]), (0, 1210, 0, 0)),
    ("1h marker on the user turn", chat([(1100, "1h")], [(10, "1h")]), (0, 0, 1110, 0)),
    ("no marker", chat([(5000, None)]), (0, 0, 0, 5010)),
    ("marker on a tool", chat([(100, None)], tools=[(1100, "5m")]), (0, 1100, 0, 110)),
    ("opus 5 minimum is 512", chat([(600, "5m")], model="claude-opus-5"), (0, 600, 0, 10)),
    ("haiku 4.5 minimum is 4096", chat([(4000, "5m")], model="claude-haiku-4-5"), (0, 0, 0, 4010)),
]


@pytest.mark.parametrize(
    ("payload", "expected"), [r[1:] for r in SINGLE_REQUEST], ids=[r[0] for r in SINGLE_REQUEST]
)
def test_billing_split_of_one_request(
    engine: CacheEngine, payload: dict[str, Any], expected: tuple[int, ...]
) -> None:
    assert run(engine, payload, 0.0) == expected


A = chat([(1200, "5m")])
A_1H = chat([(1200, "1h")])
A_EXTENDED = chat([(1200, None), (300, "5m")])  # same first block, one more block, marker after it
A_OTHER_MODEL = chat([(1200, "5m")], model="claude-opus-4-1")
WRITE, READ = (0, 1200, 0, 10), (1200, 0, 0, 10)
WRITE_1H, READ_1H = (0, 0, 1200, 10), (1200, 0, 0, 10)

# sequences of (time, payload, expected split) against one engine
SEQUENCES = {
    "write then read": [(0, A, WRITE), (10, A, READ)],
    "5m entry alive just before 300 s": [(0, A, WRITE), (299.999, A, READ)],
    "5m entry gone at 300 s": [(0, A, WRITE), (300, A, WRITE)],
    "1h entry alive just before 3600 s": [(0, A_1H, WRITE_1H), (3599.999, A_1H, READ_1H)],
    "1h entry gone at 3600 s": [(0, A_1H, WRITE_1H), (3600, A_1H, WRITE_1H)],
    "1h entry outlives 5 minutes": [(0, A_1H, WRITE_1H), (1800, A_1H, READ_1H)],
    "hit refreshes the TTL from the request start": [
        (0, A, WRITE),
        (200, A, READ),  # expires at 500 now
        (450, A, READ),  # would be gone at 300 without the refresh; expires at 750 now
        (751, A, WRITE),
    ],
    "a 1h entry refreshes with its own TTL": [
        (0, A_1H, WRITE_1H),
        (3000, A, READ),
        (6500, A, READ),
    ],
    "automatic lookback reads a shorter prefix": [
        (0, A, WRITE),
        (1, A_EXTENDED, (1200, 300, 0, 10)),
    ],
    "the model is part of the key": [(0, A, WRITE), (1, A_OTHER_MODEL, WRITE)],
    "too-short prefix never cached": [(0, chat([(900, "5m")]), (0, 0, 0, 910))] * 2,
}


@pytest.mark.parametrize("steps", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_cache_over_time(
    engine: CacheEngine, steps: list[tuple[float, dict[str, Any], tuple[int, ...]]]
) -> None:
    for t, payload, expected in steps:
        assert run(engine, payload, t) == expected, f"at t={t}"


def lookback_request(parts: int, extra_marker_at: int | None = None) -> dict[str, Any]:
    """System block of 1100 (no marker) then ``parts`` one-token user parts, marker on the last."""
    user: Spec = [(1, "5m" if i in (parts - 1, extra_marker_at) else None) for i in range(parts)]
    return chat([(1100, None)], user)


@pytest.mark.parametrize(
    ("parts", "extra_marker_at", "expected"),
    [
        # the marker sits at block index `parts`; boundaries parts..parts-19 are checked
        (18, None, (1100, 18, 0, 0)),
        (19, None, (1100, 19, 0, 0)),  # entry at index 0 is the 20th boundary: still read
        (20, None, (0, 1120, 0, 0)),  # 21 boundaries away: unreachable, written again
        (40, None, (0, 1140, 0, 0)),
        (40, 10, (1100, 40, 0, 0)),  # a second marker inside the window reaches it
    ],
)
def test_lookback_window_is_20_boundaries(
    engine: CacheEngine, parts: int, extra_marker_at: int | None, expected: tuple[int, ...]
) -> None:
    run(engine, chat([(1100, "5m")], [(1, None)]), 0.0)
    assert run(engine, lookback_request(parts, extra_marker_at), 1.0) == expected


def test_concurrent_requests_both_pay_the_write(engine: CacheEngine) -> None:
    first, second = engine.plan(parse_openai(A), 0.0), engine.plan(parse_openai(A), 0.0)
    engine.commit(first)  # the first response begins only now
    engine.commit(second)
    assert first.split.cache_write_5m == second.split.cache_write_5m == 1200
    assert run(engine, A, 0.5) == READ


BASE = chat([(1100, "5m")], [(1100, "5m")], tools=[(1100, "5m")])


def variant(change: str) -> dict[str, Any]:
    payload = copy.deepcopy(BASE)
    if change == "tool schema key order":
        fn = payload["tools"][0]["function"]
        payload["tools"][0]["function"] = {k: fn[k] for k in ("description", "name", "parameters")}
    elif change == "system text":
        payload["messages"][0]["content"][0]["text"] += " "
    elif change == "tool_choice":
        payload["tool_choice"] = "auto"
    elif change == "thinking":
        payload["thinking"] = {"type": "adaptive"}
    elif change == "image added":
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        payload["messages"][1]["content"].append(image)
    elif change == "part key order":
        part = payload["messages"][1]["content"][0]
        payload["messages"][1]["content"][0] = {
            k: part[k] for k in ("text", "type", "cache_control")
        }
    elif change == "model":
        payload["model"] = "claude-sonnet-4-5"
    return payload


@pytest.mark.parametrize(
    ("change", "read"),
    [
        ("nothing", 3300),
        ("tool schema key order", 0),  # tools changed: everything after is invalid
        ("system text", 1100),  # tools still read
        ("tool_choice", 2200),  # invalidates the messages part only
        ("thinking", 2200),
        ("image added", 2200),
        ("part key order", 2200),  # byte-exact: same content, different JSON
        ("model", 0),
    ],
)
def test_byte_exact_matching_and_invalidation(engine: CacheEngine, change: str, read: int) -> None:
    run(engine, BASE, 0.0)
    assert run(engine, variant(change), 1.0)[0] == read


def test_cache_control_itself_is_not_part_of_the_content(engine: CacheEngine) -> None:
    run(engine, chat([(1200, "5m")]), 0.0)
    moved = chat([(1200, None)], [(10, "5m")])  # marker elsewhere, same content
    assert run(engine, moved, 1.0)[0] == 1200


LONG = words(1200, "doc")
MARKER_FORMS = {
    "part marker": [{"role": "user", "content": [{"type": "text", "text": LONG, **marker("5m")}]}],
    "message marker, string content": [{"role": "user", "content": LONG, **marker("5m")}],
    "message marker, list content": [
        {"role": "user", "content": [{"type": "text", "text": LONG}], **marker("5m")}
    ],
}


@pytest.mark.parametrize("messages", list(MARKER_FORMS.values()), ids=list(MARKER_FORMS))
def test_marker_forms_on_messages_are_equivalent(messages: list[dict[str, Any]]) -> None:
    reference = parse_openai({"model": MODEL, "messages": MARKER_FORMS["part marker"]})
    parsed = parse_openai({"model": MODEL, "messages": messages})
    assert parsed.prefix_keys == reference.prefix_keys
    assert parsed.marker_indices == reference.marker_indices == (0,)


def test_tool_marker_top_level_or_inside_function() -> None:
    fn = {"name": "search", "description": "find", "parameters": {"type": "object"}}
    outside = {"type": "function", "function": fn, **marker("1h")}
    inside = {"type": "function", "function": {**fn, **marker("1h")}}
    user = [{"role": "user", "content": "hi"}]
    a = parse_openai({"model": MODEL, "messages": user, "tools": [outside]})
    b = parse_openai({"model": MODEL, "messages": user, "tools": [inside]})
    assert a.prefix_keys == b.prefix_keys
    assert [x.ttl for x in a.blocks] == [x.ttl for x in b.blocks] == ["1h", None]


def test_openai_conversion_like_a_relay() -> None:
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": "rain", **marker("5m")},
            {"role": "system", "content": "late system message"},
        ],
    }
    parsed = parse_openai(payload)
    shape = [(b.section, b.role, b.kind, b.ttl) for b in parsed.blocks]
    assert shape == [
        (
            "system",
            "system",
            "text",
            None,
        ),  # system messages go to the system part, wherever they sit
        ("messages", "user", "text", None),
        ("messages", "assistant", "tool_use", None),  # empty assistant text dropped
        ("messages", "assistant", "tool_use", None),
        ("messages", "user", "tool_result", None),  # tool messages: one user turn of results
        ("messages", "user", "tool_result", "5m"),
    ]


def test_openai_and_anthropic_payloads_share_cache_keys() -> None:
    fn = {"name": "lookup", "description": "d", "parameters": {"type": "object"}}
    openai_payload = {
        "model": MODEL,
        "tools": [{"type": "function", "function": fn}],
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "more", **marker("5m")}]},
        ],
    }
    anthropic_payload = {
        "model": MODEL,
        "max_tokens": 100,
        "tools": [{"name": "lookup", "description": "d", "input_schema": {"type": "object"}}],
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "more", **marker("5m")}]},
        ],
    }
    a, b = parse_openai(openai_payload), parse_anthropic(anthropic_payload)
    # the tool differs in shape (function wrapper vs input_schema) but system and turns match
    assert [x.hash for x in a.blocks[1:]] == [x.hash for x in b.blocks[1:]]
    assert a.marker_indices == b.marker_indices == (4,)


def five_markers() -> dict[str, Any]:
    return chat([(10, "5m")] * 3, [(10, "5m"), (10, "5m")])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (five_markers(), "A maximum of 4 blocks with cache_control may be provided. Found 5."),
        (chat([(10, "5m")] * 3, [(10, "5m")]), None),
        (
            chat([(10, "5m"), (10, "1h")]),
            "a ttl='1h' cache_control block must not come after a ttl='5m'",
        ),
        (chat([(10, "5m")], tools=[(10, "1h")]), None),  # tools come first: 1h before 5m
        (chat([(10, "1h")], tools=[(10, "5m")]), "must not come after"),
        (chat([(10, "1h"), (10, "5m")]), None),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "", **marker("5m")}]}
                ],
            },
            "cannot be set for empty text blocks",
        ),
        (
            {
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": "hi",
                        "cache_control": {"type": "ephemeral", "ttl": "10m"},
                    }
                ],
            },
            "ttl",
        ),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": "hi", "cache_control": {"type": "persistent"}}
                ],
            },
            "ephemeral",
        ),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ],
)
def test_marker_rules(engine: CacheEngine, payload: dict[str, Any], message: str | None) -> None:
    if message is None:
        engine.plan(parse_openai(payload), 0.0)
        return
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        engine.plan(parse_openai(payload), 0.0)


def test_marker_on_a_thinking_block_is_rejected() -> None:
    payload = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s", **marker("5m")}
                ],
            },
        ],
    }
    with pytest.raises(InvalidRequest, match="thinking"):
        parse_anthropic(payload)


@pytest.mark.parametrize(
    ("text", "plain_words"),
    [
        ("A maximum of 4 blocks with cache_control may be provided. Found 5.", "more than 4"),
        (
            "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block",
            "1h cache marker",
        ),
        (WARMUP_ONLY + " (this request has extended thinking)", "only pre-warms the cache"),
        (THINKING_FORCED_TOOL, "takes only tool_choice 'auto' or 'none'"),
        (BUDGET_NOT_BELOW_MAX + " (got max_tokens=1024)", "above the thinking budget_tokens"),
    ],
)
def test_error_wording_is_recognised_by_the_client_error_tree(text: str, plain_words: str) -> None:
    assert plain_words in explain_status(400, text)


@pytest.mark.parametrize(
    ("mode", "payload", "expected"),
    [
        (None, chat([(1200, "1h")]), (0, 0, 1200, 10)),
        ("drop_cache_control", chat([(1200, "1h")]), (0, 0, 0, 1210)),
        ("drop_ttl", chat([(1200, "1h")]), (0, 1200, 0, 10)),  # 1h silently became 5m
        ("inject_marker", chat([(1200, "1h")]), (0, 10, 1200, 0)),  # marker added on the user turn
    ],
)
def test_bad_relay_modes(
    engine: CacheEngine, mode: str | None, payload: dict[str, Any], expected: tuple[int, ...]
) -> None:
    bill = engine.plan(apply_bad_relay(parse_openai(payload), mode), 0.0)
    s = bill.split
    assert (s.cache_read, s.cache_write_5m, s.cache_write_1h, s.input_tokens) == expected


def test_injected_marker_pushes_four_markers_to_five(engine: CacheEngine) -> None:
    four = chat([(10, "5m")] * 4, [(10, None)])
    engine.plan(parse_openai(four), 0.0)  # fine as sent
    with pytest.raises(InvalidRequest, match="Found 5"):
        engine.plan(apply_bad_relay(parse_openai(four), "inject_marker"), 0.0)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    sizes = draw(st.lists(st.integers(1, 700), min_size=1, max_size=30))
    count = draw(st.integers(0, min(4, len(sizes))))
    positions = sorted(
        draw(st.lists(st.integers(0, len(sizes) - 1), min_size=count, max_size=count, unique=True))
    )
    ones = draw(st.integers(0, len(positions)))  # 1h markers first, then 5m: a valid order
    ttl = {p: ("1h" if k < ones else "5m") for k, p in enumerate(positions)}
    cut = draw(st.integers(0, len(sizes) - 1))  # blocks before `cut` are system, the rest user
    spec: Spec = [(n, ttl.get(i)) for i, n in enumerate(sizes)]
    return chat(spec[:cut], spec[cut:])


@settings(max_examples=150, deadline=None)
@given(payload=requests())
def test_split_adds_up_and_a_repeat_reads_what_was_written(payload: dict[str, Any]) -> None:
    engine = CacheEngine(WordCounter())
    first = engine.plan(parse_openai(payload), 0.0)
    total = sum(first.block_tokens)
    s = first.split
    assert min(s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h) >= 0
    assert s.prompt_total == total
    assert s.cache_read == 0  # empty cache
    engine.commit(first)
    again = engine.plan(parse_openai(payload), 1.0).split
    assert again.cache_write == 0
    assert again.cache_read == s.cache_write
    assert again.input_tokens == s.input_tokens
