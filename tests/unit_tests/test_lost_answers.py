"""A call sent whose answer was lost is billed: each such attempt is in the ledger, as an estimate.

Claude bills a request once it began. An attempt that timed out while its answer was awaited
or read, or that the caller cancelled (``asyncio.wait_for``) while it was in flight, used to
leave no trace: the ledger and ``track_costs`` missed a call the invoice has, and the rate
limiter was given back tokens the relay had counted. Now each attempt that went out and lost its
answer is recorded (``LedgerEntry.estimated``) and counted by the call's trackers, and the
call's booking is settled. An attempt that never left (a refused connection) or that was
answered with an error is not. ``transport.progress`` tells which attempts went out: the HTTP
library's trace on the clients this package builds (the loopback tests below), a read timeout on
any client (the injected-transport ones).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, sse, stream_events
from hostile_relay import HostileRelay
from langchain_core.runnables import RunnableLambda

from langchain_claude_relay import ChatClaudeRelay, response_cap_hooks
from langchain_claude_relay.callbacks import CostTracker, track_costs
from langchain_claude_relay.errors import APIConnectionError, APIStatusError, APITimeoutError
from langchain_claude_relay.ledger import MemoryLedger
from langchain_claude_relay.limiter import RateLimiter
from langchain_claude_relay.transport import progress

KEY = "sk-canary-lost-0a1b2c3d4e5f6789"


@pytest.fixture
def hostile() -> Iterator[HostileRelay]:
    with HostileRelay() as server:
        yield server


@pytest.fixture(autouse=True)
def _collect_sockets() -> Iterator[None]:
    """Collect the models (and the sockets they hold to the stalled servers) here, quietly.

    Collected later, their sockets' ``ResourceWarning`` came in whatever test ran then (one
    that records warnings saw it first).
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _llm(url: str, ledger: MemoryLedger, **kwargs: Any) -> ChatClaudeRelay:
    settings: dict[str, Any] = {
        "base_url": url,
        "api_key": KEY,
        "model": "claude-sonnet-4-6",
        "cache": "off",
        "ledger": ledger,
        "max_retries": 0,
        **kwargs,
    }
    return ChatClaudeRelay(**settings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- on the wire: the package's own clients ------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["silent", "stall"], ids=["no-headers", "headers-then-silence"])
def test_each_timed_out_attempt_is_recorded_as_billed(hostile: HostileRelay, kind: str) -> None:
    ledger = MemoryLedger()
    llm = _llm(hostile.url(kind), ledger, timeout=0.6, max_retries=1)
    llm._transport._sleep = lambda _s: None
    with track_costs() as costs, pytest.raises(APITimeoutError):
        llm.invoke("Summarize the repository.")
    assert len(hostile.seen) == 2  # both attempts reached the relay
    entries = ledger.entries()
    assert len(entries) == 2
    assert all(e.estimated and e.input_tokens > 0 and e.output_tokens == 0 for e in entries)
    assert costs.calls == 2
    assert costs.cost_usd == pytest.approx(sum(e.cost_usd or 0.0 for e in entries))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("streamed", [False, True], ids=["ainvoke", "astream"])
def test_a_call_cancelled_in_flight_is_recorded_once(hostile: HostileRelay, streamed: bool) -> None:
    # asyncio.wait_for cancels the call while its answer is awaited: no read timed out, so only
    # the HTTP library's trace tells that the request went out
    ledger = MemoryLedger()
    llm = _llm(hostile.url("silent"), ledger, timeout=30)

    async def call() -> None:
        if streamed:
            async for _ in llm.astream("Summarize the repository."):
                pass
        else:
            await llm.ainvoke("Summarize the repository.")

    async def cancelled() -> None:
        with track_costs() as costs, pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call(), 0.5)
        assert costs.calls == 1

    asyncio.run(cancelled())
    assert len(hostile.seen) == 1
    (entry,) = ledger.entries()
    assert entry.estimated


@pytest.mark.timeout(60)
def test_a_call_that_never_left_is_not_recorded() -> None:
    ledger = MemoryLedger()
    limiter = RateLimiter(rpm=100, itpm=1_000_000)
    llm = _llm(f"http://127.0.0.1:{_free_port()}/v1", ledger, rate_limiter=limiter)
    with track_costs() as costs, pytest.raises(APIConnectionError):
        llm.invoke("hi")
    assert ledger.entries() == []
    assert costs.calls == 0
    assert limiter.stats()["cancelled"] == 1  # given back: the relay counted nothing
    assert limiter.stats()["settled"] == 0


# -- any client: an injected transport -----------------------------------------------------------


def _injected(relay: FakeRelay, ledger: MemoryLedger, **kwargs: Any) -> ChatClaudeRelay:
    return _llm(
        "https://relay.example.com/v1",
        ledger,
        http_client=httpx2.Client(transport=httpx2.MockTransport(relay)),
        http_async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(relay)),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("failure", "raised", "billed"),
    [
        (httpx2.ReadTimeout("read timed out"), APITimeoutError, True),
        (httpx2.ConnectTimeout("connect timed out"), APITimeoutError, False),
        (httpx2.ConnectError("refused"), APIConnectionError, False),
        # dropped before any answer: a relay closing an idle pooled connection does the same
        (httpx2.RemoteProtocolError("server disconnected"), APIConnectionError, False),
        (httpx2.Response(529, json={"error": {"message": "overloaded"}}), APIStatusError, False),
    ],
    ids=["read-timeout", "connect-timeout", "refused", "dropped", "529"],
)
def test_only_attempts_that_went_out_are_billed(
    relay: FakeRelay, failure: Any, raised: type[Exception], billed: bool
) -> None:
    ledger = MemoryLedger()
    limiter = RateLimiter(rpm=100, itpm=1_000_000)
    relay.queue(failure)
    with track_costs() as costs, pytest.raises(raised):
        _injected(relay, ledger, rate_limiter=limiter).invoke("hi")
    assert len(ledger.entries()) == costs.calls == (1 if billed else 0)
    assert all(e.estimated for e in ledger.entries())
    stats = limiter.stats()
    # billed: the booking is settled (the relay counted it); the rest are given back
    assert (stats["settled"], stats["cancelled"]) == ((1, 0) if billed else (0, 1))


def test_a_lost_attempt_then_an_answer_are_both_recorded(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    ledger = MemoryLedger()
    relay.queue(httpx2.ReadTimeout("read timed out"))
    with track_costs() as costs:
        answer = make_llm(ledger=ledger).invoke("hi")
    assert answer.content == "Hello"
    lost, whole = ledger.entries()
    assert (lost.estimated, whole.estimated) == (True, False)
    assert costs.calls == 2


def test_a_stream_lost_before_its_first_event_is_recorded_once(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    ledger = MemoryLedger()
    relay.queue(httpx2.ReadTimeout("read timed out"))
    with pytest.raises(APITimeoutError):
        list(make_llm(ledger=ledger, max_retries=0).stream("hi"))
    (entry,) = ledger.entries()
    assert entry.estimated


# -- the trace hooks -----------------------------------------------------------------------------


def test_the_hooks_tell_when_a_request_was_written_and_keep_a_trace_of_your_own() -> None:
    seen: list[str] = []

    def mine(name: str, _info: Any) -> None:
        seen.append(name)

    async def amine(name: str, _info: Any) -> None:
        seen.append(name)

    events = ("http11.send_request_headers.complete", "http11.send_request_body.complete")
    url = "https://relay.example.com/v1"
    sync_hooks = response_cap_hooks()["request"]
    async_hooks = response_cap_hooks(is_async=True)["request"]
    for hooks, trace in ((sync_hooks, mine), (async_hooks, amine)):
        request = httpx2.Request("POST", url, extensions={"trace": trace})
        for _ in range(2):  # a request sent again (a redirect) is not wrapped twice
            for hook in hooks:
                done = hook(request)
                if asyncio.iscoroutine(done):
                    asyncio.run(done)
        attempt = progress.AttemptProgress()
        with progress.tracking(attempt):
            for name in (
                "http11.send_request_headers.complete",
                "http11.send_request_body.complete",
            ):
                called = request.extensions["trace"](name, {})
                if asyncio.iscoroutine(called):
                    asyncio.run(called)
                assert attempt.request_sent == name.endswith("body.complete")
    assert seen == [*events, *events]  # your own trace saw each event once


# -- requests that never reached the relay, answers that were errors ----------------------------


class _SilentServer:
    """Reads what it is sent and answers ``reply`` (bytes, then silence) on each connection."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.seen: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self.seen.append(conn.recv(65536).split(b"\r\n")[0])
            if self.reply:
                conn.sendall(self.reply)

    def close(self) -> None:
        for conn in [self._sock, *self._conns]:
            conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("is_async", [False, True], ids=["invoke", "ainvoke-cancelled"])
def test_a_call_held_by_a_proxy_on_connect_is_not_recorded(
    monkeypatch: pytest.MonkeyPatch, is_async: bool
) -> None:
    # httpcore gives the CONNECT request the request's extensions (its trace): its body
    # written is not the relay's request written; a read timeout awaiting the proxy neither
    proxy = _SilentServer()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ledger = MemoryLedger()
    limiter = RateLimiter(rpm=100, itpm=1_000_000)
    llm = _llm(
        "https://relay.example.com/v1",
        ledger,
        rate_limiter=limiter,
        timeout=30 if is_async else 0.5,
    )
    try:
        with track_costs() as costs:
            if is_async:

                async def cancelled() -> None:
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(llm.ainvoke("hi"), 0.5)

                asyncio.run(cancelled())
            else:
                with pytest.raises(APITimeoutError):
                    llm.invoke("hi")
        assert [line.split(b" ")[0] for line in proxy.seen] == [b"CONNECT"]
        assert ledger.entries() == []
        assert costs.calls == 0
        assert (limiter.stats()["settled"], limiter.stats()["cancelled"]) == (0, 1)
    finally:
        proxy.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("is_async", [False, True], ids=["invoke", "ainvoke"])
def test_an_error_status_whose_body_times_out_is_not_recorded(is_async: bool) -> None:
    relay = _SilentServer(
        b"HTTP/1.1 529 Overloaded\r\ncontent-type: application/json\r\n"
        b'content-length: 200\r\n\r\n{"error":'
    )
    ledger = MemoryLedger()
    limiter = RateLimiter(rpm=100, itpm=1_000_000)
    llm = _llm(f"http://127.0.0.1:{relay.port}/v1", ledger, rate_limiter=limiter, timeout=0.5)
    try:
        with track_costs() as costs, pytest.raises(APITimeoutError):
            asyncio.run(llm.ainvoke("hi")) if is_async else llm.invoke("hi")
        assert len(relay.seen) == 1
        assert ledger.entries() == []
        assert costs.calls == 0
        assert (limiter.stats()["settled"], limiter.stats()["cancelled"]) == (0, 1)
    finally:
        relay.close()


@pytest.mark.parametrize("how", ["invoke", "stream", "astream"])
def test_a_tracker_passed_as_a_callback_counts_the_lost_attempt(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay], how: str
) -> None:
    # A stream's callback tracker learns the stream's key from its first chunk: an attempt
    # lost before it was recorded before the tracker could be found, and was missed
    streamed = httpx2.Response(
        200, text=sse(stream_events()), headers={"content-type": "text/event-stream"}
    )
    relay.queue(httpx2.ReadTimeout("read timed out"), *([] if how == "invoke" else [streamed]))
    ledger = MemoryLedger()
    llm = make_llm(ledger=ledger)
    tracker = CostTracker()
    config: Any = {"callbacks": [tracker]}

    async def astream() -> None:
        async for _ in llm.astream("hi", config=config):
            pass

    with track_costs() as block:
        if how == "invoke":
            llm.invoke("hi", config=config)
        elif how == "stream":
            list(llm.stream("hi", config=config))
        else:
            asyncio.run(astream())
    assert len(ledger.entries()) == block.calls == tracker.calls == 2
    assert tracker.cost_usd == pytest.approx(sum(e.cost_usd or 0.0 for e in ledger.entries()))


def test_a_lost_attempt_reaching_a_tracker_twice_counts_once(
    relay: FakeRelay, make_llm: Callable[..., ChatClaudeRelay]
) -> None:
    # the outer block is inherited by the chain AND the inner block forwards to it
    relay.queue(httpx2.ReadTimeout("read timed out"))
    ledger = MemoryLedger()
    llm = make_llm(ledger=ledger)

    def step(prompt: str) -> Any:
        with track_costs():
            return llm.invoke(prompt)

    with track_costs() as outer:
        RunnableLambda(step).invoke("hi")
    assert len(ledger.entries()) == outer.calls == 2


def test_a_read_timeout_on_hooks_without_httpcore_trace_is_recorded(relay: FakeRelay) -> None:
    # response_cap_hooks on a transport that sends no httpcore trace (here a mock one)
    relay.queue(httpx2.ReadTimeout("read timed out"))
    ledger = MemoryLedger()
    llm = _llm(
        "https://relay.example.com/v1",
        ledger,
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(relay), event_hooks=response_cap_hooks()
        ),
    )
    with track_costs() as costs, pytest.raises(APITimeoutError):
        llm.invoke("hi")
    assert len(ledger.entries()) == costs.calls == 1
