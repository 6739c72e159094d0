"""Tool results holding ``json`` and ``search_result`` blocks (LangChain's tool-message blocks).

A LangChain tool may return these (``langchain_core.tools.base.TOOL_MESSAGE_BLOCK_TYPES``), so an
agent's ``ToolMessage`` carries them. They used to be refused as unsupported content parts:

- ``json`` becomes a text block of canonical JSON, the same bytes for the same value;
- ``search_result`` is Claude's own block on the Messages API (native, Bedrock, Vertex), as
  langchain-anthropic sends it, and text (title, source, texts) on the OpenAI-compatible wire;
- a marker on either moves to the parent ``tool_result``, as on a text part;
- a bad shape is refused before anything is sent, saying where and how to fix it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import anthropic.types as sdk
import httpx2
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._convert import to_claude_request, tool_json_text
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.request import ClaudeRequest
from langchain_claude_relay.wire.anthropic_messages import render_messages_payload
from langchain_claude_relay.wire.openai_chat import render_chat_payload

MODEL = "claude-sonnet-5-5"
EPH = {"type": "ephemeral"}
H1 = {"type": "ephemeral", "ttl": "1h"}
WHERE = "messages[2] (tool), part 0"

SEARCH: dict[str, Any] = {
    "type": "search_result",
    "source": "https://docs.example.com/guide",
    "title": "Product Guide",
    "content": [
        {"type": "text", "text": "The default timeout is 30 seconds."},
        {"type": "text", "text": "It can be set between 10 and 120 seconds."},
    ],
    "citations": {"enabled": True},
}
SEARCH_NATIVE: dict[str, Any] = {
    "type": "search_result",
    "source": "https://docs.example.com/guide",
    "title": "Product Guide",
    "content": [
        {"type": "text", "text": "The default timeout is 30 seconds."},
        {"type": "text", "text": "It can be set between 10 and 120 seconds."},
    ],
    "citations": {"enabled": True},
}
SEARCH_TEXT = (
    "Title: Product Guide\n"
    "Source: https://docs.example.com/guide\n"
    "\n"
    "The default timeout is 30 seconds.\n"
    "\n"
    "It can be set between 10 and 120 seconds."
)


def conversation(parts: list[Any], **tool_kwargs: Any) -> list[Any]:
    """A user turn, a tool call, and the tool's answer holding ``parts``."""
    return [
        HumanMessage("look it up"),
        AIMessage("", tool_calls=[{"name": "lookup", "args": {"q": "timeout"}, "id": "toolu_1"}]),
        ToolMessage(parts, tool_call_id="toolu_1", **tool_kwargs),
    ]


def convert(parts: list[Any], **tool_kwargs: Any) -> ClaudeRequest:
    return to_claude_request(conversation(parts, **tool_kwargs), model=MODEL)


def openai_tool_message(request: ClaudeRequest) -> dict[str, Any]:
    message: dict[str, Any] = render_chat_payload(request)["messages"][-1]
    assert message["role"] == "tool"
    return message


def native_tool_result(request: ClaudeRequest) -> dict[str, Any]:
    turn = render_messages_payload(request, {})["messages"][-1]
    assert turn["role"] == "user"
    block: dict[str, Any] = turn["content"][0]
    assert len(turn["content"]) == 1
    assert block["type"] == "tool_result"
    return block


def wire_bytes(request: ClaudeRequest, wire: str) -> bytes:
    payload = (
        render_chat_payload(request) if wire == "openai" else render_messages_payload(request, {})
    )
    return json.dumps(payload, ensure_ascii=False).encode()


WIRES = ["openai", "anthropic"]


# -- json ------------------------------------------------------------------------------------------

JSON_CASES = [
    pytest.param({"b": 1, "a": [True, None, 2.5]}, '{"a":[true,null,2.5],"b":1}', id="object"),
    pytest.param([3, "x", {"z": {}, "y": []}], '[3,"x",{"y":[],"z":{}}]', id="list"),
    pytest.param("plain", '"plain"', id="string"),
    pytest.param(0, "0", id="zero"),
    pytest.param(None, "null", id="null"),
    pytest.param({"x": float("nan"), "y": float("inf")}, '{"x":NaN,"y":Infinity}', id="nan"),
    pytest.param({"ville": "Zürich", "emoji": "☃"}, '{"emoji":"☃","ville":"Zürich"}', id="utf-8"),
    pytest.param(
        {"n": {"d": 1, "c": {"b": 2, "a": 3}}}, '{"n":{"c":{"a":3,"b":2},"d":1}}', id="deep"
    ),
]


@pytest.mark.parametrize(("value", "text"), JSON_CASES)
@pytest.mark.parametrize("wire", WIRES)
def test_a_json_part_is_sent_as_canonical_json_text(value: Any, text: str, wire: str) -> None:
    request = convert([{"type": "json", "json": value}])
    expected = [{"type": "text", "text": text}]
    if wire == "openai":
        assert openai_tool_message(request)["content"] == expected
    else:
        assert native_tool_result(request)["content"] == expected
    assert tool_json_text(value) == text


@pytest.mark.parametrize("wire", WIRES)
def test_json_bytes_do_not_depend_on_key_order_or_on_the_call(wire: str) -> None:
    one = {"query": "timeout", "hits": [{"score": 0.9, "id": "a"}, {"id": "b", "score": 0.5}]}
    other = {"hits": [{"id": "a", "score": 0.9}, {"score": 0.5, "id": "b"}], "query": "timeout"}
    first = wire_bytes(convert([{"type": "json", "json": one}]), wire)
    again = wire_bytes(convert([{"type": "json", "json": one}]), wire)
    reordered = wire_bytes(convert([{"type": "json", "json": other}]), wire)
    assert first == again == reordered
    # and the planner sees the same block: a cache written over it is found on the next turn
    hashes = {
        convert([{"type": "json", "json": v}]).messages[-1].content[0].hash for v in (one, other)
    }
    assert len(hashes) == 1


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "name"),
    [
        pytest.param({"when": datetime.datetime(2026, 1, 1)}, "datetime", id="datetime"),
        pytest.param({"tags": {"a", "b"}}, "set", id="set"),
        pytest.param(b"raw", "bytes", id="bytes"),
        pytest.param([Opaque()], "Opaque", id="object"),
        pytest.param({1: "a", "b": 2}, "TypeError", id="mixed key types"),
    ],
)
def test_a_json_value_that_is_not_json_is_refused_with_the_fix(value: Any, name: str) -> None:
    with pytest.raises(RequestValidationError) as err:
        convert([{"type": "json", "json": value}])
    message = str(err.value)
    assert message.startswith(f"{WHERE}: the 'json' part's value cannot be written as JSON")
    assert name in message
    assert "JSON types only" in message
    assert "model_dump(mode='json')" in message


def test_a_circular_json_value_is_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(RequestValidationError, match="Circular reference"):
        convert([{"type": "json", "json": loop}])


def test_a_json_part_without_its_value_is_refused() -> None:
    with pytest.raises(RequestValidationError) as err:
        convert([{"type": "json", "data": {"a": 1}}])
    assert str(err.value).startswith(f"{WHERE}: a 'json' part needs its value under 'json'")


# -- search_result ---------------------------------------------------------------------------------


def test_a_search_result_is_text_on_the_openai_wire() -> None:
    message = openai_tool_message(convert([SEARCH]))
    assert message == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": [{"type": "text", "text": SEARCH_TEXT}],
    }


def test_a_search_result_is_claudes_own_block_on_the_messages_api() -> None:
    block = native_tool_result(convert([SEARCH]))
    assert block == {"type": "tool_result", "tool_use_id": "toolu_1", "content": [SEARCH_NATIVE]}
    (part,) = block["content"]
    declared = sdk.SearchResultBlockParam.__required_keys__ | (
        sdk.SearchResultBlockParam.__optional_keys__
    )
    assert set(part) <= declared
    assert {"type", "source", "title", "content"} <= set(part)
    for text in part["content"]:
        assert set(text) == {"type", "text"}
        assert text["text"]
    assert "native_content" not in json.dumps(render_messages_payload(convert([SEARCH]), {}))


@pytest.mark.parametrize("wire", WIRES)
def test_search_results_mix_with_text_and_json_in_order(wire: str) -> None:
    bare = {k: v for k, v in SEARCH.items() if k != "citations"}
    request = convert(["intro", SEARCH, {"type": "json", "json": {"n": 2}}, bare])
    text = {"type": "text", "text": SEARCH_TEXT}
    native = {k: v for k, v in SEARCH_NATIVE.items() if k != "citations"}
    if wire == "openai":
        content = openai_tool_message(request)["content"]
        assert content == [
            {"type": "text", "text": "intro"},
            text,
            {"type": "text", "text": '{"n":2}'},
            text,
        ]
    else:
        content = native_tool_result(request)["content"]
        assert content == [
            {"type": "text", "text": "intro"},
            SEARCH_NATIVE,
            {"type": "text", "text": '{"n":2}'},
            native,
        ]


def test_empty_texts_inside_a_search_result_are_left_out() -> None:
    part = {**SEARCH, "content": [{"type": "text", "text": ""}, *SEARCH["content"]]}
    request = convert([part])
    assert native_tool_result(request)["content"] == [SEARCH_NATIVE]
    assert openai_tool_message(request)["content"] == [{"type": "text", "text": SEARCH_TEXT}]


@pytest.mark.parametrize("wire", WIRES)
def test_search_result_bytes_do_not_depend_on_key_order_or_on_the_call(wire: str) -> None:
    reordered = dict(reversed(list(SEARCH.items())))
    reordered["content"] = [dict(reversed(list(t.items()))) for t in SEARCH["content"]]
    first = wire_bytes(convert([SEARCH]), wire)
    assert first == wire_bytes(convert([SEARCH]), wire) == wire_bytes(convert([reordered]), wire)


def test_the_messages_api_copy_does_not_alias_the_users_blocks() -> None:
    part = json.loads(json.dumps(SEARCH))
    request = convert([part])
    part["content"][0]["text"] = "changed"
    part["title"] = "changed"
    assert native_tool_result(request)["content"] == [SEARCH_NATIVE]


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in SEARCH.items() if k != key}


ONLY_TEXT = "content[0]: a search result's content holds only text blocks"
TEXT_LIST = "'content' as a non-empty list of text blocks"
CITATIONS = "'citations' must be {'enabled': True}"
BAD_SEARCH_RESULTS = [
    pytest.param(without("source"), "string 'source' (it is missing)", id="no source"),
    pytest.param({**SEARCH, "source": 7}, "string 'source' (got 7)", id="source an int"),
    pytest.param({**SEARCH, "source": ""}, "string 'source' (got '')", id="empty source"),
    pytest.param(without("title"), "string 'title' (it is missing)", id="no title"),
    pytest.param({**SEARCH, "title": None}, "string 'title' (got None)", id="title None"),
    pytest.param(without("content"), f"{TEXT_LIST} (it is missing)", id="no content"),
    pytest.param({**SEARCH, "content": "a string"}, f"{TEXT_LIST} (got str)", id="content str"),
    pytest.param({**SEARCH, "content": []}, f"{TEXT_LIST} (got list)", id="content empty"),
    pytest.param(
        {**SEARCH, "content": [{"type": "text", "text": ""}]},
        "content has no text",
        id="only empty text",
    ),
    pytest.param(
        {**SEARCH, "content": [{"type": "image", "url": "https://x.test/i.png"}]},
        ONLY_TEXT,
        id="image inside",
    ),
    pytest.param({**SEARCH, "content": ["bare string"]}, ONLY_TEXT, id="bare string inside"),
    pytest.param(
        {**SEARCH, "content": [{"type": "text", "text": 3}]}, ONLY_TEXT, id="text not a string"
    ),
    pytest.param({**SEARCH, "citations": True}, CITATIONS, id="citations a bool"),
    pytest.param({**SEARCH, "citations": {"enabled": "yes"}}, CITATIONS, id="enabled a string"),
    pytest.param({**SEARCH, "citations": {}}, CITATIONS, id="citations empty"),
    pytest.param(
        {**SEARCH, "cache_control": {"type": "persistent"}}, "invalid cache_control", id="marker"
    ),
]


@pytest.mark.parametrize(("part", "problem"), BAD_SEARCH_RESULTS)
def test_a_badly_shaped_search_result_is_refused_with_the_fix(
    part: dict[str, Any], problem: str
) -> None:
    with pytest.raises(RequestValidationError) as err:
        convert([part])
    message = str(err.value)
    assert message.startswith(WHERE), message
    assert problem in message, message
    if "'content'" in problem or "string '" in problem:
        assert "write it as {'type': 'search_result', 'source':" in message  # the fix


def test_the_location_names_the_bad_part_among_others() -> None:
    with pytest.raises(RequestValidationError) as err:
        convert(["fine", {"type": "json", "json": 1}, {"type": "search_result", "title": "t"}])
    assert str(err.value).startswith("messages[2] (tool), part 2: a 'search_result' part")
    with pytest.raises(RequestValidationError) as err:
        convert([SEARCH, {"type": "audio", "data": "x"}])
    assert str(err.value).startswith("messages[2] (tool), part 1: unsupported content part type")


@pytest.mark.parametrize("kind", ["json", "search_result"])
def test_outside_a_tool_result_these_blocks_are_still_refused(kind: str) -> None:
    part = {"type": "json", "json": {}} if kind == "json" else SEARCH
    with pytest.raises(RequestValidationError) as err:
        to_claude_request([HumanMessage([part])], model=MODEL)
    message = str(err.value)
    assert f"unsupported content part type {kind!r}" in message
    assert "'json' and 'search_result' in tool results" in message


# -- cache markers ---------------------------------------------------------------------------------


def marked(kind: str, marker: dict[str, Any]) -> dict[str, Any]:
    if kind == "json":
        return {"type": "json", "json": {"a": 1}, "cache_control": marker}
    if kind == "search_result":
        return {**SEARCH, "cache_control": marker}
    inner = [{**SEARCH["content"][0], "cache_control": marker}, SEARCH["content"][1]]
    return {**SEARCH, "content": inner}  # a marker on a text inside the search result


MARKED_KINDS = ["json", "search_result", "text inside a search_result"]


@pytest.mark.parametrize("marker", [EPH, H1], ids=["5m", "1h"])
@pytest.mark.parametrize("kind", MARKED_KINDS)
def test_a_users_marker_on_these_blocks_is_kept_on_the_tool_result(
    kind: str, marker: dict[str, Any]
) -> None:
    request = convert([marked(kind, marker)])
    (block,) = request.messages[-1].content
    assert block.type == "tool_result"
    assert block.cache_control is not None
    assert block.cache_control.to_wire() == marker
    # OpenAI-compatible wire: on the tool message's last part, as for a marked text part
    content = openai_tool_message(request)["content"]
    assert content[-1]["cache_control"] == marker
    assert all("cache_control" not in p for p in content[:-1])
    # Messages API: on the tool_result block, and nowhere inside it
    native = native_tool_result(request)
    assert native["cache_control"] == marker
    assert "cache_control" not in json.dumps(native["content"])


@pytest.mark.parametrize("kind", MARKED_KINDS)
def test_a_marked_block_renders_like_a_marked_text_part(kind: str) -> None:
    """Same place, same shape as the marker on a text part the tool could have returned."""
    request = convert([marked(kind, EPH)])
    text = request.messages[-1].content[0].data["content"][0]["text"]
    as_text = convert([{"type": "text", "text": text, "cache_control": EPH}])
    assert request.messages[-1].content[0].cache_control == (
        as_text.messages[-1].content[0].cache_control
    )
    assert wire_bytes(request, "openai") == wire_bytes(as_text, "openai")


def test_an_unmarked_block_leaves_the_message_marker_in_place() -> None:
    parts: list[str | dict[Any, Any]] = [{"type": "json", "json": [1]}, SEARCH]
    message = ToolMessage(parts, tool_call_id="toolu_1", additional_kwargs={"cache_control": H1})
    request = to_claude_request([*conversation([])[:2], message], model=MODEL)
    block = request.messages[-1].content[0]
    assert block.cache_control is not None
    assert block.cache_control.ttl == "1h"
    assert native_tool_result(request)["cache_control"] == H1


def test_an_error_result_with_these_blocks_keeps_its_flag() -> None:
    request = convert([{"type": "json", "json": {"error": "down"}}, SEARCH], status="error")
    assert native_tool_result(request)["is_error"] is True
    assert request.messages[-1].content[0].data["is_error"] is True


# -- end to end, against the embedded emulator ---------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[RelayEmulator]:
    with RelayEmulator() as emu:
        yield emu


class Recorder:
    """Keeps the JSON body of every request sent through an ``httpx2`` client."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> None:
        if request.method == "POST":
            self.bodies.append(json.loads(request.read()))


def emulator_llm(emu: RelayEmulator, api: str, recorder: Recorder) -> ChatClaudeRelay:
    params: dict[str, Any] = {
        "base_url": emu.base_url if api == "openai" else emu.base_url.removesuffix("/v1"),
        "api_key": "test" if api == "openai" else "sk-ant-emulator-key-0123456789",
        "model": MODEL,
        "api": api,
        "ledger": MemoryLedger(),
        "max_retries": 0,
        "timeout": 20,
        "http_client": httpx2.Client(event_hooks={"request": [recorder]}),
    }
    return ChatClaudeRelay(**params)


@pytest.mark.parametrize("api", WIRES)
def test_a_conversation_with_these_blocks_is_accepted_end_to_end(
    emulator: RelayEmulator, api: str
) -> None:
    recorder = Recorder()
    llm = emulator_llm(emulator, api, recorder)
    answer = llm.invoke(conversation([SEARCH, {"type": "json", "json": {"b": 2, "a": 1}}]))
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str)
    assert answer.content
    sent = recorder.bodies[-1]
    if api == "openai":
        tool_message = sent["messages"][-1]
        assert tool_message["role"] == "tool"
        texts = [p["text"] for p in tool_message["content"]]
        assert texts == [SEARCH_TEXT, '{"a":1,"b":2}']
    else:
        (result,) = sent["messages"][-1]["content"]
        assert result["type"] == "tool_result"
        assert result["content"] == [SEARCH_NATIVE, {"type": "text", "text": '{"a":1,"b":2}'}]


@tool
def lookup_docs(query: str) -> list[dict[str, Any]]:
    """Search the product docs."""
    return [SEARCH, {"type": "json", "json": {"query": query, "hits": 1}}]


@pytest.mark.parametrize("api", WIRES)
def test_an_agent_whose_tool_returns_these_blocks_runs_to_its_answer(
    emulator: RelayEmulator, api: str
) -> None:
    from langchain.agents import create_agent

    recorder = Recorder()
    agent = create_agent(emulator_llm(emulator, api, recorder), tools=[lookup_docs])
    state = agent.invoke({"messages": [HumanMessage("please use lookup_docs for 'timeout'")]})
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    tool_message = state["messages"][2]
    assert [p["type"] for p in tool_message.content] == ["search_result", "json"]
    assert state["messages"][-1].content
    assert len(recorder.bodies) == 2
