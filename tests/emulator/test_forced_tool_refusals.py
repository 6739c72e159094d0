"""Opus 5.5, Sonnet 5.5 and Fable 5.1 refuse a forced tool choice; the emulator does too.

Anthropic's "What's new" pages for Opus 5.5 and Sonnet 5.5 (the model table's
``forced_tool_choice``): ``tool_choice`` ``any`` or a named tool is a 400,
``tool_choice: type "tool" and "any" are not supported for this model.``; ``auto`` and
``none`` are served. Sonnet 5.5 takes ``between_tools`` thinking and refuses ``disabled``;
Opus 5.5 always thinks.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.engine import BETWEEN_TOOLS_EFFORT, FORCED_TOOL_REFUSED

from .test_platform_refusals import WAYS, body, refused, served, url

TOOL = {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look a word up.", "parameters": {}},
}
FORCING = {
    "openai": ["required", {"type": "function", "function": {"name": "lookup"}}],
    "native": [{"type": "any"}, {"type": "tool", "name": "lookup"}],
}
NOT_FORCING = {"openai": ["auto", "none"], "native": [{"type": "auto"}, {"type": "none"}]}


def _send(http: httpx.Client, way: str, model: str, choice: Any) -> httpx.Response:
    tools = [OPENAI_TOOL] if way == "openai" else [TOOL]
    return http.post(url(way, model), json=body(way, model, tools=tools, tool_choice=choice))


def _choices(table: dict[str, list[Any]], way: str) -> list[Any]:
    return table["openai" if way == "openai" else "native"]


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5-1"])
def test_a_forced_tool_is_refused_where_claude_refuses_it(
    emu: RelayEmulator, http: httpx.Client, way: str, model: str
) -> None:
    for choice in _choices(FORCING, way):
        assert refused(emu, way, _send(http, way, model, choice)) == FORCED_TOOL_REFUSED
    for choice in _choices(NOT_FORCING, way):
        served(_send(http, way, model, choice))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("model", ["claude-sonnet-5", "claude-haiku-5-5", "claude-sonnet-4-6"])
def test_other_models_serve_a_forced_tool(http: httpx.Client, way: str, model: str) -> None:
    for choice in _choices(FORCING, way):
        served(_send(http, way, model, choice))


@pytest.mark.parametrize("way", WAYS)
def test_sonnet_5_5_thinks_between_tools_but_never_not_at_all(
    emu: RelayEmulator, http: httpx.Client, way: str
) -> None:
    model = "claude-sonnet-5-5"
    response = http.post(url(way, model), json=body(way, model, thinking={"type": "disabled"}))
    assert refused(emu, way, response).startswith('"thinking.type.disabled" is not supported')
    served(http.post(url(way, model), json=body(way, model, thinking={"type": "between_tools"})))


@pytest.mark.parametrize("way", WAYS)
def test_opus_5_5_always_thinks(emu: RelayEmulator, http: httpx.Client, way: str) -> None:
    model = "claude-opus-5-5"
    response = http.post(url(way, model), json=body(way, model, thinking={"type": "disabled"}))
    assert refused(emu, way, response).startswith('"thinking.type.disabled" is not supported')
    served(http.post(url(way, model), json=body(way, model, thinking={"type": "adaptive"})))


@pytest.mark.parametrize("way", WAYS)
def test_between_tools_above_effort_high_is_refused(
    emu: RelayEmulator, http: httpx.Client, way: str
) -> None:
    model = "claude-sonnet-5-5"
    thinking = {"type": "between_tools"}
    effort = (
        {"reasoning_effort": "max"} if way == "openai" else {"output_config": {"effort": "max"}}
    )
    response = http.post(url(way, model), json=body(way, model, thinking=thinking, **effort))
    assert refused(emu, way, response) == BETWEEN_TOOLS_EFFORT.format(effort="max")
    high = (
        {"reasoning_effort": "high"} if way == "openai" else {"output_config": {"effort": "high"}}
    )
    served(http.post(url(way, model), json=body(way, model, thinking=thinking, **high)))
