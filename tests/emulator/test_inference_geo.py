"""Data residency on the emulator: ``inference_geo`` is echoed in the usage and billed at 1.1x.

The facts are the model table's (``models.json``'s ``inference_geo`` block, with its sources):
the Claude API takes ``inference_geo`` (``"global"`` or ``"us"``) on Claude 4.6 and later and
echoes it as ``usage.inference_geo``; ``"us"`` costs 1.1x on every token kind; Bedrock and
Vertex AI do not have the field; Claude 4.5 and earlier refuse it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from langchain_claude_relay import ChatClaudeRelay
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import INFERENCE_GEO_REFUSED, TokenSplit, cost_usd

from . import test_platform_refusals as platform
from .test_platform_refusals import refusal

MODEL = "claude-sonnet-4-6"


def ask(**fields: Any) -> dict[str, Any]:
    return {**platform.body("anthropic", MODEL), **fields}


def test_a_us_request_echoes_its_geo_and_is_billed_at_the_us_price(
    emu: RelayEmulator, http: httpx.Client
) -> None:
    plain = http.post("/v1/messages", json=ask()).json()
    us = http.post("/v1/messages", json=ask(inference_geo="us")).json()
    assert "inference_geo" not in plain["usage"]
    assert us["usage"]["inference_geo"] == "us"
    first, second = emu.billing_log
    split = TokenSplit(second.input_tokens, 0, 0, 0, second.output_tokens)
    assert (second.input_tokens, second.output_tokens) == (first.input_tokens, first.output_tokens)
    assert first.cost_usd == cost_usd(MODEL, split)
    assert second.cost_usd == pytest.approx(1.1 * (cost_usd(MODEL, split) or 0.0), rel=1e-9)


def test_global_is_echoed_at_the_standard_price(emu: RelayEmulator, http: httpx.Client) -> None:
    document = http.post("/v1/messages", json=ask(inference_geo="global")).json()
    assert document["usage"]["inference_geo"] == "global"
    entry = emu.billing_log[-1]
    split = TokenSplit(entry.input_tokens, 0, 0, 0, entry.output_tokens)
    assert entry.cost_usd == cost_usd(MODEL, split)


def test_a_stream_echoes_the_geo_in_its_start_and_final_usage(http: httpx.Client) -> None:
    text = http.post("/v1/messages", json=ask(inference_geo="us", stream=True)).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    start = next(e for e in events if e["type"] == "message_start")
    final = next(e for e in events if e["type"] == "message_delta")
    assert start["message"]["usage"]["inference_geo"] == "us"
    assert final["usage"]["inference_geo"] == "us"


@pytest.mark.parametrize("way", ["bedrock", "vertex"])
def test_bedrock_and_vertex_have_no_inference_geo(
    emu: RelayEmulator, http: httpx.Client, way: str
) -> None:
    response = http.post(
        platform.url(way, MODEL), json=platform.body(way, MODEL, inference_geo="us")
    )
    assert refusal(way, response) == "inference_geo: Extra inputs are not permitted"
    assert emu.billing_log == []


@pytest.mark.parametrize(
    ("model", "geo", "message"),
    [
        ("claude-haiku-4-5", "us", INFERENCE_GEO_REFUSED),  # 4.5 and earlier: no residency
        ("claude-sonnet-4-5", "global", INFERENCE_GEO_REFUSED),
        (MODEL, "eu", "inference_geo: Input should be 'global' or 'us'"),
        (MODEL, ["us"], "inference_geo: Input should be 'global' or 'us'"),
    ],
)
def test_a_geo_the_model_does_not_have_is_refused(
    emu: RelayEmulator, http: httpx.Client, model: str, geo: Any, message: str
) -> None:
    body = {**platform.body("anthropic", model), "inference_geo": geo}
    assert refusal("anthropic", http.post("/v1/messages", json=body)) == message
    assert emu.billing_log == []


def test_the_chat_model_costs_a_us_call_as_the_emulator_bills_it(emu: RelayEmulator) -> None:
    model = ChatClaudeRelay(
        api="anthropic",
        base_url=emu.base_url.removesuffix("/v1"),
        api_key="sk-ant-test-0123456789",
        model=MODEL,
        model_kwargs={"inference_geo": "us"},
    )
    message = model.invoke("hello")
    entry = emu.billing_log[-1]
    billed = entry.cost_usd
    assert message.response_metadata["inference_geo"] == "us"
    assert message.response_metadata["cost_usd"] == pytest.approx(billed, rel=1e-9)
    split = TokenSplit(entry.input_tokens, 0, 0, 0, entry.output_tokens)
    assert billed == pytest.approx(1.1 * (cost_usd(MODEL, split) or 0.0), rel=1e-9)
