"""LangChain input -> ClaudeRequest, and ClaudeRequest -> the OpenAI wire format."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner.rules import validate_user_markers
from langchain_claude_relay.request import CacheControl, Position
from langchain_claude_relay.wire.openai_chat import render_chat_payload

EPH = {"type": "ephemeral"}
MODEL = "claude-sonnet-4-6"


def blocks(request) -> list[tuple[str, str, str | None]]:
    """(position, kind, ttl) for every flat block."""
    return [
        (str(f.position), f.kind, f.cache_control.ttl if f.cache_control else None)
        for f in request.flat_blocks()
    ]


@pytest.mark.parametrize(
    ("messages", "tools", "expected"),
    [
        pytest.param(
            ["hello"], None, [("messages[0].content[0]", "text", None)], id="plain string"
        ),
        pytest.param(
            [
                SystemMessage("a"),
                SystemMessage([{"type": "text", "text": "b", "cache_control": EPH}]),
                HumanMessage("q"),
            ],
            None,
            [
                ("system[0]", "text", None),
                ("system[1]", "text", "5m"),
                ("messages[0].content[0]", "text", None),
            ],
            id="system messages merge in order",
        ),
        pytest.param(
            [
                HumanMessage("q"),
                AIMessage("", tool_calls=[{"name": "f", "args": {"b": 1, "a": 2}, "id": "t1"}]),
                ToolMessage("r", tool_call_id="t1"),
            ],
            [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
            [
                ("tools[0]", "tool", "1h"),
                ("messages[0].content[0]", "text", None),
                ("messages[1].content[0]", "tool_use", None),
                ("messages[2].content[0]", "tool_result", None),
            ],
            id="tool loop with a marked tool",
        ),
        pytest.param(
            [
                HumanMessage("q"),
                ToolMessage(
                    [{"type": "text", "text": "r", "cache_control": EPH}], tool_call_id="t1"
                ),
            ],
            None,
            [
                ("messages[0].content[0]", "text", None),
                ("messages[1].content[0]", "tool_result", "5m"),
            ],
            id="marker inside a tool result moves to the tool_result",
        ),
        pytest.param(
            [
                HumanMessage("q"),
                AIMessage(
                    [
                        {"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "a"},
                    ]
                ),
                HumanMessage("more"),
            ],
            None,
            [
                ("messages[0].content[0]", "text", None),
                ("messages[1].content[0]", "thinking", None),
                ("messages[1].content[1]", "text", None),
                ("messages[2].content[0]", "text", None),
            ],
            id="thinking blocks are kept in assistant turns",
        ),
        pytest.param(
            [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "u", "cache_control": EPH}]},
            ],
            None,
            [("system[0]", "text", None), ("messages[0].content[0]", "text", "5m")],
            id="OpenAI-style dicts",
        ),
        pytest.param(
            [
                HumanMessage(
                    [
                        {
                            "type": "file",
                            "file": {
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                                "filename": "a.pdf",
                            },
                        },
                        {"type": "text", "text": "sum"},
                    ]
                )
            ],
            None,
            [
                ("messages[0].content[0]", "document", None),
                ("messages[0].content[1]", "text", None),
            ],
            id="a PDF becomes a document block",
        ),
    ],
)
def test_conversion_table(
    messages: list[Any], tools: Any, expected: list[tuple[str, str, str | None]]
) -> None:
    assert blocks(to_claude_request(messages, model=MODEL, tools=tools)) == expected


def test_input_is_not_mutated() -> None:
    messages = [
        SystemMessage([{"type": "text", "text": "doc", "cache_control": EPH}]),
        HumanMessage([{"type": "text", "text": "q"}]),
    ]
    before = copy.deepcopy([m.model_dump() for m in messages])
    request = to_claude_request(messages, model=MODEL)
    planned = request.with_markers({Position("messages", 0, 0): CacheControl("1h")})
    render_chat_payload(planned)
    assert [m.model_dump() for m in messages] == before
    assert request.markers() == {Position("system", 0): CacheControl("5m", explicit_ttl=False)}


def test_key_order_does_not_change_hashes_and_canonical_render_is_stable() -> None:
    tool_a = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"x": {"type": "string"}, "y": {"type": "integer"}},
            },
        },
    }
    tool_b = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "properties": {"y": {"type": "integer"}, "x": {"type": "string"}},
                "type": "object",
            },
        },
    }
    call_a = AIMessage("", tool_calls=[{"name": "f", "args": {"x": "1", "y": 2}, "id": "t"}])
    call_b = AIMessage("", tool_calls=[{"name": "f", "args": {"y": 2, "x": "1"}, "id": "t"}])
    req_a = to_claude_request(
        [HumanMessage("q"), call_a, ToolMessage("r", tool_call_id="t")], model=MODEL, tools=[tool_a]
    )
    req_b = to_claude_request(
        [HumanMessage("q"), call_b, ToolMessage("r", tool_call_id="t")], model=MODEL, tools=[tool_b]
    )
    assert req_a.prefix_hashes() == req_b.prefix_hashes()
    assert json.dumps(render_chat_payload(req_a)) == json.dumps(render_chat_payload(req_b))


@pytest.mark.parametrize(
    ("change", "first_changed_section"),
    [
        ({"tools": []}, "tools"),
        ({"system": "other"}, "system"),
        ({"tool_choice": "any"}, "messages"),
        ({"thinking": {"type": "adaptive"}}, "messages"),
    ],
)
def test_what_invalidates_which_part(change: dict[str, Any], first_changed_section: str) -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
    }
    base = {"tools": [tool], "system": "sys", "tool_choice": None, "thinking": None}
    args = {**base, **change}

    def build(a: dict[str, Any]):
        return to_claude_request(
            [SystemMessage(a["system"]), HumanMessage("q")],
            model=MODEL,
            tools=a["tools"] or None,
            tool_choice=a["tool_choice"],
            thinking=a["thinking"],
        )

    one, two = build(base), build(args)
    flats_one = one.flat_blocks()
    hashes_one, hashes_two = one.prefix_hashes(), two.prefix_hashes()
    sections_equal = {f.position.section: True for f in flats_one}
    for flat, h1 in zip(flats_one, hashes_one, strict=True):
        idx = (
            [str(f.position) for f in two.flat_blocks()].index(str(flat.position))
            if str(flat.position) in [str(f.position) for f in two.flat_blocks()]
            else None
        )
        if idx is None or hashes_two[idx] != h1:
            sections_equal[flat.position.section] = False
    order = ["tools", "system", "messages"]
    changed = [s for s in order if s in sections_equal and not sections_equal[s]]
    assert changed
    assert changed[0] == first_changed_section
    for section in order[order.index(first_changed_section) :]:
        if section in sections_equal:
            assert not sections_equal[section]


@pytest.mark.parametrize(
    ("markers", "fragments"),
    [
        ([EPH] * 5, ["5 cache_control markers", "at most 4", "Remove 1", "cache='auto'"]),
        (
            [EPH, {"type": "ephemeral", "ttl": "1h"}],
            ["ttl='1h' on messages[0].content[1] comes after ttl='5m' on messages[0].content[0]"],
        ),
    ],
)
def test_marker_rules_are_refused_with_the_fix(
    markers: list[dict[str, str]], fragments: list[str]
) -> None:
    parts = [{"type": "text", "text": f"p{i}", "cache_control": m} for i, m in enumerate(markers)]
    request = to_claude_request([HumanMessage(parts)], model=MODEL)
    with pytest.raises(RequestValidationError) as info:
        validate_user_markers(request)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_valid_markers_pass() -> None:
    parts = [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "b", "cache_control": EPH},
    ]
    validate_user_markers(to_claude_request([HumanMessage(parts)], model=MODEL))


def test_marker_on_a_thinking_block_is_refused() -> None:
    with pytest.raises(RequestValidationError, match="thinking"):
        to_claude_request(
            [
                HumanMessage("q"),
                AIMessage([{"type": "thinking", "thinking": "x", "cache_control": EPH}]),
            ],
            model=MODEL,
        )


# -- fuzzing: nothing escapes but the package's typed errors -----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "text",
                    "cache_control",
                    "image_url",
                    "url",
                    "source",
                    "ttl",
                    "data",
                    "mime_type",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["system", "user", "assistant", "tool", "bogus"]),
                "content": json_values,
            }
        ),
        max_size=4,
    )
)
def test_converter_fuzz_raises_only_typed_errors(messages: list[dict[str, Any]]) -> None:
    try:
        request = to_claude_request(messages, model=MODEL)
    except RequestValidationError:
        return
    render_chat_payload(request)
