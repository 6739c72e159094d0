"""Seeded faults and rate limits over the virtual clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from langchain_claude_relay.emulator import FAULT_KINDS, RelayEmulator
from langchain_claude_relay.emulator.faults import FaultInjector, RateLimiter, RateLimits

from .conftest import MODEL, prose

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}


# -- the pure parts ---------------------------------------------------------------------


def test_same_seed_same_faults_and_rate_is_respected() -> None:
    first = FaultInjector(0.3, seed=11)
    second = FaultInjector(0.3, seed=11)
    sequence = [first.draw() for _ in range(400)]
    assert sequence == [second.draw() for _ in range(400)]
    failed = [k for k in sequence if k is not None]
    assert 0.22 < len(failed) / 400 < 0.38
    assert set(failed) == set(FAULT_KINDS)  # every kind drawn over 400 requests
    assert sequence != [FaultInjector(0.3, seed=12).draw() for _ in range(400)]


def test_script_comes_first_then_draws() -> None:
    faults = FaultInjector(1.0, seed=0, kinds=("503",))
    faults.push("529", count=2)
    faults.push("reset")
    assert [faults.draw() for _ in range(5)] == ["529", "529", "reset", "503", "503"]
    assert FaultInjector().draw() is None


def test_unknown_fault_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultInjector().push("418")


# (limits, [(time, input tokens, output tokens, expected: None or (limit, retry_after))])
LIMITER_CASES = {
    "rpm window slides": (
        RateLimits(rpm=2),
        [
            (0, 0, 0, None),
            (1, 0, 0, None),
            (2, 0, 0, ("rpm", 58.0)),
            (60, 0, 0, None),
            (60.5, 0, 0, ("rpm", 0.5)),
        ],
    ),
    "input tokens": (
        RateLimits(itpm=1000),
        [(0, 600, 0, None), (10, 500, 0, ("itpm", 50.0)), (10, 400, 0, None), (70, 1000, 0, None)],
    ),
    "one request above the limit": (RateLimits(itpm=1000), [(0, 1001, 0, ("itpm", 60.0))]),
    "output tokens": (RateLimits(otpm=100), [(0, 0, 80, None), (30, 0, 30, ("otpm", 30.0))]),
    "refused requests do not count": (
        RateLimits(rpm=1),
        [(0, 0, 0, None), (1, 0, 0, ("rpm", 59.0)), (2, 0, 0, ("rpm", 58.0)), (60, 0, 0, None)],
    ),
}


@pytest.mark.parametrize("case", list(LIMITER_CASES.values()), ids=list(LIMITER_CASES))
def test_rate_limiter(case: tuple[RateLimits, list[tuple[float, int, int, Any]]]) -> None:
    limits, steps = case
    limiter = RateLimiter(limits)
    for t, tokens_in, tokens_out, expected in steps:
        refusal = limiter.admit(t, tokens_in, tokens_out)
        got = None if refusal is None else (refusal.limit, refusal.retry_after)
        assert got == expected, f"at t={t}"


# -- through the wire -------------------------------------------------------------------


def sse_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.text.splitlines() if line.startswith("data: ")]


def check_status(
    status: int, content_type: str, error_type: str | None
) -> Callable[[httpx.Client], None]:
    def check(http: httpx.Client) -> None:
        response = http.post("/v1/chat/completions", json=CHAT)
        assert response.status_code == status
        assert response.headers["content-type"].startswith(content_type)
        if error_type:
            assert response.json()["error"]["type"] == error_type

    return check


def check_malformed(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def check_reset(http: httpx.Client) -> None:
    with pytest.raises(httpx.TransportError):
        http.post("/v1/chat/completions", json=CHAT)


def check_cut(http: httpx.Client) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    lines = sse_lines(http.post("/v1/chat/completions", json=body))
    chunks = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    assert "data: [DONE]" not in lines
    assert any(
        c["choices"] and c["choices"][0]["delta"].get("content") for c in chunks
    )  # content began
    assert not any(
        c.get("usage") or (c["choices"] and c["choices"][0]["finish_reason"]) for c in chunks
    )


FAULT_CHECKS: dict[str, Callable[[httpx.Client], None]] = {
    "500": check_status(500, "application/json", "api_error"),
    "502": check_status(502, "text/html", None),
    "503": check_status(503, "application/json", "api_error"),
    "529": check_status(529, "application/json", "overloaded_error"),
    "reset": check_reset,
    "malformed": check_malformed,
    "html": check_status(200, "text/html", None),
    "cut": check_cut,
}


def test_every_fault_kind_is_covered() -> None:
    assert set(FAULT_CHECKS) == set(FAULT_KINDS)


@pytest.mark.parametrize("kind", list(FAULT_CHECKS))
def test_fault_is_served_and_billed_only_once_the_response_began(
    emu: RelayEmulator, http: httpx.Client, kind: str
) -> None:
    emu.fail_next(kind)
    FAULT_CHECKS[kind](http)
    faulted = emu.request_log[-1]
    assert faulted.outcome == f"fault:{kind}"
    # A fault before the engine is not billed; a cut response had begun: Claude bills it
    expected = [faulted.request_id] if kind == "cut" else []
    assert [e.request_id for e in emu.billing_log] == expected
    assert (
        http.post("/v1/chat/completions", json=CHAT).status_code == 200
    )  # only the next one failed
    assert [e.request_id for e in emu.billing_log] == [*expected, emu.request_log[-1].request_id]


@pytest.mark.parametrize(
    ("kind", "raises"),
    [
        ("500", openai.InternalServerError),
        ("502", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("529", openai.InternalServerError),
        ("reset", openai.APIConnectionError),
        ("malformed", ValueError),
    ],
)
def test_faults_seen_by_the_openai_sdk(
    emu: RelayEmulator, client: openai.OpenAI, kind: str, raises: type[Exception]
) -> None:
    emu.fail_next(kind)
    with pytest.raises(raises) as info:
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    if isinstance(info.value, openai.APIStatusError):
        assert info.value.status_code == int(kind)


def test_html_page_with_200_reaches_the_sdk_as_a_string(
    emu: RelayEmulator, client: openai.OpenAI
) -> None:
    emu.fail_next("html")
    assert isinstance(client.chat.completions.create(**CHAT), str)  # type: ignore[call-overload]


def test_cut_stream_commits_its_cache_writes(emu: RelayEmulator, http: httpx.Client) -> None:
    cached = {"type": "text", "text": prose(1500, 9), "cache_control": {"type": "ephemeral"}}
    body = {"model": MODEL, "messages": [{"role": "user", "content": [cached]}], "stream": True}
    emu.fail_next("cut")
    http.post("/v1/chat/completions", json=body)
    plain = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert plain["usage"]["cache_read_input_tokens"] > 1500  # the cut response had begun
    cut, read = emu.billing_log
    assert cut.cache_write > 1500  # and it is billed, as on Claude
    assert read.cache_read == cut.cache_write


def test_cut_anthropic_stream_has_no_final_events(emu: RelayEmulator, http: httpx.Client) -> None:
    emu.fail_next("cut")
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    events = [
        line
        for line in http.post("/v1/messages", json=body).text.splitlines()
        if line.startswith("event: ")
    ]
    assert "event: content_block_delta" in events
    assert "event: message_delta" not in events
    assert "event: message_stop" not in events
    assert [e.request_id for e in emu.billing_log] == [emu.request_log[-1].request_id]
    assert emu.request_log[-1].outcome == "fault:cut"  # billed; its usage never sent


def test_seeded_fault_rate_is_reproducible_through_reset(
    emu: RelayEmulator, http: httpx.Client
) -> None:
    emu.configure(fault_rate=0.4, fault_seed=5, fault_kinds="500,529,html")

    def outcomes() -> list[str]:
        for _ in range(30):
            http.post("/v1/chat/completions", json=CHAT)
        return [r.outcome for r in emu.request_log]

    first = outcomes()
    billed = len(emu.billing_log)
    emu.reset()
    assert outcomes() == first
    assert {o for o in first if o != "billed"} == {"fault:500", "fault:529", "fault:html"}
    assert billed == first.count("billed")


def test_fault_script_setting(emu: RelayEmulator, http: httpx.Client) -> None:
    emu.configure(fault_script="529,500")
    statuses = [http.post("/v1/chat/completions", json=CHAT).status_code for _ in range(3)]
    assert statuses == [529, 500, 200]


def test_rpm_limit_with_retry_after_over_the_virtual_clock(
    emu: RelayEmulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    emu.configure(tier="tier1")
    for _ in range(50):
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    emu.advance(10)
    refused = http.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "50"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    emu.advance(50)
    client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
    assert len(emu.billing_log) == 51


@pytest.mark.filterwarnings("ignore:Model .* was retired")
@pytest.mark.parametrize(
    ("model", "second_status"),
    [
        ("claude-sonnet-4-6", 200),  # cache reads do not count toward input tokens per minute
        ("claude-3-5-haiku-20241022", 429),  # Haiku 3.5 counts them
    ],
)
def test_input_limit_counts_only_uncached_input(
    emu: RelayEmulator, http: httpx.Client, model: str, second_status: int
) -> None:
    emu.configure(itpm=6000)
    cached = {"type": "text", "text": prose(3500, 4), "cache_control": {"type": "ephemeral"}}
    body = {"model": model, "messages": [{"role": "user", "content": [cached]}]}
    first = http.post("/v1/chat/completions", json=body)
    assert first.status_code == 200
    assert 3500 < first.json()["usage"]["cache_creation_input_tokens"] < 6000
    emu.advance(1)
    second = http.post("/v1/chat/completions", json=body)
    assert second.status_code == second_status


def test_output_limit(emu: RelayEmulator, http: httpx.Client) -> None:
    reply_tokens = http.post("/v1/chat/completions", json=CHAT).json()["usage"]["completion_tokens"]
    emu.reset()
    emu.configure(otpm=reply_tokens * 3 // 2)
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    refused = http.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429
    assert "output tokens per minute" in refused.json()["error"]["message"]
    assert emu.request_log[-1].outcome == "error:429:otpm"
