"""What Claude refuses per model, and with thinking, refused here first.

* ``thinking.type``: ``enabled`` (a ``budget_tokens``) is a 400 on Claude 4.7 and later,
  ``adaptive`` unknown to 4.5 and earlier, ``disabled`` a 400 on the always-thinking Fable 5 and
  Mythos 5 (the model table's ``thinking_types``, with its sources); a model the table does not
  know is sent whatever it is given.
* Sampling: none at all on Claude 4.7 and later, not ``temperature`` with ``top_p`` on Opus 4.1
  to the 4.6 models (the table's ``sampling``); with thinking on, ``temperature`` 1 only, no
  ``top_k``, ``top_p`` from 0.95.
* A prefilled assistant turn is a 400 on Claude 4.6 and later (the table's ``prefill``).

Each refusal comes before anything is sent (the fake relay records no request).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.models import MODEL_TABLE, lookup_model

BUDGET = {"type": "enabled", "budget_tokens": 2048}
ADAPTIVE = {"type": "adaptive"}
DISABLED = {"type": "disabled"}


@pytest.mark.parametrize(
    ("model", "thinking", "refused"),
    [
        ("claude-sonnet-5-5", BUDGET, "send thinking={'type': 'adaptive'}"),
        ("claude-opus-4-7", BUDGET, "send thinking={'type': 'adaptive'}"),
        ("claude-sonnet-5-5", ADAPTIVE, None),
        ("claude-sonnet-5-5", DISABLED, "send thinking={'type': 'between_tools'}"),
        ("claude-sonnet-5-5", {"type": "between_tools"}, None),
        ("claude-sonnet-5", DISABLED, None),
        ("claude-opus-5-5", DISABLED, "leave thinking unset"),
        ("claude-sonnet-4-6", BUDGET, None),  # deprecated there, still taken
        ("claude-sonnet-4-6", ADAPTIVE, None),
        ("claude-haiku-4-5", ADAPTIVE, "send thinking={'type': 'enabled', 'budget_tokens': N}"),
        ("claude-haiku-4-5", BUDGET, None),
        ("claude-fable-5-1", DISABLED, "leave thinking unset"),
        ("claude-fable-5-1", ADAPTIVE, None),
        ("anthropic/claude-opus-4.8", BUDGET, "takes 'adaptive' or 'disabled'"),  # a relay's id
        ("my-own-claude", BUDGET, None),  # not in the table: sent as given
    ],
)
def test_thinking_types_per_model(
    make_llm: Any, relay: Any, model: str, thinking: dict[str, Any], refused: str | None
) -> None:
    llm = make_llm(model=model, thinking=thinking, max_tokens=8000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown / retired model notices
        if refused is None:
            llm.invoke("hi")
            assert relay.last["thinking"] == thinking
            return
        with pytest.raises(RequestValidationError, match="is refused by") as caught:
            llm.invoke("hi")
    assert refused in str(caught.value)
    assert relay.requests == []


def test_a_per_call_model_is_checked_too(make_llm: Any, relay: Any) -> None:
    llm = make_llm(model="claude-sonnet-4-6", thinking=BUDGET, max_tokens=8000)
    with pytest.raises(RequestValidationError, match="claude-opus-5-5"):
        llm.invoke("hi", model="claude-opus-5-5")
    assert relay.requests == []


def test_every_current_model_has_its_thinking_types() -> None:
    for family, spec in MODEL_TABLE.items():
        if spec.current:
            assert spec.thinking_types, family
            assert "thinking-2026-12" in spec.sources, family
    assert "enabled" not in lookup_model("claude-opus-5-5").thinking_types


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"temperature": 0.2}, "temperature=0.2"),
        ({"temperature": 0}, "temperature=0"),
        ({"top_k": 5}, "top_k=5"),
        ({"top_p": 0.5}, "top_p=0.5"),
        ({"temperature": 1}, None),
        ({"top_p": 0.95}, None),
        ({"top_p": 1}, None),
    ],
)
@pytest.mark.parametrize("where", ["constructor", "call"])
def test_sampling_settings_claude_refuses_while_thinking(
    make_llm: Any, relay: Any, settings: dict[str, Any], refused: str | None, where: str
) -> None:
    model = "claude-sonnet-4-6"  # takes sampling settings, and adaptive thinking
    if where == "constructor":
        llm, kwargs = make_llm(model=model, thinking=ADAPTIVE, **settings), {}
    else:
        llm, kwargs = make_llm(model=model, thinking=ADAPTIVE), settings
    if refused is None:
        llm.invoke("hi", **kwargs)
        assert relay.last["thinking"] == ADAPTIVE
        return
    with pytest.raises(RequestValidationError, match="extended thinking on") as caught:
        llm.invoke("hi", **kwargs)
    assert refused in str(caught.value)
    assert relay.requests == []


def test_sampling_settings_are_free_without_thinking(make_llm: Any, relay: Any) -> None:
    llm = make_llm(model="claude-sonnet-4-6", thinking=ADAPTIVE, temperature=0.2, top_k=5)
    llm.invoke("hi", thinking=DISABLED)  # this call does not think: its settings go as given
    assert (relay.last["temperature"], relay.last["top_k"]) == (0.2, 5)


@pytest.mark.parametrize(
    ("model", "settings", "refused"),
    [
        ("claude-sonnet-5-5", {"temperature": 0}, "Claude 4.7 and later take no temperature"),
        ("claude-opus-4-7", {"top_p": 0.9}, "top_p=0.9 cannot be sent"),
        ("claude-fable-5-1", {"top_k": 5}, "top_k=5 cannot be sent"),
        ("claude-sonnet-5-5", {"temperature": 1, "top_p": 1}, None),  # Claude's defaults
        ("claude-sonnet-5-5", {"temperature": 1, "top_k": 40}, "top_k=40 cannot be sent"),
        ("claude-sonnet-4-6", {"temperature": 0.2, "top_p": 0.9}, "cannot both be sent"),
        ("claude-sonnet-4-6", {"temperature": 0.2}, None),
        ("claude-sonnet-4-6", {"top_p": 0.9, "top_k": 5}, None),
        ("claude-haiku-4-5", {"temperature": 0.2, "top_p": 0.9}, None),  # no rule in our sources
        ("my-own-claude", {"temperature": 0.2, "top_p": 0.9}, None),
    ],
)
def test_sampling_settings_per_model(
    make_llm: Any, relay: Any, model: str, settings: dict[str, Any], refused: str | None
) -> None:
    llm = make_llm(model=model, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if refused is None:
            llm.invoke("hi")
            assert all(relay.last[k] == v for k, v in settings.items())
            return
        with pytest.raises(RequestValidationError, match=model) as caught:
            llm.invoke("hi")
    assert refused in str(caught.value)
    assert relay.requests == []


@pytest.mark.parametrize(
    ("model", "refused"),
    [("claude-sonnet-5-5", True), ("claude-opus-4-6", True), ("claude-haiku-4-5", False)],
)
def test_a_prefill_is_refused_where_claude_refuses_it(
    make_llm: Any, relay: Any, model: str, refused: bool
) -> None:
    llm = make_llm(model=model)
    messages = [HumanMessage("Name a colour."), AIMessage("The colour is")]
    if not refused:
        llm.invoke(messages)
        assert relay.last["messages"][-1]["role"] == "assistant"
        return
    with pytest.raises(RequestValidationError, match="prefill"):
        llm.invoke(messages)
    assert relay.requests == []
    llm.invoke([*messages, HumanMessage("Go on.")])  # ending with a user turn is fine
