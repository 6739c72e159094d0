"""A forked worker, and each event loop, gets its own HTTP client: no shared sockets.

A ``multiprocessing`` pool (fork) started after the parent had called the relay shared its
keep-alive connection: children read each other's answers, garbled status lines, or hung.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from typing import Any

import pytest

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator

_llm: ChatClaudeRelay | None = None
_parent_client_id = 0


def _child_call(i: int) -> tuple[bool, int]:
    assert _llm is not None
    fresh = id(_llm._transport.client) != _parent_client_id
    reply = _llm.invoke(f"Question number {i} " + "with some words " * i)
    return fresh, reply.usage_metadata["input_tokens"] if reply.usage_metadata else -1


@pytest.mark.timeout(120)
def test_forked_workers_call_the_relay_on_their_own_connections(
    emulator: RelayEmulator,
) -> None:
    global _llm, _parent_client_id
    _llm = ChatClaudeRelay(
        base_url=emulator.base_url, api_key="test", cache="off", ledger=False, max_retries=0
    )
    for i in range(3):
        _llm.invoke(f"warming the connection {i}")  # the parent's pool holds a live socket
    _parent_client_id = id(_llm._transport.client)
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process
        with context.Pool(4) as pool:
            results: list[Any] = pool.map(_child_call, range(1, 33), chunksize=1)
    assert all(fresh for fresh, _ in results)
    counts = [count for _, count in results]
    assert counts == sorted(counts)  # each answer is its own prompt's (longer prompts, more)
    assert len(set(counts)) == len(counts)


def test_a_model_serves_one_event_loop_after_another(emulator: RelayEmulator) -> None:
    # a second asyncio.run (pytest-asyncio's loop per test) met the first loop's pooled
    # connections: "Event loop is closed"
    import asyncio

    llm = ChatClaudeRelay(
        base_url=emulator.base_url, api_key="test", cache="off", ledger=False, max_retries=0
    )
    for i in range(3):
        assert asyncio.run(llm.ainvoke(f"Question {i}")).content

        async def streamed(i: int = i) -> str:
            return "".join([c.text async for c in llm.astream(f"Stream {i}")])

        assert asyncio.run(streamed())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_event_loops_that_ended_leave_no_connections_open(emulator: RelayEmulator) -> None:
    # Each loop's async client held its loop (its pooled connections do), so the weak key never
    # died: every asyncio.run left a client and an open socket behind for the model's lifetime.
    import asyncio
    import gc

    llm = ChatClaudeRelay(
        base_url=emulator.base_url, api_key="test", cache="off", ledger=False, max_retries=0
    )
    asyncio.run(llm.ainvoke("Question 0"))
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # sockets of collected loops
        for i in range(1, 21):
            assert asyncio.run(llm.ainvoke(f"Question {i}")).content
        gc.collect()
    assert len(os.listdir("/proc/self/fd")) - before <= 4  # was 2 per loop (client + server)
