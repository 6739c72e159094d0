"""A LangChain tool's ``extras`` are read as ChatAnthropic reads them, not dropped.

LangChain v1 keeps a tool's provider settings in ``BaseTool.extras`` (and its middleware, on a
tool dict, in an ``"extras"`` dict): ``extras["cache_control"]`` is Claude's marker on the tool
(ModelFallbackMiddleware strips it there, ChatAnthropic sends it). It is read, checked and planned
as a marker written on a tool dict, on every way in; Claude's other tool settings there
(``input_examples``, ``defer_loading``...) go where the same key in a tool's ``function`` goes;
another provider's key is left out with one warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from test_convert_tool_blocks import Recorder

from langchain_claude_relay import ChatClaudeRelay, _convert
from langchain_claude_relay._convert import convert_tool, to_claude_request
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.wire.anthropic_messages import (
    _TOOL_EXTRA_KEYS,
    render_messages_payload,
)

MODEL = "claude-sonnet-4-6"
H1 = {"type": "ephemeral", "ttl": "1h"}
M5 = {"type": "ephemeral"}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
FUNCTION = {"name": "get_weather", "description": "Weather for a city.", "parameters": SCHEMA}


def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


def weather_tool(extras: dict[str, Any] | None) -> BaseTool:
    return StructuredTool.from_function(get_weather, extras=extras)


def dict_tool(marker: Any) -> dict[str, Any]:
    return {"type": "function", "function": dict(FUNCTION), "cache_control": marker}


def markers(body: dict[str, Any]) -> list[Any]:
    """Every ``cache_control`` in a request body, in order."""
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "cache_control" in node:
                found.append(node["cache_control"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return found


def planner() -> CachePlanner:
    return CachePlanner(store=MemoryStore(), clock=lambda: 0.0)


# -- end to end: the marker reaches the wire on the relay path and on api="anthropic" ----------


@pytest.fixture(scope="module")
def emulator() -> Iterator[RelayEmulator]:
    with RelayEmulator() as emu:
        yield emu


def emulator_llm(emu: RelayEmulator, api: str, recorder: Recorder) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emu.base_url if api == "openai" else emu.base_url.removesuffix("/v1"),
        api_key="test" if api == "openai" else "sk-ant-emulator-key-0123456789",
        model=MODEL,
        api=api,
        cache=planner(),
        ledger=MemoryLedger(),
        max_retries=0,
        timeout=20,
        http_client=httpx2.Client(event_hooks={"request": [recorder]}),
    )


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("how", ["bind_tools", "per_call"])
def test_a_marker_in_a_tools_extras_reaches_the_wire(
    emulator: RelayEmulator, api: str, how: str
) -> None:
    recorder = Recorder()
    llm = emulator_llm(emulator, api, recorder)
    tool = weather_tool({"cache_control": H1})
    if how == "bind_tools":
        answer = llm.bind_tools([tool]).invoke("weather in Paris?")
    else:
        answer = llm.invoke("weather in Paris?", tools=[tool])
    (sent,) = recorder.bodies[-1]["tools"]
    assert sent["cache_control"] == H1
    name = sent["function"]["name"] if api == "openai" else sent["name"]
    assert name == "get_weather"
    (breakpoint_,) = [
        b for b in answer.response_metadata["cache_plan"]["breakpoints"] if b["source"] == "user"
    ]
    assert (breakpoint_["position"], breakpoint_["ttl"]) == ("tools[0]", "1h")


def test_extras_and_a_dict_marker_give_the_same_request() -> None:
    from_extras = to_claude_request("hi", model=MODEL, tools=[weather_tool({"cache_control": H1})])
    from_dict = to_claude_request("hi", model=MODEL, tools=[dict_tool(H1)])
    assert from_extras.tools == from_dict.tools
    assert from_extras.tools[0].cache_control is not None
    assert from_extras.tools[0].cache_control.ttl == "1h"


# -- a bad marker in extras gets the error a bad marker on a tool dict gets ---------------------

BAD_MARKERS = [
    {"type": "ephemeral", "ttl": "2h"},
    {"type": "persistent"},
    "1h",
    {"ttl": "1h"},
]


def _problem(exc: RequestValidationError) -> str:
    """The message without its ``tools[0]`` / ``tools[0].extras`` location."""
    return str(exc).split(": ", 1)[1]


@pytest.mark.parametrize("bad", BAD_MARKERS, ids=repr)
def test_a_bad_marker_in_extras_is_refused_as_on_a_tool_dict(
    bad: Any, relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    with pytest.raises(RequestValidationError) as on_dict:
        convert_tool(dict_tool(bad), "tools[0]")
    with pytest.raises(RequestValidationError) as in_extras:
        convert_tool(weather_tool({"cache_control": bad}), "tools[0]")
    assert _problem(in_extras.value) == _problem(on_dict.value)
    assert "invalid cache_control" in str(in_extras.value)
    assert str(in_extras.value).startswith("tools[0].extras: ")
    llm = make_llm()
    tool = weather_tool({"cache_control": bad})
    for attempt in (
        lambda: llm.bind_tools([tool]),
        lambda: llm.invoke("weather", tools=[tool]),
        lambda: to_claude_request("weather", model=MODEL, tools=[tool]),
    ):
        with pytest.raises(RequestValidationError, match="invalid cache_control"):
            attempt()
    assert relay.requests == []


# -- the marker takes one of the four slots, and the rules of order apply to it ----------------


def _marked(text: str, marker: dict[str, str]) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": marker}


def test_a_marker_in_extras_counts_toward_the_four_slots(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    messages = [
        SystemMessage([_marked("rules", M5), _marked("more rules", M5)]),
        HumanMessage([_marked("context", M5), _marked("question", M5)]),
    ]
    llm = make_llm()
    with pytest.raises(RequestValidationError, match="5 cache_control markers") as from_dict:
        llm.invoke(messages, tools=[dict_tool(M5)])
    with pytest.raises(RequestValidationError, match="5 cache_control markers") as from_extras:
        llm.invoke(messages, tools=[weather_tool({"cache_control": M5})])
    assert str(from_extras.value) == str(from_dict.value)
    assert relay.requests == []


def test_a_1h_marker_after_a_5m_marker_in_extras_is_refused(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    messages = [SystemMessage([_marked("rules", H1)]), HumanMessage("hi")]
    with pytest.raises(RequestValidationError, match="every 1h marker must come before"):
        make_llm().invoke(messages, tools=[weather_tool({"cache_control": M5})])
    assert relay.requests == []


def test_the_planner_plans_around_a_marker_in_extras(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    document = "The relay forwards requests to Claude and reports usage. " * 400
    messages = [
        SystemMessage([_marked(document, H1), {"type": "text", "text": "Be brief."}]),
        HumanMessage([_marked("first question", H1), {"type": "text", "text": "and now?"}]),
    ]
    answer = make_llm(cache=planner()).invoke(messages, tools=[weather_tool({"cache_control": H1})])
    sent = markers(relay.last)
    assert len(sent) <= 4
    assert relay.last["tools"][0]["cache_control"] == H1
    plan = answer.response_metadata["cache_plan"]
    users = [b["position"] for b in plan["breakpoints"] if b["source"] == "user"]
    assert users[0] == "tools[0]"
    assert len(users) == 3
    assert len(plan["breakpoints"]) == len(sent)


# -- a tool dict with an "extras" dict (as LangChain's middleware leaves dict tools) -----------


@pytest.mark.parametrize(
    "shape",
    [
        {"type": "function", "function": dict(FUNCTION)},
        dict(FUNCTION),
        {"name": "get_weather", "description": "Weather for a city.", "input_schema": SCHEMA},
    ],
    ids=["openai", "bare_function", "claude"],
)
def test_a_tool_dicts_extras_are_read(shape: dict[str, Any]) -> None:
    tool = convert_tool({**shape, "extras": {"cache_control": H1}})
    assert tool.cache_control is not None
    assert tool.cache_control.ttl == "1h"
    assert "extras" not in tool.extra
    assert tool == convert_tool({**shape, "cache_control": H1})


def test_a_json_schema_tools_extras_stay_out_of_its_parameters() -> None:
    schema = {"title": "get_weather", **SCHEMA, "extras": {"cache_control": M5}}
    tool = convert_tool(schema)
    assert "extras" not in tool.parameters
    assert tool.cache_control is not None


def test_extras_that_are_not_a_dict_are_refused_and_none_is_no_extras() -> None:
    with pytest.raises(RequestValidationError, match="extras must be a dict"):
        convert_tool({"type": "function", "function": dict(FUNCTION), "extras": ["1h"]})
    # as ModelFallbackMiddleware leaves a tool whose extras held only the marker
    assert convert_tool(weather_tool(None)).cache_control is None
    assert convert_tool({**dict_tool(None), "extras": None}).cache_control is None
    assert convert_tool(weather_tool({})).cache_control is None


# -- a marker or a setting given twice ----------------------------------------------------------


def test_the_same_marker_twice_is_one_marker_and_two_that_disagree_are_refused() -> None:
    tool = convert_tool({**dict_tool(H1), "extras": {"cache_control": H1}})
    assert tool.cache_control is not None
    assert tool.cache_control.ttl == "1h"
    with pytest.raises(RequestValidationError, match="two cache_control markers that disagree"):
        convert_tool({**dict_tool(M5), "extras": {"cache_control": H1}})


def test_a_setting_given_twice_with_two_values_is_refused() -> None:
    tool = {
        "type": "function",
        "function": {**FUNCTION, "strict": True},
        "extras": {"strict": False},
    }
    with pytest.raises(RequestValidationError, match="'strict' twice"):
        convert_tool(tool)


# -- Claude's other tool settings in extras: sent where the same key on a tool dict is sent ----

EXAMPLES = [{"city": "Paris"}]


def test_claude_settings_are_the_ones_the_messages_api_renders() -> None:
    assert _convert.CLAUDE_TOOL_SETTINGS == _TOOL_EXTRA_KEYS


def test_claude_settings_in_extras_are_kept_as_in_a_function_dict() -> None:
    extras = {"input_examples": EXAMPLES, "defer_loading": False, "cache_control": M5}
    from_extras = convert_tool(weather_tool(extras))
    from_dict = convert_tool(
        {
            "type": "function",
            "function": {**FUNCTION, "input_examples": EXAMPLES, "defer_loading": False},
            "cache_control": M5,
        }
    )
    assert from_extras == from_dict
    request = to_claude_request("hi", model=MODEL, tools=[weather_tool(extras)])
    (native,) = render_messages_payload(request, {})["tools"]
    assert native["input_examples"] == EXAMPLES
    assert native["defer_loading"] is False
    assert native["cache_control"] == M5


def test_claude_settings_in_extras_reach_the_relay_and_survive_bind_tools(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    tool = weather_tool({"input_examples": EXAMPLES, "cache_control": H1})
    make_llm().bind_tools([tool]).invoke("weather")
    (sent,) = relay.last["tools"]
    assert sent["function"]["input_examples"] == EXAMPLES
    assert sent["cache_control"] == H1


def test_another_providers_key_in_extras_is_left_out_with_one_warning(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    forget_warnings(lambda key: isinstance(key, tuple) and key[:1] == ("tool_extras_left_out",))
    tool = weather_tool({"async": True, "cache_control": M5})
    with pytest.warns(UserWarning, match=r"extras \['async'\] are not Claude tool settings"):
        converted = convert_tool(tool)
    assert "async" not in converted.extra
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_llm().invoke("weather", tools=[tool])
    assert not [w for w in caught if "not Claude tool settings" in str(w.message)]  # said once
    (sent,) = relay.last["tools"]
    assert "async" not in json.dumps(sent)
    assert sent["cache_control"] == M5
