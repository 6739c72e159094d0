"""The top-level cache_control (automatic caching) on both wire formats."""

from __future__ import annotations

import pytest

from langchain_claude_relay.emulator.engine import parse_anthropic, parse_openai, place_automatic
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message
from langchain_claude_relay.wire.formats import wire_format

REQUEST = ClaudeRequest(
    "claude-sonnet-5-5",
    system=(Block("text", {"text": "You are terse."}),),
    messages=(Message("user", (Block("text", {"text": "hello"}),)),),
    cache_control=CacheControl("1h"),
)


@pytest.mark.parametrize("native", [True, False])
def test_the_top_level_marker_is_rendered_as_a_top_level_field(native: bool) -> None:
    body = wire_format(native).render(REQUEST, {"max_tokens": 8}, True)
    assert body["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    # and Claude (the emulator) puts it on the last block of the rendered request
    parsed = place_automatic(parse_anthropic(body) if native else parse_openai(body))
    assert [b.ttl for b in parsed.blocks] == [None, "1h"]


@pytest.mark.parametrize("native", [True, False])
def test_no_top_level_marker_no_field(native: bool) -> None:
    request = ClaudeRequest("claude-sonnet-5-5", messages=REQUEST.messages)
    assert "cache_control" not in wire_format(native).render(request, {"max_tokens": 8}, True)


@pytest.mark.parametrize("native", [True, False])
def test_a_second_top_level_marker_in_the_settings_is_refused(native: bool) -> None:
    with pytest.raises(RequestValidationError, match="give it once"):
        wire_format(native).render(REQUEST, {"cache_control": {"type": "ephemeral"}}, True)


def test_a_5m_marker_without_ttl_is_rendered_as_given() -> None:
    request = ClaudeRequest(
        "m", messages=REQUEST.messages, cache_control=CacheControl.parse({"type": "ephemeral"})
    )
    assert wire_format(True).render(request, {}, True)["cache_control"] == {"type": "ephemeral"}
