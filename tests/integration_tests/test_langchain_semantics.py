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


# -- token counting: offline, what the planner estimates ----------------------------------------


def test_token_counts_are_offline_estimates_that_trim_messages_can_use(
    emulator: RelayEmulator,
) -> None:
    # LangChain's defaults needed transformers and downloaded GPT-2's tokenizer (an ImportError
    # here): trim_messages(token_counter=llm) failed.
    from langchain_core.messages import AIMessage, trim_messages

    llm = _llm(emulator)
    history: list[BaseMessage] = [
        SystemMessage("You are helpful."),
        HumanMessage("tell me about caching " * 40),
        AIMessage("Caching keeps a prefix. " * 40),
        HumanMessage("and the bill?"),
    ]
    before = llm.get_num_tokens_from_messages(history)  # the model table's prior
    for i in range(3):  # the planner calibrates its counts on the usage of each call
        billed = llm.invoke([*history, HumanMessage(f"({i})")]).usage_metadata
        assert billed is not None
    after = llm.get_num_tokens_from_messages(history)
    truth = billed["input_tokens"] - 10  # less the short last message
    assert before == pytest.approx(truth, rel=0.5)
    assert after == pytest.approx(truth, rel=0.1)
    assert abs(after - truth) < abs(before - truth)
    assert llm.get_num_tokens("") == 0
    assert 0 < llm.get_num_tokens("hello world") < llm.get_num_tokens("hello world " * 20)
    trimmed = trim_messages(
        history, max_tokens=60, token_counter=llm, strategy="last", include_system=True
    )
    assert trimmed[0] == history[0]
    assert trimmed[-1] == history[-1]
    assert len(trimmed) < len(history)
    with pytest.raises(NotImplementedError, match="not public"):
        llm.get_token_ids("hello")
    off = ChatClaudeRelay(base_url=emulator.base_url, api_key="test", model=MODEL, cache="off")
    assert off.get_num_tokens_from_messages(history) > 0
