"""The emulator refuses what it cannot serve with 4xx answers, and a big body stalls no one.

Bodies over Claude's 32 MB limit get a 413 ``request_too_large`` (by Content-Length, or counted
as a chunked body comes in); a big body is parsed and tokenized off the event loop; malformed
``stream_options`` and bodies nested too deeply are 400s, not 500s; impossible settings and
non-finite clock values are refused before anything changes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from langchain_claude_relay.emulator import EmulatorSettings, RelayEmulator
from langchain_claude_relay.emulator.server import INLINE_BODY_BYTES, MAX_BODY_BYTES

from .conftest import MODEL, prose

JSON = {"content-type": "application/json"}
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"


def _tiny() -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _cached_doc() -> dict[str, Any]:
    block = {"type": "text", "text": prose(3000, 7), "cache_control": {"type": "ephemeral"}}
    return {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [block]}]}


@pytest.mark.parametrize("path", [CHAT, MESSAGES, "/model/anthropic.claude-sonnet-4-6/invoke"])
def test_a_body_over_32_mb_is_a_413_before_it_is_parsed(
    emu: RelayEmulator, http: httpx.Client, path: str
) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1024 * 1024)  # 33 MB, not even JSON: never parsed
    start = time.perf_counter()
    response = http.post(path, content=body, headers=JSON, timeout=30)
    assert time.perf_counter() - start < 5
    assert response.status_code == 413
    if "/model/" in path:  # Bedrock's own error shape
        assert "message" in response.json()
    else:
        assert response.json()["error"]["type"] == "request_too_large"
    assert [r.outcome for r in emu.request_log] == ["error:413"]
    assert emu.billing_log == []


def test_a_chunked_body_without_content_length_is_cut_at_32_mb(
    emu: RelayEmulator, http: httpx.Client
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"a" * (1024 * 1024)
        yield b'"}]}'

    response = http.post(CHAT, content=chunks(), headers=JSON, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert [r.outcome for r in emu.request_log] == ["error:413"]


def test_a_tiny_request_is_not_held_up_by_a_big_one(
    emu: RelayEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big body is parsed and tokenized in a worker thread: a small request is served meanwhile.

    On the event loop under the lock, a 20 MB body held every other client for ~30 s. Here the
    big body's preparation waits until the small request has been answered: in a worker thread
    it does, on the event loop the small one would wait for it instead (until the 30 s run out).
    No timing: what is checked is which was answered first.
    """
    core = emu.core
    prepare = core._prepare
    preparing, tiny_answered = threading.Event(), threading.Event()
    waited: list[bool] = []

    def held(body: bytes, request: Any, wire: Any) -> Any:
        if len(body) > INLINE_BODY_BYTES:
            preparing.set()
            waited.append(tiny_answered.wait(30))
        return prepare(body, request, wire)

    monkeypatch.setattr(core, "_prepare", held)
    unit = "The quick brown fox jumps over the lazy dog near the river bank. " * 16
    content = unit * (2 * INLINE_BODY_BYTES // len(unit))
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]})
    big: dict[str, Any] = {}

    def send_big() -> None:
        response = httpx.post(
            emu.base_url + "/chat/completions", content=body, headers=JSON, timeout=120
        )
        big.update(status=response.status_code)

    thread = threading.Thread(target=send_big)
    thread.start()
    assert preparing.wait(30), "the big request never reached its preparation"
    tiny = httpx.post(emu.base_url + "/chat/completions", json=_tiny(), timeout=120)
    tiny_answered.set()
    thread.join(60)
    assert tiny.status_code == big["status"] == 200
    assert waited == [True]  # the small one was answered while the big one was prepared


@pytest.mark.parametrize("options", ['"x"', "[1]", "5"])
@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_stream_options_that_is_not_an_object_is_a_400_with_no_cache_write(
    emu: RelayEmulator, http: httpx.Client, path: str, options: str
) -> None:
    payload = json.dumps({**_cached_doc(), "stream": True})[:-1]
    body = payload + f', "stream_options": {options}}}'
    response = http.post(path, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "stream_options" in response.json()["error"]["message"]
    assert emu.cache_entries() == 0  # refused before the cache was written
    assert [r.outcome for r in emu.request_log] == ["error:400"]


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
def test_a_body_nested_100000_deep_is_a_logged_400(
    emu: RelayEmulator, http: httpx.Client, path: str
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = http.post(path, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "nested too deeply" in response.json()["error"]["message"]
    assert [r.outcome for r in emu.request_log] == ["error:400"]
    assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"token_ratio": -1.0}, "token_ratio"),
        ({"token_ratio": 0}, "token_ratio"),
        ({"token_ratio": "x"}, "token_ratio"),
        ({"tool_token_ratio": math.nan}, "tool_token_ratio"),
        ({"latency_scale": math.inf}, "latency_scale"),
        ({"latency_scale": -1}, "latency_scale"),
        ({"first_byte_delay": math.inf}, "first_byte_delay"),
        ({"min_cache_tokens": -5}, "min_cache_tokens"),
        ({"image_tokens": 1.5}, "image_tokens"),
        ({"block_overhead_tokens": True}, "block_overhead_tokens"),
        ({"rpm": 0}, "rpm"),
        ({"fault_rate": math.nan}, "fault_rate"),
        ({"fault_rate": "x"}, "fault_rate"),
        ({"published_price_multiplier": "x"}, "published_price_multiplier"),
        ({"prompt_excludes_cached": 1}, "prompt_excludes_cached"),
    ],
)
def test_impossible_numbers_are_refused(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorSettings(**change)


def test_valid_numbers_still_pass() -> None:
    settings = EmulatorSettings(token_ratio=1, latency_scale=0, min_cache_tokens=0, rpm=5)
    assert settings.token_ratio == 1


@pytest.mark.parametrize("change", [{"token_ratio": "x"}, {"latency_scale": 1e400}])
def test_admin_config_refuses_a_bad_value_and_keeps_the_settings(
    emu: RelayEmulator, http: httpx.Client, change: dict[str, Any]
) -> None:
    before = emu.settings
    body = json.dumps(change).replace("1e+400", "1e400")  # JSON's way of saying inf
    response = http.post("/admin/config", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert emu.settings == before
    assert http.post(CHAT, json=_tiny()).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"set": "nan"}, {"advance": "nan"}, {"advance": "inf"}, {"set": "-inf"}, {"set": True},
     {"set": 10, "advance": "nan"}],
)  # fmt: skip
def test_admin_clock_refuses_non_finite_times_before_moving(
    emu: RelayEmulator, http: httpx.Client, body: dict[str, Any]
) -> None:
    http.post(MESSAGES, json=_cached_doc())  # an entry written at t=0
    response = http.post("/admin/clock", json=body)
    assert response.status_code == 400
    assert "finite" in response.json()["error"]["message"]
    assert emu.now == 0.0
    usage = http.post(MESSAGES, json=_cached_doc()).json()["usage"]
    assert usage["cache_read_input_tokens"] > 0  # the entry is still readable


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_python_clock_controls_refuse_non_finite_times(emu: RelayEmulator, value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        emu.set_time(value)
    with pytest.raises(ValueError, match="finite"):
        emu.advance(value)
    assert emu.now == 0.0
