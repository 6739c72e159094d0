"""A stream the consumer stops early is billed all the same: it is in the ledger and in
``track_costs``, from its plan (flagged ``estimated``), close to what the relay billed once the
planner is calibrated (here by one call before)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.callbacks import track_costs
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

DOCUMENT = "The relay forwards requests to Claude and bills every token it reads. " * 700


def _llm(emulator: RelayEmulator, ledger: MemoryLedger) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache=CachePlanner(MemoryStore()),
        ledger=ledger,
    )


@pytest.mark.parametrize("way", ["sync", "async"])
def test_a_stream_stopped_early_is_recorded_from_its_plan(
    emulator: RelayEmulator, way: str
) -> None:
    ledger = MemoryLedger()
    llm = _llm(emulator, ledger)
    llm.invoke([SystemMessage(f"[{way} calibrates] {DOCUMENT}"), HumanMessage("Hi.")])
    messages = [SystemMessage(f"[{way}] {DOCUMENT}"), HumanMessage("Summarize it.")]
    with track_costs() as tracked:
        if way == "sync":
            for _chunk in llm.stream(messages):
                break
        else:

            async def first_chunk() -> None:
                stream = llm.astream(messages)
                async for _chunk in stream:
                    break
                await stream.aclose()

            asyncio.run(first_chunk())
    billed = emulator.billing_log[-1]  # the stopped stream's (the log is bounded)
    _calibrating, entry = ledger.entries()
    assert entry.estimated
    assert entry.predicted_read_tokens is None  # its read is the plan's: no prediction to score
    assert billed.cache_write > 5_000
    assert entry.cache_write_tokens == pytest.approx(billed.cache_write, rel=0.1)
    assert entry.cost_usd == pytest.approx(billed.cost_usd, rel=0.15)
    assert tracked.cost_usd == pytest.approx(entry.cost_usd)


def test_a_stream_read_to_its_end_is_recorded_from_its_usage(emulator: RelayEmulator) -> None:
    ledger = MemoryLedger()
    llm = _llm(emulator, ledger)
    chunks = list(llm.stream([SystemMessage(f"[end] {DOCUMENT}"), HumanMessage("Summarize.")]))
    assert chunks
    (entry,) = ledger.entries()
    assert not entry.estimated


def test_a_stream_stopped_early_without_caching_is_recorded_as_plain_input(
    emulator: RelayEmulator,
) -> None:
    ledger = MemoryLedger()
    llm = ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model="claude-sonnet-5-5",
        cache="off",
        ledger=ledger,
    )
    with track_costs() as tracked:
        for _chunk in llm.stream([SystemMessage(f"[off] {DOCUMENT}"), HumanMessage("Summarize.")]):
            break
    billed = emulator.billing_log[-1]
    (entry,) = ledger.entries()
    assert entry.estimated
    assert entry.cache_read_tokens == entry.cache_write_tokens == 0
    assert billed.input_tokens > 5_000
    # uncalibrated (no planner): the model's prior tokens per tiktoken token, 1.3x here
    assert entry.input_tokens == pytest.approx(billed.input_tokens, rel=0.4)
    assert tracked.cost_usd == pytest.approx(entry.cost_usd)


@pytest.mark.parametrize("way", ["sync", "async"])
def test_a_tracker_passed_to_a_stream_counts_its_early_stop(
    emulator: RelayEmulator, way: str
) -> None:
    # LangChain tells callbacks=[tracker] only of an error with the chunks so far; the cost is
    # recorded by the chat model once the stream closes, and handed to that tracker by the
    # answer's id (it counted nothing before).
    from langchain_claude_relay.callbacks import CostTracker

    ledger = MemoryLedger()
    llm = _llm(emulator, ledger)
    tracker = CostTracker()
    messages = [SystemMessage(f"[{way} tracker] {DOCUMENT}"), HumanMessage("Summarize it.")]
    config: Any = {"callbacks": [tracker]}
    if way == "sync":
        for _chunk in llm.stream(messages, config=config):
            break
    else:

        async def first_chunk() -> None:
            stream = llm.astream(messages, config=config)
            async for _chunk in stream:
                break
            await stream.aclose()

        asyncio.run(first_chunk())
    (entry,) = ledger.entries()
    assert entry.estimated
    assert tracker.cost_usd == pytest.approx(entry.cost_usd)
    assert tracker.cost_usd > 0


def test_a_relay_that_reuses_ids_sends_no_costs_to_another_calls_tracker(
    emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trackers were found by the relay's response id, which a relay may reuse: another
    # request's stopped stream was counted in Alice's tracker, and the registry grew a tracker
    # per call under the one id. Streams are keyed by a random key of their own now.
    import langchain_claude_relay.emulator.server as server
    from langchain_claude_relay.callbacks import CostTracker, _watched

    original = server.openai_stream
    monkeypatch.setattr(server, "openai_stream", lambda _rid, *a, **k: original("1", *a, **k))
    llm = _llm(emulator, MemoryLedger())
    alice = CostTracker()
    list(
        llm.stream(
            [SystemMessage(f"[alice] {DOCUMENT}"), HumanMessage("Hi")],
            config={"callbacks": [alice]},
        )
    )
    assert alice.calls == 1
    cost = alice.cost_usd
    for _chunk in llm.stream([SystemMessage(f"[bob] {DOCUMENT}"), HumanMessage("Hi")]):
        break  # another request's stream, stopped
    for _ in range(50):
        list(llm.stream([HumanMessage("Hi")], config={"callbacks": [CostTracker()]}))
    assert alice.calls == 1
    assert alice.cost_usd == cost
    assert max(len(refs) for refs in _watched.values()) <= 16


@pytest.mark.parametrize("way", ["sync", "async"])
def test_a_stream_closed_after_its_last_chunk_is_counted_once(
    emulator: RelayEmulator, way: str
) -> None:
    # Its usage and cost had arrived (on the last chunk), but LangChain reports the close as an
    # error, not an end: no tracker counted it.
    from langchain_claude_relay.callbacks import CostTracker

    ledger = MemoryLedger()
    llm = _llm(emulator, ledger)
    tracker = CostTracker()
    messages = [SystemMessage(f"[{way} last] {DOCUMENT}"), HumanMessage("Summarize it.")]
    config: Any = {"callbacks": [tracker]}
    with track_costs() as tracked:
        if way == "sync":
            for chunk in llm.stream(messages, config=config):
                if chunk.chunk_position == "last":
                    break
        else:

            async def until_last() -> None:
                stream = llm.astream(messages, config=config)
                async for chunk in stream:
                    if chunk.chunk_position == "last":
                        break
                await stream.aclose()

            asyncio.run(until_last())
    (entry,) = ledger.entries()
    assert not entry.estimated
    assert tracker.calls == tracked.calls == 1
    assert tracker.cost_usd == pytest.approx(entry.cost_usd)
    assert tracked.cost_usd == pytest.approx(entry.cost_usd)
