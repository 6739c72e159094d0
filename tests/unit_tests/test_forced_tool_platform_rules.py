"""Today's platform on the current models: no forced tool choice, thinking that stays on.

Anthropic's "What's new" pages for Opus 5.5 and Sonnet 5.5 (read 2026-12-03; the model
table's ``forced_tool_choice`` and ``thinking_types``): a ``tool_choice`` forcing a tool is a
400 on Opus 5.5, Sonnet 5.5 (the default model) and Fable 5.1; Opus 5.5 always thinks; Sonnet
5.5 takes ``adaptive`` and ``between_tools``, not ``disabled``. Refused before sending, with the
fix; ``with_structured_output(method="function_calling")`` does not force its tool there, and
its default method is then ``json_schema``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from fake_relay import FakeRelay, completion
from pydantic import BaseModel, Field

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.models import lookup_model, model_profile

REFUSING = ["claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1"]
TAKING = ["claude-sonnet-5", "claude-haiku-5-5", "claude-sonnet-4-6", "claude-opus-4-8"]
FORCING = ["any", "required", True, "lookup", {"type": "tool", "name": "lookup"}]
USAGE = {"prompt_tokens": 10, "completion_tokens": 1}


def lookup(word: str) -> str:
    """Look a word up."""
    return word


class Answer(BaseModel):
    city: str


@pytest.mark.parametrize(
    ("model", "takes", "thinking_types"),
    [
        ("claude-opus-5-5", False, ("adaptive",)),
        ("claude-sonnet-5-5", False, ("adaptive", "between_tools")),
        ("claude-fable-5-1", False, ("adaptive",)),
        ("claude-haiku-5-5", None, ("adaptive", "disabled")),
        ("claude-sonnet-5", None, ("adaptive", "disabled")),
    ],
)
def test_the_table_says_what_each_model_refuses(
    model: str, takes: bool | None, thinking_types: tuple[str, ...]
) -> None:
    spec = lookup_model(model)
    assert spec.takes_forced_tool is takes
    assert spec.thinking_types == thinking_types
    assert "whats-new-5-5-2026-12" in spec.sources or takes is None
    profile = model_profile(model)
    assert profile is not None
    assert profile.get("tool_choice", True) is (takes is not False)


@pytest.mark.parametrize("model", REFUSING)
@pytest.mark.parametrize("choice", FORCING, ids=str)
def test_a_forced_tool_is_refused_before_sending(
    relay: FakeRelay, make_llm: Any, model: str, choice: Any
) -> None:
    llm = make_llm(model=model).bind_tools([lookup], tool_choice=choice)
    with pytest.raises(RequestValidationError, match="forces a tool call, which") as caught:
        llm.invoke("define cache")
    assert "tool_choice='auto'" in str(caught.value)
    assert "method='json_schema'" in str(caught.value)
    assert relay.requests == []


@pytest.mark.parametrize("model", REFUSING)
@pytest.mark.parametrize("choice", ["auto", "none", None])
def test_auto_and_none_are_sent(relay: FakeRelay, make_llm: Any, model: str, choice: Any) -> None:
    relay.queue(completion(usage=USAGE, model=model))
    make_llm(model=model).bind_tools([lookup], tool_choice=choice).invoke("define cache")
    assert len(relay.requests) == 1


@pytest.mark.parametrize("model", TAKING)
def test_other_models_still_take_a_forced_tool(relay: FakeRelay, make_llm: Any, model: str) -> None:
    relay.queue(completion(usage=USAGE, model=model))
    make_llm(model=model).bind_tools([lookup], tool_choice="any").invoke("define cache")
    assert relay.last["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("model", "forced"), [("claude-sonnet-5-5", False), ("claude-sonnet-4-6", True)]
)
def test_function_calling_structured_output_forces_only_where_claude_takes_it(
    relay: FakeRelay, make_llm: Any, model: str, forced: bool
) -> None:
    call = {"id": "toolu_1", "type": "function",
            "function": {"name": "Answer", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    relay.queue(completion("", tool_calls=[call], usage=USAGE, model=model))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        llm = make_llm(model=model)
        structured = llm.with_structured_output(Answer, method="function_calling")
    assert structured.invoke("Where is the Louvre?") == Answer(city="Paris")
    sent = relay.last.get("tool_choice")
    if forced:
        assert sent == {"type": "function", "function": {"name": "Answer"}}
        assert not any("without forcing" in str(w.message) for w in caught)
    else:
        assert sent in (None, "auto")
        assert any("refuses a forced tool choice" in str(w.message) for w in caught)


@pytest.mark.parametrize("model", [*REFUSING, *TAKING])
def test_structured_output_by_default_constrains_the_answer_on_every_model(
    relay: FakeRelay, make_llm: Any, model: str
) -> None:
    """The default method: a forced tool where Claude takes one, else Claude's structured output.

    Before, the default bound the schema as a tool without forcing it (with a warning) on the
    models that refuse a forced tool, Sonnet 5.5 (the default model) among them: an answer in
    text parsed as ``None``.
    """
    if lookup_model(model).takes_forced_tool is False:
        relay.queue(completion('{"city": "Paris"}', usage=USAGE, model=model))
    else:
        call = {"id": "toolu_1", "type": "function",
                "function": {"name": "Answer", "arguments": '{"city": "Paris"}'}}  # fmt: skip
        relay.queue(completion("", tool_calls=[call], usage=USAGE, model=model))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "binds its schema without forcing it"
        structured = make_llm(model=model).with_structured_output(Answer)
    assert structured.invoke("Where is the Louvre?") == Answer(city="Paris")
    if lookup_model(model).takes_forced_tool is False:
        assert relay.last["response_format"]["type"] == "json_schema"
        assert "tools" not in relay.last
    else:
        assert relay.last["tool_choice"] == {"type": "function", "function": {"name": "Answer"}}
        assert "response_format" not in relay.last


def test_the_default_keeps_the_unforced_tool_where_the_table_lists_no_structured_outputs(
    relay: FakeRelay, make_llm: Any
) -> None:
    """Thinking on a model without structured outputs: the tool, unforced, no json_schema advice."""
    llm = make_llm(model="claude-opus-4-1", thinking={"type": "enabled", "budget_tokens": 2048})
    with pytest.warns(UserWarning, match="lists no structured outputs") as caught:
        llm.with_structured_output(Answer)
    assert not any("json_schema" in str(w.message) for w in caught)


class Counts(BaseModel):
    counts: dict[str, int]


class Bounded(BaseModel):
    age: int = Field(ge=0)


@pytest.mark.parametrize(
    ("schema", "misfit"), [(Counts, "free-form dict.*named properties"), (Bounded, "'minimum'")]
)
def test_the_default_keeps_the_unforced_tool_for_a_schema_structured_outputs_may_refuse(
    relay: FakeRelay, make_llm: Any, schema: type[BaseModel], misfit: str
) -> None:
    """A dict field cannot be closed; a bound may be a 400: the tool, unforced, and why."""
    llm = make_llm(model="claude-sonnet-5-5")
    with pytest.warns(UserWarning, match=misfit):
        llm.with_structured_output(schema)
    relay.queue(completion('{"counts": {}}', usage=USAGE, model="claude-sonnet-5-5"))
    llm.with_structured_output(Counts, method="json_schema").invoke("x")  # as asked: sent
    assert relay.last["response_format"]["type"] == "json_schema"


@pytest.mark.parametrize(("given", "sent"), [(False, "tools"), (None, "response_format")])
def test_the_default_follows_a_given_profile_else_the_table(
    relay: FakeRelay, make_llm: Any, given: bool | None, sent: str
) -> None:
    """``profile=`` saying no structured outputs (a relay that drops them): the tool.

    A profile given without the flag: the model table's (Sonnet 5.5 lists them).
    """
    profile: dict[str, Any] = {"max_input_tokens": 200_000}
    if given is not None:
        profile["structured_output"] = given
    llm = make_llm(model="claude-sonnet-5-5", profile=profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        structured = llm.with_structured_output(Answer)
    call = {"id": "toolu_1", "type": "function",
            "function": {"name": "Answer", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    relay.queue(
        completion('{"city": "Paris"}', tool_calls=[call] if sent == "tools" else None,
                   usage=USAGE, model="claude-sonnet-5-5")
    )  # fmt: skip
    assert structured.invoke("x") == Answer(city="Paris")
    assert sent in relay.last
    assert any("lists no structured outputs" in str(w.message) for w in caught) == (given is False)


@pytest.mark.parametrize(
    ("model", "thinking", "fix"),
    [
        ("claude-opus-5-5", {"type": "disabled"}, "leave thinking unset"),
        ("claude-opus-5-5", {"type": "enabled", "budget_tokens": 2048}, "'adaptive'"),
        ("claude-sonnet-5-5", {"type": "disabled"}, "'between_tools'"),
    ],
)
def test_thinking_these_models_refuse_is_refused_before_sending(
    relay: FakeRelay, make_llm: Any, model: str, thinking: dict[str, Any], fix: str
) -> None:
    with pytest.raises(RequestValidationError, match=f"refused by {model}") as caught:
        make_llm(model=model, thinking=thinking).invoke("hi")
    assert fix in str(caught.value)
    assert relay.requests == []


def test_between_tools_is_sent_on_sonnet_5_5(relay: FakeRelay, make_llm: Any) -> None:
    relay.queue(completion(usage=USAGE, model="claude-sonnet-5-5"))
    make_llm(model="claude-sonnet-5-5", thinking={"type": "between_tools"}).invoke("hi")
    assert relay.last["thinking"] == {"type": "between_tools"}


def test_the_chat_model_carries_the_profile_langchain_reads(make_llm: Any) -> None:
    profile = make_llm(model="claude-sonnet-5-5").profile
    assert profile["max_input_tokens"] == 1_000_000
    assert profile["tool_choice"] is False
    given = make_llm(model="claude-sonnet-5-5", profile={"max_input_tokens": 5}).profile
    assert given == {"max_input_tokens": 5}


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-5-5"])
def test_with_thinking_on_the_models_own_refusal_comes_first(
    relay: FakeRelay, make_llm: Any, model: str
) -> None:
    """The thinking rule's advice (turn thinking off) is refused by these models too."""
    llm = make_llm(model=model, thinking={"type": "adaptive"})
    with pytest.raises(RequestValidationError, match=f"which {model} refuses") as caught:
        llm.bind_tools([lookup], tool_choice="lookup").invoke("define cache")
    assert "disabled" not in str(caught.value)
    assert relay.requests == []


@pytest.mark.parametrize(
    ("effort", "refused"),
    [
        ({"reasoning_effort": "xhigh"}, True),
        ({"output_config": {"effort": "max"}}, True),
        ({"reasoning_effort": "high"}, False),
        ({"output_config": {"effort": "low"}}, False),
        ({}, False),
    ],
)
def test_between_tools_is_refused_above_effort_high(
    relay: FakeRelay, make_llm: Any, effort: dict[str, Any], refused: bool
) -> None:
    relay.queue(completion(usage=USAGE, model="claude-sonnet-5-5"))
    llm = make_llm(model="claude-sonnet-5-5", thinking={"type": "between_tools"})
    if refused:
        with pytest.raises(RequestValidationError, match="between_tools'} is refused at effort"):
            llm.invoke("hi", **effort)
        assert relay.requests == []
    else:
        llm.invoke("hi", **effort)
        assert relay.last["thinking"] == {"type": "between_tools"}
