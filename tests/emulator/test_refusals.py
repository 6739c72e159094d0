"""The emulator refuses the generation settings Claude refuses together, with Claude's 400.

Extended thinking with a forced tool choice, a thinking budget not below ``max_tokens`` (every
path: a relay forwards them to Claude) and a ``max_tokens: 0`` that is no cache pre-warm
(Messages paths). Each refusal sits next to the neighbouring request Claude serves, so the
package's own tests catch the package sending the refused one and only that.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import (
    BUDGET_NOT_BELOW_MAX,
    THINKING_FORCED_TOOL,
    WARMUP_ONLY,
    InvalidRequest,
    check_generation_payload,
    parse_anthropic,
    parse_openai,
)
from langchain_claude_relay.emulator.replies import make_reply, reply_spec
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer

from .conftest import MODEL

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
BEDROCK = f"/model/{MODEL}/invoke"
VERTEX = f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
NATIVE: dict[str, dict[str, Any]] = {
    ANTHROPIC: {"model": MODEL},
    BEDROCK: {"anthropic_version": "bedrock-2023-05-31"},
    VERTEX: {"anthropic_version": "vertex-2023-10-16"},
}
PATHS: dict[str, dict[str, Any]] = {OPENAI: {"model": MODEL}, **NATIVE}
PATH_IDS = ["openai", "anthropic", "bedrock", "vertex"]
NATIVE_IDS = PATH_IDS[1:]

ASK = [{"role": "user", "content": "hello"}]
MARKED_ASK = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}],
    }
]
NATIVE_TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
ADAPTIVE = {"type": "adaptive"}
BUDGET = {"type": "enabled", "budget_tokens": 1024}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,  # Claude's structured outputs take closed objects only
}
COUNT = EmulatorTokenizer().count_text


def tools_of(path: str) -> list[dict[str, Any]]:
    return [OPENAI_TOOL if path == OPENAI else NATIVE_TOOL]


def forcing(path: str) -> list[Any]:
    """The tool choices that force a tool, in the path's spelling."""
    if path == OPENAI:
        return ["required", {"type": "function", "function": {"name": "get_weather"}}]
    return [{"type": "any"}, {"type": "tool", "name": "get_weather"}]


def free(path: str) -> list[Any]:
    """The tool choices that leave the model free, in the path's spelling."""
    if path == OPENAI:
        return ["auto", "none"]
    return [{"type": "auto"}, {"type": "none"}]


@pytest.fixture
def raw(emu: RelayEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.root_url, timeout=10) as client:
        yield client


def post(raw: httpx.Client, path: str, **fields: Any) -> httpx.Response:
    body = {**PATHS[path], "messages": ASK, **fields}
    if path != OPENAI:
        body.setdefault("max_tokens", 2000)
    return raw.post(path, json=body)


def refusal(path: str, response: httpx.Response) -> str:
    """The message of a 400 ``invalid_request_error`` in the path's error shape."""
    assert response.status_code == 400, response.text
    body = response.json()
    if path.startswith("/model/"):  # Bedrock's own error shape
        assert response.headers["x-amzn-errortype"] == "ValidationException"
        return str(body["message"])
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


def assert_refused(emu: RelayEmulator, path: str, response: httpx.Response, message: str) -> None:
    assert refusal(path, response).startswith(message)
    assert emu.request_log[-1].outcome == "error:400"
    assert emu.billing_log == []


def assert_served(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# -- 1. thinking with a forced tool choice ------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS), ids=PATH_IDS)
@pytest.mark.parametrize("thinking", [ADAPTIVE, BUDGET], ids=["adaptive", "enabled"])
@pytest.mark.parametrize("which", [0, 1], ids=["any-or-required", "named-tool"])
def test_thinking_with_a_forced_tool_choice_is_refused(
    emu: RelayEmulator, raw: httpx.Client, path: str, thinking: dict[str, Any], which: int
) -> None:
    choice = forcing(path)[which]
    response = post(raw, path, tools=tools_of(path), tool_choice=choice, thinking=thinking)
    assert_refused(emu, path, response, THINKING_FORCED_TOOL)
    assert refusal(path, response) == THINKING_FORCED_TOOL  # Claude's wording, whole


@pytest.mark.parametrize("path", list(PATHS), ids=PATH_IDS)
@pytest.mark.parametrize("which", [0, 1], ids=["auto", "none"])
def test_thinking_with_a_free_tool_choice_is_served(
    raw: httpx.Client, path: str, which: int
) -> None:
    choice = free(path)[which]
    assert_served(post(raw, path, tools=tools_of(path), tool_choice=choice, thinking=ADAPTIVE))


@pytest.mark.parametrize("path", list(PATHS), ids=PATH_IDS)
@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}], ids=["absent", "disabled"])
def test_a_forced_tool_choice_without_thinking_is_served(
    raw: httpx.Client, path: str, thinking: dict[str, Any] | None
) -> None:
    extra = {} if thinking is None else {"thinking": thinking}
    body = assert_served(
        post(raw, path, tools=tools_of(path), tool_choice=forcing(path)[0], **extra)
    )
    if path == OPENAI:
        assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    else:
        assert body["content"][0]["name"] == "get_weather"


def test_the_openai_sdk_sees_thinking_with_required_as_a_bad_request(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="Thinking may not be enabled"):
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            tools=[OPENAI_TOOL],  # type: ignore[list-item]
            tool_choice="required",
            extra_body={"thinking": ADAPTIVE},
        )


# -- 2. thinking budget against max_tokens -----------------------------------------------


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
@pytest.mark.parametrize("budget", [1024, 4096], ids=["equal", "above"])
def test_a_budget_not_below_max_tokens_is_refused_natively(
    emu: RelayEmulator, raw: httpx.Client, path: str, budget: int
) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    response = post(raw, path, max_tokens=1024, thinking=thinking)
    assert_refused(emu, path, response, BUDGET_NOT_BELOW_MAX)
    assert f"max_tokens=1024, budget_tokens={budget}" in refusal(path, response)


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
def test_a_budget_below_max_tokens_is_served_natively(raw: httpx.Client, path: str) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1023}
    assert_served(post(raw, path, max_tokens=1024, thinking=thinking))
    assert_served(post(raw, path, max_tokens=1024, thinking=ADAPTIVE))  # no budget


@pytest.mark.parametrize("name", ["max_completion_tokens", "max_tokens"])
@pytest.mark.parametrize("budget", [1024, 4096], ids=["equal", "above"])
def test_a_budget_not_below_the_given_cap_is_refused_on_the_chat_path(
    emu: RelayEmulator, raw: httpx.Client, name: str, budget: int
) -> None:
    thinking = {"type": "enabled", "budget_tokens": budget}
    response = post(raw, OPENAI, thinking=thinking, **{name: 1024})
    assert_refused(emu, OPENAI, response, BUDGET_NOT_BELOW_MAX)
    assert f"{name}=1024" in refusal(OPENAI, response)


def test_the_chat_path_checks_the_budget_only_against_a_given_cap(raw: httpx.Client) -> None:
    huge = {"type": "enabled", "budget_tokens": 32000}
    assert_served(post(raw, OPENAI, thinking=huge))  # no cap given: nothing to compare
    small = {"type": "enabled", "budget_tokens": 1000}
    assert_served(post(raw, OPENAI, thinking=small, max_completion_tokens=1024))
    assert_served(
        post(raw, OPENAI, thinking={"type": "disabled", "budget_tokens": 5000}, max_tokens=10)
    )


# -- 3. max_tokens 0: a cache pre-warm only ----------------------------------------------


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"messages": ASK}, "no cache_control breakpoint"),
        ({"thinking": ADAPTIVE}, "extended thinking"),
        ({"thinking": BUDGET}, "extended thinking"),
        ({"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}, "structured"),
        ({"output_format": {"type": "json_schema", "schema": SCHEMA}}, "structured outputs"),
        ({"tools": [NATIVE_TOOL], "tool_choice": {"type": "any"}}, "a forced tool choice"),
        (
            {"tools": [NATIVE_TOOL], "tool_choice": {"type": "tool", "name": "get_weather"}},
            "a forced tool choice",
        ),
    ],
    ids=[
        "no-marker",
        "adaptive-thinking",
        "enabled-thinking",
        "output-config-format",
        "output-format",
        "any",
        "named-tool",
    ],
)
def test_max_tokens_zero_that_is_no_prewarm_is_refused(
    emu: RelayEmulator, raw: httpx.Client, path: str, extra: dict[str, Any], reason: str
) -> None:
    body = {"messages": MARKED_ASK, **extra}
    response = post(raw, path, max_tokens=0, **body)
    assert_refused(emu, path, response, WARMUP_ONLY)
    assert reason in refusal(path, response)


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"thinking": {"type": "disabled"}},
        {"output_config": {"effort": "high"}},  # no format: not structured outputs
        {"tools": [NATIVE_TOOL], "tool_choice": {"type": "auto"}},
        {"tools": [NATIVE_TOOL], "tool_choice": {"type": "none"}},
    ],
    ids=["plain", "thinking-disabled", "effort-only", "auto", "none"],
)
def test_max_tokens_zero_with_a_marker_warms_the_cache(
    emu: RelayEmulator, raw: httpx.Client, path: str, extra: dict[str, Any]
) -> None:
    body = assert_served(post(raw, path, max_tokens=0, messages=MARKED_ASK, **extra))
    assert (body["content"], body["stop_reason"]) == ([], "max_tokens")
    assert emu.billing_log[-1].output_tokens == 0


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
def test_a_marked_tool_is_a_breakpoint_for_a_prewarm(raw: httpx.Client, path: str) -> None:
    tool = {**NATIVE_TOOL, "cache_control": {"type": "ephemeral"}}
    assert_served(post(raw, path, max_tokens=0, tools=[tool]))


@pytest.mark.parametrize("path", [ANTHROPIC, VERTEX], ids=["anthropic", "vertex"])
def test_a_top_level_cache_control_is_a_breakpoint_for_a_prewarm(
    raw: httpx.Client, path: str
) -> None:
    assert_served(post(raw, path, max_tokens=0, cache_control={"type": "ephemeral"}))


def test_the_chat_path_keeps_serving_max_tokens_zero(raw: httpx.Client) -> None:
    """No warm-up rule on the chat path: an unmarked 0 is answered with an empty, cut reply."""
    body = assert_served(post(raw, OPENAI, max_tokens=0))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0


def test_the_anthropic_sdk_sees_an_unmarked_prewarm_as_a_bad_request(emu: RelayEmulator) -> None:
    anthropic = pytest.importorskip("anthropic")
    sdk = anthropic.Anthropic(base_url=emu.root_url, api_key="test", max_retries=0)
    with sdk, pytest.raises(anthropic.BadRequestError, match="cache pre-warming"):
        sdk.messages.create(model=MODEL, max_tokens=0, messages=ASK)


def test_token_counting_takes_no_max_tokens_and_no_refusal(raw: httpx.Client) -> None:
    """The rules are about generating: count_tokens has no ``max_tokens`` to check."""
    body = {"model": MODEL, "messages": ASK, "thinking": BUDGET}
    assert raw.post("/v1/messages/count_tokens", json=body).status_code == 200


# -- the rules as a pure function ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "native", "message"),
    [
        ({"thinking": ADAPTIVE, "tool_choice": {"type": "any"}}, True, THINKING_FORCED_TOOL),
        ({"thinking": ADAPTIVE, "tool_choice": "required"}, False, THINKING_FORCED_TOOL),
        ({"thinking": ADAPTIVE, "tool_choice": {"type": "auto"}}, True, None),
        ({"thinking": ADAPTIVE, "tool_choice": "none"}, False, None),
        ({"thinking": {"type": "disabled"}, "tool_choice": "required"}, False, None),
        ({"thinking": BUDGET, "max_tokens": 1024}, True, BUDGET_NOT_BELOW_MAX),
        ({"thinking": BUDGET, "max_tokens": 1025}, True, None),
        (
            {"thinking": BUDGET, "max_completion_tokens": 1000, "max_tokens": 9000},
            False,
            BUDGET_NOT_BELOW_MAX,
        ),
        ({"thinking": BUDGET}, False, None),
        ({"max_tokens": 0}, True, WARMUP_ONLY),  # the unmarked ASK
        ({"max_tokens": 0}, False, None),
        ({"max_tokens": 0, "cache_control": {"type": "ephemeral"}}, True, None),
        (
            {"max_tokens": 0, "cache_control": {"type": "ephemeral"}, "thinking": BUDGET},
            True,
            WARMUP_ONLY,
        ),
    ],
)
def test_check_generation_payload(
    fields: dict[str, Any], native: bool, message: str | None
) -> None:
    payload = {"model": MODEL, "messages": ASK, **fields}
    request = (parse_anthropic if native else parse_openai)(payload)
    if message is None:
        check_generation_payload(payload, request, native=native)
    else:
        with pytest.raises(InvalidRequest) as caught:
            check_generation_payload(payload, request, native=native)
        assert str(caught.value).startswith(message)


# -- 4. structured outputs follow the schema after a tool result --------------------------

CALLED = [
    {"role": "user", "content": "What is the weather in 'Oslo'?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]
NATIVE_CALLED = [
    {"role": "user", "content": "What is the weather in 'Oslo'?"},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "c1", "name": "get_weather", "input": {}}],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"}]},
]
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "out", "schema": SCHEMA}}


def chat_reply(messages: list[dict[str, Any]], **extra: Any) -> Any:
    payload = {"model": MODEL, "messages": messages, "tools": [OPENAI_TOOL], **extra}
    return make_reply(reply_spec(payload, parse_openai(payload)), COUNT)


@pytest.mark.parametrize("messages", [ASK, CALLED], ids=["first-turn", "after-tool-result"])
def test_a_required_schema_shapes_every_text_reply(messages: list[dict[str, Any]]) -> None:
    reply = chat_reply(messages, response_format=JSON_SCHEMA_FORMAT)
    assert reply.tool_calls == ()  # the agent loop still ends
    assert reply.stop_reason == "end_turn"
    assert set(json.loads(reply.text)) == {"city"}


@pytest.mark.parametrize("messages", [ASK, CALLED], ids=["first-turn", "after-tool-result"])
def test_json_object_mode_shapes_every_text_reply(messages: list[dict[str, Any]]) -> None:
    reply = chat_reply(messages, response_format={"type": "json_object"})
    assert reply.tool_calls == ()
    assert isinstance(json.loads(reply.text), dict)


def test_without_a_format_the_reply_after_a_tool_result_is_prose() -> None:
    reply = chat_reply(CALLED)
    assert reply.text.startswith("Tool result noted:")


def test_a_forced_tool_not_called_yet_still_comes_before_the_schema() -> None:
    other = {
        "type": "function",
        "function": {"name": "final_answer", "parameters": SCHEMA},
    }
    reply = chat_reply(
        CALLED,
        tools=[OPENAI_TOOL, other],
        tool_choice={"type": "function", "function": {"name": "final_answer"}},
        response_format=JSON_SCHEMA_FORMAT,
    )
    assert [c.name for c in reply.tool_calls] == ["final_answer"]


def test_the_schema_after_a_tool_result_through_the_chat_path(raw: httpx.Client) -> None:
    body = assert_served(
        post(raw, OPENAI, messages=CALLED, tools=[OPENAI_TOOL], response_format=JSON_SCHEMA_FORMAT)
    )
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert json.loads(choice["message"]["content"]) == {"city": "example"}


@pytest.mark.parametrize("path", list(NATIVE), ids=NATIVE_IDS)
def test_the_schema_after_a_tool_result_through_the_native_paths(
    raw: httpx.Client, path: str
) -> None:
    fmt = {"format": {"type": "json_schema", "schema": SCHEMA}}
    body = assert_served(
        post(raw, path, messages=NATIVE_CALLED, tools=[NATIVE_TOOL], output_config=fmt)
    )
    assert body["stop_reason"] == "end_turn"
    assert json.loads(body["content"][0]["text"]) == {"city": "example"}
