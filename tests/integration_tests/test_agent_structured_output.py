"""A LangChain 1.x agent with a structured response (``ToolStrategy``) ends with it, on the
emulator: after the tool results, the forced response tool is called once."""

from __future__ import annotations

from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.tools import tool
from pydantic import BaseModel

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore


class Forecast(BaseModel):
    city: str
    summary: str


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


def test_an_agent_ends_with_its_structured_response(emulator: RelayEmulator) -> None:
    llm = ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache=CachePlanner(MemoryStore()),
        ledger=MemoryLedger(),
    )
    agent = create_agent(llm, tools=[get_weather], response_format=ToolStrategy(Forecast))
    state = agent.invoke({"messages": [("human", "What is the weather in 'Paris'? Use weather.")]})
    assert isinstance(state["structured_response"], Forecast)
    names = [c["name"] for m in state["messages"] for c in getattr(m, "tool_calls", [])]
    assert names == ["get_weather", "Forecast"]
