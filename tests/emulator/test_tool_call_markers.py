"""A planned marker on any tool call of an assistant turn reaches the relay, and is read through.

The planner may mark a ``tool_use`` that is not the last block of its turn (a large write first,
a small one after it). The OpenAI wire sends it on that entry of ``tool_calls``; the plan in
``response_metadata["cache_plan"]`` must list exactly the markers the relay received.
"""

from __future__ import annotations

import warnings

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay, RelayEmulator
from langchain_claude_relay.store import MemoryStore

BIG = "lorem ipsum dolor sit amet " * 900  # ~4.5K tokens of tool arguments (a file written)
HISTORY = [
    SystemMessage("You are a coding agent."),
    HumanMessage("write the module and its test"),
    AIMessage(
        "",
        tool_calls=[
            {"id": "a", "name": "write_file", "args": {"path": "m.py", "body": BIG}},
            {"id": "b", "name": "write_file", "args": {"path": "t.py", "body": "ok"}},
        ],
    ),
]


def test_a_marker_on_a_tool_call_before_the_last_reaches_the_relay(emu: RelayEmulator) -> None:
    llm = ChatClaudeRelay(
        base_url=emu.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache=CachePlanner(MemoryStore(), clock=lambda: emu.now),
        ledger=False,
    )
    reads = []
    for outcome in ("written", "permission denied"):  # a retry on the same history
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reply = llm.invoke(
                [
                    *HISTORY,
                    ToolMessage(outcome, tool_call_id="a"),
                    ToolMessage(outcome, tool_call_id="b"),
                ]
            )
        planned = reply.response_metadata["cache_plan"]["breakpoints"]
        billed = emu.billing_log[-1]
        assert "messages[1].content[0]" in [b["position"] for b in planned]
        assert len(billed.marker_indices) == len(planned)
        reads.append(billed.cache_read)
        emu.advance(30)
    assert reads[0] == 0
    assert reads[1] > 4000  # the second reads through the first tool call's marker
