"""The OpenAI wire format against what relays really send and take back.

Signed thinking (LiteLLM's ``thinking_blocks``, OpenRouter's ``reasoning_details``) is read from
answers and streams and sent back unchanged; a marker on any tool call reaches the relay;
Claude's spelling of ``tool_choice`` is translated; a file's name is sent.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import httpx2
import pytest
from fake_relay import sse
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.emulator.engine import parse_openai
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message, Position
from langchain_claude_relay.wire.formats import wire_format
from langchain_claude_relay.wire.openai_chat import (
    ChatChunkReader,
    parse_chat_completion,
    render_chat_payload,
)

MODEL = "claude-sonnet-4-6"
SIGNED = {"type": "thinking", "thinking": "I should call the tool.", "signature": "SIG-abc123"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
CALL = {
    "id": "toolu_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def _answer(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "tool_calls": [CALL], **message},
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20},
    }


def _chunk(**delta: Any) -> dict[str, Any]:
    return {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": delta}]}


# A LiteLLM stream (litellm/llms/anthropic/chat/handler.py, ModelResponseIterator): the thinking
# text in pieces without a signature, then the signature in a piece of its own; redacted
# thinking whole.
LITELLM_STREAM = [
    _chunk(
        reasoning_content="I should ",
        thinking_blocks=[{"type": "thinking", "thinking": "I should ", "signature": None}],
    ),
    _chunk(
        reasoning_content="call the tool.",
        thinking_blocks=[{"type": "thinking", "thinking": "call the tool.", "signature": ""}],
    ),
    _chunk(thinking_blocks=[{"type": "thinking", "thinking": "", "signature": "SIG-abc123"}]),
    _chunk(thinking_blocks=[REDACTED]),
    _chunk(tool_calls=[{"index": 0, **CALL}]),
    {**_chunk(), "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {
        "id": "c1",
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    },
]


def _detail(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "reasoning.text", "format": "anthropic-claude-v1", "index": index, **fields}


# An OpenRouter stream: reasoning_details pieces with the block's index, signature last.
OPENROUTER_STREAM = [
    _chunk(reasoning="I should ", reasoning_details=[_detail(0, text="I should ", signature="")]),
    _chunk(
        reasoning="call the tool.",
        reasoning_details=[_detail(0, text="call the tool.", signature="")],
    ),
    _chunk(reasoning_details=[_detail(0, text="", signature="SIG-abc123")]),
    _chunk(
        reasoning_details=[
            {"type": "reasoning.encrypted", "data": REDACTED["data"], "index": 1},
        ]
    ),
    _chunk(tool_calls=[{"index": 0, **CALL}]),
    {**_chunk(), "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
]


def _assistant_turn(body: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in body["messages"] if m["role"] == "assistant")


def _stream_response(events: list[Any]) -> httpx2.Response:
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse(events).encode()
    )


# -- thinking: reading answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            {
                "reasoning_content": "I should call the tool.",
                "thinking_blocks": [
                    SIGNED,
                    REDACTED,
                    {"type": "thinking", "thinking": "unsigned"},
                    "junk",
                ],
            },
            [SIGNED, REDACTED],
            id="litellm-thinking_blocks",
        ),
        pytest.param(
            {
                "reasoning": "I should call the tool.",
                "reasoning_details": [
                    _detail(0, text=SIGNED["thinking"], signature=SIGNED["signature"]),
                    {"type": "reasoning.encrypted", "data": REDACTED["data"], "index": 1},
                    {"type": "reasoning.summary", "summary": "a summary", "index": 2},
                    _detail(3, text="no signature"),
                ],
            },
            [SIGNED, REDACTED],
            id="openrouter-reasoning_details",
        ),
        pytest.param({"reasoning_content": "I should call the tool."}, [], id="unsigned-only"),
    ],
)
def test_answer_thinking_is_read_whole_and_signed(
    message: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    parsed = parse_chat_completion(_answer(**message))
    assert parsed.thinking_blocks == expected
    assert parsed.reasoning == "I should call the tool."


@pytest.mark.parametrize(
    "events", [LITELLM_STREAM, OPENROUTER_STREAM], ids=["litellm", "openrouter"]
)
def test_stream_reader_reports_each_block_once_when_signed(events: list[Any]) -> None:
    reader = ChatChunkReader()
    per_chunk = [reader.read(e).thinking_blocks for e in events]
    assert per_chunk[:4] == [[], [], [SIGNED], [REDACTED]]
    assert all(blocks == [] for blocks in per_chunk[4:])


@given(
    st.lists(st.text(max_size=6), min_size=1, max_size=6),
    st.text(min_size=1, max_size=8),
    st.booleans(),
)
def test_any_split_of_a_streamed_block_assembles_to_the_block(
    pieces: list[str], signature: str, openrouter: bool
) -> None:
    def chunk(text: str, sig: str) -> dict[str, Any]:
        if openrouter:
            return _chunk(reasoning_details=[_detail(0, text=text, signature=sig)])
        return _chunk(thinking_blocks=[{"type": "thinking", "thinking": text, "signature": sig}])

    reader = ChatChunkReader()
    out = [b for p in pieces for b in reader.read(chunk(p, "")).thinking_blocks]
    out += reader.read(chunk("", signature)).thinking_blocks
    assert out == [{"type": "thinking", "thinking": "".join(pieces), "signature": signature}]


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=9), inner),
    max_leaves=8,
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "type": st.sampled_from(
                    ["thinking", "redacted_thinking", "reasoning.text", "reasoning.encrypted"]
                )
                | JUNK,
                "thinking": JUNK,
                "text": JUNK,
                "signature": JUNK,
                "data": JUNK,
                "index": JUNK,
            },
        )
        | JUNK,
        max_size=4,
    ),
    st.sampled_from(["thinking_blocks", "reasoning_details"]),
)
def test_malformed_thinking_never_fails_a_call(entries: list[Any], key: str) -> None:
    parsed = parse_chat_completion(_answer(**{key: entries}))  # raises nothing
    reader = ChatChunkReader()
    reader.read(_chunk(**{key: entries}))
    for block in parsed.thinking_blocks:
        assert block["type"] in ("thinking", "redacted_thinking")
        assert all(isinstance(v, str) and v for k, v in block.items() if k != "thinking")


# -- thinking: the agent loop through the chat model --------------------------------------------


def test_signed_thinking_goes_back_unchanged_on_the_next_turn(make_llm, relay) -> None:
    relay.queue(_answer(reasoning_content=SIGNED["thinking"], thinking_blocks=[SIGNED]))
    llm = make_llm(thinking={"type": "adaptive"}, max_tokens=4000)
    question = HumanMessage("weather in Paris?")
    ai = llm.invoke([question])
    assert ai.additional_kwargs["thinking_blocks"] == [SIGNED]
    llm.invoke([question, ai, ToolMessage("sunny", tool_call_id="toolu_1")])
    turn = _assistant_turn(relay.last)
    assert turn["thinking_blocks"] == [SIGNED]
    assert turn["reasoning_details"] == [
        _detail(0, text=SIGNED["thinking"], signature=SIGNED["signature"])
    ]


@pytest.mark.parametrize(
    "events", [LITELLM_STREAM, OPENROUTER_STREAM], ids=["litellm", "openrouter"]
)
def test_streamed_thinking_aggregates_and_goes_back(make_llm, relay, events) -> None:
    relay.queue(_stream_response(events))
    llm = make_llm(thinking={"type": "adaptive"}, max_tokens=4000)
    question = HumanMessage("weather in Paris?")
    chunks = list(llm.stream([question]))
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert isinstance(full, AIMessageChunk)
    assert full.additional_kwargs["thinking_blocks"] == [SIGNED, REDACTED]
    assert full.additional_kwargs["reasoning_content"] == SIGNED["thinking"]
    llm.invoke([question, full, ToolMessage("sunny", tool_call_id="toolu_1")])
    turn = _assistant_turn(relay.last)
    assert turn["thinking_blocks"] == [SIGNED, REDACTED]
    assert [d["type"] for d in turn["reasoning_details"]] == [
        "reasoning.text",
        "reasoning.encrypted",
    ]


@pytest.mark.parametrize(
    "ai",
    [
        pytest.param(
            AIMessage(
                "",
                additional_kwargs={"reasoning_content": "unsigned thoughts"},
                tool_calls=[{"id": "toolu_1", "name": "get_weather", "args": {}}],
            ),
            id="reasoning_content",
        ),
        pytest.param(
            AIMessage(
                [{"type": "thinking", "thinking": "unsigned thoughts"}, "ok"],
                tool_calls=[{"id": "toolu_1", "name": "get_weather", "args": {}}],
            ),
            id="unsigned-thinking-part",
        ),
        pytest.param(
            AIMessage(
                [{"type": "reasoning", "reasoning": "unsigned thoughts"}, "ok"],
                tool_calls=[{"id": "toolu_1", "name": "get_weather", "args": {}}],
            ),
            id="unsigned-v1-reasoning",
        ),
    ],
)
def test_unsigned_reasoning_is_never_sent_as_thinking(make_llm, relay, ai: AIMessage) -> None:
    make_llm().invoke([HumanMessage("weather?"), ai, ToolMessage("sunny", tool_call_id="toolu_1")])
    turn = _assistant_turn(relay.last)
    assert "thinking_blocks" not in turn
    assert "reasoning_details" not in turn
    assert "unsigned thoughts" not in json.dumps(relay.last)


def test_v1_reasoning_block_with_its_signature_in_extras_goes_back() -> None:
    ai = AIMessage(
        [{"type": "reasoning", "reasoning": "hmm", "extras": {"signature": "SIG"}}, "ok"]
    )
    request = to_claude_request([HumanMessage("q"), ai, HumanMessage("more")], model=MODEL)
    turn = _assistant_turn(render_chat_payload(request))
    assert turn["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]


# -- markers on tool calls -----------------------------------------------------------------------

BIG = "lorem ipsum dolor sit amet " * 50
TWO_CALLS = [
    HumanMessage("write the module and its test"),
    AIMessage(
        "",
        tool_calls=[
            {"id": "a", "name": "write_file", "args": {"path": "m.py", "body": BIG}},
            {"id": "b", "name": "write_file", "args": {"path": "t.py", "body": "ok"}},
        ],
    ),
    ToolMessage("written", tool_call_id="a"),
    ToolMessage("written", tool_call_id="b"),
]


@pytest.mark.parametrize("part", [0, 1], ids=["first-of-two", "last"])
@pytest.mark.parametrize("canonical", [True, False])
def test_a_marker_on_any_tool_call_is_sent_on_that_call(part: int, canonical: bool) -> None:
    request = to_claude_request(TWO_CALLS, model=MODEL)
    at = Position("messages", 1, part)
    marked = request.with_markers({at: CacheControl("1h")})
    payload = render_chat_payload(marked, canonical=canonical)
    turn = _assistant_turn(payload)
    assert [c.get("cache_control") for c in turn["tool_calls"]] == [
        {"type": "ephemeral", "ttl": "1h"} if k == part else None for k in range(2)
    ]
    assert "cache_control" not in turn  # LiteLLM reads no message-level marker here
    relay_view = parse_openai(payload)
    assert [relay_view.blocks[i].ttl for i in relay_view.marker_indices] == ["1h"]
    assert len(relay_view.marker_indices) == len(marked.markers())


def test_a_user_marker_on_the_message_of_a_tool_call_turn_reaches_the_relay() -> None:
    turn = copy.deepcopy(TWO_CALLS)
    turn[1].additional_kwargs["cache_control"] = {"type": "ephemeral"}
    payload = render_chat_payload(to_claude_request(turn, model=MODEL))
    assert _assistant_turn(payload)["tool_calls"][1]["cache_control"] == {"type": "ephemeral"}
    assert len(parse_openai(payload).marker_indices) == 1


# -- tool_choice in Claude's spelling ------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """Get weather."""
    return "sunny"


@pytest.mark.parametrize(
    ("choice", "fields"),
    [
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
        ({"type": "none", "disable_parallel_tool_use": True}, {"tool_choice": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ("any", {"tool_choice": "required"}),
        ("get_weather", {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
        (None, {}),
    ],
)
def test_tool_choice_is_sent_in_openai_spelling(make_llm, relay, choice, fields) -> None:
    llm = make_llm(model="claude-sonnet-4-6")  # takes a forced tool (Sonnet 5.5 does not)
    llm.bind_tools([get_weather], tool_choice=choice).invoke("weather in Paris?")
    sent = {k: relay.last[k] for k in ("tool_choice", "parallel_tool_calls") if k in relay.last}
    assert sent == fields


def test_a_claude_tool_choice_without_a_name_is_refused() -> None:
    request = ClaudeRequest(
        MODEL,
        messages=(Message("user", (Block("text", {"text": "q"}),)),),
        tool_choice={"type": "tool"},
    )
    with pytest.raises(RequestValidationError, match="name"):
        render_chat_payload(request)


def test_parallel_tool_use_said_both_ways_at_odds_is_refused() -> None:
    request = ClaudeRequest(
        MODEL,
        tools=to_claude_request("q", model=MODEL, tools=[get_weather]).tools,
        messages=(Message("user", (Block("text", {"text": "q"}),)),),
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    render = wire_format(native=False).render
    assert render(request, {"parallel_tool_calls": False}, True)["parallel_tool_calls"] is False
    with pytest.raises(RequestValidationError, match="parallel"):
        render(request, {"parallel_tool_calls": True}, True)


# -- a file's name -------------------------------------------------------------------------------

PDF = base64.b64encode(b"%PDF-1.4 hello").decode()


@pytest.mark.parametrize(
    "part",
    [
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        },
        {"type": "file", "base64": PDF, "mime_type": "application/pdf", "filename": "report.pdf"},
        {
            "type": "file",
            "base64": PDF,
            "mime_type": "application/pdf",
            "extras": {"filename": "report.pdf"},
        },
        {
            "type": "file",
            "base64": PDF,
            "mime_type": "application/pdf",
            "metadata": {"filename": "report.pdf"},
        },
    ],
    ids=["openai-file", "filename", "v1-extras", "metadata"],
)
def test_a_file_is_sent_with_its_name(make_llm, relay, part: dict[str, Any]) -> None:
    make_llm().invoke([HumanMessage([{"type": "text", "text": "summarize"}, part])])
    sent = relay.last["messages"][-1]["content"][-1]
    assert sent["type"] == "file"
    assert sent["file"]["filename"] == "report.pdf"
    assert sent["file"]["file_data"] == f"data:application/pdf;base64,{PDF}"
