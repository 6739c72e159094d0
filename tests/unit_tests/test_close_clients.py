"""``close()`` and ``aclose()`` close the HTTP clients the model built, and only those.

Before, ``close()`` only stopped keep-alives: the SDK clients' pooled sockets stayed open until
the garbage collector found them (a ``ResourceWarning`` in whatever test ran then). Against the
relay emulator on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from socket_leaks import socket_warnings_on_collection

from langchain_claude_relay import ChatClaudeRelay, response_cap_hooks
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import ClaudeRelayError
from langchain_claude_relay.ledger import MemoryLedger

KEY = "relaykey0c4f9a2e7b1d5f3a9c8e"


@pytest.fixture(autouse=True)
def _collect_quietly() -> Iterator[None]:
    """Start and end with nothing left to collect: another test's socket warns on its own."""
    _collect_ignoring_warnings()
    yield
    _collect_ignoring_warnings()


def _collect_ignoring_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _llm(emu: RelayEmulator, **kwargs: Any) -> ChatClaudeRelay:
    settings: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "base_url": emu.base_url,
        "api_key": KEY,
        "cache": "off",
        "ledger": MemoryLedger(),
        "max_retries": 0,
        "timeout": 10,
        **kwargs,
    }
    return ChatClaudeRelay(**settings)


def test_close_closes_the_sync_client_and_leaves_no_socket_behind(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    llm.invoke("hi")
    http = llm._transport.client._client
    assert not http.is_closed
    llm.close()
    assert http.is_closed
    assert llm._transport._clients == {}
    del llm, http
    assert socket_warnings_on_collection(emu.base_url) == []


def test_a_model_dropped_without_close_is_what_warned(emu: RelayEmulator) -> None:
    # the check above sees the warning it guards against
    llm = _llm(emu)
    llm.invoke("hi")
    del llm
    assert socket_warnings_on_collection(emu.base_url) != []


def test_the_model_answers_after_close_on_a_new_client(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    llm.invoke("hi")
    before = llm._transport.client
    llm.close()
    assert llm.invoke("again").content
    after = llm._transport.client
    assert after is not before
    assert before.is_closed()
    assert not after.is_closed()
    llm.close()
    assert after.is_closed()


def test_close_twice_is_harmless(emu: RelayEmulator) -> None:
    with _llm(emu) as llm:
        llm.invoke("hi")
        http = llm._transport.client._client
        llm.close()
    assert http.is_closed  # and the block's own close, a second one, raised nothing


def test_an_http_client_you_gave_stays_open(emu: RelayEmulator) -> None:
    yours = httpx2.Client(event_hooks=response_cap_hooks())
    try:
        llm = _llm(emu, http_client=yours)
        llm.invoke("hi")
        before = llm._transport.client
        llm.close()
        assert not yours.is_closed
        assert llm._transport._clients == {}  # forgotten, not closed
        assert llm.invoke("again").content  # on your client still
        assert llm._transport.client is not before
        assert llm._transport.client._client is yours
    finally:
        yours.close()


def test_a_client_inherited_over_fork_is_forgotten_not_closed(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    llm.invoke("hi")
    client = llm._transport.client
    llm._transport._clients[False] = (os.getpid() + 1, client)  # as a forked child sees it
    llm.close()
    assert not client.is_closed()  # its sockets are the parent's too
    assert llm._transport._clients == {}
    client.close()


def test_close_on_a_model_never_used_builds_nothing(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    llm.close()
    asyncio.run(llm.aclose())
    assert "_transport" not in llm.__dict__


def test_a_client_that_fails_to_close_is_logged_not_raised(
    emu: RelayEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    llm = _llm(emu)
    llm.invoke("hi")
    client = llm._transport.client

    def broken() -> None:
        raise OSError("cannot close")

    client.close = broken
    with caplog.at_level(logging.DEBUG, logger="langchain_claude_relay.transport"):
        llm.close()
    assert any("closing the SDK client failed" in r.getMessage() for r in caplog.records)
    assert llm._transport._clients == {}
    client._client.close()


def test_a_stream_closed_part_way_finishes_or_fails_typed(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    chunks = llm.stream("tell me about caches " * 20)
    next(chunks)
    http = llm._transport.client._client
    llm.close()
    assert http.is_closed
    try:
        for _ in chunks:
            pass
    except ClaudeRelayError:
        pass  # the connection it read went with the client


async def test_aclose_closes_the_loops_async_client(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    await llm.ainvoke("hi")
    client = llm._transport.async_client
    await llm.aclose()
    assert client.is_closed()
    assert len(llm._transport._async_clients) == 0
    assert (await llm.ainvoke("again")).content  # on a new client
    await llm.aclose()
    await llm.aclose()  # twice: harmless
    del llm, client
    assert socket_warnings_on_collection(emu.base_url) == []


async def test_async_with_closes_on_leaving(emu: RelayEmulator) -> None:
    async with _llm(emu) as llm:
        await llm.ainvoke("hi")
        client = llm._transport.async_client
        llm.invoke("hi")
        sync = llm._transport.client
    assert client.is_closed()
    assert sync.is_closed()


async def test_close_from_a_coroutine_closes_the_async_client_on_its_loop(
    emu: RelayEmulator,
) -> None:
    llm = _llm(emu)
    await llm.ainvoke("hi")
    client = llm._transport.async_client
    llm.close()  # cannot await: the close is scheduled on this (running) loop
    for _ in range(100):
        if client.is_closed():
            break
        await asyncio.sleep(0.01)
    assert client.is_closed()


def test_close_forgets_the_async_client_of_a_loop_that_ended(emu: RelayEmulator) -> None:
    llm = _llm(emu)
    asyncio.run(llm.ainvoke("hi"))
    assert len(llm._transport._async_clients) == 1
    llm.close()  # its loop is gone: nothing can await its close, so it is only dropped
    assert len(llm._transport._async_clients) == 0


def test_close_from_a_coroutine_as_its_loop_ends_closes_the_async_client(
    emu: RelayEmulator,
) -> None:
    """``close()`` (or leaving ``with llm:``) as the last thing ``asyncio.run`` runs: the close
    scheduled on the loop must run before the loop cancels what is left and ends."""
    llm = _llm(emu)

    async def main() -> Any:
        with llm:
            await llm.ainvoke("hi")
            await llm.ainvoke("again")  # one pooled connection
            return llm._transport.async_client

    client = asyncio.run(main())
    assert client.is_closed()
    del client
    assert socket_warnings_on_collection(emu.base_url) == []
