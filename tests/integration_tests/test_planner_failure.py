"""A planner that fails never fails the call: it goes out unmarked, with a warning."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

PROMPT = [SystemMessage("Answer from the handbook. " * 800), HumanMessage("What is rule 1?")]


class _Failing(CachePlanner):
    def __init__(self, where: str, **kwargs: Any) -> None:
        super().__init__(MemoryStore(), **kwargs)
        self.where = where

    def plan(self, *args: Any, **kwargs: Any) -> Any:
        if self.where == "plan":
            raise RuntimeError("the planner broke")
        return super().plan(*args, **kwargs)

    def sent(self, plan: Any) -> None:
        if self.where == "sent":
            raise RuntimeError("the planner broke")
        super().sent(plan)


@pytest.mark.parametrize("where", ["plan", "sent"])
def test_the_call_goes_out_unmarked_with_a_warning(emulator: RelayEmulator, where: str) -> None:
    # a failure while marking the call sent left the plan's markers on a call with no plan:
    # written and billed, but neither observed nor costed against a plan
    planner = _Failing(where, clock=lambda: emulator.now)
    llm = ChatClaudeRelay(
        model="claude-sonnet-4-6",
        base_url=emulator.base_url,
        api_key="test",
        cache=planner,
        ledger=MemoryLedger(),
    )
    with pytest.warns(RuntimeWarning, match="cache planning failed .*the planner broke"):
        reply = llm.invoke(PROMPT)
    assert reply.response_metadata["cache_plan"]["planned"] is False
    (bill,) = emulator.billing_log
    assert bill.marker_indices == ()
    assert bill.cache_write == 0
    if where == "plan":
        with pytest.raises(RuntimeError, match="the planner broke"):  # a dry run shows it
            llm.plan_cache(PROMPT)
    else:
        assert llm.plan_cache(PROMPT) is not None  # a dry run marks nothing sent
