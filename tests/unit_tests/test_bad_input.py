"""Bad input from both sides, as tables.

The user's side: input Claude cannot take is refused with ``RequestValidationError`` (or, for a
bad setting given to the constructor, a ``ValueError`` from validation) before anything is sent:
the fake relay must have seen no request.

The relay's side: whatever a relay answers, the caller gets one of the package's typed errors
with the status and a short excerpt of the body, never a ``KeyError`` or ``TypeError``, and never
the API key.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fake_relay import CANARY_KEY, FakeRelay, completion, sse, stream_events
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.errors import (
    BODY_EXCERPT_CHARS,
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClaudeRelayError,
    CutResponseError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    RequestValidationError,
)

FIVE_MIN = {"type": "ephemeral", "ttl": "5m"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
PNG_1PX = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
BIG_IMAGE = "A" * (7 * 1024 * 1024)  # about 5.2 MB decoded
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def text(t: str, marker: dict[str, str] | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": t}
    if marker is not None:
        part["cache_control"] = marker
    return part


def human(*parts: Any) -> list[Any]:
    return [HumanMessage(list(parts))]


# -- the user's side: (messages, invoke kwargs, model settings, fragment) -----------------------

USER_SIDE: list[tuple[str, Any, dict[str, Any], str]] = [
    (
        "unknown block type",
        human({"type": "audio", "data": "x"}),
        {},
        "unsupported content part type 'audio'",
    ),
    (
        "unknown block in assistant turn",
        [HumanMessage("q"), AIMessage([{"type": "video", "url": "x"}]), HumanMessage("q2")],
        {},
        "'video'",
    ),
    (
        "thinking block in a user turn",
        human({"type": "thinking", "thinking": "hm"}),
        {},
        "unsupported content part type 'thinking'",
    ),
    ("part without a type", human({"text": "no type"}), {}, "string 'type'"),
    ("text part without text", human({"type": "text"}), {}, "string 'text'"),
    (
        "five user markers",
        human(*(text(f"p{i}", FIVE_MIN) for i in range(5))),
        {},
        "5 cache_control markers",
    ),
    (
        "five markers over system, user and tools",
        [
            SystemMessage([text("s1", FIVE_MIN), text("s2", FIVE_MIN)]),
            HumanMessage([text("u1", FIVE_MIN), text("u2", FIVE_MIN)]),
        ],
        {"tools": [{**WEATHER, "cache_control": FIVE_MIN}]},
        "at most 4",
    ),
    ("invalid ttl", human(text("a", {"type": "ephemeral", "ttl": "10m"})), {}, "ttl '10m'"),
    ("ttl given as a number", human(text("a", {"type": "ephemeral", "ttl": 300})), {}, "ttl 300"),
    (
        "marker type other than ephemeral",
        human(text("a", {"type": "persistent"})),
        {},
        "invalid cache_control",
    ),
    ("marker that is a string", human(text("a", "ephemeral")), {}, "invalid cache_control"),  # type: ignore[arg-type]
    (
        "1h marker after a 5m marker",
        [SystemMessage([text("static", FIVE_MIN)]), HumanMessage([text("q", ONE_HOUR)])],
        {},
        "1h marker",
    ),
    ("marker on an empty text part", human(text("", FIVE_MIN), text("q")), {}, "empty text part"),
    (
        "marker on a thinking block",
        [
            HumanMessage("q"),
            AIMessage([{"type": "thinking", "thinking": "t", "cache_control": FIVE_MIN}]),
            HumanMessage("q2"),
        ],
        {},
        "thinking blocks cannot",
    ),
    (
        "message marker on empty content",
        [HumanMessage([], additional_kwargs={"cache_control": FIVE_MIN})],
        {},
        "message-level cache_control",
    ),
    ("empty string content", [HumanMessage("")], {}, "empty content"),
    ("empty list content", [HumanMessage([])], {}, "empty content"),
    ("only empty text parts", human(text("")), {}, "empty content"),
    ("None content (role dict)", [{"role": "user", "content": None}], {}, "messages"),
    ("no messages", [], {}, "empty"),
    ("only a system prompt", [SystemMessage("You are helpful.")], {}, "add a user message"),
    (
        "image in a system prompt",
        [
            SystemMessage([{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]),
            HumanMessage("q"),
        ],
        {},
        "only text",
    ),
    (
        "oversized base64 image",
        human({"type": "image", "base64": BIG_IMAGE, "mime_type": "image/png"}),
        {},
        "5 MB",
    ),
    (
        "oversized data: URL",
        human({"type": "image_url", "image_url": {"url": "data:image/png;base64," + BIG_IMAGE}}),
        {},
        "5 MB",
    ),
    (
        "oversized Claude-shaped image",
        human(
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": BIG_IMAGE},
            }
        ),
        {},
        "5 MB",
    ),
    (
        "data: URL that is not base64",
        human(
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,<svg onload=alert(1)>"},
            }
        ),
        {},
        "not valid base64",
    ),
    (
        "data: URL without base64 marker",
        human({"type": "image_url", "image_url": {"url": "data:image/png,%89PNG%0D%0A"}}),
        {},
        "base64",
    ),
    (
        "image without url or data",
        human({"type": "image_url", "image_url": {}}),
        {},
        "neither a URL nor base64",
    ),
    (
        "ToolMessage without tool_call_id",
        [HumanMessage("q"), ToolMessage("result", tool_call_id="")],
        {},
        "tool_call_id",
    ),
    (
        "tool parameters not an object",
        [HumanMessage("q")],
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "t", "parameters": {"type": "array", "items": {}}},
                }
            ]
        },
        "type 'object'",
    ),
    (
        "tool parameters a list",
        [HumanMessage("q")],
        {"tools": [{"type": "function", "function": {"name": "t", "parameters": ["x"]}}]},
        "tools[0]",
    ),
    (
        "tool properties not an object",
        [HumanMessage("q")],
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "t",
                        "parameters": {"type": "object", "properties": ["city"]},
                    },
                }
            ]
        },
        "'properties' must be an object",
    ),
    (
        "tool without a name",
        [HumanMessage("q")],
        {"tools": [{"type": "function", "function": {"parameters": {"type": "object"}}}]},
        "tools[0]",
    ),
    (
        "tool with an empty name",
        [HumanMessage("q")],
        {"tools": [{"name": "", "description": "d", "parameters": {"type": "object"}}]},
        "tools[0]",
    ),
    ("tool that is a number", [HumanMessage("q")], {"tools": [42]}, "cannot read this tool"),
    (
        "tool marker with a bad ttl",
        [HumanMessage("q")],
        {"tools": [{**WEATHER, "cache_control": {"type": "ephemeral", "ttl": "2h"}}]},
        "ttl '2h'",
    ),
    (
        "tool_choice naming an unbound tool",
        [HumanMessage("q")],
        {"tools": [WEATHER], "tool_choice": "get_time"},
        "get_time",
    ),
    (
        "tool_choice without tools",
        [HumanMessage("q")],
        {"tool_choice": "get_weather"},
        "get_weather",
    ),
    (
        "thinking budget not an int",
        [HumanMessage("q")],
        {"thinking": {"type": "enabled", "budget_tokens": "lots"}},
        "budget_tokens",
    ),
    (
        "thinking budget negative",
        [HumanMessage("q")],
        {"thinking": {"type": "enabled", "budget_tokens": -5}},
        "budget_tokens",
    ),
    (
        "thinking budget under Claude's minimum",
        [HumanMessage("q")],
        {"thinking": {"type": "enabled", "budget_tokens": 100}},
        "1024",
    ),
    (
        "thinking budget a bool",
        [HumanMessage("q")],
        {"thinking": {"type": "enabled", "budget_tokens": True}},
        "budget_tokens",
    ),
    ("thinking of an unknown type", [HumanMessage("q")], {"thinking": {"type": "deep"}}, "'deep'"),
    ("thinking that is not a dict", [HumanMessage("q")], {"thinking": "adaptive"}, "thinking"),
    (
        "tool_choice of a wrong type",
        [HumanMessage("q")],
        {"tools": [WEATHER], "tool_choice": 42},
        "not understood",
    ),
    (
        "tool_choice dict naming an unbound tool",
        [HumanMessage("q")],
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        "get_time",
    ),
    (
        "Claude-style tool_choice naming an unbound tool",
        [HumanMessage("q")],
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_time"}},
        "get_time",
    ),
    (
        "tool_choice 'any' with no tools",
        [HumanMessage("q")],
        {"tool_choice": "any"},
        "no tools are bound",
    ),
]

# LangChain's own input handling refuses these (a ValueError) before our code runs: still
# before anything is sent.
LANGCHAIN_SIDE: list[tuple[str, Any, str]] = [
    ("part that is a number", [{"role": "user", "content": [42]}], "valid dictionary"),
    ("unknown role", [{"role": "wizard", "content": "hi"}], "wizard"),
    ("base64 image without a media type", human({"type": "image", "base64": PNG_1PX}), "mime_type"),
]


@pytest.mark.parametrize(
    ("messages", "fragment"), [pytest.param(m, f, id=name) for name, m, f in LANGCHAIN_SIDE]
)
def test_langchain_side_is_refused_before_sending(
    make_llm, relay: FakeRelay, messages: Any, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_llm().invoke(messages)
    assert relay.requests == []


@pytest.mark.parametrize(
    ("messages", "kwargs", "fragment"),
    [pytest.param(m, k, f, id=name) for name, m, k, f in USER_SIDE],
)
def test_user_side_is_refused_before_sending(
    make_llm, relay: FakeRelay, messages: Any, kwargs: dict[str, Any], fragment: str
) -> None:
    llm = make_llm()
    with pytest.raises(RequestValidationError) as info:
        llm.invoke(messages, **kwargs)
    assert fragment in str(info.value)
    assert relay.requests == [], "nothing may be sent for bad input"


@pytest.mark.parametrize(
    ("messages", "kwargs", "fragment"),
    [pytest.param(m, k, f, id=name) for name, m, k, f in USER_SIDE[:12]],
)
async def test_user_side_is_refused_before_sending_async_and_streaming(
    make_llm, relay: FakeRelay, messages: Any, kwargs: dict[str, Any], fragment: str
) -> None:
    llm = make_llm()
    with pytest.raises(RequestValidationError) as info:
        await llm.ainvoke(messages, **kwargs)
    assert fragment in str(info.value)
    with pytest.raises(RequestValidationError):
        list(llm.stream(messages, **kwargs))
    with pytest.raises(RequestValidationError):
        async for _ in llm.astream(messages, **kwargs):
            pass
    assert relay.requests == []


def test_bind_tools_refuses_an_unbound_tool_choice_and_bad_schemas(
    make_llm, relay: FakeRelay
) -> None:
    llm = make_llm()
    with pytest.raises(RequestValidationError, match="names no bound tool"):
        llm.bind_tools([WEATHER], tool_choice="get_time")
    with pytest.raises(RequestValidationError, match="'get_time' names no bound tool"):
        llm.bind_tools([WEATHER], tool_choice={"type": "tool", "name": "get_time"})
    with pytest.raises(RequestValidationError, match="no tools are bound"):
        llm.bind_tools([], tool_choice="any")
    with pytest.raises(RequestValidationError, match="not understood"):
        llm.bind_tools([WEATHER], tool_choice=42)  # type: ignore[arg-type]
    with pytest.raises(RequestValidationError, match="type 'object'"):
        llm.bind_tools(
            [{"type": "function", "function": {"name": "t", "parameters": {"type": "string"}}}]
        )
    assert relay.requests == []


SETTINGS_SIDE: list[tuple[str, dict[str, Any], str]] = [
    ("plain http to a remote host", {"base_url": "http://relay.example.com/v1"}, "unencrypted"),
    ("plain http to a private address", {"base_url": "http://10.0.0.5:8080/v1"}, "unencrypted"),
    (
        "plain http to a lookalike of localhost",
        {"base_url": "http://localhost.evil.example/v1"},
        "unencrypted",
    ),
    ("not an http URL", {"base_url": "ftp://relay.example.com/v1"}, "not an http(s) URL"),
    ("a URL without a host", {"base_url": "https:///v1"}, "not an http(s) URL"),
    ("thinking enabled without a budget", {"thinking": {"type": "enabled"}}, "budget_tokens"),
    (
        "thinking budget under Claude's minimum",
        {"thinking": {"type": "enabled", "budget_tokens": 100}},
        "at least 1024",
    ),
    (
        "thinking budget a bool",
        {"thinking": {"type": "enabled", "budget_tokens": True}},
        "budget_tokens",
    ),
    ("thinking of an unknown type", {"thinking": {"type": "deep"}}, "'deep'"),
    ("cache setting not understood", {"cache": "sometimes"}, "not understood"),
    (
        "the full chat endpoint as base URL",
        {"base_url": "https://relay.example.com/v1/chat/completions"},
        "base_url='https://relay.example.com/v1'",
    ),
    (
        "the Messages endpoint as base URL",
        {"base_url": "https://api.example.com/v1/messages/"},
        "base_url='https://api.example.com'",
    ),
    ("a timeout of 0", {"timeout": 0}, "timeout must be a positive number"),
    ("a negative timeout", {"timeout": -1}, "timeout must be a positive number"),
    ("an endless call", {"call_timeout": float("inf")}, "call_timeout must be a positive"),
    ("negative retries", {"max_retries": -1}, "max_retries must be 0 (no retry) or more"),
    ("a ledger that is a word", {"ledger": "yes"}, "ledger='yes' is not understood"),
    ("a ledger of True", {"ledger": True}, "ledger=True is not understood"),
]


@pytest.mark.parametrize(
    ("settings", "fragment"), [pytest.param(s, f, id=name) for name, s, f in SETTINGS_SIDE]
)
def test_bad_settings_are_refused_at_construction(settings: dict[str, Any], fragment: str) -> None:
    params = {"base_url": "https://relay.example.com/v1", "api_key": CANARY_KEY, **settings}
    with pytest.raises(ValueError) as info:
        ChatClaudeRelay(**params)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        pytest.param({"api_key": CANARY_KEY}, "no relay base URL", id="no base_url"),
        pytest.param(
            {"base_url": "https://relay.example.com/v1"}, "no relay API key", id="no api_key"
        ),
    ],
)
def test_missing_settings_are_refused_before_sending(
    settings: dict[str, Any], fragment: str
) -> None:
    llm = ChatClaudeRelay(**settings)
    with pytest.raises(RequestValidationError, match=fragment):
        llm.invoke("hi")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        pytest.param({"api_key": ""}, "api_key is empty", id="empty key"),
        pytest.param({"api_key": "   "}, "api_key is blank", id="blank key"),
        pytest.param({"api_key": " sk-relay-0123456789 "}, "whitespace", id="padded key"),
        pytest.param({"temperature": 5}, "temperature=5.0 is out of range", id="temperature"),
        pytest.param({"max_tokens": -5}, "max_tokens=-5 is invalid", id="max_tokens"),
        pytest.param({"top_p": 1.5}, "top_p=1.5 is out of range", id="top_p"),
        pytest.param({"top_k": -1}, "top_k=-1 is invalid", id="top_k"),
        pytest.param({"model_kwargs": {"temperature": 2}}, "temperature=2", id="model_kwargs"),
    ],
)
def test_bad_settings_are_refused_before_sending(
    make_llm: Callable[..., ChatClaudeRelay],
    relay: FakeRelay,
    settings: dict[str, Any],
    fragment: str,
) -> None:
    """Claude would refuse these: the user hears what is wrong and how to fix it, nothing sent."""
    with pytest.raises(RequestValidationError, match=fragment) as info:
        make_llm(**settings).invoke("hi")
    assert not relay.requests
    assert "sk-relay-0123456789" not in str(info.value)


def test_a_bad_per_call_setting_is_refused_before_sending(
    make_llm: Callable[..., ChatClaudeRelay], relay: FakeRelay
) -> None:
    with pytest.raises(RequestValidationError, match=r"temperature=1\.5 is out of range"):
        make_llm().invoke("hi", temperature=1.5)
    assert not relay.requests


def test_insecure_http_is_allowed_only_when_asked_or_to_loopback() -> None:
    assert ChatClaudeRelay(
        base_url="http://relay.example.com/v1", api_key="k", allow_insecure_http=True
    )
    for url in ("http://127.0.0.1:8787/v1", "http://localhost:8787/v1", "http://[::1]:8787/v1"):
        assert ChatClaudeRelay(base_url=url, api_key="k").base_url == url


# -- the relay's side: (response, streaming?, error type, fragment) ------------------------------

HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)
HTML_CF = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    "<body>Checking your browser</body></html>"
)
OVERLOADED_EVENT = (
    '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
)


def call(llm: ChatClaudeRelay, streaming: bool) -> None:
    """One call, streamed to its end or not."""
    if streaming:
        list(llm.stream("hi"))
    else:
        llm.invoke("hi")


async def acall(llm: ChatClaudeRelay, streaming: bool) -> None:
    """One async call, streamed to its end or not."""
    if streaming:
        async for _ in llm.astream("hi"):
            pass
    else:
        await llm.ainvoke("hi")


def html(status: int, body: str = HTML_CF) -> httpx2.Response:
    return httpx2.Response(status, headers={"content-type": "text/html"}, content=body.encode())


def raw_json(status: int, body: str) -> httpx2.Response:
    return httpx2.Response(
        status, headers={"content-type": "application/json"}, content=body.encode()
    )


def error_json(status: int, message: str, kind: str = "api_error") -> httpx2.Response:
    return httpx2.Response(
        status, json={"type": "error", "error": {"type": kind, "message": message}}
    )


def sse_response(body: str, content_type: str = "text/event-stream") -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": content_type}, content=body.encode())


def fresh(response: httpx2.Response) -> httpx2.Response:
    """A new response with the same status, headers and body (a response can be sent once)."""
    return httpx2.Response(response.status_code, headers=response.headers, content=response.content)


def body_with(**changes: Any) -> dict[str, Any]:
    body = completion(usage={"prompt_tokens": 10, "completion_tokens": 1})
    body.update(changes)
    return body


def message_with(**changes: Any) -> dict[str, Any]:
    body = completion(usage={"prompt_tokens": 10, "completion_tokens": 1})
    body["choices"][0]["message"] = {"role": "assistant", **changes}
    return body


def usage_of(usage: Any) -> dict[str, Any]:
    return completion(usage=usage)


def usage_event(usage: Any) -> str:
    return sse([*stream_events("hi")[:-1], {"id": "c1", "choices": [], "usage": usage}])


RELAY_SIDE: list[tuple[str, httpx2.Response, bool, type[ClaudeRelayError], str]] = [
    # status errors, JSON bodies
    (
        "400 cache marker limit",
        error_json(
            400,
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
            "invalid_request_error",
        ),
        False,
        BadRequestError,
        "at most 4",
    ),
    (
        "400 ttl order",
        error_json(
            400,
            "a ttl='1h' cache_control block must not come after a ttl='5m' block",
            "invalid_request_error",
        ),
        False,
        BadRequestError,
        "1h cache marker comes after",
    ),
    (
        "401 JSON",
        error_json(401, "invalid x-api-key", "authentication_error"),
        False,
        AuthenticationError,
        "check the API key",
    ),
    (
        "403 JSON",
        error_json(403, "model not allowed for this key", "permission_error"),
        False,
        PermissionDeniedError,
        "model not allowed",
    ),
    (
        "404 JSON",
        error_json(404, "model: claude-nope", "not_found_error"),
        False,
        NotFoundError,
        "ends in /v1",
    ),
    (
        "413 JSON",
        error_json(413, "request_too_large", "request_too_large"),
        False,
        RequestTooLargeError,
        "too large",
    ),
    (
        "429 JSON",
        error_json(429, "rate limited", "rate_limit_error"),
        False,
        RateLimitError,
        "rate limited",
    ),
    (
        "529 JSON",
        error_json(529, "Overloaded", "overloaded_error"),
        False,
        OverloadedError,
        "Overloaded",
    ),
    ("418 JSON", error_json(418, "teapot"), False, APIStatusError, "teapot"),
    # status errors, HTML bodies
    ("401 HTML", html(401), False, AuthenticationError, "Just a moment"),
    ("403 HTML (a WAF)", html(403), False, PermissionDeniedError, "Checking your browser"),
    (
        "404 HTML",
        html(404, "<html><body><h1>404 Not Found</h1></body></html>"),
        False,
        NotFoundError,
        "404 Not Found",
    ),
    (
        "413 HTML",
        html(413, "<html><body>413 Request Entity Too Large</body></html>"),
        False,
        RequestTooLargeError,
        "Entity Too Large",
    ),
    (
        "429 HTML",
        html(429, "<html><body>Too Many Requests</body></html>"),
        False,
        RateLimitError,
        "Too Many Requests",
    ),
    ("502 HTML", html(502, HTML_502), False, InternalServerError, "502 Bad Gateway"),
    ("529 HTML", html(529, "<html>overloaded</html>"), False, OverloadedError, "overloaded"),
    ("500 empty body", httpx2.Response(500, content=b""), False, InternalServerError, "status 500"),
    (
        "503 plain text",
        httpx2.Response(503, content=b"upstream connect error"),
        False,
        InternalServerError,
        "upstream connect error",
    ),
    # malformed success bodies
    ("200 HTML page", html(200), False, APIResponseError, "not JSON"),
    ("200 empty body", httpx2.Response(200, content=b""), False, APIResponseError, "empty body"),
    (
        "200 whitespace body",
        httpx2.Response(200, content=b" \n "),
        False,
        APIResponseError,
        "empty body",
    ),
    (
        "200 truncated JSON",
        raw_json(200, '{"id": "x", "choices": [{"ind'),
        False,
        CutResponseError,  # billed by Claude: recorded as an estimate (test_cut_answers.py)
        "ended part-way",
    ),
    (
        "200 broken JSON",
        raw_json(200, '{"id": "x", "choices": [{"index": 0,]}'),
        False,
        APIResponseError,
        "not JSON",
    ),
    (
        "200 deeply nested JSON",
        raw_json(200, "[" * 100_000 + "]" * 100_000),
        False,
        APIResponseError,
        "not JSON",
    ),
    (
        "200 invalid UTF-8",
        httpx2.Response(200, content=b"\xff\xfe\xfa{"),
        False,
        APIResponseError,
        "not JSON",
    ),
    ("200 JSON array", raw_json(200, "[1, 2]"), False, APIResponseError, "not an object"),
    ("200 JSON string", raw_json(200, '"ok"'), False, APIResponseError, "not an object"),
    (
        "200 error object",
        httpx2.Response(200, json={"error": {"message": "upstream failed"}}),
        False,
        APIResponseError,
        "upstream failed",
    ),
    (
        "JSON without choices",
        httpx2.Response(200, json={"id": "x", "object": "chat.completion"}),
        False,
        APIResponseError,
        "without 'choices'",
    ),
    (
        "choices not a list",
        httpx2.Response(200, json=body_with(choices={"0": {}})),
        False,
        APIResponseError,
        "without 'choices'",
    ),
    (
        "choices empty",
        httpx2.Response(200, json=body_with(choices=[])),
        False,
        APIResponseError,
        "without 'choices'",
    ),
    (
        "choice not an object",
        httpx2.Response(200, json=body_with(choices=["hi"])),
        False,
        APIResponseError,
        "without 'choices'",
    ),
    (
        "choice without message",
        httpx2.Response(200, json=body_with(choices=[{"index": 0, "finish_reason": "stop"}])),
        False,
        APIResponseError,
        "without a 'message'",
    ),
    (
        "message not an object",
        httpx2.Response(200, json=body_with(choices=[{"index": 0, "message": "hi"}])),
        False,
        APIResponseError,
        "without a 'message'",
    ),
    (
        "content a number",
        httpx2.Response(200, json=message_with(content=42)),
        False,
        APIResponseError,
        "neither text nor a list",
    ),
    (
        "tool_calls not a list",
        httpx2.Response(200, json=message_with(content=None, tool_calls={"id": "x"})),
        False,
        APIResponseError,
        "'tool_calls' that is not a list",
    ),
    (
        "tool call without a function",
        httpx2.Response(
            200, json=message_with(content=None, tool_calls=[{"id": "x", "type": "function"}])
        ),
        False,
        APIResponseError,
        "without a 'function' object",
    ),
    (
        "tool call function a string",
        httpx2.Response(
            200,
            json=message_with(content=None, tool_calls=[{"id": "x", "function": "get_weather"}]),
        ),
        False,
        APIResponseError,
        "without a 'function' object",
    ),
    (
        "tool call name a number",
        httpx2.Response(
            200,
            json=message_with(
                content=None, tool_calls=[{"id": "x", "function": {"name": 3, "arguments": "{}"}}]
            ),
        ),
        False,
        APIResponseError,
        "without a function name",
    ),
    (
        "tool call id a number",
        httpx2.Response(
            200,
            json=message_with(
                content=None, tool_calls=[{"id": 7, "function": {"name": "f", "arguments": "{}"}}]
            ),
        ),
        False,
        APIResponseError,
        "id is not a string",
    ),
    (
        "tool call arguments a list",
        httpx2.Response(
            200,
            json=message_with(
                content=None,
                tool_calls=[{"id": "x", "function": {"name": "f", "arguments": "[1]"}}],
            ),
        ),
        False,
        APIResponseError,
        "JSON but not an object",
    ),
    (
        "tool call arguments a number",
        httpx2.Response(
            200,
            json=message_with(
                content=None, tool_calls=[{"id": "x", "function": {"name": "f", "arguments": 5}}]
            ),
        ),
        False,
        APIResponseError,
        "neither JSON text nor an object",
    ),
    # garbage usage
    (
        "negative usage",
        httpx2.Response(200, json=usage_of({"prompt_tokens": -5, "completion_tokens": 1})),
        False,
        APIResponseError,
        "negative",
    ),
    (
        "string usage",
        httpx2.Response(200, json=usage_of("abc")),
        False,
        APIResponseError,
        "'usage' that is not an object",
    ),
    (
        "list usage",
        httpx2.Response(200, json=usage_of([10, 1])),
        False,
        APIResponseError,
        "'usage' that is not an object",
    ),
    (
        "string count",
        httpx2.Response(200, json=usage_of({"prompt_tokens": "abc", "completion_tokens": 1})),
        False,
        APIResponseError,
        "prompt_tokens",
    ),
    (
        "fractional count",
        httpx2.Response(200, json=usage_of({"prompt_tokens": 10.5, "completion_tokens": 1})),
        False,
        APIResponseError,
        "prompt_tokens",
    ),
    (
        "bool count",
        httpx2.Response(200, json=usage_of({"prompt_tokens": True, "completion_tokens": 1})),
        False,
        APIResponseError,
        "prompt_tokens",
    ),
    (
        "NaN count",
        raw_json(
            200,
            json.dumps(usage_of({"prompt_tokens": 7, "completion_tokens": 1})).replace(
                '"prompt_tokens": 7', '"prompt_tokens": NaN'
            ),
        ),
        False,
        APIResponseError,
        "prompt_tokens",
    ),
    (
        "absurd count",
        httpx2.Response(200, json=usage_of({"prompt_tokens": 10**15, "completion_tokens": 1})),
        False,
        APIResponseError,
        "prompt_tokens",
    ),
    (
        "details not an object",
        httpx2.Response(
            200,
            json=usage_of(
                {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": 5}
            ),
        ),
        False,
        APIResponseError,
        "prompt_tokens_details",
    ),
    # streams
    (
        "stream answered with HTML",
        html(200),
        True,
        APIResponseError,
        "text/html to a streaming request",
    ),
    (
        "stream answered with JSON",
        httpx2.Response(200, json=completion()),
        True,
        APIResponseError,
        "application/json to a streaming request",
    ),
    ("stream answered 502 HTML", html(502, HTML_502), True, InternalServerError, "502 Bad Gateway"),
    (
        "stream answered 401",
        error_json(401, "invalid x-api-key"),
        True,
        AuthenticationError,
        "check the API key",
    ),
    (
        "stream answered 529",
        error_json(529, "Overloaded", "overloaded_error"),
        True,
        OverloadedError,
        "Overloaded",
    ),
    ("SSE garbage", sse_response("data: {not json\n\n"), True, APIResponseError, "not JSON"),
    ("SSE of HTML", sse_response(HTML_502), True, APIResponseError, "cut"),
    (
        "SSE error event",
        sse_response(f"data: {OVERLOADED_EVENT}\n\n"),
        True,
        APIResponseError,
        "streamed an error event",
    ),
    (
        "SSE error mid-stream",
        sse_response(
            sse(stream_events("hello")[:2], done=False)
            + 'data: {"error": {"message": "upstream reset"}}\n\n'
        ),
        True,
        APIResponseError,
        "upstream reset",
    ),
    (
        "stream without [DONE]",
        sse_response(sse(stream_events("hello"), done=False)),
        True,
        APIResponseError,
        "[DONE] never came",
    ),
    ("empty stream", sse_response(""), True, APIResponseError, "cut"),
    (
        "chunk that is a list",
        sse_response(sse([[1, 2]])),
        True,
        APIResponseError,
        "not a JSON object",
    ),
    (
        "chunk choices not a list",
        sse_response(sse([{"id": "c", "choices": "x"}])),
        True,
        APIResponseError,
        "'choices' that is not a list",
    ),
    (
        "chunk usage a string",
        sse_response(usage_event("abc")),
        True,
        APIResponseError,
        "'usage' that is not an object",
    ),
    (
        "chunk usage negative",
        sse_response(usage_event({"prompt_tokens": 5, "completion_tokens": -1})),
        True,
        APIResponseError,
        "negative",
    ),
    (
        "delta function a bool",
        sse_response(
            sse(
                [
                    {
                        "id": "c",
                        "choices": [
                            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": True}]}}
                        ],
                    }
                ]
            )
        ),
        True,
        APIResponseError,
        "'function' is not an object",
    ),
    (
        "delta index a string",
        sse_response(
            sse(
                [
                    {
                        "id": "c",
                        "choices": [
                            {
                                "index": 0,
                                "delta": {
                                    "tool_calls": [{"index": "0", "function": {"name": "f"}}]
                                },
                            }
                        ],
                    }
                ]
            )
        ),
        True,
        APIResponseError,
        "index is not an integer",
    ),
    (
        "delta name a number",
        sse_response(
            sse(
                [
                    {
                        "id": "c",
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"tool_calls": [{"index": 0, "function": {"name": 5}}]},
                            }
                        ],
                    }
                ]
            )
        ),
        True,
        APIResponseError,
        "name is not a string",
    ),
    (
        "chunk content a number",
        sse_response(sse([{"id": "c", "choices": [{"index": 0, "delta": {"content": 5}}]}])),
        True,
        APIResponseError,
        "neither text nor a list",
    ),
]


@pytest.mark.parametrize(
    ("response", "streaming", "error", "fragment"),
    [pytest.param(r, s, e, f, id=name) for name, r, s, e, f in RELAY_SIDE],
)
def test_relay_side_becomes_a_typed_error(
    make_llm,
    relay: FakeRelay,
    response: httpx2.Response,
    streaming: bool,
    error: type[ClaudeRelayError],
    fragment: str,
) -> None:
    relay.handler = lambda _body: fresh(response)
    llm = make_llm(max_retries=0)
    with pytest.raises(ClaudeRelayError) as info:
        call(llm, streaming)
    exc = info.value
    assert type(exc) is error, f"{type(exc).__name__}: {exc}"
    assert fragment in str(exc)
    if isinstance(exc, (APIStatusError, APIResponseError)):
        assert exc.status_code == response.status_code
        assert len(exc.body_excerpt) <= BODY_EXCERPT_CHARS
    assert len(relay.requests) == 1


@pytest.mark.parametrize(
    ("response", "streaming", "error", "fragment"),
    [pytest.param(r, s, e, f, id=name) for name, r, s, e, f in RELAY_SIDE[::4]],
)
async def test_relay_side_becomes_a_typed_error_async(
    make_llm,
    relay: FakeRelay,
    response: httpx2.Response,
    streaming: bool,
    error: type[ClaudeRelayError],
    fragment: str,
) -> None:
    relay.handler = lambda _body: fresh(response)
    llm = make_llm(max_retries=0)
    with pytest.raises(ClaudeRelayError) as info:
        await acall(llm, streaming)
    assert type(info.value) is error
    assert fragment in str(info.value)


def test_a_long_body_is_cut_to_an_excerpt(make_llm, relay: FakeRelay) -> None:
    relay.handler = lambda _b: html(502, "<html>" + "x" * 50_000 + "</html>")
    with pytest.raises(InternalServerError) as info:
        make_llm(max_retries=0).invoke("hi")
    assert len(info.value.body_excerpt) <= BODY_EXCERPT_CHARS
    assert len(str(info.value)) < BODY_EXCERPT_CHARS + 200


KEY_ECHOES: list[Callable[[str], httpx2.Response]] = [
    lambda key: error_json(401, f"Incorrect API key provided: {key}. You can find your key at ..."),
    lambda key: html(403, f"<html><body>Forbidden for key {key}</body></html>"),
    lambda key: httpx2.Response(200, json={"error": {"message": f"Bearer {key} is not valid"}}),
    lambda key: raw_json(200, f'{{"id": "x", "key": "{key}", "choices": ['),
    lambda key: sse_response(f'data: {{"error": {{"message": "bad key {key}"}}}}\n\n'),
]


@pytest.mark.parametrize("echo", KEY_ECHOES)
@pytest.mark.parametrize("key", [CANARY_KEY, "relay-key-0123456789abcdef"])
def test_an_error_body_echoing_the_key_is_redacted(
    make_llm, relay: FakeRelay, echo: Callable[[str], httpx2.Response], key: str
) -> None:
    relay.handler = lambda _b: echo(key)
    llm = make_llm(api_key=key, max_retries=0)
    streaming = "event-stream" in echo(key).headers.get("content-type", "")
    with pytest.raises(ClaudeRelayError) as info:
        call(llm, streaming)
    exc = info.value
    shown = [str(exc), repr(exc), *map(str, exc.args), getattr(exc, "body_excerpt", "")]
    for text_shown in shown:
        assert key not in text_shown
    assert "***" in str(exc)


def test_lenient_tool_call_shapes_are_read(make_llm, relay: FakeRelay) -> None:
    """Arguments as an object, or missing, are what some relays send: read, not refused."""
    relay.queue(
        message_with(
            content=None,
            tool_calls=[
                {"id": "a", "function": {"name": "f", "arguments": {"city": "Paris"}}},
                {"id": "b", "function": {"name": "g"}},
            ],
        )
    )
    msg = make_llm().invoke("hi")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("f", {"city": "Paris"}), ("g", {})]


def test_a_message_without_content_or_tool_calls_is_an_empty_answer(
    make_llm, relay: FakeRelay
) -> None:
    """Claude can answer nothing (a stop sequence at once): that is a valid, empty reply."""
    relay.queue(message_with(content=None))
    msg = make_llm().invoke("hi")
    assert msg.content == ""
    assert msg.tool_calls == []


def test_cache_true_without_a_response_cache_says_what_prompt_caching_is() -> None:
    """cache=True is LangChain's response cache: without one set, every call fails."""
    from langchain_core.globals import get_llm_cache, set_llm_cache

    previous = get_llm_cache()
    set_llm_cache(None)
    try:
        with pytest.warns(UserWarning, match="Prompt caching is cache='auto'"):
            ChatClaudeRelay(base_url="http://127.0.0.1:9/v1", api_key="k", cache=True)
    finally:
        set_llm_cache(previous)


@pytest.mark.parametrize("ttl", ["1h", "5m", " 1H "])
def test_a_ttl_given_as_cache_points_to_cache_ttl(ttl: str) -> None:
    with pytest.raises(ValueError, match=f"pass cache_ttl='{ttl.strip().lower()}'"):
        ChatClaudeRelay(base_url="http://127.0.0.1:9/v1", api_key="k", cache=ttl)
