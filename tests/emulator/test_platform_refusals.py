"""The emulator refuses what the request's model refuses, with Claude's 400, on every path.

The facts come from the model table (``lookup_model``: ``thinking_types``, ``sampling``,
``takes_prefill``): a thinking type the model does not take, sampling settings Claude 4.7 and
later refuse (or ``temperature`` with ``top_p`` on Opus 4.1 to 4.6), sampling Claude refuses
while thinking, a prefilled assistant turn on Claude 4.6 and later, and (Messages paths) a
structured-output schema with an open object or a top-level ``reasoning_effort``. The client
refuses these before sending (``_settings_checks``); the emulator refusing them too makes a
client regression fail the tests. Each refusal sits next to the neighbouring request Claude
serves. Also: ``parallel_tool_calls`` keys the chat path's messages part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import (
    NO_PREFILL,
    SAMPLING_NOT_BOTH,
    THINKING_FORCED_TOOL,
    THINKING_TEMPERATURE,
    THINKING_TOP_K,
    THINKING_TOP_P,
    parse_anthropic,
    parse_openai,
)

from .conftest import prose

WAYS = ["openai", "anthropic", "bedrock", "vertex"]
NATIVE_WAYS = WAYS[1:]
NEW = "claude-sonnet-5-5"  # adaptive or between_tools thinking, no sampling, no prefill
MID = "claude-sonnet-4-6"  # every thinking type, temperature or top_p, no prefill
OLD = "claude-haiku-4-5"  # enabled or disabled thinking, any sampling, prefill taken
ALWAYS_THINKS = "claude-fable-5-1"  # adaptive only
UNLISTED = "claude-3-haiku-20240307"  # no thinking types in our sources: nothing refused
ASK = [{"role": "user", "content": "hello"}]
PREFILL = [*ASK, {"role": "assistant", "content": "Sure, here"}]
BUDGET = {"type": "enabled", "budget_tokens": 1024}
ADAPTIVE = {"type": "adaptive"}
ENABLED_ON_NEW = (
    '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" '
    'and "output_config.effort" to control thinking behavior.'
)


def url(way: str, model: str) -> str:
    return {
        "openai": "/v1/chat/completions",
        "anthropic": "/v1/messages",
        "bedrock": f"/model/{model}/invoke",
        "vertex": (
            f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{model}:rawPredict"
        ),
    }[way]


def body(way: str, model: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "openai": {"model": model},
        "anthropic": {"model": model, "max_tokens": 2000},
        "bedrock": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2000},
        "vertex": {"anthropic_version": "vertex-2023-10-16", "max_tokens": 2000},
    }[way]
    return {**base, "messages": ASK, **fields}


@pytest.fixture
def raw(emu: RelayEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.root_url, timeout=10) as client:
        yield client


def send(raw: httpx.Client, way: str, model: str, **fields: Any) -> httpx.Response:
    return raw.post(url(way, model), json=body(way, model, **fields))


def refusal(way: str, response: httpx.Response) -> str:
    """The message of a 400 ``invalid_request_error`` in the path's error shape."""
    assert response.status_code == 400, response.text
    document = response.json()
    if way == "bedrock":
        assert response.headers["x-amzn-errortype"] == "ValidationException"
        return str(document["message"])
    assert document["type"] == "error"
    assert document["error"]["type"] == "invalid_request_error"
    return str(document["error"]["message"])


def refused(emu: RelayEmulator, way: str, response: httpx.Response) -> str:
    message = refusal(way, response)
    assert emu.request_log[-1].outcome == "error:400"
    assert emu.billing_log == []
    return message


def served(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


# -- 1. thinking types -------------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
def test_a_budget_on_claude_4_7_and_later_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    message = refused(emu, way, send(raw, way, NEW, thinking=BUDGET))
    assert message == ENABLED_ON_NEW  # Claude's wording, whole


@pytest.mark.parametrize("way", WAYS)
def test_adaptive_on_claude_4_5_and_earlier_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    message = refused(emu, way, send(raw, way, OLD, thinking=ADAPTIVE))
    assert message == '"thinking.type.adaptive" is not supported for this model.'


@pytest.mark.parametrize("way", WAYS)
def test_disabled_on_a_model_that_always_thinks_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    message = refused(emu, way, send(raw, way, ALWAYS_THINKS, thinking={"type": "disabled"}))
    assert message == '"thinking.type.disabled" is not supported for this model.'


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("model", "thinking"),
    [
        (NEW, ADAPTIVE),
        (NEW, {"type": "between_tools"}),
        ("claude-sonnet-5", {"type": "disabled"}),
        (MID, BUDGET),
        (MID, ADAPTIVE),
        (OLD, BUDGET),
        (ALWAYS_THINKS, ADAPTIVE),
        (UNLISTED, ADAPTIVE),
        (UNLISTED, BUDGET),
    ],
    ids=[
        "new-adaptive",
        "new-between-tools",
        "sonnet-5-disabled",
        "mid-enabled",
        "mid-adaptive",
        "old-enabled",
        "always-adaptive",
        "unlisted-adaptive",
        "unlisted-enabled",
    ],
)
def test_the_thinking_types_a_model_takes_are_served(
    raw: httpx.Client, way: str, model: str, thinking: dict[str, Any]
) -> None:
    served(send(raw, way, model, thinking=thinking))


# -- 2. sampling per model ---------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"temperature": 0.2}, "temperature"),
        ({"temperature": 1, "top_p": 0.9}, "top_p"),  # Claude's default temperature passes
        ({"top_p": 0.9}, "top_p"),
        ({"top_k": 40}, "top_k"),
        ({"top_p": 0.9, "top_k": 40}, "top_p"),
        ({"temperature": None, "top_k": 40}, "top_k"),
    ],
)
def test_sampling_on_claude_4_7_and_later_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str, given: dict[str, Any], named: str
) -> None:
    message = refused(emu, way, send(raw, way, NEW, **given))
    assert message == f"`{named}` is deprecated for this model."


@pytest.mark.parametrize("way", WAYS)
def test_null_sampling_on_claude_4_7_and_later_is_served(raw: httpx.Client, way: str) -> None:
    served(send(raw, way, NEW, temperature=None, top_p=None, top_k=None))
    served(send(raw, way, NEW, temperature=1, top_p=1))  # Claude's defaults: "non-default" only


@pytest.mark.parametrize("way", WAYS)
def test_temperature_with_top_p_on_opus_4_1_to_4_6_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    message = refused(emu, way, send(raw, way, MID, temperature=0.5, top_p=0.9))
    assert message == SAMPLING_NOT_BOTH
    assert message == (
        "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    )


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(
    ("model", "given"),
    [
        (MID, {"temperature": 0.5, "top_k": 40}),
        (MID, {"top_p": 0.9, "top_k": 40}),
        (OLD, {"temperature": 0.5, "top_p": 0.9, "top_k": 40}),  # no rule in our sources
    ],
    ids=["mid-temperature", "mid-top-p", "old-both"],
)
def test_the_sampling_a_model_takes_is_served(
    raw: httpx.Client, way: str, model: str, given: dict[str, Any]
) -> None:
    served(send(raw, way, model, **given))


# -- 3. sampling while thinking ----------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("thinking", [ADAPTIVE, BUDGET], ids=["adaptive", "enabled"])
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"temperature": 0.5}, THINKING_TEMPERATURE),
        ({"temperature": 0}, THINKING_TEMPERATURE),
        ({"top_k": 40}, THINKING_TOP_K),
        ({"top_k": 0}, THINKING_TOP_K),
        ({"top_p": 0.9}, THINKING_TOP_P),
    ],
    ids=["temperature", "temperature-0", "top-k", "top-k-0", "top-p"],
)
def test_sampling_claude_refuses_while_thinking_is_refused(
    emu: RelayEmulator,
    raw: httpx.Client,
    way: str,
    thinking: dict[str, Any],
    given: dict[str, Any],
    message: str,
) -> None:
    assert refused(emu, way, send(raw, way, MID, thinking=thinking, **given)).startswith(message)


def test_the_thinking_sampling_messages_are_claudes() -> None:
    assert THINKING_TEMPERATURE == (
        "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode."
    )
    assert THINKING_TOP_K.startswith("`top_k` must be unset when thinking is enabled")


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("thinking", [ADAPTIVE, BUDGET], ids=["adaptive", "enabled"])
@pytest.mark.parametrize(
    "given",
    [{"temperature": 1}, {"temperature": 1.0}, {"top_p": 0.95}, {"top_p": 1}, {"top_k": None}],
    ids=["temperature-1", "temperature-1.0", "top-p-0.95", "top-p-1", "top-k-null"],
)
def test_the_sampling_claude_takes_while_thinking_is_served(
    raw: httpx.Client, way: str, thinking: dict[str, Any], given: dict[str, Any]
) -> None:
    served(send(raw, way, MID, thinking=thinking, **given))


@pytest.mark.parametrize("way", WAYS)
def test_thinking_off_takes_any_sampling(raw: httpx.Client, way: str) -> None:
    served(send(raw, way, MID, thinking={"type": "disabled"}, temperature=0, top_k=5))
    served(send(raw, way, MID, top_p=0.5, top_k=5))


def test_thinking_with_a_forced_tool_choice_is_still_refused(
    emu: RelayEmulator, raw: httpx.Client
) -> None:
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    response = send(
        raw, "anthropic", MID, thinking=ADAPTIVE, tools=[tool], tool_choice={"type": "any"}
    )
    assert refused(emu, "anthropic", response) == THINKING_FORCED_TOOL


# -- 4. prefill --------------------------------------------------------------------------


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("model", [NEW, MID])
def test_a_prefill_on_claude_4_6_and_later_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str, model: str
) -> None:
    message = refused(emu, way, send(raw, way, model, messages=PREFILL))
    assert message == NO_PREFILL
    assert message == (
        "This model does not support assistant message prefill. The conversation must end "
        "with a user message."
    )


@pytest.mark.parametrize("way", WAYS)
def test_a_prefill_on_a_model_that_takes_it_is_served(raw: httpx.Client, way: str) -> None:
    served(send(raw, way, OLD, messages=PREFILL))
    served(send(raw, way, UNLISTED, messages=PREFILL))


@pytest.mark.parametrize("way", WAYS)
def test_a_conversation_ending_with_a_user_turn_is_served(raw: httpx.Client, way: str) -> None:
    served(send(raw, way, NEW, messages=[*PREFILL, {"role": "user", "content": "go on"}]))


def test_a_system_message_after_the_assistant_turn_is_still_a_prefill(
    emu: RelayEmulator, raw: httpx.Client
) -> None:
    # the chat path's system messages become system blocks wherever they sit
    messages = [*PREFILL, {"role": "system", "content": "Be brief."}]
    assert refused(emu, "openai", send(raw, "openai", NEW, messages=messages)) == NO_PREFILL
    served(send(raw, "openai", NEW, messages=[*messages, {"role": "user", "content": "go"}]))


# -- 5. structured-output schemas (Messages paths) ---------------------------------------

CITY = {"type": "string"}


def closed(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def opened(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "additionalProperties"}


OPEN_SCHEMAS: dict[str, tuple[dict[str, Any], str]] = {
    "top": (opened(closed(city=CITY)), ""),
    "property": (closed(address=opened(closed(city=CITY))), " (at properties.address)"),
    "items": (
        closed(stops={"type": "array", "items": opened(closed(city=CITY))}),
        " (at properties.stops.items)",
    ),
    "defs": (
        {**closed(home={"$ref": "#/$defs/place"}), "$defs": {"place": opened(closed(city=CITY))}},
        " (at $defs.place)",
    ),
    "definitions": (
        {**closed(), "definitions": {"place": {"type": ["object", "null"]}}},
        " (at definitions.place)",
    ),
    "anyOf": (
        closed(place={"anyOf": [{"type": "null"}, opened(closed(city=CITY))]}),
        " (at properties.place.anyOf.1)",
    ),
    "allOf": (
        closed(place={"allOf": [opened(closed(city=CITY))]}),
        " (at properties.place.allOf.0)",
    ),
    "oneOf": (
        closed(place={"oneOf": [opened(closed(city=CITY))]}),
        " (at properties.place.oneOf.0)",
    ),
}
OPEN_OBJECT = "For 'object' type, 'additionalProperties' must be explicitly set to false"


def structured(where: str, schema: dict[str, Any]) -> dict[str, Any]:
    fmt = {"type": "json_schema", "schema": schema}
    return (
        {"output_config": {"format": fmt}} if where == "output_config" else {"output_format": fmt}
    )


@pytest.mark.parametrize("way", NATIVE_WAYS)
@pytest.mark.parametrize("where", ["output_config", "output_format"])
@pytest.mark.parametrize("case", list(OPEN_SCHEMAS))
def test_a_schema_with_an_open_object_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str, where: str, case: str
) -> None:
    schema, at = OPEN_SCHEMAS[case]
    message = refused(emu, way, send(raw, way, MID, **structured(where, schema)))
    field = "output_config.format" if where == "output_config" else "output_format"
    assert message == f"{field}.schema: {OPEN_OBJECT}{at}"


@pytest.mark.parametrize("way", NATIVE_WAYS)
def test_an_object_open_by_value_is_refused(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    schema = {**closed(city=CITY), "additionalProperties": True}
    message = refused(emu, way, send(raw, way, MID, **structured("output_config", schema)))
    assert message == (
        "output_config.format.schema: For 'object' type, 'additionalProperties: true' is not "
        "supported. Please set 'additionalProperties' to false"
    )


@pytest.mark.parametrize("way", NATIVE_WAYS)
def test_a_closed_schema_is_served(raw: httpx.Client, way: str) -> None:
    schema = {
        **closed(
            address=closed(city=CITY),
            stops={"type": "array", "items": closed(city=CITY)},
            place={"anyOf": [{"type": "null"}, {"$ref": "#/$defs/place"}]},
        ),
        "$defs": {"place": closed(city=CITY)},
    }
    served(send(raw, way, MID, **structured("output_config", schema)))
    served(send(raw, way, MID, output_config={"effort": "low"}))  # no format: no schema


def test_the_chat_paths_response_format_is_left_to_the_relay(raw: httpx.Client) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": opened(closed())}}
    served(send(raw, "openai", MID, response_format=fmt))


# -- 6. parallel_tool_calls keys the chat path's messages part ---------------------------

OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def context(**fields: Any) -> str:
    return parse_openai({"model": MID, "messages": ASK, **fields}).context_hash


def test_parallel_tool_calls_false_keys_the_messages_part() -> None:
    tools = {"tools": [OPENAI_TOOL]}
    absent = context(**tools)
    assert context(**tools, parallel_tool_calls=True) == absent  # Claude's default
    assert context(**tools, parallel_tool_calls=None) == absent
    assert context(**tools, parallel_tool_calls=False) != absent
    auto = context(**tools, tool_choice="auto")
    assert context(**tools, tool_choice="auto", parallel_tool_calls=False) != auto
    # without tools (or with tool_choice "none") there is no tool choice to carry it
    assert context(parallel_tool_calls=False) == context()
    none = context(**tools, tool_choice="none")
    assert context(**tools, tool_choice="none", parallel_tool_calls=False) == none


def test_parallel_tool_calls_must_be_a_boolean(emu: RelayEmulator, raw: httpx.Client) -> None:
    response = send(raw, "openai", MID, tools=[OPENAI_TOOL], parallel_tool_calls="false")
    assert (
        refused(emu, "openai", response) == "parallel_tool_calls: Input should be a valid boolean"
    )


def test_parallel_tool_calls_false_misses_the_cached_messages(
    emu: RelayEmulator, raw: httpx.Client
) -> None:
    document = {"type": "text", "text": prose(1500, 61), "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "user", "content": [document]}]

    def reads(**fields: Any) -> int:
        response = send(raw, "openai", MID, messages=messages, tools=[OPENAI_TOOL], **fields)
        served(response)
        return int(response.json()["usage"]["prompt_tokens_details"]["cached_tokens"])

    assert reads() == 0  # writes
    assert reads(parallel_tool_calls=True) > 0  # the same key
    assert reads(parallel_tool_calls=False) == 0  # another messages part: writes again
    assert reads(parallel_tool_calls=False) > 0


# -- 7. reasoning_effort on the Messages paths -------------------------------------------


@pytest.mark.parametrize("way", NATIVE_WAYS)
def test_reasoning_effort_is_refused_on_the_messages_paths(
    emu: RelayEmulator, raw: httpx.Client, way: str
) -> None:
    response = send(raw, way, MID, reasoning_effort="low")
    assert refused(emu, way, response) == "reasoning_effort: Extra inputs are not permitted"
    served(send(raw, way, MID, output_config={"effort": "low"}))  # what Claude takes


def test_reasoning_effort_is_refused_when_counting_tokens(raw: httpx.Client) -> None:
    payload = {"model": MID, "messages": ASK, "reasoning_effort": "low"}
    response = raw.post("/v1/messages/count_tokens", json=payload)
    assert refusal("anthropic", response) == "reasoning_effort: Extra inputs are not permitted"


def test_reasoning_effort_is_served_on_the_chat_path(raw: httpx.Client) -> None:
    served(send(raw, "openai", MID, reasoning_effort="low"))  # relays turn it into thinking


def test_parse_anthropic_refuses_reasoning_effort() -> None:
    with pytest.raises(ValueError, match="reasoning_effort: Extra inputs are not permitted"):
        parse_anthropic({"model": MID, "messages": ASK, "reasoning_effort": "high"})
