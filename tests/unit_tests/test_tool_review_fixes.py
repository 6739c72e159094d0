"""Tool input checked before sending, and tool calls a relay answers made answerable.

Server tools are refused (not turned into empty client tools); a ``tool_choice`` is read the one
way ``request.claude_tool_choice`` reads it, and sent only with tools; tool names are Claude's;
a tool call answered without an id gets one; a legacy ``function_call`` is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import reduce
from operator import add
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, completion, sse
from langchain_core.messages import AIMessageChunk, ToolMessage
from pydantic import BaseModel

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._convert import check_tool_choice, convert_tool, to_claude_request
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import claude_tool_choice
from langchain_claude_relay.wire.anthropic_messages import _tool_choice, render_messages_payload
from langchain_claude_relay.wire.openai_chat import (
    ChatChunkReader,
    parse_chat_completion,
    render_chat_payload,
    render_tool_choice_fields,
)

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SERVER_TOOLS = [
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    {"type": "text_editor_20250124", "name": "str_replace_editor"},
    {"type": "code_execution_20250522", "name": "code_execution"},
]

# -- 1. server tools -------------------------------------------------------------------------------


@pytest.mark.parametrize("server_tool", SERVER_TOOLS, ids=lambda t: t["type"])
def test_server_tool_dict_is_refused_not_sent_as_an_empty_client_tool(
    server_tool: dict[str, Any], relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    with pytest.raises(RequestValidationError, match="server tool") as caught:
        convert_tool(server_tool, "tools[0]")
    assert server_tool["type"] in str(caught.value)
    llm = make_llm()
    with pytest.raises(RequestValidationError, match="not supported"):
        llm.bind_tools([server_tool])
    with pytest.raises(RequestValidationError, match="server tool"):
        llm.invoke("search cats", tools=[server_tool])
    with pytest.raises(RequestValidationError, match="server tool"):  # every way in converts here
        to_claude_request("search cats", model=MODEL, tools=[server_tool])
    assert relay.requests == []


def test_client_tool_dicts_still_convert() -> None:
    claude_custom = {"type": "custom", "name": "c", "input_schema": {"type": "object"}}
    schema = {"title": "Person", "type": "object", "properties": {"name": {"type": "string"}}}
    assert convert_tool(WEATHER).name == "get_weather"
    assert convert_tool(claude_custom).name == "c"
    assert convert_tool(schema).name == "Person"
    assert convert_tool({"name": "bare"}).parameters == {"type": "object", "properties": {}}


# -- 2. tool_choice, tool_choice without tools, tool names ----------------------------------------


@pytest.mark.parametrize(
    "choice", [{"type": "bogus"}, {"type": "function"}, {"type": "function", "function": {}}]
)
def test_tool_choice_not_understood_is_refused_before_sending(
    choice: Any, relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    tools = [convert_tool(WEATHER)]
    with pytest.raises(RequestValidationError, match=r"not understood.*'type': 'function'"):
        check_tool_choice(choice, tools)
    with pytest.raises(RequestValidationError, match="not understood"):
        render_tool_choice_fields(choice)  # the OpenAI wire no longer sends it as given
    with pytest.raises(RequestValidationError, match="not understood"):
        make_llm().bind_tools([WEATHER], tool_choice=choice)
    with pytest.raises(RequestValidationError, match="not understood"):
        make_llm().invoke("hi", tools=[WEATHER], tool_choice=choice)
    assert relay.requests == []


def test_tool_choice_asking_for_a_call_needs_tools_in_every_spelling() -> None:
    for choice in ("any", True, {"type": "any"}):
        with pytest.raises(RequestValidationError, match="no tools are bound"):
            check_tool_choice(choice, [])


CHOICES = [
    None,
    False,
    True,
    "auto",
    "none",
    "any",
    "required",
    "get_weather",
    {"type": "auto", "disable_parallel_tool_use": True},
    {"type": "tool", "name": "get_weather"},
    {"type": "function", "function": {"name": "get_weather"}},
]


@pytest.mark.parametrize("choice", CHOICES, ids=repr)
def test_every_reader_of_tool_choice_agrees_with_claude_tool_choice(choice: Any) -> None:
    check_tool_choice(choice, [convert_tool(WEATHER)])
    assert _tool_choice(choice) == claude_tool_choice(choice)
    assert render_tool_choice_fields(choice) == render_tool_choice_fields(
        claude_tool_choice(choice)
    )


@pytest.mark.parametrize("choice", ["auto", "none", {"type": "auto"}])
def test_tool_choice_without_tools_is_not_sent_on_the_openai_way(
    choice: Any, relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    make_llm().invoke("hi", tool_choice=choice)
    assert "tool_choice" not in relay.last
    make_llm().bind_tools([], tool_choice=choice).invoke("hi")
    assert "tool_choice" not in relay.last
    assert "tools" not in relay.last
    assert "tool_choice" not in render_messages_payload(
        to_claude_request("hi", model=MODEL, tool_choice=choice), {}
    )  # as the Messages format has it


def test_parallel_tool_calls_is_sent_only_with_tools(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    llm = make_llm()
    llm.invoke("hi", parallel_tool_calls=False)
    assert "parallel_tool_calls" not in relay.last
    llm.bind_tools([], parallel_tool_calls=False).invoke("hi")
    assert "parallel_tool_calls" not in relay.last
    llm.bind_tools([WEATHER], parallel_tool_calls=False).invoke("hi")
    assert relay.last["parallel_tool_calls"] is False
    payload = render_chat_payload(
        to_claude_request(
            "hi", model=MODEL, tool_choice={"type": "auto", "disable_parallel_tool_use": True}
        )
    )
    assert "tool_choice" not in payload
    assert "parallel_tool_calls" not in payload


def test_schema_title_with_a_space_is_refused_with_a_name_to_use(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    schema = {
        "title": "Extracted Person",
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    with pytest.raises(RequestValidationError, match="'Extracted_Person'"):
        make_llm().with_structured_output(schema, method="function_calling")
    assert relay.requests == []


@pytest.mark.parametrize("name", ["get.weather", "get weather", "météo", "x" * 129, "a/b"])
def test_tool_name_claude_does_not_take_is_refused(name: str) -> None:
    tool = {"name": name, "parameters": {"type": "object", "properties": {}}}
    with pytest.raises(RequestValidationError, match=r"tools\[0\]: tool name .*not one Claude"):
        convert_tool(tool, "tools[0]")


def test_tool_names_claude_takes_are_kept() -> None:
    class Lookup_v2(BaseModel):
        """Look up."""

        q: str

    assert convert_tool(Lookup_v2).name == "Lookup_v2"
    for name in ("a", "get-weather_2", "x" * 128):
        assert convert_tool({"name": name, "parameters": {"type": "object"}}).name == name


# -- 3. tool calls without an id -------------------------------------------------------------------


def _answer_without_ids(response_id: str | None = "chatcmpl-9") -> dict[str, Any]:
    calls = [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": '{"a": 1}'}},
    ]
    body = completion(None, tool_calls=calls, finish_reason="tool_calls")  # type: ignore[arg-type]
    body["id"] = response_id
    return body


def test_answered_tool_call_without_id_gets_one_and_can_be_answered(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    ids = [c["id"] for c in parse_chat_completion(_answer_without_ids()).tool_calls]
    assert all(i.startswith("toolu_") for i in ids)
    assert len(set(ids)) == 2
    # a relay that leaves ids out may send one answer id every time: the ids must still differ
    again = [c["id"] for c in parse_chat_completion(_answer_without_ids()).tool_calls]
    assert not set(again) & set(ids)
    no_response_id = parse_chat_completion(_answer_without_ids(None)).tool_calls
    assert all(c["id"] for c in no_response_id)

    llm = make_llm()
    relay.queue(_answer_without_ids())
    ai = llm.invoke("hi")
    ids = [c["id"] for c in ai.tool_calls]
    assert all(i.startswith("toolu_") for i in ids)
    results = [ToolMessage("ok", tool_call_id=c["id"]) for c in ai.tool_calls]
    llm.invoke(["hi", ai, *results])
    sent = relay.last["messages"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ids
    assert [m["tool_call_id"] for m in sent[2:]] == ids


def test_answered_tool_call_id_given_by_the_relay_is_kept() -> None:
    body = _answer_without_ids()
    body["choices"][0]["message"]["tool_calls"][0]["id"] = "call_1"
    assert parse_chat_completion(body).tool_calls[0]["id"] == "call_1"


def _delta(index: int | None, name: str | None = None, args: str = "", **extra: Any) -> dict:
    function: dict[str, Any] = {"arguments": args}
    if name is not None:
        function["name"] = name
    call: dict[str, Any] = {"type": "function", "function": function, **extra}
    if index is not None:
        call["index"] = index
    return {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


STREAM = [
    _delta(0, "f"),
    _delta(0, args='{"a":'),
    _delta(1, "g", "{}"),
    _delta(0, args=" 1}", id="late_id"),  # an id after the call was given one: left out
    {
        "id": "c1",
        "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    },
    {
        "id": "c1",
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    },
]


def _stream_ids(events: list[dict[str, Any]]) -> list[str | None]:
    reader = ChatChunkReader()
    return [d["id"] for e in events for d in reader.read(e).tool_call_deltas]


def test_streamed_tool_call_without_id_gets_one_id_on_its_first_chunk() -> None:
    ids = _stream_ids(STREAM)
    first, second = ids[0], ids[2]
    assert ids == [first, None, second, None]
    assert first
    assert second
    assert first != second
    assert first.startswith("toolu_")
    assert not set(_stream_ids(STREAM)) - {None} & set(ids)  # another answer: other ids
    assert _stream_ids([_delta(0, "f", id="call_1"), _delta(0, args="{}")]) == ["call_1", None]
    unindexed = _stream_ids([_delta(None, "f", "{}"), _delta(None, "g", "{}")])
    assert all(unindexed)
    assert len(set(unindexed)) == 2


def test_streamed_tool_calls_without_ids_sum_to_answerable_calls(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    relay.queue(
        httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse(STREAM).encode()
        )
    )
    llm = make_llm()
    message = reduce(add, llm.stream("hi"))
    assert isinstance(message, AIMessageChunk)
    calls = message.tool_calls
    assert [(c["name"], c["args"]) for c in calls] == [("f", {"a": 1}), ("g", {})]
    assert all(str(c["id"]).startswith("toolu_") for c in calls)
    assert len({c["id"] for c in calls}) == 2
    results = [ToolMessage("ok", tool_call_id=str(c["id"])) for c in calls]
    llm.invoke(["hi", message, *results])
    assert [m["tool_call_id"] for m in relay.last["messages"][2:]] == [c["id"] for c in calls]


# -- 4. a legacy function_call ---------------------------------------------------------------------


def test_legacy_function_call_is_kept_not_dropped_nor_made_a_tool_call() -> None:
    body = completion(None)  # type: ignore[arg-type]
    legacy = {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    body["choices"][0]["message"]["function_call"] = legacy
    parsed = parse_chat_completion(body)
    assert parsed.function_call == legacy
    assert parsed.tool_calls == []
    assert parse_chat_completion(completion("hi")).function_call is None


def test_a_legacy_function_call_reaches_the_message(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    body = completion(None)  # type: ignore[arg-type]
    legacy = {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}
    body["choices"][0]["message"]["function_call"] = legacy
    relay.queue(body)
    answer = make_llm().invoke("weather?")
    assert answer.additional_kwargs["function_call"] == legacy
    assert answer.tool_calls == []
