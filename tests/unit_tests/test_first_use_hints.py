"""First use: what a wrong key, a wrong base URL or the wrong endpoint tells the user.

A 401 or 404 names what the way in (``api=``) reads: its own key variable (and the one the key
was actually read from), its own base URL shape (no ``/v1`` on the native API). A base URL that
ends in an endpoint is answered with a base that works. Anthropic's OpenAI-compatible endpoint
(which ignores ``cache_control``) draws a warning once. No key ever appears in a message.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from fake_relay import completion
from pydantic import SecretStr

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay._plumbing import forget_warnings
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.errors import (
    AuthenticationError,
    NotFoundError,
    RequestValidationError,
    WayIn,
    make_status_error,
)
from langchain_claude_relay.transport import RelayTransport
from langchain_claude_relay.transport.checks import check_base_url

RIGHT_KEY = "sk-emulator-right-key-0123456789"
WRONG_KEY = "sk-ant-wrong-key-9876543210abcdef"
KEY_VARIABLES = (
    "CLAUDE_RELAY_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AWS_BEARER_TOKEN_BEDROCK",
)
WARN_KEY = ("anthropic_openai_endpoint",)


@pytest.fixture(scope="module")
def guarded() -> Iterator[RelayEmulator]:
    """An emulator that answers 401 to every request without ``RIGHT_KEY``."""
    with RelayEmulator(require_key=RIGHT_KEY) as emu:
        yield emu


@pytest.fixture(scope="module")
def open_emulator() -> Iterator[RelayEmulator]:
    with RelayEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def no_keys_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fresh_warning() -> Iterator[None]:
    forget_warnings(lambda key: key == WARN_KEY)
    yield
    forget_warnings(lambda key: key == WARN_KEY)


def _root(emu: RelayEmulator) -> str:
    return emu.base_url.removesuffix("/v1")


def _model(**settings: Any) -> ChatClaudeRelay:
    params: dict[str, Any] = {"max_retries": 0, "ledger": False, "cache": "off"}
    return ChatClaudeRelay(**{**params, **settings})


# -- 401: the key variables of the way in -----------------------------------------------------


def test_a_wrong_anthropic_key_names_anthropic_api_key(
    guarded: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", WRONG_KEY)
    llm = _model(api="anthropic", base_url=_root(guarded), model="claude-sonnet-4-6")
    with pytest.raises(AuthenticationError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message
    assert "CLAUDE_RELAY_API_KEY" not in message  # not read on this way in
    assert "(status 401)" in message
    assert WRONG_KEY not in message
    assert WRONG_KEY not in repr(pickle.loads(pickle.dumps(caught.value)).args)  # noqa: S301


def test_a_wrong_anthropic_key_while_streaming_names_anthropic_api_key(
    guarded: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", WRONG_KEY)
    llm = _model(api="anthropic", base_url=_root(guarded), model="claude-sonnet-4-6")
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY") as caught:
        list(llm.stream("hi"))
    assert "CLAUDE_RELAY_API_KEY" not in str(caught.value)


def test_a_key_read_from_the_fallback_variable_is_named(
    guarded: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", WRONG_KEY)  # an OpenAI key, sent to the relay
    llm = _model(base_url=guarded.base_url, model="claude-sonnet-4-6")
    with pytest.raises(AuthenticationError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert "check the API key" in message
    assert "read from OPENAI_API_KEY" in message
    assert "set CLAUDE_RELAY_API_KEY" in message
    assert WRONG_KEY not in message


def test_a_key_passed_as_api_key_lists_where_keys_are_read(guarded: RelayEmulator) -> None:
    llm = _model(base_url=guarded.base_url, api_key=WRONG_KEY, model="claude-sonnet-4-6")
    with pytest.raises(AuthenticationError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert "api_key=, else CLAUDE_RELAY_API_KEY, else OPENAI_API_KEY" in message
    assert "read from" not in message
    assert WRONG_KEY not in message


@pytest.mark.parametrize(
    ("way", "settings", "named"),
    [
        (
            "bedrock",
            {
                "aws_region": "us-east-1",
                "aws_access_key_id": "AKIDEXAMPLE",
                "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "model": "anthropic.claude-sonnet-4-6",
            },
            "AWS credentials",
        ),
        (
            "vertex",
            {
                "vertex_project": "emulator-project",
                "vertex_region": "us-east5",
                "vertex_access_token": "ya29.emulator-access-token-0123456789",
                "model": "claude-sonnet-4-6@20260101",
            },
            "Google credentials",
        ),
    ],
)
def test_a_refused_cloud_credential_names_the_cloud_credentials(
    guarded: RelayEmulator, way: str, settings: dict[str, Any], named: str
) -> None:
    base_url = _root(guarded) if way == "bedrock" else guarded.base_url
    llm = _model(api=way, base_url=base_url, **settings)
    with pytest.raises(AuthenticationError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert named in message
    assert "CLAUDE_RELAY_API_KEY" not in message
    for secret in ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ya29.emulator-access-token"):
        assert secret not in message


# -- 404 and /v1 on the native API ------------------------------------------------------------


def test_a_404_on_the_native_api_says_the_base_has_no_v1(open_emulator: RelayEmulator) -> None:
    llm = _model(
        api="anthropic",
        base_url=f"{_root(open_emulator)}/no-such-prefix",
        api_key="sk-ant-emulator-key-0123456789",
        model="claude-sonnet-4-6",
    )
    with pytest.raises(NotFoundError) as caught:
        llm.invoke("hi")
    message = str(caught.value)
    assert "without /v1" in message
    assert "usually ends in /v1" not in message


def test_a_v1_base_on_the_native_api_is_refused_before_sending(
    open_emulator: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = len(open_emulator.request_log)
    with pytest.raises(ValueError, match="ends in /v1") as caught:  # at construction
        _model(
            api="anthropic",
            base_url=open_emulator.base_url,  # .../v1: the SDK would post to .../v1/v1/messages
            api_key="k",
            model="claude-sonnet-4-6",
        )
    message = str(caught.value)
    assert f"base_url={_root(open_emulator)!r}" in message
    assert "api='openai'" in message
    assert len(open_emulator.request_log) == sent
    monkeypatch.setenv("ANTHROPIC_BASE_URL", open_emulator.base_url)  # the same from the env
    with pytest.raises(ValueError, match="ends in /v1"):
        _model(api="anthropic", api_key="k", model="claude-sonnet-4-6")
    assert len(open_emulator.request_log) == sent


def test_a_way_in_hint_survives_pickling() -> None:
    body = '{"error": {"type": "not_found_error"}}'
    error = make_status_error(404, body, request_id="r-1", way_in=WayIn("anthropic"))
    once = str(error)
    assert once.startswith("NotFoundError: check base_url: for api='anthropic'")
    assert once.endswith('(status 404): {"error": {"type": "not_found_error"}}')
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert str(copy) == once
    assert copy.request_id == "r-1"
    relay = WayIn("openai", ("CLAUDE_RELAY_API_KEY", "OPENAI_API_KEY"))
    relayed = make_status_error(404, "not found", way_in=relay)
    assert "usually ends in /v1" in str(relayed)  # a relay's hint stays


def test_a_transport_failure_gets_the_hint_of_its_way_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", WRONG_KEY)

    def refuse(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(401, json={"error": {"type": "authentication_error"}})

    transport = RelayTransport(
        base_url="https://api.example.com",
        api_key=SecretStr(WRONG_KEY),
        api="anthropic",
        http_client=httpx2.Client(transport=httpx2.MockTransport(refuse)),
    )
    with pytest.raises(AuthenticationError) as caught:
        transport.create({"model": "claude-sonnet-4-6", "max_tokens": 1, "messages": []})
    assert "read from ANTHROPIC_API_KEY" in str(caught.value)
    assert WRONG_KEY not in str(caught.value)


# -- a base URL ending in an endpoint ---------------------------------------------------------


def test_the_messages_endpoint_on_a_relay_suggests_both_ways() -> None:
    with pytest.raises(ValueError, match="Messages endpoint") as caught:
        ChatClaudeRelay(base_url="http://127.0.0.1:18787/v1/messages", api_key="k")
    message = str(caught.value)
    assert "api='anthropic' with base_url='http://127.0.0.1:18787'" in message
    assert "base_url='http://127.0.0.1:18787/v1'" in message  # the relay's OpenAI base


def test_the_chat_endpoint_on_the_native_api_suggests_the_base_without_v1() -> None:
    with pytest.raises(ValueError, match="/chat/completions") as caught:
        ChatClaudeRelay(
            api="anthropic", base_url="http://127.0.0.1:18787/v1/chat/completions", api_key="k"
        )
    assert "base_url='http://127.0.0.1:18787'" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "api", "wanted", "unwanted"),
    [
        (
            "https://relay.example.com/v1/chat/completions",
            "anthropic",
            "base_url='https://relay.example.com', or use api='openai' with "
            "base_url='https://relay.example.com/v1'",
            None,
        ),
        (
            "https://relay.example.com/v1/chat/completions/",
            "openai",
            "pass base_url='https://relay.example.com/v1'",
            "api='anthropic'",
        ),
        (
            "https://relay.example.com/v1/messages",
            "openai",
            "use api='anthropic' with base_url='https://relay.example.com'",
            None,
        ),
        (
            "https://relay.example.com/v1/messages",
            "anthropic",
            "base_url='https://relay.example.com'",
            "api='openai'",
        ),
        (
            "https://gateway.example.com/claude/v1/messages?api-version=2",
            "anthropic",
            "base_url='https://gateway.example.com/claude?api-version=***'",
            None,
        ),
    ],
)
def test_an_endpoint_base_url_gets_the_advice_of_its_way_in(
    url: str, api: str, wanted: str, unwanted: str | None
) -> None:
    with pytest.raises(RequestValidationError) as caught:
        check_base_url(url, api=api)
    message = str(caught.value)
    assert wanted in message
    if unwanted is not None:
        assert unwanted not in message


# -- Anthropic's OpenAI-compatible endpoint ----------------------------------------------------


def _answering_client() -> httpx2.Client:
    def answer(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=completion())

    return httpx2.Client(transport=httpx2.MockTransport(answer))


@pytest.mark.usefixtures("fresh_warning")
def test_anthropics_openai_endpoint_warns_once_that_nothing_is_cached() -> None:
    def model() -> ChatClaudeRelay:
        return _model(
            base_url="https://api.anthropic.com/v1/",
            api_key="k",
            model="claude-sonnet-4-6",
            http_client=_answering_client(),
        )

    with warnings.catch_warnings(record=True) as elsewhere:
        warnings.simplefilter("always")
        RelayTransport(base_url="https://relay.example.com/v1", api_key=SecretStr("k"))
        RelayTransport(
            base_url="https://api.anthropic.com", api_key=SecretStr("k"), api="anthropic"
        )
    assert not [w for w in elsewhere if "ignores cache_control" in str(w.message)]
    with pytest.warns(UserWarning, match="ignores cache_control") as caught:
        model().invoke("hi")
    relevant = [w for w in caught if "ignores cache_control" in str(w.message)]
    assert len(relevant) == 1
    assert "api='anthropic'" in str(relevant[0].message)
    assert "https://api.anthropic.com" in str(relevant[0].message)
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        model().invoke("hi")
    assert not [w for w in again if "ignores cache_control" in str(w.message)]
