"""Secrets that never leave, calls that always end (issue 14, rows 4-7 and 10-12).

Against a hostile relay on a loopback port (``hostile_relay``): no redirect is followed (the
credential headers never reach another origin), answers are capped in bytes, every call has a
deadline, environment proxies are not used for plain http, and the key and a URL's credentials
appear in no refused construction, repr, serialization, callback, log line, error or pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from hostile_relay import HostileRelay
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumps
from pydantic import SecretStr, ValidationError

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.errors import (
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    RequestValidationError,
)
from langchain_claude_relay.transport.limits import _WATCHDOG, Deadline, _Watchdog
from langchain_claude_relay.transport.retry import RetryPolicy, retry_call

KEY = "sk-canary-key-0f1e2d3c4b5a6978"
HEADER_KEY = "hdr-canary-secret-5a4b3c2d1e0f"
URL_PASSWORD = "url-canary-pass-77aa88bb"
URL_QUERY = "query-canary-key-99cc00dd"


@pytest.fixture
def hostile() -> Iterator[HostileRelay]:
    with HostileRelay() as server:
        yield server


def llm_for(url: str, **kwargs: Any) -> ChatClaudeRelay:
    settings: dict[str, Any] = {
        "base_url": url,
        "api_key": KEY,
        "model": "claude-sonnet-4-6",
        "cache": "off",
        "ledger": False,
        "max_retries": 0,
        **kwargs,
    }
    return ChatClaudeRelay(**settings)


def texts_of(exc: BaseException) -> str:
    """Everything an exception shows: message, repr, chain, traceback, pydantic details."""
    parts = ["".join(traceback.format_exception(exc)), repr(exc)]
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current.args)]
        if isinstance(current, ValidationError):
            parts += [repr(current.errors()), current.json()]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# ------------------------------------------------------------- row 4: refused constructions

REFUSED: list[dict[str, Any]] = [
    {"base_url": "not a url"},
    {"base_url": "http://10.0.0.1/v1"},
    {"base_url": "ftp://relay.example.com/v1"},
    {"base_url": f"https://user:{URL_PASSWORD}@relay/v1?key={URL_QUERY}", "cache": "bogus"},
    {"base_url": f"ftp://user:{URL_PASSWORD}@relay/v1?key={URL_QUERY}"},
    {"base_url": "https://relay.example.com/v1", "exact_token_counts": True},
    {"base_url": "https://relay.example.com/v1", "cache_diagnostics": True},
    {"base_url": "https://relay.example.com/v1", "rate_limits": "tier99"},
    {"base_url": "https://relay.example.com/v1", "rate_limits": 123},
    {"base_url": "https://relay.example.com/v1", "rate_limits": {"rpm": -1}},
    {"base_url": "https://relay.example.com/v1", "thinking": {"type": "enabled"}},
    {"base_url": "https://relay.example.com/v1", "api": "nope"},
    {"base_url": "https://relay.example.com/v1", "max_tokens": "many"},
    {"base_url": "https://relay.example.com/v1", "call_timeout": -1},
    {"base_url": "https://relay.example.com/v1", "max_response_bytes": 0},
    {"base_url": "http://10.0.0.1/v1", "default_headers": {"x-api-key": HEADER_KEY}},
    {"base_url": "http://10.0.0.1/v1", "aws_secret_access_key": HEADER_KEY},
    {"base_url": "http://10.0.0.1/v1", "vertex_access_token": HEADER_KEY},
]


@pytest.mark.parametrize("settings", REFUSED)
def test_no_refused_construction_echoes_a_secret(settings: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, RequestValidationError)) as caught:
        ChatClaudeRelay(api_key=KEY, model="claude-sonnet-4-6", **settings)
    shown = texts_of(caught.value)
    for secret in (KEY, HEADER_KEY, URL_PASSWORD, URL_QUERY):
        assert secret not in shown


def test_a_refused_construction_still_says_what_is_wrong() -> None:
    with pytest.raises(ValidationError, match=r"plain http:// to '10\.0\.0\.1'"):
        ChatClaudeRelay(api_key=KEY, base_url="http://10.0.0.1/v1")
    with pytest.raises(ValidationError) as caught:
        ChatClaudeRelay(api_key=KEY, base_url="https://r.example/v1", max_tokens="many")
    assert caught.value.errors()[0]["loc"] == ("max_tokens",)


# ------------------------------------------------------------------------ row 5: redirects


def test_a_redirect_is_not_followed_and_no_secret_reaches_the_other_origin(
    hostile: HostileRelay,
) -> None:
    with HostileRelay() as elsewhere:
        hostile.redirect_to = elsewhere.origin
        headers = {"x-api-key": HEADER_KEY, "api-key": HEADER_KEY, "Authorization": "Bearer x"}
        llm = llm_for(hostile.url("redirect"), default_headers=headers)
        with pytest.raises(APIStatusError) as caught:
            llm.invoke("hi")
        with pytest.raises(APIStatusError):
            list(llm.stream("hi"))
        with pytest.raises(APIStatusError):
            asyncio.run(llm.ainvoke("hi"))
    assert caught.value.status_code == 307
    assert "redirect" in str(caught.value).lower()
    assert elsewhere.origin in str(caught.value)  # where it pointed, to fix base_url
    assert elsewhere.seen == []  # nothing at all reached the other origin
    assert len(hostile.seen) == 3
    assert hostile.seen[0]["headers"].get("x-api-key") == HEADER_KEY  # sent where asked


# ---------------------------------------------------------------------- row 6: byte caps


@pytest.mark.parametrize(
    ("kind", "setting", "stream"),
    [
        ("big-json", "max_response_bytes", False),
        ("big-line", "max_stream_line_bytes", True),
        ("endless-fast", "max_stream_bytes", True),
    ],
)
def test_a_huge_answer_ends_in_a_typed_error(
    hostile: HostileRelay, kind: str, setting: str, stream: bool
) -> None:
    llm = llm_for(hostile.url(kind), **{setting: 2**20})

    def call() -> None:
        if stream:
            list(llm.stream("hi"))
        else:
            llm.invoke("hi")

    async def acall() -> None:
        if stream:
            async for _ in llm.astream("hi"):
                pass
        else:
            await llm.ainvoke("hi")

    with pytest.raises(APIResponseError, match=setting):
        call()
    with pytest.raises(APIResponseError, match=setting):
        asyncio.run(acall())


@pytest.mark.parametrize(
    "kind",
    [
        "big-error",
        # 50 KiB of gzip on the wire, 50 MiB unpacked: the SDK read it whole (+450 MiB peak);
        # capped at what it unpacks to
        "gzip-error",
    ],
)
def test_an_error_page_the_sdk_reads_is_capped_too(hostile: HostileRelay, kind: str) -> None:
    llm = llm_for(hostile.url(kind), max_response_bytes=2**20)
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        llm.invoke("hi")
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        list(llm.stream("hi"))
    with pytest.raises(APIResponseError, match="max_response_bytes"):
        asyncio.run(llm.ainvoke("hi"))


def test_a_client_of_your_own_caps_the_error_page_with_response_cap_hooks(
    hostile: HostileRelay,
) -> None:
    """The SDK reads an error page itself: on a client the user passes, the package adds no
    hook (the client may serve other APIs); ``response_cap_hooks`` is the documented way."""
    import openai

    from langchain_claude_relay import ResponseLimits, response_cap_hooks

    limits = ResponseLimits(max_response_bytes=2**20)
    with openai.DefaultHttpxClient() as plain:
        llm = llm_for(hostile.url("redirect"), http_client=plain)
        with pytest.raises(APIStatusError):
            llm.invoke("hi")
        assert not plain.event_hooks["response"]  # nothing was added to the user's client
    with openai.DefaultHttpxClient(event_hooks=response_cap_hooks(limits)) as capped:
        llm = llm_for(hostile.url("big-error"), max_response_bytes=2**20, http_client=capped)
        with pytest.raises(APIResponseError, match="max_response_bytes"):
            llm.invoke("hi")

    async def acall() -> None:
        hooks = response_cap_hooks(limits, is_async=True)
        async with openai.DefaultAsyncHttpxClient(event_hooks=hooks) as client:
            llm = llm_for(hostile.url("big-error"), http_async_client=client)
            await llm.ainvoke("hi")

    with pytest.raises(APIResponseError, match="max_response_bytes"):
        asyncio.run(acall())


# ------------------------------------------------------------------------- row 7: deadline


@pytest.mark.timeout(60)
def test_a_trickling_body_ends_at_the_deadline(hostile: HostileRelay) -> None:
    llm = llm_for(hostile.url("trickle"), timeout=5, call_timeout=1.5)
    with pytest.raises(APITimeoutError, match="deadline"):
        llm.invoke("hi")
    with pytest.raises(APITimeoutError, match="deadline"):
        asyncio.run(llm.ainvoke("hi"))


@pytest.mark.timeout(60)
def test_an_endless_stream_ends_at_the_deadline(hostile: HostileRelay) -> None:
    llm = llm_for(hostile.url("endless-slow"), timeout=5, call_timeout=1.5)
    with pytest.raises(APITimeoutError, match="deadline"):
        list(llm.stream("hi"))

    async def consume() -> None:
        async for _ in llm.astream("hi"):
            pass

    with pytest.raises(APITimeoutError, match="deadline"):
        asyncio.run(consume())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["stall", "stall-stream"])
def test_a_relay_gone_silent_mid_answer_ends_a_sync_call_at_its_deadline(
    hostile: HostileRelay, kind: str
) -> None:
    # Each attempt's read timeout is what was left when it began (3 s here); a read that
    # starts 2.4 s in used to wait all of it, ending the call 2.4 s past its deadline.
    llm = llm_for(hostile.url(kind), timeout=30, call_timeout=3)
    call = llm.invoke if kind == "stall" else lambda text: list(llm.stream(text))
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match="deadline"):
        call("hi")
    assert time.monotonic() - started < 4.5


def test_the_default_deadline_follows_timeout_and_retries() -> None:
    base = "https://relay.example.com/v1"
    assert llm_for(base, timeout=5, max_retries=2)._transport.call_timeout == 31.0
    assert llm_for(base, timeout=5, max_retries=0)._transport.call_timeout == 5.0
    assert llm_for(base, max_retries=2)._transport.call_timeout == 3 * 600 + 16
    assert llm_for(base, timeout=5, call_timeout=7)._transport.call_timeout == 7


def test_no_retry_starts_when_its_wait_would_pass_the_deadline() -> None:
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise APIStatusError("overloaded", status_code=529)

    left = iter([10.0, 0.1])
    with pytest.raises(APIStatusError):
        retry_call(
            failing,
            RetryPolicy(max_retries=5, initial_delay=0.5),
            sleep=lambda _s: None,
            rand=lambda: 0.0,
            remaining=lambda: next(left),
        )
    assert len(calls) == 2  # a first retry fitted; the second's wait would not


def test_a_deadline_cuts_each_attempts_own_timeout() -> None:
    now = [0.0]
    deadline = Deadline(10, clock=lambda: now[0])
    assert deadline.attempt_timeout(30) == 10
    now[0] = 8
    assert deadline.attempt_timeout(5) == 2
    now[0] = 10
    with pytest.raises(APITimeoutError):
        deadline.attempt_timeout(5)


# ------------------------------------------------------------------ row 10: environment proxy


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_plain_http_never_goes_through_an_environment_proxy(
    hostile: HostileRelay, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    with HostileRelay() as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, proxy.origin)
        reply = llm_for(hostile.url("ok")).invoke("hi")
        asyncio.run(llm_for(hostile.url("ok")).ainvoke("hi"))
    assert reply.content == "hi"
    assert proxy.seen == []  # the proxy saw nothing: not the key, not the prompt
    assert len(hostile.seen) == 2


def test_https_still_honours_the_environment() -> None:
    llm = llm_for("https://relay.example.com/v1")
    assert llm._transport.client._client._trust_env is True
    plain = llm_for("http://127.0.0.1:9/v1")
    assert plain._transport.client._client._trust_env is False


# ----------------------------------------------------------- row 11: credentials in the URL


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.seen.append(repr(serialized))
        self.seen.append(repr(kwargs.get("invocation_params")))
        self.seen.append(repr(kwargs.get("metadata")))


def test_url_credentials_are_redacted_wherever_the_url_is_shown(
    hostile: HostileRelay, caplog: pytest.LogCaptureFixture
) -> None:
    # credentials in the URL are refused (test_secret_review_fixes.py); other query values
    # may still be private (a tenant id), and are redacted wherever the URL is shown
    url = f"http://127.0.0.1:{hostile.port}/ok/v1?tenant={URL_QUERY}"
    llm = llm_for(url)
    recorder = _Recorder()
    with caplog.at_level(logging.DEBUG):
        llm.invoke("hi", config={"callbacks": [recorder]})
        failing = llm_for(url.replace("/ok/", "/redirect/"))
        with pytest.raises(APIStatusError) as caught:
            failing.invoke("hi")
    shown = [
        *recorder.seen,
        repr(llm),
        str(llm),
        dumps(llm),
        repr(llm._get_ls_params()),
        repr(llm._identifying_params),
        repr(llm._transport),
        texts_of(caught.value),
        *(record.getMessage() for record in caplog.records),
    ]
    assert recorder.seen
    assert any("127.0.0.1" in text for text in shown)  # the URL is shown, redacted
    for text in shown:
        assert URL_QUERY not in text
    assert llm.base_url == url  # the model still uses the URL it was given


# ------------------------------------------------------------------------- row 12: pickles


def test_a_pickle_holds_no_secret_and_reads_the_key_again(
    hostile: HostileRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-from-the-environment")
    llm = llm_for(hostile.url("ok"), aws_secret_access_key=HEADER_KEY)
    llm.invoke("hi")  # the SDK client is built (and holds the key): it is not pickled either
    data = pickle.dumps(llm)
    for secret in (KEY, HEADER_KEY):
        assert secret.encode() not in data
    again = pickle.loads(data)  # noqa: S301 -- our own pickle
    assert again.api_key is not None
    assert again.api_key.get_secret_value() == "sk-from-the-environment"
    assert again.aws_secret_access_key is None
    assert again.invoke("hi").content == "hi"
    assert hostile.seen[-1]["headers"]["authorization"] == "Bearer sk-from-the-environment"


def test_a_pickle_drops_credential_headers_and_says_so(
    hostile: HostileRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", "sk-from-the-environment")
    llm = llm_for(hostile.url("ok"), default_headers={"x-api-key": HEADER_KEY, "x-team": "a"})
    data = pickle.dumps(llm)
    assert HEADER_KEY.encode() not in data
    again = pickle.loads(data)  # noqa: S301 -- our own pickle
    with pytest.raises(RequestValidationError, match="x-api-key"):
        again.invoke("hi")
    again.secret_headers = {"x-api-key": SecretStr(HEADER_KEY)}
    assert again.invoke("hi").content == "hi"
    assert hostile.seen[-1]["headers"]["x-api-key"] == HEADER_KEY
    assert HEADER_KEY.encode() not in pickle.dumps(again)


def _watches_towards(port: int) -> int:
    """Watches armed on sockets to ``port``: this test's (the watchdog is the process's, and
    a call another test left behind, a keep-alive thread say, may arm one meanwhile)."""
    count = 0
    for watch in list(_WATCHDOG._armed.values()):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += watch.sock.getpeername()[1] == port
    return count


def test_a_body_read_to_its_end_leaves_no_watch_armed(hostile: HostileRelay) -> None:
    # The connection may serve another request once its body is read: a watch left armed
    # (a caller holding a finished stream past the deadline) could cut that request's socket.
    port = hostile.port
    llm = llm_for(hostile.url("ok"), timeout=5, call_timeout=30)
    llm.invoke("hi")
    assert _watches_towards(port) == 0
    streaming = llm_for(hostile.url("short-stream"), timeout=5, call_timeout=30)
    chunks = streaming.stream("hi")
    assert next(chunks) is not None
    assert _watches_towards(port) == 1  # mid-stream: watched
    assert len(list(chunks)) >= 2
    assert _watches_towards(port) == 0


def test_the_deadline_watchdog_cuts_only_what_is_still_armed_and_stays_small() -> None:
    dog = _Watchdog()
    left, right = socket.socketpair()
    try:
        for _ in range(1000):  # calls that finished in time: disarmed, never cut
            dog.disarm(dog.arm(time.monotonic() + 60.0, left))
        assert len(dog._heap) <= 64 + 2  # rebuilt from what is armed: no growth per call
        kept = dog.arm(time.monotonic() + 60.0, left)
        cut = dog.arm(time.monotonic() + 0.05, right)
        left.settimeout(5.0)
        right.settimeout(5.0)
        assert right.recv(1) == b""  # shut down at its deadline: the read ends at once
        assert cut.fired
        assert not kept.fired
        dog.disarm(kept)
    finally:
        left.close()
        right.close()


# ------------------------------------------------------- compressed answers: counted unpacked


@pytest.mark.parametrize(
    ("kind", "setting", "stream"),
    [("gzip-json", "max_response_bytes", False), ("gzip-stream", "max_stream_bytes", True)],
)
def test_a_compressed_answer_is_capped_at_what_it_unpacks_to(
    hostile: HostileRelay, kind: str, setting: str, stream: bool
) -> None:
    llm = llm_for(hostile.url(kind), **{setting: 2**20})

    async def acall() -> None:
        if stream:
            async for _ in llm.astream("hi"):
                pass
        else:
            await llm.ainvoke("hi")

    with pytest.raises(APIResponseError, match=setting):
        list(llm.stream("hi")) if stream else llm.invoke("hi")
    with pytest.raises(APIResponseError, match=setting):
        asyncio.run(acall())


def test_an_error_looks_at_the_start_of_a_body_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body of ``max_response_bytes`` was whitespace-split and searched whole for the excerpt."""
    import httpx2
    import openai

    from langchain_claude_relay import errors
    from langchain_claude_relay.transport.limits import MAX_ERROR_BODY_CHARS
    from langchain_claude_relay.transport.translate import translate_sdk_error

    seen: list[int] = []
    real_excerpt = errors.excerpt

    def recording_excerpt(body: Any, limit: int = errors.BODY_EXCERPT_CHARS) -> str:
        seen.append(len(str(body)))
        return real_excerpt(body, limit)

    monkeypatch.setattr(errors, "excerpt", recording_excerpt)
    request = httpx2.Request("POST", "https://relay.example/v1/chat/completions")
    response = httpx2.Response(500, text="a " * 2**20, request=request)
    sdk_error = openai.InternalServerError("Error code: 500", response=response, body=None)
    error = translate_sdk_error(sdk_error, secret=KEY)
    assert isinstance(error, APIStatusError)
    assert error.status_code == 500
    assert error.body_excerpt.startswith("a a a")
    assert seen
    assert max(seen) <= MAX_ERROR_BODY_CHARS


# -------------------------------------------------- row 7: the deadline covers the headers too


@pytest.mark.timeout(120)
@pytest.mark.parametrize("way", ["invoke", "stream", "ainvoke", "astream"])
def test_headers_trickling_end_at_the_deadline(hostile: HostileRelay, way: str) -> None:
    # The status line, then a header byte every 0.5 s: each byte started the read timeout
    # again, and a call with call_timeout=2 took 31.5 s.
    llm = llm_for(hostile.url("trickle-headers"), timeout=30, call_timeout=2)

    async def acall() -> None:
        if way == "ainvoke":
            await llm.ainvoke("hi")
        else:
            async for _ in llm.astream("hi"):
                pass

    def call() -> None:
        if way == "invoke":
            llm.invoke("hi")
        elif way == "stream":
            list(llm.stream("hi"))
        else:
            asyncio.run(acall())

    started = time.monotonic()
    with pytest.raises(APITimeoutError, match="deadline"):
        call()
    assert time.monotonic() - started < 6.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stream", [False, True])
def test_headers_trickling_on_a_kept_alive_connection_end_at_the_deadline(
    hostile: HostileRelay, stream: bool
) -> None:
    # The connection was opened by an earlier call that went well: no new socket to watch.
    llm = llm_for(hostile.url("trickle-headers-later"), timeout=30, call_timeout=2)
    assert llm.invoke("hi").content == "hi"
    started = time.monotonic()
    with pytest.raises(APITimeoutError, match="deadline"):
        list(llm.stream("hi")) if stream else llm.invoke("hi")
    assert time.monotonic() - started < 6.0
    assert len(hostile.seen) == 2  # the second call was sent on the same connection

    async def twice() -> None:
        assert (await llm.ainvoke("hi")).content == "hi"
        await llm.ainvoke("hi")

    with pytest.raises(APITimeoutError, match="deadline"):
        asyncio.run(twice())


# --------------------------------------------------------------- secrets found once, not per line


def test_the_secrets_are_found_once_per_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_claude_relay.transport import relay as relay_module
    from langchain_claude_relay.transport.relay import RelayTransport

    calls: list[str] = []
    real = relay_module.url_credentials

    def counting(url: str) -> list[str]:
        calls.append(url)
        return real(url)

    monkeypatch.setattr(relay_module, "url_credentials", counting)
    transport = RelayTransport(
        base_url=f"https://relay.example/v1?key={URL_QUERY}", api_key=SecretStr(KEY)
    )
    line = f'data: {{"echo": "{KEY} {URL_QUERY}"}}'
    scrubbed = [transport._scrub_text(line) for _ in range(100)]
    assert KEY not in scrubbed[-1]
    assert URL_QUERY not in scrubbed[-1]
    assert len(calls) <= 1  # not once per stream line


# ------------------------------------------------------------ local failures are not retried


@pytest.mark.parametrize("header", ["\u00e9t\u00e9", "a\nb"])
def test_a_request_that_cannot_be_sent_is_not_retried(
    hostile: HostileRelay, monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    from langchain_claude_relay.transport.relay import RelayTransport

    retries: list[int] = []
    monkeypatch.setattr(
        RelayTransport, "_on_retry", staticmethod(lambda attempt, *_: retries.append(attempt))
    )
    llm = llm_for(hostile.url("ok"), max_retries=2)
    llm.default_headers = {"x-team": header}  # past the constructor's check of header values
    with pytest.raises(
        RequestValidationError, match=r"in this process|could not be sent"
    ) as caught:
        llm.invoke("hi")
    assert retries == []
    assert hostile.seen == []
    assert KEY not in texts_of(caught.value)
