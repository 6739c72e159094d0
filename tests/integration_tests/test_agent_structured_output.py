"""A LangChain 1.x agent with a structured response ends with it, on the emulator.

With ``ToolStrategy`` the forced response tool is called once after the tool results, on a
model that takes a forced tool; Sonnet 5.5 (the default) refuses one, and there LangChain
picks the provider strategy (JSON schema) from the model profile, or the forced choice is
refused before sending."""

from __future__ import annotations

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore


class Forecast(BaseModel):
    city: str
    summary: str


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def _llm(emulator: RelayEmulator, model: str) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model=model,
        cache=CachePlanner(MemoryStore()),
        ledger=MemoryLedger(),
    )


ASK = {"messages": [("human", "What is the weather in 'Paris'? Use weather.")]}


def _tool_names(state: dict) -> list[str]:
    return [c["name"] for m in state["messages"] for c in getattr(m, "tool_calls", [])]


def test_an_agent_ends_with_its_structured_response(emulator: RelayEmulator) -> None:
    llm = _llm(emulator, "claude-sonnet-4-6")  # takes a forced tool
    agent = create_agent(llm, tools=[get_weather], response_format=ToolStrategy(Forecast))
    state = agent.invoke(ASK)
    assert isinstance(state["structured_response"], Forecast)
    assert _tool_names(state) == ["get_weather", "Forecast"]


def test_on_the_default_model_the_profile_picks_the_provider_strategy(
    emulator: RelayEmulator,
) -> None:
    agent = create_agent(
        _llm(emulator, "claude-sonnet-5-5"), [get_weather], response_format=Forecast
    )
    state = agent.invoke(ASK)
    assert isinstance(state["structured_response"], Forecast)
    assert _tool_names(state) == ["get_weather"]  # no forced response tool


def test_a_tool_strategy_on_the_default_model_is_refused_before_sending(
    emulator: RelayEmulator,
) -> None:
    llm = _llm(emulator, "claude-sonnet-5-5")
    agent = create_agent(llm, tools=[get_weather], response_format=ToolStrategy(Forecast))
    sent = len(emulator.request_log)
    with pytest.raises(RequestValidationError, match="forces a tool call"):
        agent.invoke(ASK)
    assert len(emulator.request_log) == sent
