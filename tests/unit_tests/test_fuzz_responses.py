"""Property-based fuzzing of what relays answer: only the package's typed errors escape.

Bodies are generated near the shape of a chat completion (every field either right or junk,
usage fields from every dialect with counts that are right or junk), and also as raw bytes with
random statuses and content types. They go through ``parse_chat_completion`` /
``parse_chat_chunk`` and through a full ``ChatClaudeRelay.invoke`` / ``stream`` / ``ainvoke``
against a fake relay. Nothing but ``ClaudeRelayError`` subclasses may come out; what does come
out on success is well-formed (non-negative, consistent usage; one ledger entry per answered
usage, none for a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any

import httpx2
from fake_relay import FakeRelay
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.errors import APIResponseError, ClaudeRelayError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.wire.openai_chat import parse_chat_chunk, parse_chat_completion

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------------

junk_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["12", "-1", "nan", "1e400", "", "abc", "<html>"])
)
junk = st.recursive(
    junk_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def either(good: st.SearchStrategy[Any], bad_weight: int = 1) -> st.SearchStrategy[Any]:
    """The right shape, or junk ``bad_weight`` times in ten."""
    return st.integers(0, 9).flatmap(lambda roll: junk if roll < bad_weight else good)


count = either(st.integers(min_value=0, max_value=200_000), bad_weight=1) | st.integers(
    min_value=-5, max_value=-1
)
USAGE_TOP = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_write_tokens",
    "cache_creation_tokens",
    "prompt_cache_hit_tokens",
    "claude_cache_creation_5_m_tokens",
    "claude_cache_creation_1_h_tokens",
]
DETAIL_KEYS = [
    "cached_tokens",
    "cache_write_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
]
details = st.dictionaries(st.sampled_from(DETAIL_KEYS), count, max_size=3)
split = st.dictionaries(
    st.sampled_from(["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"]), count, max_size=2
)
usage = st.builds(
    lambda top, nested: {**top, **nested},
    st.dictionaries(st.sampled_from(USAGE_TOP), count, max_size=6),
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens_details": either(details),
            "completion_tokens_details": either(details),
            "cache_creation": either(split),
            "usage_semantic": st.sampled_from(["openai", "anthropic", "other"]) | junk_scalar,
        },
    ),
)
clean_usage = st.builds(
    lambda p, c, read, write: {
        "prompt_tokens": p + read + write,
        "completion_tokens": c,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": write,
    },
    st.integers(0, 50_000),
    st.integers(0, 5_000),
    st.integers(0, 50_000),
    st.integers(0, 50_000),
)
function = st.fixed_dictionaries(
    {"name": either(st.sampled_from(["get_weather", "lookup"]) | st.just(""))},
    optional={
        "arguments": either(
            st.sampled_from(['{"city": "Paris"}', "{}", '{"a": [1, 2]}', "{not json", "", "[1]"])
            | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
        ),
    },
)
tool_call = st.fixed_dictionaries(
    {"function": either(function)},
    optional={
        "id": either(st.text(min_size=1, max_size=8)),
        "type": st.just("function"),
        "index": either(st.integers(0, 3)),
    },
)
part = either(st.fixed_dictionaries({"type": st.just("text"), "text": either(st.text(max_size=8))}))
message = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={
        "content": either(st.text(max_size=20) | st.none() | st.lists(part, max_size=3)),
        "tool_calls": either(st.lists(either(tool_call), min_size=1, max_size=3) | st.none()),
        "reasoning_content": either(st.text(max_size=10)),
        "thinking_blocks": either(
            st.lists(
                either(
                    st.fixed_dictionaries(
                        {"type": st.just("thinking"), "thinking": either(st.text(max_size=5))}
                    )
                ),
                max_size=2,
            )
        ),
    },
)
choice = st.fixed_dictionaries(
    {"message": either(message)},
    optional={
        "index": st.just(0),
        "finish_reason": either(st.sampled_from(["stop", "tool_calls", "length"]) | st.none()),
    },
)
near_completion = st.fixed_dictionaries(
    {"choices": either(st.lists(either(choice), min_size=1, max_size=2))},
    optional={
        "id": either(st.text(min_size=1, max_size=12)),
        "object": st.just("chat.completion"),
        "model": either(
            st.sampled_from(["claude-sonnet-4-6", "anthropic/claude-sonnet-4.5", "gpt-fake"])
        ),
        "usage": either(usage | clean_usage | st.none()),
    },
)
tool_completion = st.builds(
    lambda calls, content, use: {
        "id": "chatcmpl-t",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": calls},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": use,
    },
    st.lists(either(tool_call), min_size=1, max_size=3),
    st.none() | st.text(max_size=5),
    clean_usage,
)
error_body = st.fixed_dictionaries({"error": junk}, optional={"choices": junk})
completion_body = st.integers(0, 9).flatmap(
    lambda roll: error_body if roll == 0 else tool_completion if roll <= 3 else near_completion
)
delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": either(st.text(max_size=8) | st.none()),
        "reasoning_content": either(st.text(max_size=5)),
        "tool_calls": either(st.lists(either(tool_call), max_size=2)),
    },
)
chunk_body = st.fixed_dictionaries(
    {},
    optional={
        "id": either(st.text(min_size=1, max_size=8)),
        "model": either(st.just("claude-sonnet-4-6")),
        "choices": either(
            st.lists(
                either(
                    st.fixed_dictionaries(
                        {"index": st.just(0), "delta": either(delta)},
                        optional={"finish_reason": either(st.just("stop"))},
                    )
                ),
                max_size=2,
            )
        ),
        "usage": either(usage | clean_usage | st.none()),
    },
)

# -- the parsers alone --------------------------------------------------------------------------


@FUZZ
@given(completion_body)
def test_parse_chat_completion_raises_only_typed_errors(body: dict[str, Any]) -> None:
    try:
        parsed = parse_chat_completion(body)
    except APIResponseError as exc:
        status = exc.status_code
        parsed = None
    if parsed is None:
        assert status == 200
        return
    assert isinstance(parsed.content, str)
    assert parsed.id is None or isinstance(parsed.id, str)
    assert parsed.finish_reason is None or isinstance(parsed.finish_reason, str)
    assert parsed.usage is None or isinstance(parsed.usage, dict)
    for call in parsed.tool_calls:
        assert isinstance(call["function"]["name"], str)
        assert call["function"]["name"]
        assert isinstance(call["function"]["arguments"], str)
        assert call.get("id") is None or isinstance(call["id"], str)


@FUZZ
@given(junk)
def test_parse_chat_completion_of_any_json_raises_only_typed_errors(body: Any) -> None:
    with contextlib.suppress(APIResponseError):
        parse_chat_completion(body)


@FUZZ
@given(chunk_body)
def test_parse_chat_chunk_raises_only_typed_errors(chunk: dict[str, Any]) -> None:
    try:
        parsed = parse_chat_chunk(chunk)
    except APIResponseError:
        return
    assert isinstance(parsed.content, str)
    for d in parsed.tool_call_deltas:
        assert d.get("index") is None or (
            isinstance(d["index"], int) and not isinstance(d["index"], bool)
        )
        assert d.get("id") is None or isinstance(d["id"], str)
        fn = d.get("function") or {}
        assert isinstance(fn, dict)
        assert fn.get("name") is None or isinstance(fn["name"], str)
        assert fn.get("arguments") is None or isinstance(fn["arguments"], str)


# -- a full chat model against a fake relay -----------------------------------------------------

RELAY = FakeRelay()
LEDGER = MemoryLedger()


def make_llm() -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key="sk-fuzz-key-0123456789",
        model="claude-sonnet-4-6",
        cache="off",
        ledger=LEDGER,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(RELAY)),
        http_async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(RELAY)),
    )


LLM = make_llm()


def check_success(msg: AIMessage, answered_usage: bool) -> None:
    assert isinstance(msg.content, str)
    meta = msg.usage_metadata
    if not answered_usage:
        return
    assert meta is not None
    assert meta["input_tokens"] >= 0
    assert meta["output_tokens"] >= 0
    assert meta["total_tokens"] == meta["input_tokens"] + meta["output_tokens"]
    d = meta.get("input_token_details", {})
    assert all(v >= 0 for v in d.values())
    assert d.get("cache_read", 0) + d.get("cache_creation", 0) <= meta["input_tokens"]
    cost = msg.response_metadata.get("cost_usd")
    assert cost is None or math.isfinite(cost)
    assert cost is None or cost >= 0


@FUZZ
@given(completion_body)
def test_invoke_on_fuzzed_bodies_raises_only_typed_errors(body: dict[str, Any]) -> None:
    RELAY.handler = lambda _b: httpx2.Response(200, json=body)
    before = len(LEDGER)
    try:
        msg = LLM.invoke("hi")
    except ClaudeRelayError:
        assert len(LEDGER) == before, "a failed call must not be in the ledger"
        return
    answered_usage = isinstance(body.get("usage"), dict)
    check_success(msg, answered_usage)
    assert len(LEDGER) == before + (1 if answered_usage else 0)
    for call in msg.tool_calls:
        assert isinstance(call["name"], str)
        assert isinstance(call["args"], dict)


status = st.sampled_from(
    [200, 200, 200, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 529, 418, 302, 204]
)
content_type = st.sampled_from(
    ["application/json", "text/html", "text/event-stream", "text/plain", ""]
)
raw_body = (
    st.binary(max_size=64)
    | st.text(max_size=64).map(str.encode)
    | completion_body.map(lambda b: json.dumps(b).encode())
)


@FUZZ
@given(status, content_type, raw_body, st.booleans())
def test_any_http_answer_becomes_a_typed_error_or_a_message(
    code: int, ctype: str, body: bytes, streaming: bool
) -> None:
    headers = {"content-type": ctype} if ctype else {}
    RELAY.handler = lambda _b: httpx2.Response(code, headers=headers, content=body)
    try:
        if streaming:
            chunks = list(LLM.stream("hi"))
            assert chunks
        else:
            assert isinstance(LLM.invoke("hi").content, str)
    except ClaudeRelayError:
        pass


def sse_text(events: list[Any], garbage: list[str], done: bool) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    for i, g in enumerate(garbage):
        lines.insert(i * 2 % (len(lines) + 1), g + "\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


@FUZZ
@given(
    st.lists(chunk_body, max_size=5),
    st.lists(
        st.sampled_from([": keep-alive", "event: ping", "data: {broken", "", "retry: 10", "id: 3"]),
        max_size=2,
    ),
    st.booleans(),
)
def test_stream_on_fuzzed_events_raises_only_typed_errors(
    events: list[Any], garbage: list[str], done: bool
) -> None:
    body = sse_text(events, garbage, done)
    RELAY.handler = lambda _b: httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=body
    )
    before = len(LEDGER)
    try:
        chunks = list(LLM.stream("hi"))
    except ClaudeRelayError:
        # it began (the relay answered 200): billed, so recorded once, from its usage if any
        # came, else from its plan (estimated)
        assert len(LEDGER) <= before + 1
        return
    assert done or not events or garbage, "a stream without [DONE] must fail"
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert isinstance(full.content, str)
    usages = [e.get("usage") for e in events if isinstance(e.get("usage"), dict)]
    if usages:
        check_success(
            AIMessage(
                content=full.content,
                usage_metadata=full.usage_metadata,
                response_metadata=full.response_metadata,
            ),
            True,
        )
    assert len(LEDGER) == before + (1 if usages else 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion_body)
def test_ainvoke_on_fuzzed_bodies_raises_only_typed_errors(body: dict[str, Any]) -> None:
    RELAY.handler = lambda _b: httpx2.Response(200, json=body)
    llm = make_llm()  # a fresh async client per event loop

    async def call() -> None:
        try:
            msg = await llm.ainvoke("hi")
        except ClaudeRelayError:
            return
        check_success(msg, isinstance(body.get("usage"), dict))

    asyncio.run(call())
