"""A streamed answer summed with ``+`` has the content blocks ``invoke`` gives, in v1 too.

Relays number streamed tool calls from 0; LangChain's v1 streaming numbers the text block 0
too and merged the two (the tool call vanished into the text). Tool calls are numbered after
the reasoning and text blocks before them, as Claude and the native ways in number them.
"""

from __future__ import annotations

from functools import reduce
from operator import add
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, completion, sse

USAGE = {"prompt_tokens": 100, "completion_tokens": 20}
BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "claude-sonnet-5-5"}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _call(index: int, call_id: str | None, name: str | None, args: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    call: dict[str, Any] = {"index": index, "function": function}
    if call_id:
        call.update(id=call_id, type="function")
    return {"tool_calls": [call]}


STREAMS = {  # name: (chunks, the blocks before the calls, calls)
    "text then a call": ([
        _chunk({"role": "assistant", "content": "I'll check "}),
        _chunk({"content": "the weather."}),
        _chunk(_call(0, "toolu_A", "get_weather", "")),
        _chunk(_call(0, None, None, '{"city": "Paris"}')),
    ], ["text"], 1),
    "reasoning, text, two interleaved calls": ([
        _chunk({"role": "assistant", "reasoning_content": "Let me think"}),
        _chunk({"reasoning_content": " more."}),
        _chunk({"content": "Two tools."}),
        _chunk(_call(0, "toolu_A", "get_weather", '{"city": ')),
        _chunk(_call(1, "toolu_B", "get_time", "")),
        _chunk(_call(0, None, None, '"Paris"}')),
        _chunk(_call(1, None, None, '{"tz": "CET"}')),
    ], ["reasoning", "text"], 2),
    "a call alone": ([
        _chunk({"role": "assistant", "content": ""}),
        _chunk(_call(0, "toolu_A", "get_weather", '{"city": "Paris"}')),
    ], [], 1),
}  # fmt: skip

INTERLEAVED = {  # name: (chunks, the kinds of block in order)
    "text, two calls, text": ([
        _chunk({"role": "assistant", "content": "Checking."}),
        _chunk(_call(0, "toolu_A", "get_weather", '{"city": "Paris"}')),
        _chunk(_call(1, "toolu_B", "get_time", '{"tz": "CET"}')),
        _chunk({"content": " Done."}),
    ], ["text", "tool_call", "tool_call", "text"]),
    "text, call, text, call": ([
        _chunk({"role": "assistant", "content": "A"}),
        _chunk(_call(0, "toolu_A", "get_weather", '{"city": "Paris"}')),
        _chunk({"content": "B"}),
        _chunk(_call(1, "toolu_B", "get_time", '{"tz": "CET"}')),
    ], ["text", "tool_call", "text", "tool_call"]),
    "reasoning after a call": ([
        _chunk({"role": "assistant", "reasoning_content": "First."}),
        _chunk(_call(0, "toolu_A", "get_weather", '{"city": "Paris"}')),
        _chunk({"reasoning_content": "Now the time."}),
        _chunk(_call(1, "toolu_B", "get_time", '{"tz": "CET"}')),
    ], ["reasoning", "tool_call", "reasoning", "tool_call"]),
}  # fmt: skip


def _stream_body(chunks: list[dict[str, Any]]) -> httpx2.Response:
    events = [*chunks, _chunk({}, "tool_calls"), {**BASE, "choices": [], "usage": USAGE}]
    content = sse(events).encode()
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)


def _types(blocks: list[Any]) -> list[str]:
    return [b["type"] for b in blocks]


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("output_version", ["v0", "v1"])
def test_streamed_tool_calls_are_blocks_of_their_own(
    relay: FakeRelay, make_llm: Any, name: str, output_version: str
) -> None:
    chunks, before, count = STREAMS[name]
    relay.queue(_stream_body(chunks))
    full = reduce(add, make_llm(output_version=output_version).stream("hi"))
    blocks = [b for b in full.content_blocks if b["type"] != "text" or b.get("text")]
    assert _types(blocks) == [*before, *["tool_call"] * count]
    calls = [(b["id"], b["args"]) for b in blocks if b["type"] == "tool_call"]
    assert calls == [(t["id"], t["args"]) for t in full.tool_calls]


def test_the_invoked_and_streamed_v1_content_agree(relay: FakeRelay, make_llm: Any) -> None:
    calls = [
        {
            "id": "toolu_A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    relay.queue(
        completion("I'll check the weather.", tool_calls=calls, usage=USAGE),
        _stream_body(STREAMS["text then a call"][0]),
    )
    llm = make_llm(output_version="v1")
    invoked = llm.invoke("hi")
    streamed = reduce(add, llm.stream("hi"))
    strip = [{k: v for k, v in b.items() if k != "index"} for b in streamed.content]
    assert strip == invoked.content


@pytest.mark.parametrize("name", list(INTERLEAVED))
def test_blocks_after_a_tool_call_keep_their_place_in_v1(
    relay: FakeRelay, make_llm: Any, name: str
) -> None:
    """Text or reasoning after a call was merged into a numbered block (text or a call lost)."""
    chunks, kinds = INTERLEAVED[name]
    relay.queue(_stream_body(chunks), _stream_body(chunks))
    v1 = reduce(add, make_llm(output_version="v1").stream("hi"))
    v0 = reduce(add, make_llm().stream("hi"))
    assert _types(v1.content) == kinds
    assert v1.text == v0.text
    assert [c["id"] for c in v1.tool_calls] == ["toolu_A", "toolu_B"]
    indices = [b["index"] for b in v1.content if "index" in b]
    assert len(indices) == len(set(indices))


def _unindexed(call_id: str | None, name: str | None, args: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    call: dict[str, Any] = {"function": function}
    if call_id:
        call.update(id=call_id, type="function")
    return {"tool_calls": [call]}


@pytest.mark.parametrize("output_version", ["v0", "v1"])
def test_tool_call_deltas_without_an_index_keep_their_arguments(
    relay: FakeRelay, make_llm: Any, output_version: str
) -> None:
    """Each index-less delta was a call of its own: f({}) ran instead of f({"a": 1})."""
    chunks = [
        _chunk({"role": "assistant", "content": "Before."}),
        _chunk(_unindexed("toolu_A", "f", '{"a": ')),
        _chunk(_unindexed(None, None, "1}")),
        _chunk(_unindexed("toolu_B", "g", '{"b": 2}')),
        _chunk({"content": " After."}),
    ]
    relay.queue(_stream_body(chunks))
    full = reduce(add, make_llm(output_version=output_version).stream("hi"))
    assert [(c["id"], c["name"], c["args"]) for c in full.tool_calls] == [
        ("toolu_A", "f", {"a": 1}),
        ("toolu_B", "g", {"b": 2}),
    ]
    assert full.invalid_tool_calls == []
    if output_version == "v1":
        assert _types(full.content) == ["text", "tool_call", "tool_call", "text"]
