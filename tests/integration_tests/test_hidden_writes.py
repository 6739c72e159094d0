"""A relay reporting cache reads but no writes (OpenAI's own usage shape) is costed near its bill.

Its usage has ``cached_tokens`` and nothing for writes, so what Claude wrote (billed at 1.25x or
2x input) looked like plain input: an agent's costs came out 19% low, silently. Once the relay is
seen to cache, the writes are inferred from the markers sent, and the call says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.capabilities import save_capabilities
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.probe import probe_relay
from langchain_claude_relay.store import MemoryStore

DOCUMENT = "The relay forwards each request to Claude and reports usage its own way. " * 700


@pytest.fixture(autouse=True)
def _private_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Probe results live in this test's own state dir (ports are reused between tests)."""
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    forget_warnings()


def _llm(emu: RelayEmulator, ledger: MemoryLedger | None = None) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emu.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache=CachePlanner(MemoryStore(), clock=lambda: emu.now),
        ledger=ledger if ledger is not None else MemoryLedger(),
    )


def _conversation(
    emu: RelayEmulator, turns: int, ledger: MemoryLedger | None = None
) -> list[AIMessage]:
    llm = _llm(emu, ledger)
    conversation: list[BaseMessage] = [SystemMessage(DOCUMENT)]
    replies: list[AIMessage] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for turn in range(turns):  # each turn reads the last one's and writes its own
            conversation.append(HumanMessage(f"Question {turn}? " * 300))
            reply = llm.invoke(conversation)
            assert isinstance(reply, AIMessage)
            replies.append(reply)
            conversation.append(reply)
    return replies


def _costs(emu: RelayEmulator, replies: list[AIMessage]) -> list[tuple[float, float]]:
    billed = [entry.cost_usd for entry in emu.billing_log]
    assert len(billed) == len(replies)
    return [(r.response_metadata["cost_usd"], b) for r, b in zip(replies, billed, strict=True)]


def _estimated(replies: list[AIMessage]) -> list[bool]:
    return [bool(r.response_metadata.get("cache_writes_estimated")) for r in replies]


def test_writes_a_relay_hides_are_inferred_once_it_is_seen_to_cache() -> None:
    with RelayEmulator(dialect="openai") as emu:
        replies = _conversation(emu, 5)
        costs = _costs(emu, replies)
    # the first call reads nothing: on a relay never seen to cache, its markers may not reach
    # Claude, so nothing is invented (its cost stays low); every later call read
    assert _estimated(replies) == [False, True, True, True, True]
    assert costs[0][0] < 0.85 * costs[0][1]
    for cost, billed in costs[1:]:
        assert cost == pytest.approx(billed, rel=0.03)
    for reply in replies[1:]:
        details = (reply.usage_metadata or {}).get("input_token_details", {})
        assert details.get("cache_read", 0) > 0
        assert details.get("cache_creation", 0) + details.get("ephemeral_5m_input_tokens", 0) > 0


def test_a_relay_reporting_writes_is_costed_exactly_and_never_flagged() -> None:
    with RelayEmulator(dialect="superset") as emu:
        replies = _conversation(emu, 3)
        costs = _costs(emu, replies)
    assert _estimated(replies) == [False, False, False]
    assert all(cost == pytest.approx(billed, rel=1e-9) for cost, billed in costs)


def test_a_relay_that_drops_markers_gets_no_invented_writes() -> None:
    # cached_tokens 0 and no write field: nothing was cached, so nothing is inferred
    with RelayEmulator(dialect="openai", bad_relay="drop_cache_control") as emu:
        replies = _conversation(emu, 3)
        costs = _costs(emu, replies)
    assert _estimated(replies) == [False, False, False]
    assert all(cost == pytest.approx(billed, rel=1e-9) for cost, billed in costs)


def test_a_stored_probe_lets_the_first_call_be_estimated_too() -> None:
    with RelayEmulator(dialect="openai") as emu:
        save_capabilities(
            emu.base_url,
            probe_relay(
                ChatClaudeRelay(
                    base_url=emu.base_url, api_key="test", model="claude-sonnet-5-5", ledger=False
                )
            ),
        )
        emu.reset()
        replies = _conversation(emu, 2)
        costs = _costs(emu, replies)
    assert _estimated(replies) == [True, True]
    for cost, billed in costs:
        assert cost == pytest.approx(billed, rel=0.03)


def test_the_ledger_and_track_costs_agree_with_the_estimate() -> None:
    from langchain_claude_relay.callbacks import track_costs

    ledger = MemoryLedger()
    with RelayEmulator(dialect="openai") as emu, track_costs() as tracked:
        replies = _conversation(emu, 3, ledger=ledger)
        billed = sum(entry.cost_usd for entry in emu.billing_log)
    reported = sum(r.response_metadata["cost_usd"] for r in replies)
    entries = ledger.entries()
    assert [e.estimated for e in entries] == _estimated(replies)
    assert sum(e.cost_usd for e in entries) == pytest.approx(reported, rel=1e-9)
    assert tracked.cost_usd == pytest.approx(reported, rel=1e-9)
    assert reported < billed  # the first call's write was not seen (no stored probe)


def test_a_stream_gets_the_same_estimate() -> None:
    with RelayEmulator(dialect="openai") as emu:
        llm = _llm(emu)
        conversation: list[BaseMessage] = [SystemMessage(DOCUMENT)]
        finals = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for turn in range(2):
                conversation.append(HumanMessage(f"Question {turn}? " * 300))
                chunks = list(llm.stream(conversation))
                finals.append(chunks[-1].response_metadata)
                conversation.append(AIMessage(content="".join(str(c.content) for c in chunks)))
        billed = [entry.cost_usd for entry in emu.billing_log]
    assert [bool(m.get("cache_writes_estimated")) for m in finals] == [False, True]
    assert finals[1]["cost_usd"] == pytest.approx(billed[1], rel=0.03)


def test_a_copy_sent_to_another_relay_has_not_seen_it_cache() -> None:
    # the "seen to read" flag belongs to the relay it was seen on: a copy pointed at a relay
    # that drops markers (nothing cached, nothing written) was given invented writes
    with (
        RelayEmulator(dialect="openai") as emu,
        RelayEmulator(dialect="openai", bad_relay="drop_cache_control") as other,
    ):
        llm = _llm(emu)
        conversation: list[BaseMessage] = [SystemMessage(DOCUMENT)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for turn in range(2):
                conversation.append(HumanMessage(f"Question {turn}? " * 300))
                conversation.append(llm.invoke(conversation))
            copy = llm.model_copy(update={"base_url": other.base_url})
            replies = [copy.invoke([SystemMessage(DOCUMENT), HumanMessage("Question? " * 300)])]
        costs = _costs(other, replies)
    assert _estimated(replies) == [False]
    assert costs[0][0] == pytest.approx(costs[0][1], rel=1e-9)
