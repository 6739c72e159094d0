"""The native ways in, driven by the real anthropic SDK clients: the Messages API, Bedrock
(SigV4 or API key, AWS event-stream frames) and Vertex AI (rawPredict / streamRawPredict).

Each client is pointed at the emulator; SigV4 signing is local, so nothing leaves loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.diagnostics import cache_miss_reason, fingerprint
from langchain_claude_relay.emulator.engine import parse_anthropic
from langchain_claude_relay.emulator.eventstream import (
    MAX_PAYLOAD_BYTES,
    bedrock_chunk,
    encode_message,
)
from langchain_claude_relay.emulator.server import match_wire

from .conftest import prose

anthropic = pytest.importorskip("anthropic")
eventstream = pytest.importorskip("botocore.eventstream")
pytest.importorskip("anthropic.lib.bedrock._stream_decoder")

DOC = prose(1700, 21)  # about 2,050 emulator tokens
SYSTEM = [{"type": "text", "text": DOC, "cache_control": {"type": "ephemeral"}}]
ASK = [{"role": "user", "content": "What does the document say about budgets?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK = {
    "name": "get_time",
    "description": "Time in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass(frozen=True)
class Way:
    """One way in: how to build its SDK client, its model ids and its log names."""

    name: str
    model: str
    other_model: str
    plain: str
    stream: str
    make: Callable[[str], Any]


WAYS = [
    Way(
        "anthropic",
        "claude-sonnet-4-6",
        "claude-opus-4-5",
        "messages",
        "messages",
        lambda root: anthropic.Anthropic(base_url=root, api_key="test", max_retries=0),
    ),
    Way(
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-opus-4-5-20251101-v1:0",
        "bedrock.invoke",
        "bedrock.invoke-with-response-stream",
        lambda root: anthropic.AnthropicBedrock(
            base_url=root,
            aws_access_key="AKIDEXAMPLE",
            aws_secret_key="secret",
            aws_region="us-east-1",
            max_retries=0,
        ),
    ),
    Way(
        "vertex",
        "claude-sonnet-4-5@20250929",
        "claude-opus-4-5@20251101",
        "vertex.rawPredict",
        "vertex.streamRawPredict",
        lambda root: anthropic.AnthropicVertex(
            base_url=root + "/v1",
            region="us-east5",
            project_id="proj",
            access_token="test-token",
            max_retries=0,
        ),
    ),
]
COUNTING_WAYS = [w for w in WAYS if w.name != "bedrock"]  # Bedrock has no count_tokens


@pytest.fixture(params=WAYS, ids=[w.name for w in WAYS])
def way(request: pytest.FixtureRequest) -> Way:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sdk(emu: RelayEmulator, way: Way) -> Iterator[Any]:
    client = way.make(emu.root_url)
    yield client
    client.close()


@pytest.fixture
def raw(emu: RelayEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.root_url, timeout=10) as client:
        yield client


def create(sdk: Any, way: Way, **extra: Any) -> Any:
    body: dict[str, Any] = {"model": way.model, "max_tokens": 100, "system": SYSTEM}
    body["messages"] = ASK
    return sdk.messages.create(**{**body, **extra})


def total_input(usage: Any) -> int:
    return int(
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    )


# -- messages through each way ----------------------------------------------------------


def test_create_writes_then_a_stream_reads_the_prefix(
    emu: RelayEmulator, way: Way, sdk: Any
) -> None:
    first = create(sdk, way)
    written = first.usage.cache_creation_input_tokens
    assert written > 2000
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert first.content[0].text.startswith("Emulated reply:")
    assert (first.model, first.stop_reason) == (way.model, "end_turn")
    with sdk.messages.stream(
        model=way.model, max_tokens=100, system=SYSTEM, messages=ASK
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3
    assert "".join(pieces) == final.content[0].text == first.content[0].text
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (
        written,
        0,
    )
    assert final.usage.output_tokens == first.usage.output_tokens > 0
    assert final.id != first.id
    log = emu.billing_log
    assert [(e.endpoint, e.streamed) for e in log] == [(way.plain, False), (way.stream, True)]
    assert (log[0].cache_write_5m, log[1].cache_read) == (written, written)
    assert [r.outcome for r in emu.request_log] == ["billed", "billed"]


def test_one_hour_and_five_minute_writes_split_and_expire_apart(
    emu: RelayEmulator, way: Way, sdk: Any
) -> None:
    system = [
        {"type": "text", "text": DOC, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": prose(800, 22), "cache_control": {"type": "ephemeral"}},
    ]
    first = create(sdk, way, system=system).usage
    long, short = (
        first.cache_creation.ephemeral_1h_input_tokens,
        first.cache_creation.ephemeral_5m_input_tokens,
    )
    assert long > 2000
    assert short > 500
    assert long + short == first.cache_creation_input_tokens
    emu.advance(600)  # the 5m entry is gone, the 1h entry lives
    later = create(sdk, way, system=system).usage
    assert later.cache_read_input_tokens == long
    assert later.cache_creation.ephemeral_5m_input_tokens == short
    assert later.cache_creation.ephemeral_1h_input_tokens == 0
    assert [e.time for e in emu.billing_log] == [0.0, 600.0]


def test_max_tokens_zero_warms_the_cache_without_content(
    emu: RelayEmulator, way: Way, sdk: Any
) -> None:
    warm = create(sdk, way, max_tokens=0)
    assert (warm.content, warm.stop_reason, warm.usage.output_tokens) == ([], "max_tokens", 0)
    written = warm.usage.cache_creation_input_tokens
    assert written > 2000
    events = list(
        create(sdk, way, max_tokens=0, stream=True, system=[{**SYSTEM[0], "text": DOC + "!"}])
    )
    assert [e.type for e in events] == ["message_start", "message_delta", "message_stop"]
    assert events[0].message.content == []
    assert (events[1].delta.stop_reason, events[1].usage.output_tokens) == ("max_tokens", 0)
    read = create(sdk, way).usage
    assert (read.cache_read_input_tokens, read.cache_creation_input_tokens) == (written, 0)
    assert read.output_tokens > 0
    log = emu.billing_log
    assert [e.output_tokens for e in log[:2]] == [0, 0]
    assert log[0].cost_usd is not None
    assert log[0].cost_usd > 0


CLOSED = {"type": "object", "additionalProperties": False}  # Claude takes closed objects only
FORCED = {
    "tool": {"tools": [WEATHER], "tool_choice": {"type": "any"}},
    "schema": {"output_config": {"format": {"type": "json_schema", "schema": CLOSED}}},
}


@pytest.mark.parametrize("forced", list(FORCED))
def test_max_tokens_zero_is_refused_when_output_is_forced(
    emu: RelayEmulator, way: Way, sdk: Any, forced: str
) -> None:
    """A forced tool or structured outputs make max_tokens 0 no pre-warm: Claude's 400."""
    assert create(sdk, way, **FORCED[forced]).content  # forced output is served...
    with pytest.raises(anthropic.BadRequestError, match="only allowed for cache pre-warming"):
        create(sdk, way, max_tokens=0, **FORCED[forced])  # ...but not at max_tokens 0
    assert emu.request_log[-1].outcome == "error:400"
    assert len(emu.billing_log) == 1


def test_output_config_json_schema_shapes_the_reply(way: Way, sdk: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "days": {"type": "integer", "minimum": 3},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["city", "days", "tags"],
        "additionalProperties": False,
    }
    fmt = {"format": {"type": "json_schema", "schema": schema}}
    data = json.loads(create(sdk, way, output_config=fmt).content[0].text)
    assert set(data) == {"city", "days", "tags"}
    assert isinstance(data["city"], str)
    assert len(data["city"]) >= 2
    assert isinstance(data["days"], int)
    assert data["days"] >= 3
    assert len(data["tags"]) == 1
    assert isinstance(data["tags"][0], str)


def test_drop_cache_control_relay_makes_writes_zero(emu: RelayEmulator, way: Way, sdk: Any) -> None:
    emu.configure(bad_relay="drop_cache_control")
    for _ in range(2):
        usage = create(sdk, way).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens > 2000
    assert emu.cache_entries() == 0


# -- token counting ---------------------------------------------------------------------

COUNT_CASES: dict[str, dict[str, Any]] = {
    "marked system": {"system": SYSTEM, "messages": ASK},
    "tools, string system, turns": {
        "tools": [WEATHER, CLOCK],
        "system": "Answer briefly.",
        "messages": [
            {"role": "user", "content": "weather in 'Oslo'?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}]},
            {"role": "user", "content": [{"type": "text", "text": prose(60, 23)}]},
        ],
    },
    "no system": {"messages": [{"role": "user", "content": prose(10, 24)}]},
}


@pytest.mark.parametrize("case", list(COUNT_CASES), ids=list(COUNT_CASES))
@pytest.mark.parametrize("way", COUNTING_WAYS, ids=[w.name for w in COUNTING_WAYS])
def test_count_tokens_equals_the_billed_input(
    emu: RelayEmulator, way: Way, sdk: Any, case: str
) -> None:
    body = COUNT_CASES[case]
    counted = sdk.messages.count_tokens(model=way.model, **body).input_tokens
    endpoint = "messages.count_tokens" if way.name == "anthropic" else "vertex.count_tokens"
    assert [(r.endpoint, r.outcome) for r in emu.request_log] == [(endpoint, "counted")]
    assert (emu.billing_log, emu.cache_entries()) == ([], 0)  # no billing, no cache change
    for _ in range(2):  # a write, then a read: the count covers both
        usage = sdk.messages.create(model=way.model, max_tokens=20, **body).usage
        assert total_input(usage) == counted
    assert sdk.messages.count_tokens(model=way.model, **body).input_tokens == counted


# -- cache diagnostics ------------------------------------------------------------------


def diag_base(way: Way) -> dict[str, Any]:
    turn = {
        "role": "user",
        "content": [
            {"type": "text", "text": prose(400, 25), "cache_control": {"type": "ephemeral"}}
        ],
    }
    return {
        "model": way.model,
        "max_tokens": 20,
        "tools": [WEATHER, CLOCK],
        "system": SYSTEM,
        "messages": [turn],
    }


def appended(body: dict[str, Any], _: Way) -> dict[str, Any]:
    more = [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and then?"}]
    return {**body, "messages": [*body["messages"], *more]}


def marker_moved(body: dict[str, Any], _: Way) -> dict[str, Any]:
    text = body["messages"][0]["content"][0]["text"]
    return {**body, "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


def system_edited(body: dict[str, Any], _: Way) -> dict[str, Any]:
    return {**body, "system": [{**SYSTEM[0], "text": DOC + " Revised."}]}


def tools_reordered(body: dict[str, Any], _: Way) -> dict[str, Any]:
    return {**body, "tools": [CLOCK, WEATHER]}


def model_switched(body: dict[str, Any], way: Way) -> dict[str, Any]:
    return {**body, "model": way.other_model}


def first_turn_edited(body: dict[str, Any], _: Way) -> dict[str, Any]:
    turn = {"role": "user", "content": [{"type": "text", "text": prose(400, 26)}]}
    return {**body, "messages": [turn, *appended(body, _)["messages"][1:]]}


def tool_choice_set(body: dict[str, Any], _: Way) -> dict[str, Any]:
    return {**body, "tool_choice": {"type": "any"}}


# change -> expected cache_miss_reason type (None: "diagnostics": null)
DIAGNOSTIC_CASES: dict[str, tuple[Callable[[dict[str, Any], Way], dict[str, Any]], Any]] = {
    "turns appended": (appended, None),
    "breakpoint moved only": (marker_moved, None),
    "system edited": (system_edited, "system_changed"),
    "tools reordered": (tools_reordered, "tools_changed"),
    "model switched": (model_switched, "model_changed"),
    "earlier turn edited": (first_turn_edited, "messages_changed"),
    "tool_choice set": (tool_choice_set, "unavailable"),
}


@pytest.mark.parametrize("case", list(DIAGNOSTIC_CASES), ids=list(DIAGNOSTIC_CASES))
def test_diagnostics_name_the_change(emu: RelayEmulator, way: Way, sdk: Any, case: str) -> None:
    change, expected = DIAGNOSTIC_CASES[case]
    base = diag_base(way)
    first = sdk.messages.create(**base, diagnostics={"previous_message_id": None})
    assert first.diagnostics is None
    second = sdk.messages.create(**change(base, way), diagnostics={"previous_message_id": first.id})
    reason = second.diagnostics and second.diagnostics.cache_miss_reason
    assert (reason.type if reason else None) == expected
    if expected in (None, "unavailable"):
        return
    previous, current = emu.billing_log
    cached_before = previous.cache_read + previous.cache_write
    assert reason.cache_missed_input_tokens == cached_before - current.cache_read
    assert reason.cache_missed_input_tokens > 300
    if expected == "messages_changed":  # tools and system were still read
        assert 2000 < current.cache_read < previous.cache_write


def test_diagnostics_absent_unless_asked_and_unknown_ids(way: Way, sdk: Any) -> None:
    plain = sdk.messages.with_raw_response.create(**diag_base(way)).http_response.json()
    assert "diagnostics" not in plain
    opted = sdk.messages.with_raw_response.create(
        **diag_base(way), diagnostics={"previous_message_id": None}
    ).http_response.json()
    assert opted["diagnostics"] is None
    unknown = sdk.messages.create(**diag_base(way), diagnostics={"previous_message_id": "msg_x"})
    assert unknown.diagnostics.cache_miss_reason.type == "previous_message_not_found"


def test_diagnostics_ride_on_message_start_in_streams(way: Way, sdk: Any) -> None:
    first = sdk.messages.create(**diag_base(way))
    changed = system_edited(diag_base(way), way)
    events = list(
        sdk.messages.create(**changed, stream=True, diagnostics={"previous_message_id": first.id})
    )
    start = events[0].message
    assert start.diagnostics.cache_miss_reason.type == "system_changed"
    assert start.diagnostics.cache_miss_reason.cache_missed_input_tokens > 2000


@pytest.mark.parametrize("bad", [[], "msg_1", {"previous_message_id": 7}])
def test_malformed_diagnostics_are_400s(way: Way, sdk: Any, bad: Any) -> None:
    with pytest.raises(anthropic.BadRequestError, match="diagnostics"):
        create(sdk, way, extra_body={"diagnostics": bad})


# pure rule: appending blocks never diverges, editing an earlier one always does
_texts = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=8)


@settings(max_examples=60, deadline=None)
@given(texts=_texts, data=st.data())
def test_appending_never_diverges_editing_always_does(texts: list[str], data: Any) -> None:
    def request(parts: list[str]) -> Any:
        turns = [{"role": "user", "content": [{"type": "text", "text": t}]} for t in parts]
        return parse_anthropic({"model": "claude-sonnet-4-6", "messages": turns})

    cut = data.draw(st.integers(1, len(texts) - 1))
    previous = fingerprint(request(texts[:cut]), cached_tokens=100)
    assert cache_miss_reason(previous, request(texts), read_tokens=100) is None
    edited = list(texts)
    j = data.draw(st.integers(0, cut - 1))
    edited[j] += "!"
    reason = cache_miss_reason(previous, request(edited), read_tokens=40)
    assert reason == {"type": "messages_changed", "cache_missed_input_tokens": 60}


# -- faults, limits and errors ----------------------------------------------------------

FAULT_ERRORS = {
    "529": anthropic.OverloadedError,
    "500": anthropic.InternalServerError,
    "503": anthropic.ServiceUnavailableError,
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", list(FAULT_ERRORS))
def test_faults_surface_as_typed_sdk_errors(
    emu: RelayEmulator, way: Way, sdk: Any, kind: str, stream: bool
) -> None:
    emu.fail_next(kind)
    with pytest.raises(FAULT_ERRORS[kind]) as info:
        create(sdk, way, stream=stream)
    assert info.value.status_code == int(kind)
    if way.name == "bedrock":
        assert set(info.value.body) == {"message"}
        aws_type = {"500": "InternalServerException"}.get(kind, "ServiceUnavailableException")
        assert info.value.response.headers["x-amzn-errortype"] == aws_type
    else:
        assert info.value.body["type"] == "error"
    endpoint = way.stream if stream else way.plain
    assert [(r.endpoint, r.outcome) for r in emu.request_log] == [(endpoint, f"fault:{kind}")]
    assert emu.billing_log == []


def test_reset_fault_is_a_connection_error(emu: RelayEmulator, way: Way, sdk: Any) -> None:
    emu.fail_next("reset")
    with pytest.raises(anthropic.APIConnectionError):
        create(sdk, way)
    assert [(r.endpoint, r.status) for r in emu.request_log] == [(way.plain, None)]


def test_cut_stream_ends_without_usage_and_is_billed_all_the_same(
    emu: RelayEmulator, way: Way, sdk: Any
) -> None:
    emu.fail_next("cut")
    events = list(create(sdk, way, stream=True))
    kinds = [e.type for e in events]
    assert "content_block_delta" in kinds
    assert "message_delta" not in kinds
    assert "message_stop" not in kinds
    assert [e.request_id for e in emu.billing_log] == [emu.request_log[-1].request_id]
    assert emu.request_log[-1].outcome == "fault:cut"
    assert create(sdk, way).usage.cache_read_input_tokens > 2000  # its write was committed


def test_rate_limit_is_a_rate_limit_error(emu: RelayEmulator, way: Way, sdk: Any) -> None:
    emu.configure(rpm=1)
    create(sdk, way)
    with pytest.raises(anthropic.RateLimitError) as info:
        create(sdk, way)
    assert int(info.value.response.headers["retry-after"]) == 60
    if way.name == "bedrock":
        assert info.value.response.headers["x-amzn-errortype"] == "ThrottlingException"
        assert "rate limit" in info.value.body["message"]
    assert emu.request_log[-1].outcome == "error:429:rpm"


def test_marker_rules_are_400s(emu: RelayEmulator, way: Way, sdk: Any) -> None:
    marked = {"cache_control": {"type": "ephemeral"}}
    system = [{"type": "text", "text": f"part {i}", **marked} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks"):
        create(sdk, way, system=system)
    assert emu.request_log[-1].outcome == "error:400"


# -- the wire, below the SDK ------------------------------------------------------------


def bedrock_frames(data: bytes) -> list[Any]:
    buffer = eventstream.EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def sse_dicts(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_bedrock_stream_frames_carry_the_same_events_as_sse(
    emu: RelayEmulator, raw: httpx.Client
) -> None:
    body = {"max_tokens": 50, "system": SYSTEM, "messages": ASK}
    native = raw.post("/v1/messages", json={**body, "model": "claude-sonnet-4-6", "stream": True})
    expected = sse_dicts(native.text)
    emu.reset()  # the same cache state and request id
    response = raw.post(
        "/model/claude-sonnet-4-6/invoke-with-response-stream",
        json={**body, "anthropic_version": "bedrock-2023-05-31"},
    )
    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    frames = bedrock_frames(response.content)
    assert len(frames) == len(expected) >= 8
    for frame in frames:
        assert frame.headers == {
            ":event-type": "chunk",
            ":content-type": "application/json",
            ":message-type": "event",
        }
    events = [json.loads(base64.b64decode(json.loads(f.payload)["bytes"])) for f in frames]
    assert events == expected
    decoder = pytest.importorskip("anthropic.lib.bedrock._stream_decoder").AWSEventStreamDecoder()
    pieces = (response.content[i : i + 7] for i in range(0, len(response.content), 7))
    decoded = list(decoder.iter_bytes(pieces))
    assert [json.loads(e.data) for e in decoded] == expected
    assert [e.event for e in decoded] == [e["type"] for e in expected]


async def test_async_bedrock_client_streams(emu: RelayEmulator) -> None:
    client = anthropic.AsyncAnthropicBedrock(
        base_url=emu.root_url, api_key="bedrock-api-key", aws_region="us-east-1", max_retries=0
    )
    async with client:
        stream = await client.messages.create(
            model="anthropic.claude-sonnet-4-6",
            max_tokens=50,
            system=SYSTEM,
            messages=ASK,
            stream=True,
        )
        kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert emu.billing_log[-1].endpoint == "bedrock.invoke-with-response-stream"


BODY_ERRORS = {
    "bedrock with model": (
        "/model/anthropic.claude-sonnet-4-6/invoke",
        {"model": "x", "anthropic_version": "v", "max_tokens": 5, "messages": ASK},
        "extraneous key [model]",
    ),
    "bedrock with stream": (
        "/model/anthropic.claude-sonnet-4-6/invoke",
        {"stream": True, "anthropic_version": "v", "max_tokens": 5, "messages": ASK},
        "extraneous key [stream]",
    ),
    "bedrock without version": (
        "/model/anthropic.claude-sonnet-4-6/invoke-with-response-stream",
        {"max_tokens": 5, "messages": ASK},
        "required key [anthropic_version]",
    ),
    "bedrock without max_tokens": (
        "/model/anthropic.claude-sonnet-4-6/invoke",
        {"anthropic_version": "v", "messages": ASK},
        "max_tokens",
    ),
    "vertex without version": (
        "/v1/projects/p/locations/r/publishers/anthropic/models/claude-sonnet-4-6:rawPredict",
        {"max_tokens": 5, "messages": ASK},
        "anthropic_version",
    ),
    "negative max_tokens": (
        "/v1/messages",
        {"model": "claude-sonnet-4-6", "max_tokens": -1, "messages": ASK},
        "max_tokens",
    ),
}


@pytest.mark.parametrize("case", list(BODY_ERRORS), ids=list(BODY_ERRORS))
def test_platform_body_rules(emu: RelayEmulator, raw: httpx.Client, case: str) -> None:
    path, body, message = BODY_ERRORS[case]
    response = raw.post(path, json=body)
    assert response.status_code == 400
    if path.startswith("/model/"):
        assert response.headers["x-amzn-errortype"] == "ValidationException"
        assert message in response.json()["message"]
    else:
        assert message in response.json()["error"]["message"]
    assert emu.billing_log == []


PATHS = {
    "/v1/chat/completions": "chat.completions",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "messages.count_tokens",
    "/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke": "bedrock.invoke",
    "/model/m/invoke-with-response-stream": "bedrock.invoke-with-response-stream",
    "/v1/projects/p/locations/r/publishers/anthropic/models/claude-x@2025:rawPredict": (
        "vertex.rawPredict"
    ),
    "/v1/projects/p/locations/r/publishers/anthropic/models/m:streamRawPredict": (
        "vertex.streamRawPredict"
    ),
    "/v1/projects/p/locations/r/publishers/anthropic/models/count-tokens:rawPredict": (
        "vertex.count_tokens"
    ),
    "/v1/projects/p/locations/r/publishers/anthropic/models/m:predict": None,
    "/v1/projects/p/locations/r/publishers/google/models/m:rawPredict": None,
    "/model/a/b/invoke": None,
    "/v1/messages/batches": None,
    "/v1/models": None,
}


@pytest.mark.parametrize(("path", "endpoint"), list(PATHS.items()))
def test_paths_map_to_endpoints(path: str, endpoint: str | None) -> None:
    wire = match_wire(path)
    assert (wire.endpoint if wire else None) == endpoint


def test_faults_reach_every_api_path(emu: RelayEmulator, raw: httpx.Client) -> None:
    paths = [p for p, e in PATHS.items() if e and e != "chat.completions"]
    emu.fail_next("529", count=len(paths))
    for path in paths:
        assert raw.post(path, json={}).status_code == 529
    assert [r.endpoint for r in emu.request_log] == [PATHS[p] for p in paths]
    assert raw.post(paths[0], json={}).status_code == 400  # the script is used up


# -- event-stream framing ---------------------------------------------------------------

_header_names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(max_examples=80, deadline=None)
@given(
    headers=st.dictionaries(_header_names, st.text(max_size=60), max_size=4),
    payload=st.binary(max_size=300),
)
def test_frames_decode_with_botocore(headers: dict[str, str], payload: bytes) -> None:
    frames = bedrock_frames(encode_message(headers, payload))
    assert len(frames) == 1
    assert (frames[0].headers, frames[0].payload) == (headers, payload)


@pytest.mark.parametrize("offset", [2, 9, 20, -1])
def test_a_corrupted_byte_fails_the_checksum(offset: int) -> None:
    frame = bytearray(bedrock_chunk({"type": "ping"}))
    frame[offset] ^= 0x01
    with pytest.raises(eventstream.ParserError):
        bedrock_frames(bytes(frame))


@pytest.mark.parametrize(
    ("headers", "payload", "match"),
    [
        ({"n" * 256: "v"}, b"", "over 255 bytes"),
        ({"n": "v" * 65_536}, b"", "over 65,535 bytes"),
        ({}, b"x" * (MAX_PAYLOAD_BYTES + 1), "16 MiB"),
    ],
)
def test_oversized_frames_are_refused(headers: dict[str, str], payload: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_message(headers, payload)
