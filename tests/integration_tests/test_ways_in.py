"""The same behaviour through every way in: relay, native API, Bedrock and Vertex, on the emulator.

Each test runs once per way in, through the real SDK client of that way (the ``openai`` SDK, or
the ``anthropic`` SDK's ``Anthropic``, ``AnthropicBedrock`` with SigV4 signing, and
``AnthropicVertex``), against a fresh emulator that serves all four paths with one engine.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, Field
from ways_in import AWS_SECRET, VERTEX_TOKEN, WAYS_IN, way_params

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import OverloadedError, RequestValidationError
from langchain_claude_relay.usage import from_usage_metadata

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


_TAGS = itertools.count()


def _tag(name: str) -> str:
    """A fresh tag (plain words: a uuid would rightly look volatile to the planner)."""
    return f"{name} number {next(_TAGS)}"


def _document(tag: str, sentences: int = 150) -> str:
    return f"[{tag}] " + "The handbook explains how refunds and shipping work. " * sentences


def _llm(way: str, emu: RelayEmulator, **extra: Any) -> ChatClaudeRelay:
    """A model on ``way`` with its own planner: the session shares one state directory, so what
    other tests taught the default planner must not change these plans."""
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.store import MemoryStore

    extra.setdefault("cache", CachePlanner(store=MemoryStore()))
    return ChatClaudeRelay(**way_params(way, emu, ledger=False, max_retries=0, **extra))


def _endpoints(emu: RelayEmulator) -> list[str]:
    return [r.endpoint for r in emu.request_log]


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="the city, e.g. 'Paris'")


@pytest.fixture(params=WAYS_IN)
def way(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_invoke_reports_text_usage_and_cost(way: str, emulator: RelayEmulator) -> None:
    reply = _llm(way, emulator).invoke("Say hello.")
    assert isinstance(reply.content, str)
    assert reply.content
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_tokens"] > 0
    assert reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["cost_usd"] > 0
    assert len(emulator.billing_log) == 1
    billed = emulator.billing_log[0]
    assert reply.usage_metadata["output_tokens"] == billed.output_tokens


async def test_ainvoke_and_astream_match_the_billing(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator)
    reply = await llm.ainvoke("Say hello.")
    chunks = [c async for c in llm.astream("Say hello.")]
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert reply.content
    assert streamed.content
    assert streamed.usage_metadata is not None
    assert streamed.usage_metadata["output_tokens"] == emulator.billing_log[1].output_tokens
    assert len(chunks) > 2  # really streamed


def test_stream_gives_the_same_usage_as_the_bill(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator)
    chunks = list(llm.stream([("system", _document("s")), ("human", "Summarize.")]))
    full = chunks[0]
    for chunk in chunks[1:]:
        full += chunk
    billed = emulator.billing_log[-1]
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] == (
        billed.input_tokens + billed.cache_read + billed.cache_write_5m + billed.cache_write_1h
    )
    assert from_usage_metadata(full.usage_metadata).cache_write_tokens == (
        billed.cache_write_5m + billed.cache_write_1h
    )


def test_tool_call_and_tool_result_round_trip(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator).bind_tools([GetWeather], tool_choice="GetWeather")
    question = HumanMessage("What is the weather in Paris?")
    reply = llm.invoke([question])
    assert isinstance(reply, AIMessage)
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert call["name"] == "GetWeather"
    assert isinstance(call["args"].get("city"), str)
    follow_up = (
        _llm(way, emulator)
        .bind_tools([GetWeather])
        .invoke([question, reply, ToolMessage("Sunny, 21C", tool_call_id=call["id"])])
    )
    assert isinstance(follow_up.content, str)
    assert follow_up.content


def test_streamed_tool_call_has_its_arguments(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator).bind_tools([GetWeather], tool_choice="GetWeather")
    full = None
    for chunk in llm.stream("Weather in Oslo?"):
        full = chunk if full is None else full + chunk
    assert full is not None
    assert len(full.tool_calls) == 1
    assert full.tool_calls[0]["name"] == "GetWeather"
    assert isinstance(full.tool_calls[0]["args"].get("city"), str)


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output(way: str, method: str, emulator: RelayEmulator) -> None:
    structured = _llm(way, emulator).with_structured_output(GetWeather, method=method)  # type: ignore[arg-type]
    result = structured.invoke("Weather in 'Lima'?")
    assert isinstance(result, GetWeather)


def test_planned_cache_writes_then_reads(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator)
    messages = [("system", _document(_tag("doc"))), ("human", "Question one?")]
    first = llm.invoke(messages)
    second = llm.invoke([*messages[:1], ("human", "Question two?")])
    assert first.usage_metadata is not None
    assert second.usage_metadata is not None
    assert from_usage_metadata(first.usage_metadata).cache_write_tokens > 1024
    assert second.usage_metadata["input_token_details"]["cache_read"] > 1024
    assert first.response_metadata["cache_plan"]["breakpoints"]
    billed = emulator.billing_log
    assert billed[0].cache_write_5m + billed[0].cache_write_1h > 1024
    assert billed[1].cache_read > 1024


def test_one_hour_ttl_is_billed_as_one_hour(way: str, emulator: RelayEmulator) -> None:
    marked = {"type": "ephemeral", "ttl": "1h"}
    system = SystemMessage(
        [{"type": "text", "text": _document(_tag("ttl")), "cache_control": marked}]
    )
    reply = _llm(way, emulator, cache="off").invoke([system, HumanMessage("Hi")])
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_token_details"]["ephemeral_1h_input_tokens"] > 1024
    assert emulator.billing_log[0].cache_write_1h > 1024
    emulator.advance(600)  # ten minutes later, a 5m entry would be gone
    again = _llm(way, emulator, cache="off").invoke([system, HumanMessage("Again")])
    assert again.usage_metadata is not None
    assert again.usage_metadata["input_token_details"]["cache_read"] > 1024


def test_overloaded_is_a_typed_error_without_secrets(way: str, emulator: RelayEmulator) -> None:
    emulator.fail_next("529")
    llm = _llm(way, emulator)
    with pytest.raises(OverloadedError) as info:
        llm.invoke("Hi")
    text = f"{info.value}{info.value.args}{info.value.body_excerpt}"
    for secret in (AWS_SECRET, VERTEX_TOKEN, "sk-ant-emulator-key-0123456789"):
        assert secret not in text


def test_secrets_are_not_in_repr_or_dump(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator, cache="auto")  # a planner instance does not dump to JSON
    shown = f"{llm!r}{llm}{json.dumps(llm.model_dump(mode='json'), default=str)}"
    for secret in (AWS_SECRET, VERTEX_TOKEN, "sk-ant-emulator-key-0123456789"):
        assert secret not in shown


# -- native extras --------------------------------------------------------------------------


@pytest.mark.parametrize("native", ["anthropic", "bedrock", "vertex"])
def test_max_tokens_zero_warms_the_cache(native: str, emulator: RelayEmulator) -> None:
    llm = _llm(native, emulator)
    document = _document(_tag("warm"))
    warm = llm.invoke([("system", document), ("human", "Q?")], max_tokens=0)
    assert warm.content == ""
    assert warm.usage_metadata is not None
    assert warm.usage_metadata["output_tokens"] == 0
    assert from_usage_metadata(warm.usage_metadata).cache_write_tokens > 1024
    reply = llm.invoke([("system", document), ("human", "Another question?")])
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["input_token_details"]["cache_read"] > 1024


@pytest.mark.parametrize("native", ["anthropic", "vertex"])
def test_exact_token_counts_calibrate_the_planner(native: str, emulator: RelayEmulator) -> None:
    from langchain_claude_relay.planner import CachePlanner
    from langchain_claude_relay.store import MemoryStore

    emulator.configure(token_ratio=1.6)  # Claude counts 60% more than tiktoken here
    planner = CachePlanner(store=MemoryStore())
    messages = [("system", _document(_tag("count"), 40)), ("human", "Q?")]
    counted = _llm(native, emulator, cache=planner, exact_token_counts=True)
    reply = counted.invoke(messages)
    assert "count_tokens" in " ".join(_endpoints(emulator))
    estimated = reply.response_metadata["cache_plan"]["total_estimated_tokens"]
    actual = reply.usage_metadata["input_tokens"] if reply.usage_metadata else 0
    assert abs(estimated - actual) / actual < 0.10  # calibrated before the first call
    counted.invoke(messages)  # the same request is not counted twice
    assert sum("count_tokens" in e for e in _endpoints(emulator)) == 1


def test_exact_token_counts_are_refused_where_there_is_no_endpoint() -> None:
    with pytest.raises(ValueError, match="count-tokens"):
        ChatClaudeRelay(
            api="bedrock", aws_region="us-east-1", exact_token_counts=True, base_url=None
        )
    with pytest.raises(ValueError, match="count-tokens"):
        ChatClaudeRelay(base_url="https://relay.example/v1", api_key="k", exact_token_counts=True)


@pytest.mark.parametrize("native", ["anthropic", "bedrock", "vertex"])
def test_cache_miss_reason_is_surfaced(native: str, emulator: RelayEmulator) -> None:
    llm = _llm(native, emulator, cache_diagnostics=True)
    first = llm.invoke([("system", _document(_tag("a"))), ("human", "Q?")])
    assert first.response_metadata.get("cache_miss_reason") is None
    changed = llm.invoke(
        [("system", _document(_tag("b"))), ("human", "Q?"), first, ("human", "And?")]
    )
    reason = changed.response_metadata["cache_miss_reason"]
    assert reason["type"] == "system_changed"


def test_cache_diagnostics_are_refused_on_relays() -> None:
    with pytest.raises(ValueError, match="native"):
        ChatClaudeRelay(base_url="https://relay.example/v1", api_key="k", cache_diagnostics=True)


def test_json_mode_on_the_native_api_says_what_to_use(emulator: RelayEmulator) -> None:
    llm = _llm("anthropic", emulator).with_structured_output(None, method="json_mode")
    with pytest.raises(RequestValidationError, match="json_schema"):
        llm.invoke("Give me JSON")
    assert emulator.request_log == []


async def test_warm_then_fan_out_reads_everywhere(way: str, emulator: RelayEmulator) -> None:
    llm = _llm(way, emulator)
    document = _document(_tag("fan"), 200)
    warmed = await llm.awarm([("system", document), ("human", "Ready?")])
    assert warmed.usage_metadata is not None
    assert from_usage_metadata(warmed.usage_metadata).cache_write_tokens > 1024
    assert warmed.usage_metadata["output_tokens"] <= 1
    replies = await llm.abatch(
        [[("system", document), ("human", f"Question {i}?")] for i in range(5)]
    )
    for reply in replies:
        assert reply.usage_metadata is not None
        assert reply.usage_metadata["input_token_details"]["cache_read"] > 1024
    billed = emulator.billing_log
    assert sum(b.cache_write_5m + b.cache_write_1h > 1024 for b in billed) == 1  # the warm-up only


@pytest.mark.parametrize("way", WAYS_IN)
def test_an_uploaded_file_goes_only_to_claudes_own_api(way: str, emulator: RelayEmulator) -> None:
    # the Files API is Claude's own: a relay cannot see uploads, Bedrock and Vertex have none
    llm = ChatClaudeRelay(**way_params(way, emulator, ledger=False, max_retries=0))
    document = {"type": "document", "source": {"type": "file", "file_id": "file_011abc"}}
    turn = [HumanMessage([document, {"type": "text", "text": "Summarize it."}])]
    sent = len(emulator.request_log)
    if way == "anthropic":
        assert llm.invoke(turn).usage_metadata is not None
        return
    with pytest.raises(RequestValidationError, match="file_011abc"):
        llm.invoke(turn)
    assert len(emulator.request_log) == sent  # refused before sending


@pytest.mark.parametrize("way", ["bedrock", "vertex"])
def test_an_uploaded_image_inside_a_document_is_refused_too(
    way: str, emulator: RelayEmulator
) -> None:
    llm = ChatClaudeRelay(**way_params(way, emulator, ledger=False, max_retries=0))
    image = {"type": "image", "source": {"type": "file", "file_id": "file_IMG"}}
    source = {"type": "content", "content": [{"type": "text", "text": "a"}, image]}
    turn = [HumanMessage([{"type": "document", "source": source}, {"type": "text", "text": "hi"}])]
    sent = len(emulator.request_log)
    with pytest.raises(RequestValidationError, match="file_IMG"):
        llm.invoke(turn)
    assert len(emulator.request_log) == sent
