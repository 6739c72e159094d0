"""What Claude refuses around thinking and ``max_tokens: 0`` is refused here first, or avoided.

* Extended thinking with a forced tool choice: a clear error before sending; structured output
  on a thinking model binds its schema without forcing it.
* A thinking budget needs ``max_tokens`` above it: the default makes room, a given one at or
  below the budget is refused.
* ``max_tokens: 0`` (the native cache warm-up) needs a breakpoint and no thinking, structured
  output or forced tool: ``warm()`` sends 1 where 0 would be refused and leaves thinking out; a
  user's own 0 there is refused.
"""

from __future__ import annotations

import itertools
import json
import warnings
from typing import Any

import pytest
from pydantic import BaseModel
from ways_in import way_params

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.store import MemoryStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

_TAGS = itertools.count()
BUDGET = {"type": "enabled", "budget_tokens": 8_000}


class Person(BaseModel):
    """A person."""

    name: str
    age: int


def _document() -> str:
    return f"[thinking rules {next(_TAGS)}] " + "Refunds take five days to arrive. " * 250


def _llm(way: str, emu: RelayEmulator, **extra: Any) -> tuple[ChatClaudeRelay, list[dict]]:
    """A model on ``way`` whose sent payloads are recorded."""
    extra.setdefault("cache", CachePlanner(store=MemoryStore()))
    llm = ChatClaudeRelay(**way_params(way, emu, ledger=False, max_retries=0, **extra))
    sent: list[dict] = []
    transport = llm._transport
    create, acreate = transport.create, transport.acreate

    def recorded(payload: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(dict(payload))
        return create(payload, *args, **kwargs)

    async def arecorded(payload: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(dict(payload))
        return await acreate(payload, *args, **kwargs)

    transport.create, transport.acreate = recorded, arecorded  # type: ignore[method-assign]
    return llm, sent


@pytest.mark.parametrize("way", ["openai", "anthropic"])
@pytest.mark.parametrize("thinking", [{"type": "adaptive"}, BUDGET])
@pytest.mark.parametrize(
    "choice", ["any", "required", "Person", {"type": "tool", "name": "Person"}]
)
def test_thinking_with_a_forced_tool_is_refused_before_sending(
    emulator: RelayEmulator, way: str, thinking: dict, choice: Any
) -> None:
    llm, sent = _llm(way, emulator, thinking=thinking)
    with pytest.raises(RequestValidationError, match="tool_choice='auto'"):
        llm.bind_tools([Person], tool_choice=choice).invoke("Bob is 42.")
    assert sent == []
    assert emulator.request_log == []


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_thinking_with_tool_choice_auto_is_sent(emulator: RelayEmulator, way: str) -> None:
    llm, sent = _llm(way, emulator, thinking={"type": "adaptive"})
    llm.bind_tools([Person], tool_choice="auto").invoke("Bob is 42.")
    assert sent[-1]["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_structured_output_on_a_thinking_model_does_not_force_its_tool(
    emulator: RelayEmulator, way: str
) -> None:
    llm, sent = _llm(way, emulator, thinking={"type": "adaptive"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        structured = llm.with_structured_output(Person, method="function_calling", include_raw=True)
    assert any("without forcing" in str(w.message) for w in caught)
    result = structured.invoke("Bob is 42.")
    assert result["parsing_error"] is None
    assert "tool_choice" not in sent[-1]
    assert sent[-1]["thinking"] == {"type": "adaptive"}
    plain, plain_sent = _llm(way, emulator)
    plain.with_structured_output(Person).invoke("Bob is 42.")
    assert plain_sent[-1]["tool_choice"]  # without thinking it is still forced


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_structured_output_on_a_thinking_model_constrains_the_answer_by_default(
    emulator: RelayEmulator, way: str
) -> None:
    """Thinking on: the default method is Claude's structured output, not an unforced tool."""
    llm, sent = _llm(way, emulator, thinking={"type": "adaptive"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "binds its schema without forcing it"
        structured = llm.with_structured_output(Person, include_raw=True)
    result = structured.invoke("Bob is 42.")
    assert result["parsing_error"] is None
    assert isinstance(result["parsed"], Person)
    assert "tools" not in sent[-1]
    assert sent[-1]["thinking"] == {"type": "adaptive"}


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_a_thinking_budget_gets_room_for_the_answer(emulator: RelayEmulator, way: str) -> None:
    llm, sent = _llm(way, emulator, thinking=BUDGET)
    llm.invoke("Hi.")
    assert sent[-1]["max_tokens"] == 8_000 + 4_096
    llm.invoke("Hi.", max_tokens=9_000)
    assert sent[-1]["max_tokens"] == 9_000
    for given in (8_000, 1_024):
        with pytest.raises(RequestValidationError, match="above the budget"):
            llm.invoke("Hi.", max_tokens=given)
    with pytest.raises(RequestValidationError, match="above the budget"):
        _llm(way, emulator, thinking=BUDGET, max_tokens=4_096)[0].invoke("Hi.")
    assert len(sent) == 2


@pytest.mark.parametrize(
    ("case", "extra", "bind"),
    [
        ("plain", {}, {}),
        ("thinking", {"thinking": {"type": "adaptive"}}, {}),
        ("budget", {"thinking": BUDGET}, {}),
        ("forced tool", {}, {"tool_choice": "Person"}),
        ("structured", {}, {"response_format": Person}),
    ],
)
async def test_warm_sends_the_least_output_claude_takes(
    emulator: RelayEmulator, case: str, extra: dict, bind: dict
) -> None:
    llm, sent = _llm("anthropic", emulator, **extra)
    document = _document()
    tools = [Person] if "tool_choice" in bind else []
    params = {**bind}
    if tools:
        params["tools"] = [llm.bind_tools(tools).kwargs["tools"][0]]  # type: ignore[attr-defined]
    warmed = await llm.awarm([("system", document), ("human", "Ready?")], **params)
    (payload,) = sent
    assert "thinking" not in payload  # left out of the warm-up
    zero = case in ("plain", "thinking", "budget")
    assert payload["max_tokens"] == (0 if zero else 1)
    assert warmed.usage_metadata is not None
    assert warmed.usage_metadata["input_token_details"]["cache_creation"] >= 0


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_a_warm_up_for_thinking_calls_writes_only_what_they_read(
    emulator: RelayEmulator, way: str
) -> None:
    # the warm-up leaves thinking out, and Claude keys the messages part by the thinking
    # settings: a document it wrote there was paid for and read by no thinking call
    llm, sent = _llm(way, emulator, thinking={"type": "adaptive"})
    system, document = ("system", _document()), {"type": "text", "text": _document()}
    with pytest.warns(UserWarning, match="writes only the tools and the system prompt"):
        llm.warm([system, ("human", [document])])
    assert "cache_control" in json.dumps(sent[-1]["system"] if way == "anthropic" else sent[-1])
    assert "cache_control" not in json.dumps(sent[-1]["messages"][-1])
    answer = llm.invoke([system, ("human", [document, {"type": "text", "text": "Refunds?"}])])
    details = answer.usage_metadata["input_token_details"]  # type: ignore[index]
    assert details["cache_read"] > 0  # the system prompt the warm-up wrote
    plain, plain_sent = _llm(way, emulator)
    plain.warm([("system", _document()), ("human", [{"type": "text", "text": _document()}])])
    assert "cache_control" in json.dumps(plain_sent[-1]["messages"][-1])  # no thinking: all


def test_warm_sends_one_output_token_when_nothing_is_marked(emulator: RelayEmulator) -> None:
    llm, sent = _llm("anthropic", emulator)
    llm.warm([("system", "Short."), ("human", "Ready?")])  # below every minimum: no marker
    assert sent[-1]["max_tokens"] == 1


@pytest.mark.parametrize(
    ("extra", "params", "reason"),
    [
        ({"thinking": {"type": "adaptive"}}, {}, "thinking"),
        ({}, {"response_format": Person}, "structured"),
        ({}, {"cache_control": None}, "breakpoint"),
    ],
)
def test_a_users_max_tokens_zero_that_claude_refuses_is_refused_first(
    emulator: RelayEmulator, extra: dict, params: dict, reason: str
) -> None:
    planner = CachePlanner(store=MemoryStore())
    llm, sent = _llm("anthropic", emulator, cache=planner, **extra)
    messages = [("system", _document() if reason != "breakpoint" else "Short."), ("human", "?")]
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(RequestValidationError, match=reason):
        llm.invoke(messages, max_tokens=0, **params)
    assert sent == []
    assert planner._in_flight.snapshot(planner.clock()).pending == frozenset()


@pytest.mark.parametrize("where", ["model_kwargs", "extra_body"])
def test_thinking_given_as_a_request_parameter_obeys_the_same_rules(
    emulator: RelayEmulator, where: str
) -> None:
    # ChatOpenAI users pass thinking in extra_body: it skipped the checks (a 400 after sending)
    # and warm(), which leaves thinking out, failed on its own max_tokens
    llm, sent = _llm("anthropic", emulator, **{where: {"thinking": BUDGET}})
    with pytest.raises(RequestValidationError, match="tool_choice='auto'"):
        llm.bind_tools([Person], tool_choice="any").invoke("Bob is 42.")
    assert sent == []
    llm.invoke("Hi.")
    assert sent[-1]["thinking"] == BUDGET
    assert sent[-1]["max_tokens"] == 8_000 + 4_096
    llm.warm([("system", _document()), ("human", "Ready?")])
    assert "thinking" not in sent[-1]
    assert sent[-1]["max_tokens"] == 0
    llm.invoke("Hi.", thinking={"type": "disabled"})  # the call's own setting wins
    assert sent[-1]["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("way", ["openai", "anthropic"])
def test_interleaved_thinking_may_budget_past_max_tokens(emulator: RelayEmulator, way: str) -> None:
    llm, sent = _llm(
        way,
        emulator,
        thinking={"type": "enabled", "budget_tokens": 16_000},
        max_tokens=4_000,
        default_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    llm.invoke("Hi.")  # the budget spans every thinking block of the turn
    assert sent[-1]["max_tokens"] == 4_000
    plain, _ = _llm(way, emulator, thinking={"type": "enabled", "budget_tokens": 16_000})
    with pytest.raises(RequestValidationError, match="above the budget"):
        plain.invoke("Hi.", max_tokens=4_000)
