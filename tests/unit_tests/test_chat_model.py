"""ChatClaudeRelay against a fake relay: the wire request, usage, errors, retries, streaming."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx2
import pytest
from fake_relay import CANARY_KEY, completion, sse, stream_events
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_claude_relay import (
    APIConnectionError,
    APIResponseError,
    ChatClaudeRelay,
    RateLimitError,
    RequestValidationError,
)
from langchain_claude_relay.errors import AuthenticationError, BadRequestError, OverloadedError

EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


# -- the wire request keeps every marker the user placed ------------------------------------


def test_user_markers_pass_through_untouched(make_llm, relay) -> None:
    llm = make_llm()
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        "cache_control": ONE_HOUR,
    }
    messages = [
        SystemMessage([{"type": "text", "text": "You are terse.", "cache_control": ONE_HOUR}]),
        SystemMessage("Second system part."),
        HumanMessage(
            [
                {"type": "text", "text": "big document", "cache_control": EPHEMERAL},
                {"type": "text", "text": "question"},
            ]
        ),
        AIMessage(
            "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]
        ),
        ToolMessage(
            [{"type": "text", "text": "sunny", "cache_control": EPHEMERAL}], tool_call_id="call_1"
        ),
        HumanMessage("thanks"),
    ]
    llm.bind_tools([weather]).invoke(messages)
    body = relay.last
    assert body["tools"][0]["cache_control"] == ONE_HOUR
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"] == [
        {"type": "text", "text": "You are terse.", "cache_control": ONE_HOUR},
        {"type": "text", "text": "Second system part."},
    ]
    assert body["messages"][1]["content"][0] == {
        "type": "text",
        "text": "big document",
        "cache_control": EPHEMERAL,
    }
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": [{"type": "text", "text": "sunny", "cache_control": EPHEMERAL}],
    }
    assert body["messages"][4] == {"role": "user", "content": "thanks"}


def test_marker_on_message_means_last_part(make_llm, relay) -> None:
    llm = make_llm()
    llm.invoke([HumanMessage("hello", additional_kwargs={"cache_control": EPHEMERAL})])
    assert relay.last["messages"][0]["content"] == [
        {"type": "text", "text": "hello", "cache_control": EPHEMERAL}
    ]


def test_tool_marker_inside_function_is_kept(make_llm, relay) -> None:
    tool_dict = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {}},
            "cache_control": EPHEMERAL,
        },
    }
    make_llm().bind_tools([tool_dict]).invoke("hi")
    assert relay.last["tools"][0]["cache_control"] == EPHEMERAL


def test_images_base64_and_url(make_llm, relay) -> None:
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5Er"
        "kJggg=="
    )
    make_llm().invoke(
        [
            HumanMessage(
                [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "image", "base64": png, "mime_type": "image/png"},
                    {"type": "image", "source_type": "url", "url": "https://example.com/dog.png"},
                ]
            )
        ]
    )
    parts = relay.last["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    assert parts[3]["image_url"]["url"] == "https://example.com/dog.png"


def test_sampling_settings_and_extras_reach_the_body(make_llm, relay) -> None:
    llm = make_llm(
        model="claude-haiku-4-5",  # takes temperature, top_p and top_k together
        temperature=0.2,
        max_tokens=4077,
        top_p=0.9,
        top_k=5,
        stop_sequences=["END"],
        extra_body={"relay_option": 1},
    )
    llm.invoke("hi")
    body = relay.last
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 4077
    assert body["top_p"] == 0.9
    assert body["top_k"] == 5
    assert body["stop"] == ["END"]
    assert body["relay_option"] == 1
    make_llm(model="claude-sonnet-4-6", thinking={"type": "enabled", "budget_tokens": 2048}).invoke(
        "hi"
    )
    assert relay.last["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_model_override_per_call(make_llm, relay) -> None:
    make_llm().invoke("hi", model="claude-opus-4-8")
    assert relay.last["model"] == "claude-opus-4-8"


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("any", "required"),
        ("required", "required"),
        ("auto", "auto"),
        ("none", "none"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(make_llm, relay, choice, wire) -> None:
    llm = make_llm(model="claude-sonnet-4-6")  # takes a forced tool (Sonnet 5.5 does not)
    llm.bind_tools([get_weather], tool_choice=choice).invoke("weather in Paris?")
    assert relay.last["tool_choice"] == wire


def test_tool_choice_naming_an_unbound_tool_is_refused(make_llm) -> None:
    with pytest.raises(RequestValidationError, match="names no bound tool"):
        make_llm().bind_tools([get_weather], tool_choice="get_time")


# -- responses -----------------------------------------------------------------------------


def test_tool_calls_are_parsed(make_llm, relay) -> None:
    relay.queue(
        completion(
            "",
            tool_calls=[
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_10",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{not json"},
                },
            ],
            finish_reason="tool_calls",
        )
    )
    msg = make_llm().bind_tools([get_weather]).invoke("weather?")
    assert msg.tool_calls == [
        {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_9", "type": "tool_call"}
    ]
    assert msg.invalid_tool_calls[0]["id"] == "call_10"
    assert msg.response_metadata["finish_reason"] == "tool_calls"


class Person(BaseModel):
    name: str
    age: int


def test_structured_output_function_calling(make_llm, relay) -> None:
    relay.queue(
        completion(
            "",
            tool_calls=[
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "Person", "arguments": '{"name": "Ada", "age": 36}'},
                }
            ],
        )
    )
    result = make_llm(model="claude-sonnet-4-6").with_structured_output(Person).invoke("who?")
    assert result == Person(name="Ada", age=36)
    assert relay.last["tool_choice"] == {"type": "function", "function": {"name": "Person"}}


def test_structured_output_json_schema(make_llm, relay) -> None:
    relay.queue(completion('{"name": "Ada", "age": 36}'))
    result = (
        make_llm()
        .with_structured_output(Person, method="json_schema", include_raw=True)
        .invoke("who?")
    )
    assert result["parsed"] == Person(name="Ada", age=36)
    assert relay.last["response_format"]["type"] == "json_schema"
    assert (
        relay.last["response_format"]["json_schema"]["schema"]["properties"]["age"]["type"]
        == "integer"
    )


def test_usage_and_cost_from_a_litellm_style_relay(make_llm, relay) -> None:
    relay.queue(
        completion(
            usage={
                "prompt_tokens": 5000,
                "completion_tokens": 100,
                "prompt_tokens_details": {"cached_tokens": 3000},
                "cache_read_input_tokens": 3000,
                "cache_creation_input_tokens": 1500,
            }
        )
    )
    msg = make_llm().invoke("hi")
    assert msg.usage_metadata["input_tokens"] == 5000
    assert msg.usage_metadata["input_token_details"]["cache_read"] == 3000
    details = msg.usage_metadata["input_token_details"]
    assert details["ephemeral_5m_input_tokens"] + details["ephemeral_1h_input_tokens"] == 1500
    # the default model, sonnet-5-5: 500 plain * 2 + 3000 * 0.2 + 1500 * 2.5 + 100 * 10, per MTok
    expected = (500 * 2 + 3000 * 0.2 + 1500 * 2.5 + 100 * 10) / 1e6
    assert msg.response_metadata["cost_usd"] == pytest.approx(expected)


# -- streaming -------------------------------------------------------------------------------


def _sse_response(events: list[Any], *, done: bool = True) -> httpx2.Response:
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse(events, done=done).encode()
    )


def test_stream_text_and_usage(make_llm, relay) -> None:
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 1500},
        "cache_creation_input_tokens": 400,
    }
    relay.queue(_sse_response(stream_events("Hello there", usage)))
    chunks = list(make_llm().stream("hi"))
    assert relay.last["stream"] is True
    assert relay.last["stream_options"] == {"include_usage": True}
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert full.content == "Hello there"
    assert full.usage_metadata["input_tokens"] == 2000
    assert full.usage_metadata["input_token_details"]["cache_read"] == 1500
    assert full.response_metadata["finish_reason"] == "stop"
    assert full.response_metadata["model_name"] == "claude-sonnet-4-6"


async def test_astream_tool_call_chunks(make_llm, relay) -> None:
    events = [
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]},
                    "finish_reason": "tool_calls",
                }
            ],
        },
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9}},
    ]
    relay.queue(_sse_response(events))
    full = None
    async for chunk in make_llm().bind_tools([get_weather]).astream("weather?"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls == [
        {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_1", "type": "tool_call"}
    ]
    assert full.usage_metadata["output_tokens"] == 9


def test_invoke_with_streaming_true_uses_the_stream(make_llm, relay) -> None:
    relay.queue(_sse_response(stream_events("abcdef")))
    msg = make_llm(streaming=True).invoke("hi")
    assert msg.content == "abcdef"
    assert relay.last["stream"] is True


def test_cut_stream_raises_typed_error(make_llm, relay) -> None:
    relay.queue(_sse_response(stream_events("abcdef")[:2], done=False))
    with pytest.raises(APIResponseError, match="cut"):
        list(make_llm().stream("hi"))


def test_stream_is_retried_before_its_first_chunk(make_llm, relay) -> None:
    relay.queue(
        httpx2.Response(503, json={"error": {"message": "busy"}}),
        _sse_response(stream_events("ok!")),
    )
    chunks = list(make_llm().stream("hi"))
    assert "".join(c.content for c in chunks) == "ok!"
    assert len(relay.requests) == 2


# -- errors and retries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "error", "fragment"),
    [
        (
            httpx2.Response(401, json={"error": {"message": "invalid x-api-key"}}),
            AuthenticationError,
            "API key",
        ),
        (
            httpx2.Response(
                400,
                json={
                    "error": {
                        "message": (
                            "A maximum of 4 blocks with cache_control may be provided. Found 5."
                        )
                    }
                },
            ),
            BadRequestError,
            "at most 4",
        ),
        (
            httpx2.Response(200, text="<html><body>502 Bad Gateway</body></html>"),
            APIResponseError,
            "not JSON",
        ),
        (httpx2.Response(200, text=""), APIResponseError, "empty body"),
        (
            httpx2.Response(200, json={"id": "x", "object": "chat.completion"}),
            APIResponseError,
            "without 'choices'",
        ),
        (
            httpx2.Response(
                200, json=completion(usage={"prompt_tokens": -5, "completion_tokens": 1})
            ),
            APIResponseError,
            "negative",
        ),
    ],
)
def test_bad_answers_become_typed_errors(make_llm, relay, response, error, fragment) -> None:
    relay.handler = lambda _body: response
    with pytest.raises(error, match=fragment):
        make_llm(max_retries=0).invoke("hi")


def test_retries_then_succeeds(make_llm, relay) -> None:
    relay.queue(
        httpx2.Response(
            429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}}
        ),
        httpx2.Response(529, json={"error": {"type": "overloaded_error", "message": "Overloaded"}}),
        completion("finally"),
    )
    assert make_llm(max_retries=2).invoke("hi").content == "finally"
    assert len(relay.requests) == 3


def test_gives_up_after_the_budget_with_the_last_error(make_llm, relay) -> None:
    relay.handler = lambda _b: httpx2.Response(
        529, json={"error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    with pytest.raises(OverloadedError) as info:
        make_llm(max_retries=2).invoke("hi")
    assert info.value.status_code == 529
    assert "Overloaded" in info.value.body_excerpt
    assert len(relay.requests) == 3


def test_400_is_not_retried(make_llm, relay) -> None:
    relay.handler = lambda _b: httpx2.Response(400, json={"error": {"message": "bad"}})
    with pytest.raises(BadRequestError):
        make_llm(max_retries=3).invoke("hi")
    assert len(relay.requests) == 1


def test_connection_errors_are_typed_and_retried(make_llm, relay) -> None:
    relay.queue(httpx2.ConnectError("refused"), completion("back"))
    assert make_llm().invoke("hi").content == "back"
    relay.handler = lambda _b: (_ for _ in ()).throw(httpx2.ConnectError("refused"))
    with pytest.raises(APIConnectionError):
        make_llm(max_retries=1).invoke("hi")


async def test_async_retry_and_rate_limit_error(make_llm, relay) -> None:
    relay.handler = lambda _b: httpx2.Response(
        429, headers={"retry-after": "1"}, json={"error": {"message": "rate"}}
    )
    with pytest.raises(RateLimitError) as info:
        await make_llm(max_retries=1).ainvoke("hi")
    assert info.value.retry_after == 1.0
    assert len(relay.requests) == 2


# -- bad input is refused before anything is sent ----------------------------------------------


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([HumanMessage("")], "empty content"),
        ([HumanMessage([{"type": "audio", "data": "x"}])], "unsupported content part type 'audio'"),
        (
            [
                HumanMessage(
                    [
                        {
                            "type": "text",
                            "text": "a",
                            "cache_control": {"type": "ephemeral", "ttl": "10m"},
                        }
                    ]
                )
            ],
            "ttl",
        ),
        (
            [
                HumanMessage(
                    [{"type": "text", "text": "a", "cache_control": {"type": "persistent"}}]
                )
            ],
            "ephemeral",
        ),
        ([SystemMessage("only a system prompt")], "add a user message"),
        (
            [
                HumanMessage(
                    [{"type": "image", "base64": "A" * (8 * 1024 * 1024), "mime_type": "image/png"}]
                )
            ],
            "5 MB",
        ),
        ([ToolMessage("r", tool_call_id="")], "tool_call_id"),
        ([], "empty"),
    ],
)
def test_bad_input_is_refused_before_sending(make_llm, relay, messages, fragment) -> None:
    with pytest.raises(RequestValidationError, match=fragment):
        make_llm().invoke(messages)
    assert relay.requests == []


def test_more_than_four_user_markers_is_refused(make_llm, relay) -> None:
    parts = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(RequestValidationError, match="4"):
        make_llm().invoke([HumanMessage(parts)])
    assert relay.requests == []


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        ChatClaudeRelay(base_url="http://relay.example.com/v1", api_key="k")
    assert ChatClaudeRelay(
        base_url="http://relay.example.com/v1", api_key="k", allow_insecure_http=True
    )
    assert ChatClaudeRelay(base_url="http://127.0.0.1:8787/v1", api_key="k")


def test_missing_base_url_is_a_clear_error() -> None:
    llm = ChatClaudeRelay(api_key="k")
    with pytest.raises(RequestValidationError, match="CLAUDE_RELAY_BASE_URL"):
        llm.invoke("hi")


# -- secrets ---------------------------------------------------------------------------------


def test_canary_key_never_leaks(make_llm, relay, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    llm = make_llm(max_retries=1)
    relay.handler = lambda _b: httpx2.Response(
        401, json={"error": {"message": f"invalid key {CANARY_KEY}"}}
    )
    with pytest.raises(AuthenticationError) as info:
        llm.invoke("hi")
    assert relay.headers[-1]["authorization"] == f"Bearer {CANARY_KEY}"  # it was sent...
    for text in (
        repr(llm),
        str(llm),
        str(info.value),
        repr(info.value),
        info.value.body_excerpt,
        json.dumps(dumpd(llm)),
        caplog.text,
    ):
        assert CANARY_KEY not in text  # ...and shown nowhere


def test_construction_is_lazy() -> None:
    llm = ChatClaudeRelay(base_url="https://relay.example.com/v1", api_key="k")
    assert "_transport" not in llm.__dict__


@pytest.mark.parametrize("streamed", [True, False])
def test_a_per_call_stream_argument_chooses_how_the_call_is_made(
    make_llm, relay, streamed: bool
) -> None:
    # LangChain's invoke(..., stream=...) reached _prepare twice: a bare TypeError
    def answer(body: dict[str, Any]) -> httpx2.Response:
        if body.get("stream"):
            events = sse(stream_events(["Hel", "lo"]))
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=events.encode()
            )
        return httpx2.Response(200, json=completion(usage={"prompt_tokens": 1}))

    relay.handler = answer
    llm = make_llm()
    assert llm.invoke("hi", stream=streamed).content
    assert bool(relay.last.get("stream")) is streamed
    assert asyncio.run(llm.ainvoke("hi", stream=streamed)).content
    assert bool(relay.last.get("stream")) is streamed
