"""A relay that drops every marker is flagged during normal use, once.

Without a stored probe, a user swapping ChatClaudeRelay in behind such a relay saw full prices
and no hint; ``cache_observation`` said ``relay dropped marker?`` on every call, and nothing
warned.
"""

from __future__ import annotations

import warnings

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

DOCUMENT = "The relay forwards each request to Claude and reports usage its own way. " * 700


def _calls(emulator: RelayEmulator, count: int) -> list[str]:
    llm = ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache=CachePlanner(MemoryStore()),
        ledger=MemoryLedger(),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for turn in range(count):
            llm.invoke([("system", DOCUMENT), ("human", f"Question {turn}?")])
    return [str(w.message) for w in caught if "drops cache_control" in str(w.message)]


@pytest.mark.parametrize(("bad_relay", "warned"), [("drop_cache_control", 1), (None, 0)])
def test_calls_that_never_touch_the_cache_are_flagged_once(
    bad_relay: str | None, warned: int
) -> None:
    with RelayEmulator(bad_relay=bad_relay) as emulator:
        messages = _calls(emulator, 5)
    assert len(messages) == warned
    if warned:
        assert "claude-relay probe" in messages[0]
        assert "3 calls in a row" in messages[0]


def test_two_silent_calls_are_not_enough() -> None:
    with RelayEmulator(bad_relay="drop_cache_control") as emulator:
        assert _calls(emulator, 2) == []


# -- a relay that reports reads but no writes ---------------------------------------------------


def _hidden_write_warnings(dialect: str, count: int) -> list[str]:
    with RelayEmulator(dialect=dialect) as emulator:
        llm = ChatClaudeRelay(
            base_url=emulator.base_url,
            api_key="test",
            model="claude-sonnet-5-5",
            cache=CachePlanner(MemoryStore(), clock=lambda: emulator.now),
            ledger=MemoryLedger(),
        )
        conversation: list[BaseMessage] = [SystemMessage(DOCUMENT)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for turn in range(count):  # each turn reads the last one's and writes its own
                conversation.append(HumanMessage(f"Question {turn}? " * 300))
                conversation.append(llm.invoke(conversation))
    return [str(w.message) for w in caught if "no cache-write field" in str(w.message)]


@pytest.mark.parametrize(
    "dialect",
    ["openai", "superset", "openrouter", "litellm", "anthropic", "newapi", "axonhub", "oneapi"],
)
def test_a_relay_reporting_reads_but_no_writes_is_flagged_once(dialect: str) -> None:
    # OpenAI's own usage shape has cached_tokens (reads) and nothing for writes: the tokens
    # written look like plain input and every cost comes out low by the write premium
    messages = _hidden_write_warnings(dialect, 5)
    assert len(messages) == (1 if dialect == "openai" else 0)
    if messages:
        assert "3 calls in a row" in messages[0]
