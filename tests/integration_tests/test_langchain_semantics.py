"""What LangChain code sees from ``ChatClaudeRelay``, as from ``ChatOpenAI`` on the same relay:
one message id per streamed answer, LangSmith's parameters as sent, no tokens streamed to
callbacks by a call that was not asked to stream."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.store import MemoryStore

MODEL = "claude-sonnet-5-5"
SYSTEM = SystemMessage("You answer questions about the relay's cache and its bill. " * 400)


def _llm(emulator: RelayEmulator, **kwargs: Any) -> ChatClaudeRelay:
    return ChatClaudeRelay(
        base_url=emulator.base_url,
        api_key="test",
        model=MODEL,
        cache=CachePlanner(MemoryStore()),
        ledger=MemoryLedger(),
        **kwargs,
    )


class Tokens(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens = 0
        self.ids: set[str | None] = set()

    def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        self.tokens += 1
        if chunk is not None:
            self.ids.add(chunk.message.id)


@pytest.mark.parametrize("way", ["stream", "astream", "callbacks"])
def test_every_chunk_of_an_answer_has_one_id(emulator: RelayEmulator, way: str) -> None:
    # The closing chunk (usage, cost) had no id: LangChain gave it the run's, and clients that
    # group chunks by id (LangGraph's "messages" stream) showed a second, empty message.
    llm = _llm(emulator)
    messages: list[BaseMessage] = [HumanMessage(f"Hello ({way}).")]
    if way == "stream":
        ids = {chunk.id for chunk in llm.stream(messages)}
    elif way == "astream":

        async def collect() -> set[str | None]:
            return {chunk.id async for chunk in llm.astream(messages)}

        ids = asyncio.run(collect())
    else:
        handler = Tokens()
        _llm(emulator, streaming=True).invoke(messages, config={"callbacks": [handler]})
        ids = handler.ids
    assert len(ids) == 1
    (only,) = ids
    assert only is not None
    assert only.startswith("chatcmpl-")


def test_langsmith_sees_the_temperature_the_call_sent(emulator: RelayEmulator) -> None:
    llm = _llm(emulator, temperature=0.3)
    assert llm._get_ls_params()["ls_temperature"] == 0.3
    assert llm._get_ls_params(temperature=0.9)["ls_temperature"] == 0.9
    assert llm._get_ls_params(temperature=0.0)["ls_temperature"] == 0.0


@pytest.mark.parametrize("way", ["batch", "abatch"])
def test_a_batch_that_is_not_streaming_streams_no_tokens_to_callbacks(
    emulator: RelayEmulator, way: str
) -> None:
    # A batch sharing a new prompt sends one call first and lets the rest go at its first
    # byte, so that call is streamed internally; its tokens went to the callbacks as if the
    # user had asked to stream (a StreamingStdOutCallbackHandler printed one answer of four).
    llm = _llm(emulator)
    handler = Tokens()
    system = SystemMessage(f"[{way}] {SYSTEM.content}")
    inputs = [[system, HumanMessage(f"question {i}")] for i in range(4)]
    config: Any = {"callbacks": [handler]}
    if way == "batch":
        replies = llm.batch(inputs, config)
    else:
        replies = asyncio.run(llm.abatch(inputs, config))
    assert all(r.content for r in replies)
    writes = [e for e in emulator.billing_log[-4:] if 0 in e.write_indices]
    assert len(writes) == 1, "the batch warmed up: one call wrote the shared prompt"
    assert handler.tokens == 0
    streamed = Tokens()
    _llm(emulator, streaming=True).batch(inputs[:2], {"callbacks": [streamed]})
    assert streamed.tokens > 0  # asked to stream: tokens reach callbacks
