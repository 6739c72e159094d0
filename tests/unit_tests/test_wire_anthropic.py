"""The Anthropic Messages wire format: rendering a ``ClaudeRequest``, reading messages and streams.

Rendered payloads are cross-checked against the ``anthropic`` SDK's request TypedDicts (every key
we send is one the SDK declares); bodies and events we accept are cross-checked with the SDK's
response models (``Message.model_validate`` and the raw stream event models).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import anthropic.types as sdk
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.emulator.dialects import anthropic_body, anthropic_stream
from langchain_claude_relay.emulator.engine import TokenSplit
from langchain_claude_relay.emulator.replies import Reply, ToolCall
from langchain_claude_relay.errors import (
    APIResponseError,
    APIStatusError,
    BadRequestError,
    ClaudeRelayError,
    InternalServerError,
    OverloadedError,
    RateLimitError,
    RequestValidationError,
)
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message, Tool
from langchain_claude_relay.usage import normalize_usage
from langchain_claude_relay.wire.anthropic_messages import (
    DEFAULT_MAX_TOKENS,
    MessageStreamReader,
    parse_message,
    render_messages_payload,
)

MODEL = "claude-sonnet-4-5"
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}
M5 = CacheControl("5m", explicit_ttl=False)
M5X = CacheControl("5m", explicit_ttl=True)
H1 = CacheControl("1h")
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _req(*messages: Message, **fields: Any) -> ClaudeRequest:
    return ClaudeRequest(MODEL, messages=messages or (Message("user", (_text("hi"),)),), **fields)


def _text(text: str, marker: CacheControl | None = None) -> Block:
    return Block("text", {"text": text}, marker)


def _render(request: ClaudeRequest, **params: Any) -> dict[str, Any]:
    return render_messages_payload(request, params)


# -- SDK cross-check of rendered keys --------------------------------------------------------------

SDK_BLOCKS: dict[str, Any] = {
    "text": sdk.TextBlockParam,
    "image": sdk.ImageBlockParam,
    "document": sdk.DocumentBlockParam,
    "tool_use": sdk.ToolUseBlockParam,
    "tool_result": sdk.ToolResultBlockParam,
    "thinking": sdk.ThinkingBlockParam,
    "redacted_thinking": sdk.RedactedThinkingBlockParam,
}
REQUIRED: dict[str, set[str]] = {
    "text": {"type", "text"},
    "image": {"type", "source"},
    "document": {"type", "source"},
    "tool_use": {"type", "id", "name", "input"},
    "tool_result": {"type", "tool_use_id"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}


SAMPLING = {"temperature", "top_p", "top_k"}


def _declared(typed_dict: Any) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


def assert_sdk_shaped(payload: Mapping[str, Any]) -> None:
    """Every key we send is declared by the SDK's TypedDicts, and required keys are present."""
    from anthropic.types import message_create_params

    # SDK 2.12 declares no sampling settings; the brief has us pass them through as given.
    top = _declared(message_create_params.MessageCreateParamsBase) | {"stream"} | SAMPLING
    assert set(payload) <= top, set(payload) - top
    assert {"model", "max_tokens", "messages"} <= set(payload)
    for block in payload.get("system", []):
        assert block["type"] == "text"
        assert set(block) <= _declared(sdk.TextBlockParam)
    for turn in payload["messages"]:
        assert set(turn) == {"role", "content"}
        assert turn["role"] in ("user", "assistant")
        assert isinstance(turn["content"], list)
        assert turn["content"]
        for block in turn["content"]:
            kind = block["type"]
            assert REQUIRED[kind] <= set(block) <= _declared(SDK_BLOCKS[kind]), block
    for tool in payload.get("tools", []):
        assert {"name", "input_schema"} <= set(tool) <= _declared(sdk.ToolParam)
    choice = payload.get("tool_choice")
    if choice is not None:
        assert choice["type"] in ("auto", "any", "tool", "none")


# -- rendering: blocks ---------------------------------------------------------------------------

BLOCK_CASES = [
    ("user", _text("hello"), {"type": "text", "text": "hello"}),
    ("user", Block("image", {"source": PNG}), {"type": "image", "source": PNG}),
    (
        "user",
        Block("image", {"source": {"type": "url", "url": "https://x.test/a.png"}}),
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
    ),
    (
        "user",
        Block("document", {"source": PDF, "title": "Spec"}),
        {"type": "document", "source": PDF, "title": "Spec"},
    ),
    (
        "assistant",
        Block(
            "tool_use", {"id": "toolu_1", "name": "get", "input": {"b": 1, "a": {"d": 2, "c": 3}}}
        ),
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get",
            "input": {"a": {"c": 3, "d": 2}, "b": 1},
        },
    ),
    (
        "user",
        Block("tool_result", {"tool_use_id": "toolu_1", "content": "42"}),
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
    ),
    (
        "user",
        Block(
            "tool_result",
            {
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "bad"}, {"type": "image", "source": PNG}],
                "is_error": True,
            },
        ),
        {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "bad"}, {"type": "image", "source": PNG}],
            "is_error": True,
        },
    ),
    (
        "assistant",
        Block("thinking", {"thinking": "hmm", "signature": "c2ln"}),
        {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
    ),
    (
        "assistant",
        Block("redacted_thinking", {"data": "ENC"}),
        {"type": "redacted_thinking", "data": "ENC"},
    ),
]


@pytest.mark.parametrize(("role", "block", "expected"), BLOCK_CASES)
def test_each_block_kind_renders_as_claude_takes_it(
    role: str, block: Block, expected: dict[str, Any]
) -> None:
    turns = (Message("user", (_text("q"),)),) if role == "assistant" else ()
    payload = _render(_req(*turns, Message(role, (block,))))  # type: ignore[arg-type]
    assert payload["messages"][-1] == {"role": role, "content": [expected]}
    assert json.dumps(payload["messages"][-1]["content"][0]) == json.dumps(expected)  # key order
    assert_sdk_shaped(payload)


def test_a_lone_text_is_still_a_list_of_blocks() -> None:
    payload = _render(_req(Message("user", (_text("just text"),))))
    assert payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "just text"}]}
    ]


def test_system_is_a_list_of_text_blocks_and_omitted_when_absent() -> None:
    with_system = _render(_req(system=(_text("a"), _text("b", H1))))
    assert with_system["system"] == [
        {"type": "text", "text": "a"},
        {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    assert "system" not in _render(_req())
    assert "system" not in _render(_req(system=(_text(""),)))  # only empty text: nothing to send


def test_system_blocks_must_be_text() -> None:
    with pytest.raises(RequestValidationError, match=r"system\[0\].*text"):
        _render(_req(system=(Block("image", {"source": PNG}),)))


def test_unsigned_thinking_is_dropped_signed_is_kept() -> None:
    assistant = Message(
        "assistant",
        (
            Block("thinking", {"thinking": "from another API"}),
            Block("thinking", {"thinking": "native", "signature": "sig"}),
            _text("answer"),
        ),
    )
    payload = _render(_req(Message("user", (_text("q"),)), assistant))
    assert payload["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "native", "signature": "sig"},
        {"type": "text", "text": "answer"},
    ]


def test_tool_schema_and_input_key_order_do_not_change_the_bytes() -> None:
    def request(schema: dict[str, Any], tool_input: dict[str, Any]) -> ClaudeRequest:
        call = Block("tool_use", {"id": "t", "name": "f", "input": tool_input})
        return _req(
            Message("user", (_text("q"),)),
            Message("assistant", (call,)),
            tools=(Tool("f", "d", schema),),
        )

    one = request(
        {"type": "object", "properties": {"a": {}, "b": {}}}, {"x": 1, "y": [{"q": 1, "p": 2}]}
    )
    two = request(
        {"properties": {"b": {}, "a": {}}, "type": "object"}, {"y": [{"p": 2, "q": 1}], "x": 1}
    )
    assert json.dumps(_render(one)) == json.dumps(_render(two))
    raw = render_messages_payload(two, {}, canonical=False)
    assert list(raw["tools"][0]["input_schema"]) == ["properties", "type"]  # as the user wrote it


def test_tool_renders_name_description_schema_and_only_anthropic_extras() -> None:
    tool = Tool(
        "search",
        "Search the web",
        {"type": "object", "properties": {"q": {"type": "string"}}},
        M5X,
        {"strict": True, "input_examples": [{"q": "x"}], "parallel": False, "type": "function"},
    )
    payload = _render(_req(tools=(tool,)))
    assert payload["tools"] == [
        {
            "name": "search",
            "description": "Search the web",
            "input_schema": {"properties": {"q": {"type": "string"}}, "type": "object"},
            "input_examples": [{"q": "x"}],
            "strict": True,
            "cache_control": {"type": "ephemeral", "ttl": "5m"},
        }
    ]
    no_description = _render(_req(tools=(Tool("f", "", {"type": "object"}),)))
    assert no_description["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert_sdk_shaped(payload)


# -- rendering: markers --------------------------------------------------------------------------

CONVERSATION = ClaudeRequest(
    MODEL,
    tools=(Tool("get", "Get it", {"type": "object", "properties": {}}),),
    system=(_text("You are terse."),),
    messages=(
        Message(
            "user",
            (_text("look"), Block("image", {"source": PNG}), Block("document", {"source": PDF})),
        ),
        Message(
            "assistant",
            (
                Block("thinking", {"thinking": "t", "signature": "s"}),
                _text("calling"),
                Block("tool_use", {"id": "toolu_1", "name": "get", "input": {}}),
            ),
        ),
        Message("user", (Block("tool_result", {"tool_use_id": "toolu_1", "content": "done"}),)),
    ),
)


def _wire_markers(payload: Mapping[str, Any]) -> list[Any]:
    """Every ``cache_control`` in the payload, in prefix order (tools, system, messages)."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "cache_control":
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for section in ("tools", "system", "messages"):
        walk(payload.get(section, []))
    return found


@pytest.mark.parametrize("marker", [M5, M5X, H1], ids=["5m-implicit", "5m-explicit", "1h"])
@pytest.mark.parametrize(
    ("position", "path"),
    [
        (("tools", 0, 0), ("tools", 0)),
        (("system", 0, 0), ("system", 0)),
        (("messages", 0, 0), ("messages", 0, "content", 0)),  # text
        (("messages", 0, 1), ("messages", 0, "content", 1)),  # image
        (("messages", 0, 2), ("messages", 0, "content", 2)),  # document
        (("messages", 1, 1), ("messages", 1, "content", 1)),  # assistant text
        (("messages", 1, 2), ("messages", 1, "content", 2)),  # tool_use
        (("messages", 2, 0), ("messages", 2, "content", 0)),  # tool_result
    ],
)
def test_a_marker_rides_on_the_block_that_carries_it(
    marker: CacheControl, position: tuple[str, int, int], path: tuple[Any, ...]
) -> None:
    from langchain_claude_relay.request import Position

    request = CONVERSATION.with_markers({Position(*position): marker})  # type: ignore[arg-type]
    payload = _render(request)
    node: Any = payload
    for step in path:
        node = node[step]
    assert node["cache_control"] == marker.to_wire()
    assert _wire_markers(payload) == [marker.to_wire()]
    assert_sdk_shaped(payload)


@pytest.mark.parametrize(
    "block",
    [
        Block("thinking", {"thinking": "t", "signature": "s"}, M5),
        Block("redacted_thinking", {"data": "x"}, M5),
        Block("text", {"text": ""}, M5),
    ],
    ids=["thinking", "redacted_thinking", "empty-text"],
)
def test_a_marker_on_a_block_that_cannot_carry_one_is_refused(block: Block) -> None:
    request = _req(Message("user", (_text("q"),)), Message("assistant", (block, _text("a"))))
    with pytest.raises(RequestValidationError, match="cannot carry cache_control"):
        _render(request)


def test_markers_inside_tool_result_content_are_dropped() -> None:
    result = Block(
        "tool_result",
        {
            "tool_use_id": "t",
            "content": [{"type": "text", "text": "r", "cache_control": {"type": "ephemeral"}}],
        },
        H1,
    )
    payload = _render(_req(Message("user", (result,))))
    assert payload["messages"][0]["content"][0]["content"] == [{"type": "text", "text": "r"}]
    assert _wire_markers(payload) == [H1.to_wire()]


# -- rendering: turns ----------------------------------------------------------------------------


def test_langchain_conversation_renders_with_tool_results_in_one_user_turn() -> None:
    request = to_claude_request(
        [
            SystemMessage("sys"),
            HumanMessage("weather in Paris and Rome?"),
            AIMessage(
                "",
                tool_calls=[
                    {"id": "t1", "name": "weather", "args": {"city": "Paris"}},
                    {"id": "t2", "name": "weather", "args": {"city": "Rome"}},
                ],
            ),
            ToolMessage("sunny", tool_call_id="t1"),
            ToolMessage("boom", tool_call_id="t2", status="error"),
            HumanMessage("and tomorrow?"),
        ],
        model=MODEL,
        tools=[{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
    )
    payload = _render(request)
    assert [t["role"] for t in payload["messages"]] == ["user", "assistant", "user"]
    assert payload["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "t2", "content": "boom", "is_error": True},
        {"type": "text", "text": "and tomorrow?"},
    ]
    assert [b["id"] for b in payload["messages"][1]["content"]] == ["t1", "t2"]
    assert_sdk_shaped(payload)


MERGE_CASES = [
    pytest.param(
        [("user", ["a"]), ("user", ["b"]), ("assistant", ["c"]), ("assistant", ["d"])],
        [("user", ["a", "b"]), ("assistant", ["c", "d"])],
        id="same-role-merged",
    ),
    pytest.param(
        [("user", ["a", ""]), ("assistant", ["", "c"])],
        [("user", ["a"]), ("assistant", ["c"])],
        id="empty-text-dropped",
    ),
    pytest.param(
        [("user", [""]), ("user", ["b"])],
        [("user", ["b"])],
        id="empty-dropped-after-merge",
    ),
    pytest.param(
        [("user", ["q"]), ("assistant", [""])],
        [("user", ["q"]), ("assistant", [""])],
        id="empty-kept-when-turn-would-be-empty",
    ),
    pytest.param(
        [("user", ["a"]), ("assistant", []), ("user", ["b"])],
        [("user", ["a", "b"])],
        id="blockless-turn-skipped-neighbours-merged",
    ),
]


@pytest.mark.parametrize(("turns", "expected"), MERGE_CASES)
def test_turn_merging_and_empty_text(
    turns: list[tuple[str, list[str]]], expected: list[tuple[str, list[str]]]
) -> None:
    request = _req(*(Message(role, tuple(_text(t) for t in texts)) for role, texts in turns))  # type: ignore[arg-type]
    payload = _render(request)
    got = [(t["role"], [b["text"] for b in t["content"]]) for t in payload["messages"]]
    assert got == expected


def test_empty_parts_of_a_tool_result_are_dropped_unless_none_is_left() -> None:
    def content(parts: list[dict[str, Any]]) -> Any:
        block = Block("tool_result", {"tool_use_id": "t", "content": parts})
        return _render(_req(Message("user", (block,))))["messages"][0]["content"][0]["content"]

    assert content([{"type": "text", "text": ""}, {"type": "text", "text": "x"}]) == [
        {"type": "text", "text": "x"}
    ]
    assert content([{"type": "text", "text": ""}]) == [{"type": "text", "text": ""}]


# -- rendering: tool_choice and params -------------------------------------------------------------

TOOLS = (Tool("get", "g", {"type": "object"}), Tool("put", "p", {"type": "object"}))


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        (False, None),
        ("auto", {"type": "auto"}),
        ("any", {"type": "any"}),
        ("required", {"type": "any"}),
        (True, {"type": "any"}),
        ("none", {"type": "none"}),
        ("get", {"type": "tool", "name": "get"}),
        ({"type": "function", "function": {"name": "put"}}, {"type": "tool", "name": "put"}),
        ({"type": "function", "name": "put"}, {"type": "tool", "name": "put"}),
        ({"type": "tool", "name": "get"}, {"type": "tool", "name": "get"}),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"type": "auto"}, {"type": "auto"}),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: Any) -> None:
    payload = _render(_req(tools=TOOLS, tool_choice=choice))
    assert payload.get("tool_choice") == expected
    assert_sdk_shaped(payload)


@pytest.mark.parametrize(
    "choice", [1, "", {"type": "tool"}, {"type": "function", "function": {}}, {"x": 1}, ["get"]]
)
def test_tool_choice_that_cannot_be_expressed_is_refused(choice: Any) -> None:
    with pytest.raises(RequestValidationError, match="tool_choice"):
        _render(_req(tools=TOOLS, tool_choice=choice))


def test_auto_or_none_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in _render(_req(tool_choice="auto"))
    assert "tool_choice" not in _render(_req(tool_choice={"type": "none"}))


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
CLOSED = {**SCHEMA, "additionalProperties": False}  # what Claude's structured outputs take

PARAM_CASES = [
    pytest.param({}, {"max_tokens": DEFAULT_MAX_TOKENS}, id="max_tokens-default"),
    pytest.param({"max_tokens": 0}, {"max_tokens": 0}, id="max_tokens-0-warms-cache"),
    pytest.param({"max_tokens": None}, {"max_tokens": DEFAULT_MAX_TOKENS}, id="max_tokens-none"),
    pytest.param({"max_completion_tokens": 77}, {"max_tokens": 77}, id="max_completion_tokens"),
    pytest.param({"stop": ["\n\n", "END"]}, {"stop_sequences": ["\n\n", "END"]}, id="stop-list"),
    pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-str"),
    pytest.param({"stop": []}, {}, id="stop-empty"),
    pytest.param({"stop_sequences": ["X"]}, {"stop_sequences": ["X"]}, id="stop_sequences-kept"),
    pytest.param(
        {"temperature": 0.2, "top_p": 0.9, "top_k": 5},
        {"temperature": 0.2, "top_p": 0.9, "top_k": 5},
        id="sampling",
    ),
    pytest.param(
        {"stream": True, "stream_options": {"include_usage": True}},
        {"stream": True},
        id="stream-kept-options-dropped",
    ),
    pytest.param(
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "o", "schema": SCHEMA, "strict": True},
            }
        },
        {"output_config": {"format": {"type": "json_schema", "schema": CLOSED}}},
        id="json_schema",
    ),
    pytest.param(
        {
            "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}},
            "output_config": {"effort": "low"},
        },
        {"output_config": {"effort": "low", "format": {"type": "json_schema", "schema": CLOSED}}},
        id="json_schema-merged-with-effort",
    ),
    pytest.param({"response_format": {"type": "text"}}, {}, id="text-format-is-default"),
    pytest.param(
        {"output_config": {"effort": "high"}},
        {"output_config": {"effort": "high"}},
        id="output_config",
    ),
    pytest.param(
        {"diagnostics": {"previous_message_id": "msg_1"}},
        {"diagnostics": {"previous_message_id": "msg_1"}},
        id="diagnostics",
    ),
    pytest.param({"metadata": {"user_id": "u"}}, {"metadata": {"user_id": "u"}}, id="passthrough"),
    pytest.param({"parallel_tool_calls": True}, {}, id="parallel-true-is-default"),
    pytest.param(
        {"reasoning_effort": "high"},
        {"output_config": {"effort": "high"}},
        id="reasoning_effort-is-output_config-effort",  # not an unknown top-level field (a 400)
    ),
    pytest.param(
        {"reasoning_effort": "low", "output_config": {"effort": "low"}},
        {"output_config": {"effort": "low"}},
        id="reasoning_effort-agreeing-with-output_config",
    ),
]


@pytest.mark.parametrize(("params", "expected"), PARAM_CASES)
def test_params_mapping(params: dict[str, Any], expected: dict[str, Any]) -> None:
    payload = render_messages_payload(_req(), params)
    settings_sent = {k: v for k, v in payload.items() if k not in ("model", "messages")}
    assert settings_sent == {"max_tokens": DEFAULT_MAX_TOKENS, **expected}
    assert_sdk_shaped(payload)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"response_format": {"type": "json_object"}}, "no equivalent.*method='json_schema'"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "schema"),
        ({"response_format": {"type": "xml"}}, "not understood"),
        ({"response_format": "json"}, "not understood"),
        (
            {
                "response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}},
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            },
            "once",
        ),
        ({"output_config": "high"}, "output_config"),
        ({"reasoning_effort": "minimal"}, "one of low, medium, high"),
        ({"reasoning_effort": "low", "output_config": {"effort": "high"}}, "effort once"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"stop": [1]}, "stop"),
        ({"stop": ["a"], "stop_sequences": ["b"]}, "once"),
        ({"messages": []}, "model_kwargs"),
        ({"tools": []}, "model_kwargs"),
        ({"system": "x"}, "model_kwargs"),
    ],
)
def test_params_the_messages_api_cannot_take_are_refused(
    params: dict[str, Any], match: str
) -> None:
    with pytest.raises(RequestValidationError, match=match):
        render_messages_payload(_req(), params)


def test_parallel_tool_calls_false_disables_parallel_use_in_tool_choice() -> None:
    def choice(tool_choice: Any, tools: tuple[Tool, ...] = TOOLS) -> Any:
        request = _req(tools=tools, tool_choice=tool_choice)
        return render_messages_payload(request, {"parallel_tool_calls": False}).get("tool_choice")

    assert choice(None) == {"type": "auto", "disable_parallel_tool_use": True}
    assert choice("get") == {"type": "tool", "name": "get", "disable_parallel_tool_use": True}
    assert choice("none") == {"type": "none"}
    assert choice(None, tools=()) is None


def test_thinking_comes_from_the_request_and_params_only_fill_in() -> None:
    adaptive = {"type": "adaptive"}
    enabled = {"type": "enabled", "budget_tokens": 2048}
    assert _render(_req(thinking=adaptive))["thinking"] == adaptive
    assert _render(_req(thinking=adaptive), thinking=adaptive)["thinking"] == adaptive
    assert _render(_req(thinking=adaptive), thinking=enabled)["thinking"] == adaptive
    assert _render(_req(), thinking=enabled)["thinking"] == enabled
    assert "thinking" not in _render(_req())


def test_payload_keys_come_in_a_fixed_order() -> None:
    request = replace(CONVERSATION, tool_choice="auto", thinking={"type": "adaptive"})
    params = {"top_k": 3, "stream": True, "temperature": 0, "stop": ["x"], "metadata": {}}
    payload = render_messages_payload(request, params)
    assert list(payload) == [
        "model",
        "max_tokens",
        "system",
        "messages",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
    ]
    reordered = render_messages_payload(request, dict(reversed(list(params.items()))))
    assert json.dumps(reordered) == json.dumps(payload)


# -- rendering: properties over random requests ----------------------------------------------------

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
markers = st.none() | st.sampled_from([M5, M5X, H1])
texts = st.sampled_from(["", " ", "x", "hello world", "é"])


@st.composite
def result_contents(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(texts)
    part = st.fixed_dictionaries(
        {"type": st.just("text"), "text": texts},
        optional={"cache_control": st.just({"type": "ephemeral"})},
    )
    return draw(st.lists(part, max_size=3))


@st.composite
def blocks(draw: st.DrawFn, role: str) -> Block:
    kinds = (
        ["text", "image", "document", "tool_result"]
        if role == "user"
        else ["text", "tool_use", "thinking", "redacted_thinking"]
    )
    kind = draw(st.sampled_from(kinds))
    data: dict[str, Any]
    if kind == "text":
        data = {"text": draw(texts)}
    elif kind == "image":
        data = {"source": draw(st.sampled_from([PNG, {"type": "url", "url": "https://x.test/i"}]))}
    elif kind == "document":
        data = {"source": PDF, "title": draw(st.text(min_size=1, max_size=4))}
    elif kind == "tool_result":
        data = {"tool_use_id": "toolu_x", "content": draw(result_contents())}
        if draw(st.booleans()):
            data["is_error"] = True
    elif kind == "tool_use":
        data = {
            "id": "toolu_x",
            "name": "f",
            "input": draw(st.dictionaries(keys, json_values, max_size=3)),
        }
    elif kind == "thinking":
        data = {"thinking": draw(texts)}
        if draw(st.booleans()):
            data["signature"] = "sig"
    else:
        data = {"data": "ENC"}
    block = Block(kind, data)  # type: ignore[arg-type]
    marker = draw(markers)
    return replace(block, cache_control=marker) if block.markable else block


@st.composite
def requests(draw: st.DrawFn) -> ClaudeRequest:
    tools = tuple(
        Tool(
            f"tool{i}",
            draw(st.sampled_from(["", "does things"])),
            {"type": "object", "properties": draw(st.dictionaries(keys, json_values, max_size=3))},
            draw(markers),
        )
        for i in range(draw(st.integers(0, 3)))
    )
    system = tuple(
        replace(b, cache_control=draw(markers)) if b.markable else b
        for b in (Block("text", {"text": draw(texts)}) for _ in range(draw(st.integers(0, 2))))
    )
    messages = []
    for _ in range(draw(st.integers(1, 5))):
        role = draw(st.sampled_from(["user", "assistant"]))
        content = tuple(draw(st.lists(blocks(role), min_size=0, max_size=4)))
        messages.append(Message(role, content))  # type: ignore[arg-type]
    choice = draw(st.sampled_from([None, "auto", "any", "none"] + [t.name for t in tools]))
    return ClaudeRequest(
        MODEL,
        tools,
        system,
        tuple(messages),
        choice,
        draw(st.none() | st.just({"type": "adaptive"})),
    )


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def _clear_all(node: Any) -> None:
    """Destroy a payload in place: if it shares a container with the request, the request breaks."""
    if isinstance(node, dict):
        for value in list(node.values()):
            _clear_all(value)
        node.clear()
    elif isinstance(node, list):
        for value in node:
            _clear_all(value)
        node.clear()


@PROPS
@given(requests())
def test_render_keeps_exactly_the_requests_markers_in_prefix_order(request: ClaudeRequest) -> None:
    payload = _render(request)
    assert _wire_markers(payload) == [m.to_wire() for m in request.markers().values()]
    if payload["messages"]:
        assert_sdk_shaped(payload)


@PROPS
@given(requests())
def test_render_never_mutates_nor_aliases_the_request(request: ClaudeRequest) -> None:
    before = copy.deepcopy(request)
    payload = _render(request, stop=["x"], metadata={"user_id": "u"})
    assert request == before
    _clear_all(payload)
    assert request == before


@PROPS
@given(requests())
def test_render_is_deterministic_and_blind_to_key_order(request: ClaudeRequest) -> None:
    first = json.dumps(_render(request))
    assert json.dumps(_render(copy.deepcopy(request))) == first
    shuffled = replace(
        request,
        tools=tuple(replace(t, parameters=_reversed_keys(t.parameters)) for t in request.tools),
        messages=tuple(
            replace(
                m,
                content=tuple(
                    replace(b, data={**b.data, "input": _reversed_keys(b.data["input"])})
                    if b.type == "tool_use"
                    else b
                    for b in m.content
                ),
            )
            for m in request.messages
        ),
    )
    assert json.dumps(_render(shuffled)) == first


@PROPS
@given(requests())
def test_rendered_turns_alternate_and_hold_no_droppable_empty_text(request: ClaudeRequest) -> None:
    turns = _render(request)["messages"]
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(turns))
    for turn in turns:
        empty = [b for b in turn["content"] if b["type"] == "text" and b["text"] == ""]
        assert not empty or len(empty) == len(turn["content"])
        assert not any(b["type"] == "thinking" and "signature" not in b for b in turn["content"])


# -- parse_message -------------------------------------------------------------------------------

USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2000,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1500},
    "output_tokens": 87,
}
WEATHER = {"city": "Paris", "days": [1, 2], "unit": "°C", "opts": {"x": None}}


def _message(content: list[Any], stop_reason: str = "end_turn", **extra: Any) -> dict[str, Any]:
    """A ``message`` body as the Messages API sends it."""
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": USAGE,
        **extra,
    }


def _tool_use(call_id: Any = "toolu_01", name: Any = "f", tool_input: Any = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input or {}}


FULL_BODY = _message(
    [
        {"type": "thinking", "thinking": "The user wants the weather. ", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "RU5DUllQVEVE"},
        {"type": "text", "text": "Checking the weather in Paris "},
        {"type": "text", "text": "for you."},
        _tool_use("toolu_01", "get_weather", WEATHER),
        _tool_use("toolu_02", "get_time"),
    ],
    "tool_use",
)


def test_parse_message_reads_every_part() -> None:
    sdk.Message.model_validate(FULL_BODY)
    parsed = parse_message(FULL_BODY)
    assert (parsed.id, parsed.model) == ("msg_01", MODEL)
    assert parsed.content == "Checking the weather in Paris for you."
    assert parsed.reasoning == "The user wants the weather. "
    assert parsed.thinking_blocks == FULL_BODY["content"][:2]
    assert parsed.finish_reason == "tool_use"
    assert parsed.usage == USAGE
    assert parsed.diagnostics is None
    assert [(c["id"], c["type"], c["function"]["name"]) for c in parsed.tool_calls] == [
        ("toolu_01", "function", "get_weather"),
        ("toolu_02", "function", "get_time"),
    ]
    arguments = [json.loads(c["function"]["arguments"]) for c in parsed.tool_calls]
    assert arguments == [WEATHER, {}]
    assert parsed.raw_tool_calls == FULL_BODY["content"][4:]
    normalized = normalize_usage(parsed.usage)
    assert (normalized.input_tokens, normalized.cache_read_tokens) == (12, 3000)
    assert (normalized.cache_write_5m_tokens, normalized.cache_write_1h_tokens) == (500, 1500)


MISS = {"cache_miss_reason": {"type": "system_changed", "cache_missed_input_tokens": 4000}}
SERVER_TOOL = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}


@pytest.mark.parametrize(
    "body",
    [
        _message([{"type": "text", "text": "hi"}]),
        _message([], "max_tokens"),
        _message([{"type": "text", "text": ""}], "refusal"),
        _message([{"type": "text", "text": "ok"}], diagnostics=MISS),
        _message([SERVER_TOOL, {"type": "text", "text": "found"}]),
    ],
    ids=["text", "empty-max_tokens", "refusal", "diagnostics", "server-tool-skipped"],
)
def test_parse_message_accepts_what_the_sdk_accepts(body: dict[str, Any]) -> None:
    sdk.Message.model_validate(body)
    parsed = parse_message(body)
    assert parsed.finish_reason == body["stop_reason"]
    assert parsed.content == "".join(b["text"] for b in body["content"] if b["type"] == "text")
    assert parsed.tool_calls == []
    assert parsed.diagnostics == body.get("diagnostics")


def test_parse_message_reads_the_emulators_bodies() -> None:
    split = TokenSplit(10, 3000, 500, 1500, 40)
    reply = Reply("", (ToolCall("toolu_1", "get", '{"a": [1, 2]}'),), "tool_use", None, 40)
    body = anthropic_body("r1", MODEL, reply, split)
    sdk.Message.model_validate(body)
    parsed = parse_message(body)
    function = {"name": "get", "arguments": '{"a": [1, 2]}'}
    assert parsed.tool_calls == [{"id": "toolu_1", "type": "function", "function": function}]
    assert normalize_usage(parsed.usage).total_input_tokens == 10 + 3000 + 500 + 1500


def _body(**changes: Any) -> dict[str, Any]:
    return {**FULL_BODY, **changes}


def _one(block: Any) -> dict[str, Any]:
    return _body(content=[block])


GARBAGE_BODIES: dict[str, Any] = {
    "null": None,
    "list": [],
    "string": "<html>502</html>",
    "number": 7,
    "error-object": {"type": "error", "error": {"type": "overloaded_error", "message": "O"}},
    "bare-error": {"error": {"message": "bad"}},
    "wrong-type": _body(type="completion"),
    "no-content": {k: v for k, v in FULL_BODY.items() if k != "content"},
    "content-string": _body(content="hi"),
    "content-object": _body(content={"type": "text"}),
    "block-number": _one(1),
    "block-untyped": _one({"text": "x"}),
    "block-type-number": _one({"type": 3}),
    "text-missing": _one({"type": "text"}),
    "text-list": _one({"type": "text", "text": ["x"]}),
    "tool-no-name": _one(_tool_use(name=None)),
    "tool-empty-name": _one(_tool_use(name="")),
    "tool-name-number": _one(_tool_use(name=5)),
    "tool-no-id": _one(_tool_use(call_id=None)),
    "tool-input-list": _one(_tool_use(tool_input=[1])),
    "tool-input-string": _one(_tool_use(tool_input="{}")),
    "thinking-number": _one({"type": "thinking", "thinking": 1, "signature": "s"}),
    "signature-number": _one({"type": "thinking", "thinking": "t", "signature": 5}),
    "redacted-no-data": _one({"type": "redacted_thinking"}),
    "usage-string": _body(usage="lots"),
    "usage-negative": _body(usage={"input_tokens": -1, "output_tokens": 1}),
    "usage-text": _body(usage={"input_tokens": 1, "output_tokens": "abc"}),
    "usage-split-number": _body(usage={"input_tokens": 1, "cache_creation": 5}),
    "usage-fraction": _body(usage={"input_tokens": 1.5}),
}


@pytest.mark.parametrize("body", GARBAGE_BODIES.values(), ids=GARBAGE_BODIES.keys())
def test_parse_message_refuses_garbage_with_status_and_excerpt(body: Any) -> None:
    with pytest.raises(APIResponseError) as caught:
        parse_message(body, status_code=203, text=json.dumps(body))
    assert caught.value.status_code == 203
    assert caught.value.body_excerpt  # the excerpt tells what came back
    assert "(status 203)" in str(caught.value)


junk_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(10**13), 10**13)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
)
junk = st.recursive(
    junk_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right shape seven times in ten, junk otherwise."""
    return st.integers(0, 9).flatmap(lambda roll: junk if roll < 3 else good)


def shaped(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with each field right or junk."""
    return st.fixed_dictionaries({k: either(v) for k, v in fields.items()})


near_blocks = st.one_of(
    shaped(type=st.just("text"), text=st.text(max_size=5)),
    shaped(
        type=st.just("tool_use"),
        id=st.just("toolu_1"),
        name=st.just("f"),
        input=st.dictionaries(st.text(max_size=3), junk, max_size=3),
    ),
    shaped(type=st.just("thinking"), thinking=st.text(max_size=5), signature=st.just("s")),
    shaped(
        type=st.sampled_from(["redacted_thinking", "web_search_tool_result"]), data=st.just("E")
    ),
    junk,
)
USAGE_KEYS = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation"]
near_usage = st.dictionaries(
    st.sampled_from([*USAGE_KEYS, "cache_creation_input_tokens"]),
    either(st.integers(0, 10**6)),
    max_size=4,
)
near_bodies = st.fixed_dictionaries(
    {},
    optional={
        "id": either(st.just("msg_1")),
        "type": either(st.just("message")),
        "model": either(st.just(MODEL)),
        "content": either(st.lists(near_blocks, max_size=4)),
        "stop_reason": either(st.sampled_from(["end_turn", "tool_use"])),
        "usage": either(near_usage),
        "diagnostics": junk,
        "error": junk,
    },
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(near_bodies, junk))
def test_parse_message_raises_only_api_response_errors(body: Any) -> None:
    try:
        parsed = parse_message(body)
    except APIResponseError:
        return
    for call in parsed.tool_calls:
        assert isinstance(json.loads(call["function"]["arguments"]), dict)
        assert call["id"]
        assert call["function"]["name"]
    normalize_usage(parsed.usage)  # validated: never raises after a successful parse
    assert all(b["type"] in ("thinking", "redacted_thinking") for b in parsed.thinking_blocks)


# -- the stream reader ----------------------------------------------------------------------------


def _start(block: Any, index: Any = 0) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(delta: Any, index: Any = 0) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _stop(index: Any = 0) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def _pieces(text: str, n: int = 3) -> list[str]:
    step = max(1, -(-len(text) // n))
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def _block_events(index: int, block: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One block's start, deltas (tool input split mid-token) and stop."""
    kind = block["type"]
    if kind == "text":
        yield _start({"type": "text", "text": ""}, index)
        for piece in _pieces(block["text"]):
            yield _delta({"type": "text_delta", "text": piece}, index)
    elif kind == "tool_use":
        yield _start({**block, "input": {}}, index)
        for piece in _pieces(json.dumps(block["input"]), 4):
            yield _delta({"type": "input_json_delta", "partial_json": piece}, index)
    elif kind == "thinking":
        yield _start({"type": "thinking", "thinking": "", "signature": ""}, index)
        for piece in _pieces(block["thinking"]):
            yield _delta({"type": "thinking_delta", "thinking": piece}, index)
        yield _delta({"type": "signature_delta", "signature": block["signature"]}, index)
    else:
        yield _start(block, index)
    yield _stop(index)


def events_for(body: Mapping[str, Any], final_usage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SSE events the Messages API sends for ``body``."""
    start = {**body, "content": [], "stop_reason": None, "usage": {**body["usage"]}}
    start["usage"]["output_tokens"] = 1
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}, {"type": "ping"}]
    for index, block in enumerate(body["content"]):
        events.extend(_block_events(index, block))
    delta = {"stop_reason": body["stop_reason"], "stop_sequence": None}
    events.append({"type": "message_delta", "delta": delta, "usage": dict(final_usage)})
    events.append({"type": "message_stop"})
    return events


SDK_EVENTS: dict[str, Any] = {
    "message_start": sdk.RawMessageStartEvent,
    "content_block_start": sdk.RawContentBlockStartEvent,
    "content_block_delta": sdk.RawContentBlockDeltaEvent,
    "content_block_stop": sdk.RawContentBlockStopEvent,
    "message_delta": sdk.RawMessageDeltaEvent,
    "message_stop": sdk.RawMessageStopEvent,
}


def read_all(events: list[Any]) -> tuple[MessageStreamReader, list[Any]]:
    reader = MessageStreamReader()
    return reader, [reader.read(e) for e in events]


def _joined_tool_calls(chunks: list[Any]) -> list[tuple[Any, Any, Any]]:
    """Tool-call deltas merged by index, as LangChain merges tool-call chunks."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in (d for c in chunks for d in c.tool_call_deltas):
        call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or delta["id"]
        call["name"] = call["name"] or delta["function"]["name"]
        call["arguments"] += delta["function"]["arguments"]
    return [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()]


@pytest.mark.parametrize(
    "final_usage",
    [
        {"output_tokens": 87},  # older API versions: only the cumulative output count
        {k: v for k, v in USAGE.items() if k != "cache_creation"},  # newer: cumulative input too
        {"output_tokens": 87, "input_tokens": None, "cache_read_input_tokens": None},  # nulls
    ],
    ids=["output-only", "cumulative", "nulls-do-not-override"],
)
def test_stream_reconstructs_the_non_stream_message(final_usage: dict[str, Any]) -> None:
    events = events_for(FULL_BODY, final_usage)
    for event in events:
        if event["type"] in SDK_EVENTS:
            SDK_EVENTS[event["type"]].model_validate(event)
    reader, chunks = read_all(events)
    whole = parse_message(FULL_BODY)

    assert "".join(c.content for c in chunks) == whole.content
    assert "".join(c.reasoning or "" for c in chunks) == whole.reasoning
    assert [b for c in chunks for b in c.thinking_blocks] == whole.thinking_blocks
    assert _joined_tool_calls(chunks) == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in whole.tool_calls
    ]
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["tool_use"]
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert with_usage == [len(events) - 2]  # on message_delta only
    assert normalize_usage(chunks[-2].usage) == normalize_usage(whole.usage)
    assert reader.usage == chunks[-2].usage
    assert {(c.id, c.model) for c in chunks} == {("msg_01", MODEL)}


def test_stream_reads_the_emulators_events() -> None:
    split = TokenSplit(10, 3000, 500, 1500, 40)
    for reply in (
        Reply("Hello there, friend.", (), "end_turn", None, 5),
        Reply("", (ToolCall("toolu_1", "get", '{"city": "Paris"}'),), "tool_use", None, 9),
    ):
        raw = anthropic_stream("r1", MODEL, reply, split)
        texts = [e.data if isinstance(e.data, str) else e.data.decode() for e in raw]
        events = [json.loads(t.split("data: ", 1)[1]) for t in texts]
        _, chunks = read_all(events)
        assert "".join(c.content for c in chunks) == reply.text
        arguments = "".join(d["function"]["arguments"] for c in chunks for d in c.tool_call_deltas)
        assert arguments == "".join(t.arguments for t in reply.tool_calls)
        usage = next(c.usage for c in chunks if c.usage is not None)
        body_usage = anthropic_body("r1", MODEL, reply, split)["usage"]
        assert normalize_usage(usage) == normalize_usage(body_usage)


def test_tool_use_start_with_input_sends_it_as_first_arguments() -> None:
    reader = MessageStreamReader()
    chunk = reader.read(_start(_tool_use("t", "f", {"a": 1}), 2))
    first = {"name": "f", "arguments": '{"a": 1}'}
    assert chunk.tool_call_deltas == [
        {"index": 2, "id": "t", "type": "function", "function": first}
    ]
    later = reader.read(_delta({"type": "input_json_delta", "partial_json": "x"}, 2))
    more = {"name": None, "arguments": "x"}
    assert later.tool_call_deltas == [
        {"index": 2, "id": None, "type": "function", "function": more}
    ]


def test_diagnostics_and_quiet_events() -> None:
    reader = MessageStreamReader()
    diagnostics = {"cache_miss_reason": {"type": "tools_changed", "cache_missed_input_tokens": 9}}
    message = {**FULL_BODY, "content": [], "diagnostics": diagnostics}
    assert reader.read({"type": "message_start", "message": message}).diagnostics == diagnostics
    for quiet in ({"type": "ping"}, {"type": "message_stop"}, {"type": "future_event", "x": [1]}):
        chunk = reader.read(quiet)
        assert (chunk.content, chunk.tool_call_deltas, chunk.usage) == ("", [], None)
        assert chunk.finish_reason is None
    later = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "diagnostics": MISS}
    assert reader.read(later).diagnostics == MISS
    assert reader.usage == USAGE  # a message_delta without usage changes nothing


def test_unknown_blocks_and_deltas_are_ignored() -> None:
    events = [
        _start(SERVER_TOOL, 0),
        _delta({"type": "input_json_delta", "partial_json": "{}"}, 0),
        _stop(0),
        _start({"type": "text", "text": "a"}, 1),
        _delta({"type": "citations_delta", "citation": {}}, 1),
        _stop(1),
    ]
    _, chunks = read_all(events)
    assert "".join(c.content for c in chunks) == "a"
    assert not any(c.tool_call_deltas for c in chunks)


def test_redacted_thinking_comes_back_whole_on_stop() -> None:
    block = {"type": "redacted_thinking", "data": "ENC"}
    _, chunks = read_all([_start(block), _stop()])
    assert [c.thinking_blocks for c in chunks] == [[], [block]]


@pytest.mark.parametrize(
    ("kind", "error_class", "status"),
    [
        ("overloaded_error", OverloadedError, 529),
        ("rate_limit_error", RateLimitError, 429),
        ("api_error", InternalServerError, 500),
        ("invalid_request_error", BadRequestError, 400),
        ("timeout_error", InternalServerError, 504),
    ],
)
def test_error_events_raise_the_typed_status_error(
    kind: str, error_class: type[APIStatusError], status: int
) -> None:
    event = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    with pytest.raises(error_class) as caught:
        MessageStreamReader().read(event)
    assert caught.value.status_code == status
    assert kind in caught.value.body_excerpt


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error", "error": {"type": "brand_new_error"}},
        {"type": "error", "error": "boom"},
        {"type": "error"},
    ],
)
def test_error_events_of_unknown_type_raise_api_response_error(event: Any) -> None:
    with pytest.raises(APIResponseError, match="streamed an error"):
        MessageStreamReader().read(event)


OPEN_TEXT = _start({"type": "text", "text": ""})
OPEN_TOOL = _start(_tool_use("t", "f"))
GARBAGE_STREAMS: dict[str, list[Any]] = {
    "null": [None],
    "string": ["data"],
    "untyped": [{"delta": {}}],
    "type-number": [{"type": 5}],
    "start-without-message": [{"type": "message_start"}],
    "start-message-string": [{"type": "message_start", "message": "m"}],
    "start-usage-negative": [{"type": "message_start", "message": {"usage": {"input_tokens": -3}}}],
    "start-usage-list": [{"type": "message_start", "message": {"usage": [1]}}],
    "no-index": [{"type": "content_block_start", "content_block": {"type": "text", "text": ""}}],
    "negative-index": [_start({"type": "text"}, -1)],
    "bool-index": [_start({"type": "text"}, True)],
    "block-string": [_start("text")],
    "text-number": [_start({"type": "text", "text": 1})],
    "tool-no-name": [_start(_tool_use(name=None))],
    "tool-no-id": [_start(_tool_use(call_id=None))],
    "tool-input-string": [_start(_tool_use(tool_input="x"))],
    "started-twice": [OPEN_TEXT, OPEN_TEXT],
    "delta-before-start": [_delta({"type": "text_delta", "text": "x"})],
    "stop-before-start": [_stop(3)],
    "delta-string": [OPEN_TEXT, _delta("x")],
    "text-delta-number": [OPEN_TEXT, _delta({"type": "text_delta", "text": 1})],
    "json-delta-on-text": [OPEN_TEXT, _delta({"type": "input_json_delta", "partial_json": "{"})],
    "text-delta-on-tool": [OPEN_TOOL, _delta({"type": "text_delta", "text": "x"})],
    "json-delta-object": [OPEN_TOOL, _delta({"type": "input_json_delta", "partial_json": {}})],
    "message-delta-string": [{"type": "message_delta", "delta": "end"}],
    "stop-reason-number": [{"type": "message_delta", "delta": {"stop_reason": 1}}],
    "delta-usage-text": [{"type": "message_delta", "usage": {"output_tokens": "many"}}],
}


@pytest.mark.parametrize("events", GARBAGE_STREAMS.values(), ids=GARBAGE_STREAMS.keys())
def test_stream_garbage_raises_api_response_error(events: list[Any]) -> None:
    with pytest.raises(APIResponseError) as caught:
        read_all(events)
    assert caught.value.status_code == 200
    assert "relay streamed" in str(caught.value) or "malformed usage" in str(caught.value)
    assert caught.value.body_excerpt  # the event, for the reader of the error


EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
]
DELTA_TYPES = ["text_delta", "input_json_delta", "thinking_delta", "signature_delta"]
near_deltas = st.fixed_dictionaries(
    {"type": either(st.sampled_from(DELTA_TYPES))},
    optional=dict.fromkeys(("text", "partial_json", "thinking", "signature", "stop_reason"), junk),
)
near_events = st.fixed_dictionaries(
    {"type": either(st.sampled_from(EVENT_TYPES))},
    optional={
        "index": either(st.integers(0, 2)),
        "message": either(st.fixed_dictionaries({}, optional={"id": junk, "usage": near_usage})),
        "content_block": either(near_blocks),
        "delta": either(near_deltas),
        "usage": either(near_usage),
        "error": junk,
    },
)


@FUZZ
@given(st.lists(st.one_of(near_events, junk), max_size=8))
def test_stream_reader_raises_only_the_packages_errors(events: list[Any]) -> None:
    reader = MessageStreamReader()
    for event in events:
        try:
            chunk = reader.read(event)
        except ClaudeRelayError:
            return
        assert isinstance(chunk.content, str)
        if chunk.usage is not None:
            normalize_usage(chunk.usage)
    if reader.usage is not None:
        normalize_usage(reader.usage)


def test_structured_output_objects_are_closed_as_claude_requires() -> None:
    # Claude's structured outputs take closed objects only: without strict=True the nested ones
    # went open (a 400 from Claude; the emulator did not check it)
    nested = {
        "type": "object",
        "properties": {
            "addr": {"$ref": "#/$defs/Addr"},
            "tags": {"type": "array", "items": {"type": "object", "properties": {}}},
            "either": {"anyOf": [{"type": "object", "properties": {"x": {"type": "string"}}}]},
        },
        "required": ["addr"],
        "$defs": {"Addr": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": nested}}
    schema = render_messages_payload(_req(), {"response_format": fmt})["output_config"]["format"][
        "schema"
    ]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Addr"]["additionalProperties"] is False
    assert schema["properties"]["tags"]["items"]["additionalProperties"] is False
    assert schema["properties"]["either"]["anyOf"][0]["additionalProperties"] is False
    assert schema["required"] == ["addr"]  # which properties are required stays as written
    assert "additionalProperties" not in nested  # the user's schema is not modified


def test_a_structured_output_object_that_allows_other_properties_is_refused_by_name() -> None:
    # a dict field (additionalProperties: a schema) cannot be closed without changing what it
    # means; Claude refuses it there, so it is refused before sending, saying where
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    schema = {"type": "object", "properties": {"counts": counts}, "required": ["counts"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    with pytest.raises(RequestValidationError, match=r"properties\.counts allows other properties"):
        render_messages_payload(_req(), {"response_format": fmt})
    nullable = {"type": "object", "properties": {"x": {"type": ["object", "null"]}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": nullable}}
    sent = render_messages_payload(_req(), {"response_format": fmt})["output_config"]["format"]
    assert sent["schema"]["properties"]["x"]["additionalProperties"] is False
