"""Secrets and bounds a review found missing: gateway credential headers, errors that held the
request, credentials in the base URL, Bedrock's session token in botocore's logs, and answers
with absurd numbers of tool calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fake_relay import FakeRelay, completion, sse
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.load import dumpd
from pydantic import ValidationError

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import (
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClaudeRelayError,
    NotFoundError,
    RequestValidationError,
)
from langchain_claude_relay.transport.checks import check_base_url, is_secret_header
from langchain_claude_relay.wire.anthropic_messages import MessageStreamReader, parse_message
from langchain_claude_relay.wire.openai_chat import (
    MAX_TOOL_CALLS,
    ChatChunkReader,
    parse_chat_completion,
)

KEY = "sk-review-canary-4d3c2b1a0f9e8d7c"
HARMLESS = "harmless-source-value-42"

GATEWAY_HEADERS = {
    "cf-aig-authorization": "Bearer cf-canary-aaaa1111bbbb",
    "Helicone-Auth": "Bearer helicone-canary-cccc2222",
    "x-portkey-api-key": "portkey-canary-dddd3333eeee",
    "x-goog-api-key": "goog-canary-ffff4444gggg",
}


def fake_llm(relay: FakeRelay, **kwargs: Any) -> ChatClaudeRelay:
    llm = ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key=KEY,
        model="claude-sonnet-4-6",
        cache="off",
        ledger=False,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(relay)),
        http_async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(relay)),
        **kwargs,
    )
    llm._transport._sleep = lambda _s: None
    return llm


class _Serialized(BaseCallbackHandler):
    """Keeps the ``serialized`` payload callbacks (and LangSmith) receive."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.seen.append(json.dumps(serialized, default=str))


# -- 1. gateway credential headers ------------------------------------------------------------


@pytest.mark.parametrize("name", GATEWAY_HEADERS)
def test_a_gateway_credential_header_is_hidden_everywhere(relay: FakeRelay, name: str) -> None:
    value = GATEWAY_HEADERS[name]
    headers = {name: value, "x-request-source": HARMLESS}
    llm = fake_llm(relay, default_headers=headers)
    recorder = _Serialized()
    llm.invoke("hi", config={"callbacks": [recorder]})
    assert relay.headers[-1][name.lower()] == value  # still sent
    assert recorder.seen
    shown = {
        "repr": repr(llm),
        "str": str(llm),
        "dumpd": json.dumps(dumpd(llm), default=str),
        "serialized": "\n".join(recorder.seen),
        "model_dump_json": llm.model_dump_json(),
        "model_dump": repr(llm.model_dump()),
    }
    for where, text in shown.items():
        assert value not in text, where
        assert value.split()[-1] not in text, where
        if where != "model_dump":  # the others show the harmless header: it is not hidden
            assert HARMLESS in text, where
    plain = ChatClaudeRelay(base_url="https://relay.example.com/v1", default_headers=headers)
    pickled = pickle.dumps(plain)  # a model without http clients of its own (those do not pickle)
    assert value.split()[-1].encode() not in pickled
    assert HARMLESS.encode() in pickled
    assert llm.default_headers == {"x-request-source": HARMLESS}
    assert set(llm.secret_headers) == {name}


def test_a_gateway_credential_header_is_scrubbed_from_errors(relay: FakeRelay) -> None:
    value = GATEWAY_HEADERS["x-portkey-api-key"]
    relay.handler = lambda _b: httpx2.Response(401, json={"error": {"message": f"bad {value}"}})
    llm = fake_llm(relay, default_headers={"x-portkey-api-key": value})
    with pytest.raises(APIStatusError) as caught:
        llm.invoke("hi")
    assert value not in str(caught.value)
    assert value not in caught.value.body_excerpt


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("X-Session-Id", False),  # words, not fragments: a session id is not a key
        ("Helicone-Session-Name", False),
        ("X-Idempotency-Key", False),
        ("Ocp-Apim-Subscription-Key", True),
        ("x-csrf-token", True),
        ("cookie", True),
        ("x-amz-signature", True),
        ("x-db-password", True),
        ("x-request-source", False),
        ("anthropic-version", False),
        ("x-title", False),
    ],
)
def test_which_header_names_are_credentials(name: str, secret: bool) -> None:
    assert is_secret_header(name) is secret


# -- 2. tool calls per answer ------------------------------------------------------------------


def _tool_call_stream(count: int) -> str:
    first = {
        "id": "c1",
        "model": "claude-sonnet-4-6",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": i,
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": ""},
                        }
                        for i in range(count)
                    ],
                },
            }
        ],
    }
    pieces = [
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": i, "function": {"arguments": '{"q": 1}'}}]},
                }
            ],
        }
        for i in range(count)
    ]
    last = {
        "id": "c1",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5},
    }
    return sse([first, *pieces, last])


def _streamed(body: str) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, text=body)


def _one_per_chunk_stream(count: int) -> str:
    chunks = [
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": f"call_{i}",
                                "function": {"name": "lookup", "arguments": "{}"},
                            }
                        ]
                    },
                }
            ],
        }
        for i in range(count)
    ]
    return sse(chunks)


@pytest.mark.parametrize("make_stream", [_tool_call_stream, _one_per_chunk_stream])
def test_a_stream_with_too_many_tool_calls_ends_in_a_typed_error_quickly(
    relay: FakeRelay, make_stream: Any
) -> None:
    body = make_stream(600)
    relay.handler = lambda _b: _streamed(body)
    llm = fake_llm(relay, streaming=True)
    started = time.monotonic()
    with pytest.raises(APIResponseError, match=f"more than {MAX_TOOL_CALLS} tool calls") as caught:
        llm.invoke("hi")
    assert time.monotonic() - started < 5
    assert caught.value.status_code == 200
    assert KEY not in str(caught.value)


def test_fifty_parallel_tool_calls_still_work(relay: FakeRelay) -> None:
    body = _tool_call_stream(50)
    relay.handler = lambda _b: _streamed(body)
    streamed = fake_llm(relay, streaming=True).invoke("hi")
    assert [c["id"] for c in streamed.tool_calls] == [f"call_{i}" for i in range(50)]
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in range(50)
    ]
    relay.handler = lambda _b: httpx2.Response(
        200,
        json=completion("", tool_calls=calls, usage={"prompt_tokens": 1, "completion_tokens": 1}),
    )
    answered = fake_llm(relay).invoke("hi")
    assert len(answered.tool_calls) == 50


def test_an_answer_with_too_many_tool_calls_is_refused(relay: FakeRelay) -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in range(MAX_TOOL_CALLS + 1)
    ]
    relay.handler = lambda _b: httpx2.Response(200, json=completion("", tool_calls=calls))
    with pytest.raises(APIResponseError, match="more than 512 tool calls"):
        fake_llm(relay).invoke("hi")
    assert len(parse_chat_completion(completion("", tool_calls=calls[:50])).tool_calls) == 50


def test_a_tool_call_index_past_the_cap_is_refused() -> None:
    chunk = {
        "id": "c1",
        "choices": [{"index": 0, "delta": {"tool_calls": [{"index": MAX_TOOL_CALLS}]}}],
    }
    with pytest.raises(APIResponseError, match="tool calls"):
        ChatChunkReader().read(chunk)
    chunk["choices"][0]["delta"]["tool_calls"][0]["index"] = MAX_TOOL_CALLS - 1
    # read, as the stream's first content block (Claude's numbering, not the relay's)
    assert ChatChunkReader().read(chunk).tool_call_deltas[0]["index"] == 0


def _tool_use(i: int) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{i}", "name": "f", "input": {}}


def test_the_native_reader_refuses_too_many_tool_use_blocks() -> None:
    reader = MessageStreamReader()
    reader.read({"type": "message_start", "message": {"id": "msg_1", "model": "m"}})
    with pytest.raises(APIResponseError, match="more than 512 tool calls"):  # noqa: PT012
        for i in range(600):
            reader.read({"type": "content_block_start", "index": i, "content_block": _tool_use(i)})
    reader = MessageStreamReader()
    for i in range(50):
        event = {"type": "content_block_start", "index": i, "content_block": _tool_use(i)}
        assert reader.read(event).tool_call_deltas[0]["id"] == f"toolu_{i}"
    message = {"type": "message", "id": "msg_1", "model": "m", "role": "assistant"}
    with pytest.raises(APIResponseError, match="more than 512 tool calls"):
        parse_message({**message, "content": [_tool_use(i) for i in range(600)]})
    assert len(parse_message({**message, "content": [_tool_use(i) for i in range(50)]}).tool_calls)


# -- 3. errors never hold the request ---------------------------------------------------------

HEADER_KEY = "hdr-review-canary-8e7d6c5b4a39"


def _reachable_texts(root: BaseException) -> Iterator[str]:
    """The text of everything reachable from an exception: its chain, notes, arguments and
    attributes, and theirs (requests, responses, headers), up to a depth."""
    seen: set[int] = set()
    pending: list[tuple[Any, int]] = [(root, 0)]
    while pending:
        item, depth = pending.pop()
        if id(item) in seen or depth > 8:
            continue
        seen.add(id(item))
        if isinstance(item, str | bytes):
            yield item if isinstance(item, str) else item.decode("latin-1")
            continue
        if isinstance(item, int | float | bool) or item is None or isinstance(item, type):
            continue
        try:
            yield repr(item)
        except Exception:  # noqa: S112 - a broken repr hides nothing from the walk below
            continue
        children: list[Any] = []
        if isinstance(item, BaseException):
            children += [item.__cause__, item.__context__, *item.args]
            children += list(getattr(item, "__notes__", []))
        if isinstance(item, dict):
            children += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            children += list(item)
        elif hasattr(item, "items") and callable(item.items):
            with contextlib.suppress(Exception):
                children += [value for pair in item.items() for value in pair]
        for name in ("request", "response", "headers"):
            with contextlib.suppress(Exception):  # httpx raises for a request it was not given
                children.append(getattr(item, name, None))
        children += list(getattr(item, "__dict__", {}).values())
        pending += [(child, depth + 1) for child in children]


def _answer_404(_body: Any) -> httpx2.Response:
    return httpx2.Response(404, headers={"x-request-id": "req_404_abc"}, json={"error": "nope"})


def _answer_307(_body: Any) -> httpx2.Response:
    return httpx2.Response(307, headers={"location": "https://elsewhere.example/v1"})


def _time_out(_body: Any) -> httpx2.Response:
    raise httpx2.ReadTimeout("the relay did not answer")


@pytest.mark.parametrize(
    ("handler", "expected"),
    [(_answer_404, NotFoundError), (_answer_307, APIStatusError), (_time_out, APITimeoutError)],
    ids=["404", "307", "timeout"],
)
def test_a_raised_error_reaches_no_request_and_no_credential(
    relay: FakeRelay, handler: Any, expected: type[ClaudeRelayError]
) -> None:
    relay.handler = handler
    llm = fake_llm(relay, default_headers={"x-api-key": HEADER_KEY, "x-request-source": HARMLESS})
    with pytest.raises(expected) as caught:
        llm.invoke("hi")
    assert relay.headers[-1]["x-api-key"] == HEADER_KEY  # it was sent: the request held it
    texts = list(_reachable_texts(caught.value))
    for secret in (KEY, HEADER_KEY):
        assert not [t for t in texts if secret in t]
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    notes = getattr(caught.value, "__notes__", [])
    assert any(note.startswith("from openai.") for note in notes)  # what it stands for
    if handler is _answer_404:
        assert "req_404_abc" in notes[-1]


async def test_an_async_error_reaches_no_request_either(relay: FakeRelay) -> None:
    relay.handler = _answer_404
    llm = fake_llm(relay, default_headers={"x-api-key": HEADER_KEY})
    with pytest.raises(NotFoundError) as caught:
        await llm.ainvoke("hi")
    texts = list(_reachable_texts(caught.value))
    for secret in (KEY, HEADER_KEY):
        assert not [t for t in texts if secret in t]


# -- 4. credentials in the base URL ---------------------------------------------------------------

URL_PASSWORD = "url-review-pass-1a2b3c4d"


def _everything_shown(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), repr(exc.args)]
    if isinstance(exc, ValidationError):
        parts += [repr(exc.errors()), exc.json()]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "url",
    [
        f"https://alice:{URL_PASSWORD}@relay.example.com/v1",
        f"http://alice:{URL_PASSWORD}@127.0.0.1:9/v1",
        f"https://{URL_PASSWORD}@relay.example.com/v1",
    ],
)
def test_userinfo_in_the_base_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ChatClaudeRelay(base_url=url, api_key=KEY)
    shown = _everything_shown(caught.value)
    assert URL_PASSWORD not in shown
    assert "alice" not in shown
    assert "api_key" in shown
    assert "default_headers" in shown
    with pytest.raises(RequestValidationError, match="before the host"):
        check_base_url(url)


@pytest.mark.parametrize(
    "name", ["key", "api_key", "access_token", "X-Goog-Api-Key", "code", "sig"]
)
def test_a_credential_in_the_query_string_is_refused_without_showing_it(name: str) -> None:
    url = f"https://relay.example.com/v1?{name}={URL_PASSWORD}&api-version=2024-01-01"
    with pytest.raises(ValidationError) as caught:
        ChatClaudeRelay(base_url=url, api_key=KEY)
    shown = _everything_shown(caught.value)
    assert URL_PASSWORD not in shown
    assert repr(name) in shown  # says which parameter to move
    assert "default_headers" in shown


@pytest.mark.parametrize("query", ["api-version=2024-01-01", "tenant=acme&keyspace=prod"])
def test_settings_in_the_query_string_are_kept(query: str) -> None:
    url = f"https://relay.example.com/v1?{query}"
    llm = ChatClaudeRelay(base_url=url, api_key=KEY)
    assert llm.base_url == url
    assert llm.model_dump()["base_url"] == url
    for dumped in (llm.model_dump_json(), pickle.dumps(llm).decode("latin-1")):
        assert KEY not in dumped


# -- 5. Bedrock's session token in botocore's logs ----------------------------------------------

SESSION_TOKEN = "session-review-canary-IQoJb3JpZ2luX2VjEJr"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/reviewEXAMPLEKEY"


def test_bedrock_credentials_stay_out_of_botocore_debug_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("botocore")
    pytest.importorskip("anthropic")
    with RelayEmulator() as emu:
        llm = ChatClaudeRelay(
            api="bedrock",
            model="anthropic.claude-sonnet-4-6",
            base_url=emu.base_url.removesuffix("/v1"),
            aws_region="us-east-1",
            aws_access_key_id="AKIDREVIEWEXAMPLE",
            aws_secret_access_key=AWS_SECRET,
            aws_session_token=SESSION_TOKEN,
            ledger=False,
            cache="off",
            max_retries=0,
        )
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="botocore"):
            llm.invoke("hi")
    assert any(r.name.startswith("botocore") for r in caplog.records)  # it did log
    assert any("x-amz-security-token" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        message = record.getMessage()
        assert SESSION_TOKEN not in message
        assert AWS_SECRET not in message


def test_a_harmless_header_value_in_an_answer_comes_back_as_it_was(relay: FakeRelay) -> None:
    # a header named like a credential by a fragment ("session") had its value cut out of
    # every answer: a tool call's argument came back as '***'
    relay.handler = lambda _b: httpx2.Response(
        200, json=completion("Opening Quarterly Planning now.")
    )
    llm = fake_llm(relay, default_headers={"Helicone-Session-Name": "Quarterly Planning"})
    assert llm.invoke("Open it").content == "Opening Quarterly Planning now."
    assert llm.default_headers == {"Helicone-Session-Name": "Quarterly Planning"}
