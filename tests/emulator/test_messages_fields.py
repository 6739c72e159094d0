"""What the Messages paths (Anthropic, Bedrock, Vertex) take at the top level and as sources.

* A top-level field the Messages API does not know is a 400 on every Messages path, counting
  tokens included (``<field>: Extra inputs are not permitted``); the fields it knows
  (``MESSAGES_FIELDS``) and each platform's own (``anthropic_version`` on Bedrock and Vertex)
  are served. The chat path keeps passing unknown fields on, as relays do.
* A Files API source (``{"type": "file", "file_id": ...}``) is served on the Claude API and a 400
  on Bedrock and Vertex, which have no Files API: in a turn, in a tool result and inside a
  ``content`` document source.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import (
    MESSAGES_FIELDS,
    check_file_sources,
    parse_anthropic,
)

from . import test_platform_refusals as platform
from .test_platform_refusals import refusal, served

MODEL = "claude-sonnet-4-6"  # every thinking type, temperature or top_p, no prefill
NATIVE_WAYS = ["anthropic", "bedrock", "vertex"]
ASK = [{"role": "user", "content": "hello"}]
VERTEX = "/v1/projects/p/locations/us-east5/publishers/anthropic/models/"
FILE = {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}
IMAGE = {"type": "image", "source": FILE}
DOCUMENT = {"type": "document", "source": FILE, "title": "Report"}
IMAGE_TAGS = "'base64', 'url'"
DOCUMENT_TAGS = "'base64', 'content', 'text', 'url'"
TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "fetch", "input": {"what": "chart"}}


def url(way: str) -> str:
    return platform.url(way, MODEL)


def body(way: str, **fields: Any) -> dict[str, Any]:
    return {**platform.body(way, MODEL), **fields}  # "model" may be one of the fields


# -- unknown top-level fields -----------------------------------------------------------------


@pytest.mark.parametrize("way", NATIVE_WAYS)
@pytest.mark.parametrize("name", ["seed", "n", "frequency_penalty", "max_completion_tokens"])
def test_an_unknown_top_level_field_is_refused(
    emu: RelayEmulator, http: httpx.Client, way: str, name: str
) -> None:
    response = http.post(url(way), json=body(way, **{name: 1}))
    assert refusal(way, response) == f"{name}: Extra inputs are not permitted"
    assert emu.request_log[-1].outcome == "error:400"
    assert emu.billing_log == []


@pytest.mark.parametrize("way", NATIVE_WAYS)
def test_an_unknown_field_is_refused_even_when_null(http: httpx.Client, way: str) -> None:
    response = http.post(url(way), json=body(way, user=None))
    assert refusal(way, response) == "user: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/messages/count_tokens", {}),
        (f"{VERTEX}count-tokens:rawPredict", {"anthropic_version": "vertex-2023-10-16"}),
    ],
)
def test_an_unknown_field_is_refused_when_counting_tokens(
    http: httpx.Client, path: str, extra: dict[str, Any]
) -> None:
    counted = {"model": MODEL, "messages": ASK, **extra}
    served(http.post(path, json=counted))
    response = http.post(path, json={**counted, "seed": 1})
    assert refusal("anthropic", response) == "seed: Extra inputs are not permitted"


def test_the_chat_path_passes_unknown_fields_on(http: httpx.Client) -> None:
    served(http.post(url("openai"), json=body("openai", seed=1, user="u1", n=1)))


def test_anthropic_version_belongs_to_bedrock_and_vertex_bodies(http: httpx.Client) -> None:
    response = http.post(url("anthropic"), json=body("anthropic", anthropic_version="2023-06-01"))
    assert refusal("anthropic", response) == "anthropic_version: Extra inputs are not permitted"
    served(http.post(url("bedrock"), json=body("bedrock")))
    served(http.post(url("vertex"), json=body("vertex")))


def test_bedrock_takes_the_fields_its_sdk_client_adds(http: httpx.Client) -> None:
    # AnthropicBedrock moves the anthropic-beta and user-profile headers into the body
    fields = {"anthropic_beta": ["interleaved-thinking-2025-05-14"], "user_profile_id": "up_1"}
    served(http.post(url("bedrock"), json=body("bedrock", **fields)))
    response = http.post(url("anthropic"), json=body("anthropic", anthropic_beta=["x"]))
    assert refusal("anthropic", response) == "anthropic_beta: Extra inputs are not permitted"


def test_bedrock_serves_what_its_sdk_client_sends(emu: RelayEmulator) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.AnthropicBedrock(
        base_url=emu.root_url,
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="secret",
        aws_region="us-east-1",
        max_retries=0,
    )
    with client:
        reply = client.messages.create(
            model=MODEL,
            max_tokens=50,
            messages=ASK,
            extra_headers={
                "anthropic-beta": "interleaved-thinking-2025-05-14",
                "anthropic-user-profile-id": "up_1",
            },
        )
    assert reply.content
    assert emu.request_log[-1].outcome == "billed"


CLOSED = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
KNOWN_VALUES: dict[str, Any] = {
    "model": MODEL,
    "system": "Be brief.",
    "metadata": {"user_id": "u1"},
    "stop_sequences": ["END"],
    "stream": False,
    "tools": [{"name": "fetch", "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "disabled"},
    "service_tier": "auto",
    "container": "container_1",
    "output_config": {"effort": "low"},
    "cache_control": {"type": "ephemeral"},
    "diagnostics": {"previous_message_id": "msg_unknown"},
    "speed": "standard",
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 5,
    "context_management": {"edits": []},
    "mcp_servers": [],
    "compaction": None,
    "thread": None,
    "fallbacks": None,
    "fallback_credit_token": None,
    "billing_policy": {"type": "billing_policy", "bill_to": "self"},
    "output_format": {"type": "json_schema", "schema": CLOSED},
}


def test_every_known_field_has_a_value_here() -> None:
    assert set(KNOWN_VALUES) == MESSAGES_FIELDS - {"messages", "max_tokens"}


@pytest.mark.parametrize("way", NATIVE_WAYS)
@pytest.mark.parametrize("name", sorted(KNOWN_VALUES))
def test_every_messages_api_field_is_served(http: httpx.Client, way: str, name: str) -> None:
    if way == "bedrock" and name in ("model", "stream"):
        pytest.skip("Bedrock's path carries them (its body refuses them)")
    if way == "bedrock" and name == "cache_control":
        pytest.skip("Bedrock refuses automatic caching on Claude 4.6 (test_automatic_caching)")
    served(http.post(url(way), json=body(way, **{name: KNOWN_VALUES[name]})))


def test_parse_anthropic_reads_each_platforms_body() -> None:
    payload = {"model": MODEL, "messages": ASK, "anthropic_version": "vertex-2023-10-16"}
    parse_anthropic(payload, platform="vertex")
    parse_anthropic(payload, platform="bedrock")
    with pytest.raises(ValueError, match="anthropic_version: Extra inputs are not permitted"):
        parse_anthropic(payload)


# -- Files API sources --------------------------------------------------------------------------

WHERE_FILES_GO = {
    "image in a turn": (
        [{"role": "user", "content": [IMAGE, {"type": "text", "text": "What is this?"}]}],
        f"messages.0.content.0.image.source: Input tag 'file' found using 'type' does not "
        f"match any of the expected tags: {IMAGE_TAGS}",
    ),
    "document in a turn": (
        [{"role": "user", "content": [{"type": "text", "text": "Read:"}, DOCUMENT]}],
        f"messages.0.content.1.document.source: Input tag 'file' found using 'type' does not "
        f"match any of the expected tags: {DOCUMENT_TAGS}",
    ),
    "image in a tool result": (
        [
            *ASK,
            {"role": "assistant", "content": [TOOL_USE]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [IMAGE]}],
            },
        ],
        f"messages.2.content.0.tool_result.content.0.image.source: Input tag 'file' found using "
        f"'type' does not match any of the expected tags: {IMAGE_TAGS}",
    ),
    "document in a tool result": (
        [
            *ASK,
            {"role": "assistant", "content": [TOOL_USE]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "Here:"}, DOCUMENT],
                    }
                ],
            },
        ],
        f"messages.2.content.0.tool_result.content.1.document.source: Input tag 'file' found "
        f"using 'type' does not match any of the expected tags: {DOCUMENT_TAGS}",
    ),
    "image in a content document source": (
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {
                            "type": "content",
                            "content": [{"type": "text", "text": "Figure 1:"}, IMAGE],
                        },
                    }
                ],
            }
        ],
        f"messages.0.content.0.document.source.content.content.1.image.source: Input tag "
        f"'file' found using 'type' does not match any of the expected tags: {IMAGE_TAGS}",
    ),
}


@pytest.mark.parametrize("way", ["bedrock", "vertex"])
@pytest.mark.parametrize("case", sorted(WHERE_FILES_GO))
def test_files_api_sources_are_refused_on_bedrock_and_vertex(
    emu: RelayEmulator, http: httpx.Client, way: str, case: str
) -> None:
    messages, expected = WHERE_FILES_GO[case]
    response = http.post(url(way), json=body(way, messages=messages))
    assert refusal(way, response) == expected
    assert emu.request_log[-1].outcome == "error:400"
    assert emu.billing_log == []


@pytest.mark.parametrize("case", sorted(WHERE_FILES_GO))
def test_files_api_sources_are_served_on_the_claude_api(http: httpx.Client, case: str) -> None:
    messages, _ = WHERE_FILES_GO[case]
    served(http.post(url("anthropic"), json=body("anthropic", messages=messages)))
    served(http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": messages}))


def test_files_api_sources_are_refused_when_counting_tokens_on_vertex(http: httpx.Client) -> None:
    messages, expected = WHERE_FILES_GO["image in a turn"]
    payload = {"model": MODEL, "messages": messages, "anthropic_version": "vertex-2023-10-16"}
    response = http.post(f"{VERTEX}count-tokens:rawPredict", json=payload)
    assert refusal("vertex", response) == expected


def test_other_sources_are_served_on_bedrock_and_vertex(http: httpx.Client) -> None:
    text = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    picture = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    messages = [{"role": "user", "content": [text, picture, {"type": "text", "text": "Both?"}]}]
    for way in ("bedrock", "vertex"):
        served(http.post(url(way), json=body(way, messages=messages)))


def test_check_file_sources_leaves_the_claude_api_alone() -> None:
    messages, _ = WHERE_FILES_GO["image in a tool result"]
    check_file_sources({"messages": messages})
    check_file_sources({"messages": messages}, "anthropic")
    with pytest.raises(
        ValueError, match=r"tool_result\.content\.0\.image\.source: Input tag 'file'"
    ):
        check_file_sources({"messages": messages}, "bedrock")
