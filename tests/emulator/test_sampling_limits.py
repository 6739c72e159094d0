"""The emulator refuses the sampling values Claude refuses, with Claude's 400, on every path."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import InvalidRequest, check_sampling_payload

from .conftest import MODEL

ASK = [{"role": "user", "content": "hello"}]
NATIVE_MAX_TOKENS = "max_tokens: Field required (an integer >= 0; 0 warms the cache, no content)"

# path -> (extra body fields every request on it needs)
PATHS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": MODEL},
    "/v1/messages": {"model": MODEL, "max_tokens": 50},
    f"/model/{MODEL}/invoke": {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50},
    (f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"): {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 50,
    },
}

BAD = [
    ({"temperature": 5}, "temperature: range: 0..1"),
    ({"temperature": -0.5}, "temperature: range: 0..1"),
    ({"temperature": "hot"}, "temperature: Input should be a valid number"),
    ({"top_p": 1.5}, "top_p: range: 0..1"),
    ({"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    ({"top_k": 2.5}, "top_k: Input should be a valid integer"),
    ({"max_tokens": -5}, "max_tokens: Input should be greater than or equal to 0"),
]


@pytest.fixture
def raw(emu: RelayEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.root_url, timeout=10) as client:
        yield client


def _message(path: str, response: httpx.Response) -> str:
    body = response.json()
    if path.startswith("/model/"):  # Bedrock's own error shape
        assert response.headers["x-amzn-errortype"] == "ValidationException"
        return str(body["message"])
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


@pytest.mark.parametrize("path", list(PATHS), ids=["openai", "anthropic", "bedrock", "vertex"])
@pytest.mark.parametrize(("bad", "message"), BAD, ids=[m for _b, m in BAD])
def test_bad_sampling_values_are_claudes_400(
    emu: RelayEmulator, raw: httpx.Client, path: str, bad: dict[str, Any], message: str
) -> None:
    response = raw.post(path, json={**PATHS[path], "messages": ASK, **bad})
    assert response.status_code == 400
    native = path != "/v1/chat/completions"
    if native and "max_tokens" in bad:
        message = NATIVE_MAX_TOKENS  # the Messages paths check max_tokens first
    assert _message(path, response) == message
    assert emu.request_log[-1].outcome == "error:400"
    assert emu.billing_log == []


@pytest.mark.parametrize("path", list(PATHS), ids=["openai", "anthropic", "bedrock", "vertex"])
def test_good_sampling_values_are_served(emu: RelayEmulator, raw: httpx.Client, path: str) -> None:
    # the model (Sonnet 4.6) takes temperature or top_p, not both: each edge on its own
    for good in ({"temperature": 1, "top_k": 0}, {"top_p": 0, "top_k": 0}):
        response = raw.post(path, json={**PATHS[path], "messages": ASK, **good})
        assert response.status_code == 200, response.text


def test_the_openai_sdk_sees_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"temperature: range: 0\.\.1"):
        client.chat.completions.create(model=MODEL, messages=ASK, temperature=5)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="greater than or equal to 0"):
        client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=-1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [{}, {"temperature": None}, {"temperature": 0}, {"top_p": 1.0}, {"max_tokens": 0}],
)
def test_absent_or_in_range_values_pass(payload: dict[str, Any]) -> None:
    check_sampling_payload(payload)


def test_nan_is_out_of_range() -> None:
    with pytest.raises(InvalidRequest, match=r"temperature: range: 0\.\.1"):
        check_sampling_payload({"temperature": math.nan})
