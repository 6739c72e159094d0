"""``ChatClaudeRelay.plan_cache``: the plan a call would get, without sending or learning.

A ``CachePlanner`` used on its own plans without the model's relay and key, so it cannot see
what the model's calls cached; the model's dry run can, and it changes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from ways_in import way_params

from langchain_claude_relay import ChatClaudeRelay, RequestValidationError
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.planner import CachePlan, CachePlanner
from langchain_claude_relay.store import MemoryStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = "claude-sonnet-4-6"
SYSTEM = SystemMessage("You answer from the handbook. " + "Rule: keep answers short. " * 700)
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look up a rule of the handbook by its number.",
        "parameters": {"type": "object", "properties": {"rule": {"type": "string"}}},
    },
}


def _model(
    emu: RelayEmulator, planner: CachePlanner | None = None, **extra: Any
) -> ChatClaudeRelay:
    planner = planner if planner is not None else CachePlanner(MemoryStore(), clock=lambda: emu.now)
    return ChatClaudeRelay(
        model=MODEL,
        base_url=emu.base_url,
        api_key="test",
        cache=planner,
        ledger=MemoryLedger(),
        max_retries=0,
        **extra,
    )


def _outline(plan: CachePlan | None) -> list[tuple[str, str, str | None]]:
    assert plan is not None
    return [(str(bp.position), bp.ttl, bp.predicted) for bp in plan.breakpoints]


def _question(text: str) -> list[BaseMessage]:
    return [SYSTEM, HumanMessage(text)]


def test_it_sees_what_the_models_calls_cached(emulator: RelayEmulator) -> None:
    planner = CachePlanner(MemoryStore(), clock=lambda: emulator.now)
    llm = _model(emulator, planner)
    llm.invoke(_question("What is rule 1?"))
    sent = len(emulator.request_log)
    dry = llm.plan_cache(_question("What is rule 2?"))
    assert _outline(dry)[0][2] == "read"  # the system prompt the first call wrote
    # the planner on its own plans without the relay and key: it cannot know
    assert _outline(planner.plan(_question("What is rule 2?"), model=MODEL))[0][2] == "write"
    assert len(emulator.request_log) == sent  # nothing sent
    assert dry is not None
    assert "reads now" in dry.explain()


def test_it_is_the_plan_the_call_then_sends(emulator: RelayEmulator) -> None:
    llm = _model(emulator)
    llm.invoke(_question("What is rule 1?"))
    messages = _question("What is rule 2?")
    dry = _outline(llm.plan_cache(messages))
    assert _outline(llm.plan_cache(messages)) == dry  # a dry run learns nothing
    reply = llm.invoke(messages)
    sent = reply.response_metadata["cache_observation"]["breakpoints"]
    assert [(bp["position"], bp["ttl"], bp["predicted"]) for bp in sent] == dry


def test_a_dry_run_of_a_new_prefix_leaves_no_pending_write(emulator: RelayEmulator) -> None:
    # Were the dry run marked as sent, the call after it would wait on (or read) a write that
    # never happened; its plan and bill are those of a model that never dry-ran.
    plans = []
    for dry_run_first in (False, True):
        emulator.reset()
        llm = _model(emulator)
        if dry_run_first:
            llm.plan_cache(_question("What is rule 1?"))
        reply = llm.invoke(_question("What is rule 1?"))
        plans.append(reply.response_metadata["cache_observation"]["breakpoints"])
        assert emulator.billing_log[-1].cache_write > 0
    assert plans[0] == plans[1]


def test_bound_tools_are_part_of_the_plan(emulator: RelayEmulator) -> None:
    llm = _model(emulator)
    plain, bound = (
        llm.plan_cache(_question("Q?")),
        llm.bind_tools([LOOKUP]).plan_cache(_question("Q?")),
    )
    assert plain is not None
    assert bound is not None
    assert bound.total_estimated_tokens > plain.total_estimated_tokens
    assert bound.request.tools
    assert bound.breakpoints[0].prefix_hash != plain.breakpoints[0].prefix_hash


def test_keep_alives_are_left_alone(emulator: RelayEmulator) -> None:
    # The call that follows a tool result cancels the conversation's keep-alives; its dry run
    # must not.
    llm = _model(emulator, keep_warm="auto", model_kwargs={"max_tokens": 64})
    llm.next_keep_warm()  # drive keep-alives by hand (the emulator's clock)
    messages: list[BaseMessage] = [SYSTEM, HumanMessage("Look up rule 7 with the tool.")]
    reply = llm.invoke(messages, tools=[LOOKUP], tool_choice="lookup")
    call = reply.tool_calls[0]
    due = llm.next_keep_warm()
    assert due is not None
    emulator.set_time(60.0)  # the tool ran for a minute
    follow = [
        *messages,
        AIMessage("", tool_calls=[call]),
        ToolMessage("Rule 7: be brief.", tool_call_id=call["id"]),
    ]
    tools: dict[str, Any] = {"tools": [LOOKUP], "tool_choice": "lookup"}  # keys the messages too
    assert llm.plan_cache(follow, **tools) is not None
    assert llm.next_keep_warm() == due
    llm.invoke(follow, **tools)
    assert llm.next_keep_warm() == due + 60.0  # the real call did cancel it (and keeps its own)
    llm.close()


def test_exact_counts_are_not_fetched(emulator: RelayEmulator) -> None:
    params = way_params("anthropic", emulator, exact_token_counts=True, max_retries=0)
    params["cache"] = CachePlanner(MemoryStore(), clock=lambda: emulator.now)
    llm = ChatClaudeRelay(**params, ledger=MemoryLedger())
    assert llm.plan_cache(_question("Q?")) is not None
    assert emulator.request_log == []  # no count_tokens request either
    llm.invoke(_question("Q?"))
    assert [r.endpoint for r in emulator.request_log] == ["messages.count_tokens", "messages"]


def test_no_plan_and_bad_input(emulator: RelayEmulator) -> None:
    assert _model(emulator).plan_cache(_question("Q?"), prompt_cache="off") is None
    assert (
        ChatClaudeRelay(
            model=MODEL, base_url=emulator.base_url, api_key="test", cache="off"
        ).plan_cache("hi")
        is None
    )
    mark = {"type": "ephemeral"}
    five = [
        SystemMessage(
            [{"type": "text", "text": f"part {i}", "cache_control": mark} for i in range(5)]
        )
    ]
    with pytest.raises(RequestValidationError, match="4"):
        _model(emulator).plan_cache([*five, HumanMessage("Q?")])
    assert emulator.request_log == []
