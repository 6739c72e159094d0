"""Secrets and prompts stay where they belong.

* A canary API key never shows in the model's repr/str/serialization, in logs at DEBUG level
  (ours, the ``openai`` SDK's, the HTTP libraries'), in exceptions (message, repr, args, the
  whole chain and the formatted traceback), in ledger files or in planner store files.
* A canary prompt never reaches the ledger or the planner's store files, nor the logs.
* Plain ``http://`` to a non-loopback host is refused unless ``allow_insecure_http=True``.
* TLS verification cannot be switched off silently: a client that does not verify draws an
  ``InsecureTransportWarning``.

The calls that need a real HTTP exchange run against the relay emulator on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import ssl
import traceback
import warnings
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from fake_relay import CANARY_KEY, FakeRelay, completion
from langchain_core.load import dumpd, dumps, load
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import ConfigurableField, RunnableBinding

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import (
    ClaudeRelayError,
    InsecureTransportWarning,
    RequestValidationError,
)
from langchain_claude_relay.ledger import DiskLedger, MemoryLedger
from langchain_claude_relay.store import DiskStore
from langchain_claude_relay.transport import (
    RelayTransport,
    client_skips_tls_verification,
)

# A key that does not look like one (no "sk-"): only knowing the key can redact it.
PLAIN_KEY = "relaykey0c4f9a2e7b1d5f3a9c8e"
PROMPT_CANARY = "CANARY-PROMPT-5e1d9b7a3f"
WORDS = ("relay", "cache", "prefix", "token", "window", "system", "marker", "budget", "answer")
LOGGERS = (
    "",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "langchain_claude_relay",
    "langchain_core",
)


def system_document() -> str:
    body = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(1_600))
    return f"{PROMPT_CANARY} handbook. {body} End of the {PROMPT_CANARY} handbook."


def canary_messages() -> list[Any]:
    return [SystemMessage(system_document()), HumanMessage(f"Tell me about {PROMPT_CANARY}.")]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


def record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record's formatted message, raw arguments and extra attributes."""
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        texts.append(repr({k: v for k, v in vars(record).items() if k not in ("args", "msg")}))
    return texts


def exception_texts(exc: BaseException) -> list[str]:
    """What an exception can show: message, repr, args, excerpts, its whole chain, the traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += [str(getattr(current, name, "")) for name in ("body_excerpt", "body", "message")]
        current = current.__cause__ or current.__context__
    return texts


def assert_absent(secret: str, texts: list[str]) -> None:
    for text in texts:
        assert secret not in text


def tree_bytes(root: Path) -> bytes:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing was written under {root}"
    return b"".join(p.read_bytes() for p in files)


# -- the model object ------------------------------------------------------------------------


@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_KEY])
def test_the_key_is_not_in_the_model_repr_or_serialization(key: str) -> None:
    llm = ChatClaudeRelay(base_url="https://relay.example.com/v1", api_key=key)
    shown = [
        repr(llm),
        str(llm),
        json.dumps(dumpd(llm)),
        dumps(llm),
        llm.model_dump_json(),
        repr(llm.model_dump()),
        repr(llm._identifying_params),
        repr(llm._get_ls_params()),
        repr(llm._transport),
    ]
    assert_absent(key, shown)
    assert llm.api_key is not None
    assert llm.api_key.get_secret_value() == key  # it is there


CREDENTIAL_HEADERS = {
    "x-api-key": PLAIN_KEY,
    "Authorization": f"Bearer {PLAIN_KEY}",
    "API-Key": PLAIN_KEY,
    "proxy-authorization": f"Basic {PLAIN_KEY}",
}


@pytest.mark.parametrize(
    ("name", "value"), CREDENTIAL_HEADERS.items(), ids=list(CREDENTIAL_HEADERS)
)
def test_a_key_in_default_headers_is_not_shown(name: str, value: str) -> None:
    llm = ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key=CANARY_KEY,
        default_headers={name: value, "x-team": "research"},
    )
    shown = [
        repr(llm),
        str(llm),
        json.dumps(dumpd(llm)),
        dumps(llm),
        llm.model_dump_json(),
        repr(llm.model_dump()),
        repr(llm._transport),
    ]
    assert_absent(PLAIN_KEY, shown)
    assert llm.default_headers == {"x-team": "research"}  # the other headers stay visible
    assert llm.secret_headers[name].get_secret_value() == value  # it is there


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-api-key", PLAIN_KEY), ("Authorization", f"Bearer {PLAIN_KEY}")],
    ids=["x-api-key", "Authorization"],
)
def test_a_key_in_default_headers_is_sent_and_scrubbed_from_errors(
    relay: FakeRelay, name: str, value: str
) -> None:
    llm = make_fake_llm(relay, CANARY_KEY, default_headers={name: value, "x-team": "research"})
    llm.invoke("hi")
    assert relay.headers[-1][name.lower()] == value  # the transport still sends it
    assert relay.headers[-1]["x-team"] == "research"
    relay.handler = lambda _b: ECHOES["401 JSON"](PLAIN_KEY)
    with pytest.raises(ClaudeRelayError) as info:
        llm.invoke("hi")
    assert_absent(PLAIN_KEY, exception_texts(info.value))


def test_a_key_in_default_headers_survives_a_rebuild_from_the_fields(relay: FakeRelay) -> None:
    llm = make_fake_llm(
        relay, CANARY_KEY, default_headers={"X-Api-Key": PLAIN_KEY}, model="claude-haiku-4-5"
    )  # a model that takes a temperature
    configurable = llm.configurable_fields(temperature=ConfigurableField(id="temperature"))
    configurable.with_config(configurable={"temperature": 0.5}).invoke("hi")  # a new model
    assert relay.last["temperature"] == 0.5
    assert relay.headers[-1]["x-api-key"] == PLAIN_KEY


def test_a_key_from_the_environment_is_serialized_as_a_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", PLAIN_KEY)
    llm = ChatClaudeRelay(base_url="https://relay.example.com/v1")
    data = dumpd(llm)
    assert PLAIN_KEY not in json.dumps(data)
    assert data["kwargs"]["api_key"] == {"lc": 1, "type": "secret", "id": ["CLAUDE_RELAY_API_KEY"]}


@pytest.mark.filterwarnings("ignore:The function `load` is in beta")
def test_a_bound_model_serializes_as_langchains_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_RELAY_API_KEY", PLAIN_KEY)
    bound = ChatClaudeRelay(base_url="https://relay.example.com/v1").bind(stop=["END"])
    data = dumpd(bound)
    assert data["id"] == ["langchain", "schema", "runnable", "RunnableBinding"]
    assert PLAIN_KEY not in json.dumps(data)
    loaded = load(
        data,
        secrets_map={"CLAUDE_RELAY_API_KEY": PLAIN_KEY},
        valid_namespaces=["langchain_claude_relay"],
        allowed_objects=[RunnableBinding, ChatClaudeRelay],
    )
    assert type(loaded) is RunnableBinding
    assert loaded.kwargs == {"stop": ["END"]}
    assert loaded.bound.api_key.get_secret_value() == PLAIN_KEY


# -- logs at DEBUG -----------------------------------------------------------------------------


def make_emulator_llm(emu: RelayEmulator, key: str, **kwargs: Any) -> ChatClaudeRelay:
    params: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "base_url": emu.base_url,
        "api_key": key,
        "cache": "off",
        "ledger": MemoryLedger(),
        "max_retries": 1,
        "timeout": 10,
    }
    params.update(kwargs)
    llm = ChatClaudeRelay(**params)
    llm._transport._sleep = lambda _s: None

    async def no_wait(_s: float) -> None:
        return None

    llm._transport._asleep = no_wait
    return llm


@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_KEY])
async def test_debug_logs_hold_neither_key_nor_prompt(
    emu: RelayEmulator, debug_logs: pytest.LogCaptureFixture, key: str
) -> None:
    llm = make_emulator_llm(emu, key, default_headers={"x-api-key": key})
    llm.invoke(canary_messages())
    list(llm.stream(canary_messages()))
    await llm.ainvoke(canary_messages())
    async for _ in llm.astream(canary_messages()):
        pass
    emu.fail_next("500", 2)  # a failing call: retried once, then raised
    with pytest.raises(ClaudeRelayError) as failed:
        llm.invoke(canary_messages())
    emu.fail_next("reset", 2)
    with pytest.raises(ClaudeRelayError):
        list(llm.stream(canary_messages()))
    emu.fail_next("cut")
    with pytest.raises(ClaudeRelayError):
        list(llm.stream(canary_messages()))
    names = {r.name for r in debug_logs.records}
    assert {"openai._base_client", "langchain_claude_relay.transport"} <= names, (
        names
    )  # DEBUG was on
    assert any(n.startswith("httpcore") for n in names), names
    texts = record_texts(debug_logs) + exception_texts(failed.value)
    assert_absent(key, texts)
    assert_absent(PROMPT_CANARY, texts)


# -- exceptions ------------------------------------------------------------------------------

ECHOES = {
    "401 JSON": lambda k: httpx2.Response(
        401, json={"error": {"message": f"Incorrect API key provided: {k}"}}
    ),
    "403 HTML": lambda k: httpx2.Response(
        403, headers={"content-type": "text/html"}, content=f"<p>key {k} blocked</p>".encode()
    ),
    "500 text": lambda k: httpx2.Response(500, content=f"upstream rejected {k}".encode()),
    "200 error": lambda k: httpx2.Response(200, json={"error": {"message": f"key {k} expired"}}),
    "200 half JSON": lambda k: httpx2.Response(
        200, content=f'{{"key": "{k}", "choices": ['.encode()
    ),
    "200 no choices": lambda k: httpx2.Response(200, json={"id": "x", "echo": k}),
    "long body, key at the cut": lambda k: httpx2.Response(
        502, content=("x" * 290 + " " + k).encode()
    ),
    "key in a header": lambda k: httpx2.Response(
        429, headers={"x-echo": k}, json={"error": {"message": "slow"}}
    ),
}


def make_fake_llm(relay: FakeRelay, key: str, **kwargs: Any) -> ChatClaudeRelay:
    llm = ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key=key,
        cache="off",
        ledger=False,
        max_retries=kwargs.pop("max_retries", 0),
        http_client=httpx2.Client(transport=httpx2.MockTransport(relay)),
        http_async_client=httpx2.AsyncClient(transport=httpx2.MockTransport(relay)),
        **kwargs,
    )
    llm._transport._sleep = lambda _s: None
    return llm


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_KEY])
def test_exceptions_never_show_the_key(
    relay: FakeRelay, echo: Any, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    relay.handler = lambda _b: echo(key)
    llm = make_fake_llm(relay, key, max_retries=1)
    with pytest.raises(ClaudeRelayError) as info:
        llm.invoke("hi")
    assert relay.headers[-1]["authorization"] == f"Bearer {key}"  # the key was sent...
    assert_absent(
        key, exception_texts(info.value) + record_texts(caplog)
    )  # ...and is shown nowhere


@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_KEY])
async def test_stream_exceptions_never_show_the_key(relay: FakeRelay, key: str) -> None:
    bodies = [
        f'data: {{"error": {{"message": "key {key} revoked"}}}}\n\n',
        f"data: not json {key}\n\n",
        f'data: {{"id": "c", "choices": [], "usage": {{"prompt_tokens": "{key}"}}}}\n\n',
        f'data: {{"id": "c", "choices": "{key}"}}\n\ndata: [DONE]\n\n',
    ]
    for body in bodies:
        relay.handler = lambda _b, body=body: httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=body.encode()
        )
        llm = make_fake_llm(relay, key)
        with pytest.raises(ClaudeRelayError) as info:
            list(llm.stream("hi"))
        assert_absent(key, exception_texts(info.value))
        with pytest.raises(ClaudeRelayError) as ainfo:
            async for _ in llm.astream("hi"):
                pass
        assert_absent(key, exception_texts(ainfo.value))
    relay.handler = lambda _b: httpx2.Response(
        200, headers={"content-type": "text/html"}, content=f"<p>{key}</p>".encode()
    )
    with pytest.raises(ClaudeRelayError) as info:
        list(make_fake_llm(relay, key).stream("hi"))
    assert_absent(key, exception_texts(info.value))


@pytest.mark.parametrize("key", [CANARY_KEY, PLAIN_KEY])
def test_connection_errors_never_show_the_key(relay: FakeRelay, key: str) -> None:
    def refuse(_body: Any) -> httpx2.Response:
        raise httpx2.ConnectError(f"proxy refused credentials {key}")

    relay.handler = refuse
    with pytest.raises(ClaudeRelayError) as info:
        make_fake_llm(relay, key).invoke("hi")
    assert_absent(key, exception_texts(info.value))


def test_an_echoed_key_is_scrubbed_from_a_successful_answer(relay: FakeRelay) -> None:
    relay.queue(
        completion(f"your key is {PLAIN_KEY}", usage={"prompt_tokens": 5, "completion_tokens": 5})
    )
    msg = make_fake_llm(relay, PLAIN_KEY).invoke("hi")
    assert PLAIN_KEY not in msg.content
    assert "***" in msg.content


def test_a_short_placeholder_key_does_not_rewrite_answers(relay: FakeRelay) -> None:
    relay.queue(
        completion("a test of the test", usage={"prompt_tokens": 5, "completion_tokens": 5})
    )
    assert make_fake_llm(relay, "test").invoke("hi").content == "a test of the test"


def test_the_sdk_exception_is_named_but_never_chained(relay: FakeRelay) -> None:
    relay.handler = lambda _b: httpx2.Response(503, json={"error": {"message": "busy"}})
    with pytest.raises(ClaudeRelayError) as info:
        make_fake_llm(relay, PLAIN_KEY).invoke("hi")
    assert info.value.__cause__ is None  # it holds the request, and so the key's headers
    assert info.value.__context__ is None
    assert getattr(info.value, "__notes__", []) == ["from openai.InternalServerError"]
    relay.handler = lambda _b: httpx2.Response(
        503, json={"error": {"message": f"busy {PLAIN_KEY}"}}
    )
    with pytest.raises(ClaudeRelayError) as info:
        make_fake_llm(relay, PLAIN_KEY).invoke("hi")
    assert info.value.__cause__ is None  # dropped: it held the key
    assert info.value.__context__ is None


# -- files: ledger and planner store ------------------------------------------------------------


def test_ledger_and_store_files_hold_no_key_and_no_prompt(
    emu: RelayEmulator, tmp_path: Path
) -> None:
    ledger = DiskLedger(tmp_path / "ledger", background=False)
    store = DiskStore(tmp_path / "state")
    planner = CachePlanner(store=store, clock=lambda: emu.now)
    llm = make_emulator_llm(emu, PLAIN_KEY, cache=planner, ledger=ledger)
    replies = [llm.invoke(canary_messages()) for _ in range(2)]
    replies.append(list(llm.stream(canary_messages()))[-1])
    emu.fail_next("cut")
    with pytest.raises(ClaudeRelayError):
        list(llm.stream(canary_messages()))
    ledger.flush()
    entries = ledger.entries()
    assert len(entries) == 4  # the cut stream too: billed once it began, from its plan
    assert [e.estimated for e in entries] == [False, False, False, True]
    assert replies[1].usage_metadata["input_token_details"]["cache_read"] > 0  # the planner worked
    ledger.close()
    store.close()
    for directory in (tmp_path / "ledger", tmp_path / "state"):
        data = tree_bytes(directory)
        for secret in (PLAIN_KEY, PROMPT_CANARY, "handbook", emu.base_url):
            assert secret.encode() not in data, f"{secret!r} found under {directory.name}"


# -- plain http and TLS ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://relay.example.com/v1",
        "http://192.168.1.20:8080/v1",
        "http://[2001:db8::1]/v1",
        "http://127.0.0.1.nip.io/v1",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unencrypted"):
        ChatClaudeRelay(base_url=url, api_key=PLAIN_KEY)
    monkeypatch.setenv("CLAUDE_RELAY_BASE_URL", url)
    with pytest.raises(ValueError, match="unencrypted"):
        ChatClaudeRelay(api_key=PLAIN_KEY)
    assert (
        ChatClaudeRelay(base_url=url, api_key=PLAIN_KEY, allow_insecure_http=True).base_url == url
    )


def unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def no_hostname_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    return context


INSECURE_CLIENTS = {
    "httpx2 verify=False": lambda: httpx2.Client(verify=False),
    "httpx2 async verify=False": lambda: httpx2.AsyncClient(verify=False),
    "httpx2 CERT_NONE context": lambda: httpx2.Client(verify=unverified_context()),
    "httpx2 no host-name check": lambda: httpx2.Client(verify=no_hostname_context()),
    "httpx verify=False": lambda: httpx.Client(verify=False),  # noqa: S501 - on purpose
    "httpx async verify=False": lambda: httpx.AsyncClient(verify=False),  # noqa: S501
    "httpx2 proxy mount verify=False": lambda: httpx2.Client(
        mounts={"https://": httpx2.HTTPTransport(verify=False)}
    ),
}
SECURE_CLIENTS = {
    "none (the SDK's own)": lambda: None,
    "httpx2 default": lambda: httpx2.Client(),
    "httpx2 async default": lambda: httpx2.AsyncClient(),
    "httpx default": lambda: httpx.Client(),
    "httpx2 custom CA context": lambda: httpx2.Client(verify=ssl.create_default_context()),
}


@pytest.mark.parametrize("make_client", INSECURE_CLIENTS.values(), ids=INSECURE_CLIENTS.keys())
def test_a_client_that_does_not_verify_tls_is_detected_and_warned_about(make_client: Any) -> None:
    client = make_client()
    assert client_skips_tls_verification(client)
    is_async = isinstance(client, httpx2.AsyncClient | httpx.AsyncClient)
    with pytest.warns(InsecureTransportWarning, match="does not verify TLS"):
        RelayTransport(
            base_url="https://relay.example.com/v1",
            api_key=pydantic_secret(PLAIN_KEY),
            **({"http_async_client": client} if is_async else {"http_client": client}),
        )


@pytest.mark.parametrize("make_client", SECURE_CLIENTS.values(), ids=SECURE_CLIENTS.keys())
def test_a_verifying_client_draws_no_warning(make_client: Any) -> None:
    client = make_client()
    assert not client_skips_tls_verification(client)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTransportWarning)
        RelayTransport(
            base_url="https://relay.example.com/v1",
            api_key=pydantic_secret(PLAIN_KEY),
            http_client=client,
        )


def test_no_tls_warning_for_plain_http_to_loopback() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTransportWarning)
        RelayTransport(
            base_url="http://127.0.0.1:8787/v1",
            api_key=pydantic_secret(PLAIN_KEY),
            http_client=httpx2.Client(verify=False),
        )


def test_the_model_warns_when_given_a_client_that_does_not_verify() -> None:
    llm = ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key=PLAIN_KEY,
        http_client=httpx2.Client(verify=False),
    )
    with pytest.warns(InsecureTransportWarning) as caught:
        _ = llm._transport  # built on first use, before anything is sent
    # only ours: a socket another test left is collected at any time (its ResourceWarning)
    (insecure,) = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert "API key" in str(insecure.message)
    assert PLAIN_KEY not in str(insecure.message)


def pydantic_secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def test_a_header_value_the_http_library_refuses_is_not_quoted() -> None:
    """h11 prints the value as bytes (a newline as backslash-n), which no scrub of it matches."""
    import h11

    from langchain_claude_relay.transport.translate import translate_sdk_error

    refused = h11.LocalProtocolError("Illegal header value b'supersecret\\nvalue'")
    error = translate_sdk_error(refused, secret="supersecret\nvalue")
    assert isinstance(error, RequestValidationError)
    assert "supersecret" not in str(error)
    assert "cannot carry" in str(error)
