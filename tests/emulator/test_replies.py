"""Deterministic replies: tool calls and JSON that validate, max_tokens, stop, agent loops end."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any, Literal
from uuid import UUID

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import parse_anthropic, parse_openai
from langchain_claude_relay.emulator.replies import make_reply, reply_spec, schema_instance
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer

from .conftest import MODEL

COUNT = EmulatorTokenizer().count_text


class Unit(str, Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Weather(BaseModel):
    city: str
    unit: Unit
    days: int = Field(ge=1, le=7)


class Address(BaseModel):
    street: str = Field(min_length=12)
    zip: str = Field(max_length=5)


class Person(BaseModel):
    name: str
    age: int = Field(gt=17)
    tags: list[str] = Field(min_length=2)
    address: Address
    nickname: str | None = None


class Item(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class Order(BaseModel):
    id: UUID
    placed: datetime
    total: float = Field(ge=0.5, multiple_of=0.25)
    items: list[Item] = Field(min_length=1)
    status: Literal["open", "shipped"]
    codes: set[int] = Field(min_length=3)
    pair: tuple[int, str]


class Tree(BaseModel):
    value: int
    children: list[Tree] = Field(default_factory=list)


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=1, multiple_of=3)


class Dog(BaseModel):
    kind: Literal["dog"]
    barks: bool


class Owner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pet: Cat | Dog = Field(discriminator="kind")
    since: int = Field(gt=1999, lt=2100)


MODELS: list[type[BaseModel]] = [Weather, Person, Order, Tree, Owner]


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_schema_instance_validates(model: type[BaseModel]) -> None:
    instance = schema_instance(model.model_json_schema())
    model.model_validate_json(json.dumps(instance))  # raises if invalid


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"type": ["null", "integer"], "minimum": 5}, lambda v: v == 5),
        (
            {
                "allOf": [
                    {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"required": ["b"], "properties": {"b": {"const": 3}}},
                ]
            },
            lambda v: v == {"a": "example", "b": 3},
        ),
        (
            {
                "type": "array",
                "items": {"enum": ["x", "y", "z"]},
                "minItems": 3,
                "uniqueItems": True,
            },
            lambda v: sorted(v) == ["x", "y", "z"],
        ),
        (
            {
                "type": "object",
                "minProperties": 2,
                "properties": {"p": {"type": "boolean"}, "q": {"type": "null"}},
            },
            lambda v: v == {"p": False, "q": None},
        ),
        ({"type": "number", "exclusiveMaximum": -3}, lambda v: v < -3),
        ({"type": "string", "format": "email"}, lambda v: "@" in v),
    ],
)
def test_schema_instance_keywords(schema: dict[str, Any], check: Any) -> None:
    assert check(schema_instance(schema))


def tool(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": model.__name__.lower(),
            "description": "d",
            "parameters": model.model_json_schema(),
        },
    }


def spec_for(messages: list[dict[str, Any]], **extra: Any) -> Any:
    payload = {"model": MODEL, "messages": messages, **extra}
    return reply_spec(payload, parse_openai(payload))


TOOLS = [tool(Weather), tool(Person)]
ASK = [{"role": "user", "content": "Tell me something."}]
NAMES_PERSON = [{"role": "user", "content": "Please use person for Ada."}]
AFTER_RESULT = [
    *NAMES_PERSON,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "person", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "Ada, 36"},
]
AFTER_BOTH = [
    *AFTER_RESULT,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
]


@pytest.mark.parametrize(
    ("messages", "tool_choice", "expected"),
    [
        (ASK, {"type": "function", "function": {"name": "person"}}, "person"),
        (ASK, "required", "weather"),  # forced, no tool named: the first
        (NAMES_PERSON, "required", "person"),
        (NAMES_PERSON, None, "person"),  # auto: the user names the tool
        (ASK, "auto", None),
        (NAMES_PERSON, "none", None),
        # after a tool result: text, so that agent loops end, unless a forced tool is new
        (AFTER_RESULT, None, None),
        (AFTER_RESULT, "required", "weather"),  # the first tool not called yet
        (AFTER_RESULT, {"type": "function", "function": {"name": "weather"}}, "weather"),
        (AFTER_RESULT, {"type": "function", "function": {"name": "person"}}, None),  # called
        (AFTER_BOTH, "required", None),  # every tool called
    ],
)
def test_when_a_tool_is_called(
    messages: list[dict[str, Any]], tool_choice: Any, expected: str | None
) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice is not None else {}
    reply = make_reply(spec_for(messages, tools=TOOLS, **extra), COUNT)
    assert [c.name for c in reply.tool_calls] == ([expected] if expected else [])
    assert reply.stop_reason == ("tool_use" if expected else "end_turn")
    assert bool(reply.text) is (expected is None)


class Magic(BaseModel):
    input: int = Field(gt=-1000, lt=1000)


class Customer(BaseModel):
    customer_name: str
    employees: int = Field(ge=1)


def tool_named(name: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": model.model_json_schema()}}


@pytest.mark.parametrize(
    ("text", "name", "model", "expected"),
    [
        (
            "What is the value of magic_function(3)? Use the tool.",
            "magic_function",
            Magic,
            {"input": 3},
        ),
        (
            "Try magic_function(5000), then magic_function(-7).",
            "magic_function",
            Magic,
            {"input": -7},
        ),  # 5000 does not fit
        (
            "Create a customer named '你好啊集团' with 40 staff",
            "unicode_customer",
            Customer,
            {"customer_name": "你好啊集团", "employees": 40},
        ),
        (
            "Create a customer please",
            "unicode_customer",
            Customer,
            {"customer_name": "example", "employees": 1},
        ),
    ],
)
def test_tool_arguments_copy_literals_from_the_question(
    text: str, name: str, model: type[BaseModel], expected: dict[str, Any]
) -> None:
    reply = make_reply(
        spec_for([{"role": "user", "content": text}], tools=[tool_named(name, model)]), COUNT
    )
    arguments = json.loads(
        reply.tool_calls[0].arguments
    )  # auto mode: a word of the tool name is in the text
    assert arguments == expected
    model.model_validate(arguments)


@pytest.mark.parametrize(
    ("text", "called"),
    [
        ("What is the weather in San Francisco, CA?", "get_weather"),
        ("Use findUser for Ada", "findUser"),
        ("Find the user Ada", "findUser"),  # "user" is a distinctive word of findUser
        ("Tell me a joke", None),
        ("Run the search", None),  # "search" alone is too generic to name search_tool
    ],
)
def test_auto_mode_calls_the_tool_the_text_names(text: str, called: str | None) -> None:
    tools = [tool_named(n, Weather) for n in ("get_weather", "findUser", "search_tool")]
    reply = make_reply(spec_for([{"role": "user", "content": text}], tools=tools), COUNT)
    assert [c.name for c in reply.tool_calls] == ([called] if called else [])


def test_anthropic_tool_choice_shapes() -> None:
    payload = {
        "model": MODEL,
        "max_tokens": 50,
        "tools": [{"name": "weather", "input_schema": Weather.model_json_schema()}],
        "tool_choice": {"type": "tool", "name": "weather"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = make_reply(reply_spec(payload, parse_anthropic(payload)), COUNT)
    Weather.model_validate_json(reply.tool_calls[0].arguments)


def test_replies_are_deterministic_and_derived_from_the_input() -> None:
    one = make_reply(spec_for([{"role": "user", "content": "question one"}]), COUNT)
    again = make_reply(spec_for([{"role": "user", "content": "question one"}]), COUNT)
    other = make_reply(spec_for([{"role": "user", "content": "question two"}]), COUNT)
    assert one == again
    assert one.text != other.text
    assert one.output_tokens == COUNT(one.text)


@pytest.mark.parametrize("max_tokens", [1, 5, 12])
def test_max_tokens_caps_the_output(max_tokens: int) -> None:
    full = make_reply(spec_for(ASK), COUNT)
    capped = make_reply(spec_for(ASK, max_tokens=max_tokens), COUNT)
    assert full.output_tokens > max_tokens
    assert capped.stop_reason == "max_tokens"
    assert capped.output_tokens == max_tokens
    assert COUNT(capped.text) <= max_tokens
    assert full.text.startswith(capped.text)


def test_max_tokens_cuts_a_tool_call_off() -> None:
    """A keep-alive (``max_tokens`` 1) of a request that calls a tool: one output token."""
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    tools = [tool_named("get_weather", Weather)]
    full = make_reply(spec_for(ask, tools=tools), COUNT)
    assert [c.name for c in full.tool_calls] == ["get_weather"]
    cut = make_reply(spec_for(ask, tools=tools, max_tokens=1), COUNT)
    assert (cut.tool_calls, cut.stop_reason, cut.output_tokens) == ((), "max_tokens", 1)
    roomy = make_reply(spec_for(ask, tools=tools, max_tokens=full.output_tokens), COUNT)
    assert roomy == full


@pytest.mark.parametrize("position", [2, 5])
def test_stop_sequence_ends_the_text(position: int) -> None:
    full = make_reply(spec_for(ASK), COUNT).text
    stop = full.split()[position]
    reply = make_reply(spec_for(ASK, stop=["NEVER-THERE", stop]), COUNT)
    assert reply.text == full[: full.index(stop)]
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", stop)


# -- through the wire -------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_forced_tool_call_arguments_validate(client: openai.OpenAI, model: type[BaseModel]) -> None:
    name = model.__name__.lower()
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        tools=[tool(model)],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": name}},
    )
    call = response.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert response.choices[0].finish_reason == "tool_calls"
    assert call.function.name == name  # type: ignore[union-attr]
    model.model_validate_json(call.function.arguments)  # type: ignore[union-attr]


def test_streamed_tool_call_arguments_validate(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[tool(Order)],
        tool_choice="required",
        stream=True,  # type: ignore[arg-type, list-item]
    )
    pieces = [
        c.choices[0].delta.tool_calls[0].function.arguments
        for c in stream
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert len(pieces) >= 3  # the name chunk, then several argument chunks
    Order.model_validate_json("".join(p or "" for p in pieces))


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_json_schema_response_format_validates(
    client: openai.OpenAI, model: type[BaseModel]
) -> None:
    response = client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": model.model_json_schema()},
        },
    )
    model.model_validate_json(response.choices[0].message.content or "")


def test_anthropic_tool_use_input_validates(emu: RelayEmulator, http: Any) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 200,
        "tools": [
            {"name": "person", "description": "d", "input_schema": Person.model_json_schema()}
        ],
        "tool_choice": {"type": "any"},
        "messages": [{"role": "user", "content": "who?"}],
    }
    data = http.post("/v1/messages", json=body).json()
    assert data["stop_reason"] == "tool_use"
    Person.model_validate(data["content"][0]["input"])


def test_max_tokens_and_stop_through_the_sdk(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]
    capped = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=4)  # type: ignore[arg-type]
    assert (capped.choices[0].finish_reason, capped.usage.completion_tokens) == ("length", 4)  # type: ignore[union-attr]
    text = full.choices[0].message.content or ""
    stop = text.split()[3]
    stopped = client.chat.completions.create(model=MODEL, messages=ASK, stop=[stop])  # type: ignore[arg-type]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == text[: text.index(stop)]
