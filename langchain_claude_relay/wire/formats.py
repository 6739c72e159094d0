"""The two wire formats behind one small interface: render a request, parse an answer or a stream.

``openai_chat`` serves relays (OpenAI's chat completions); ``anthropic_messages`` serves the native
API, Bedrock and Vertex (Anthropic's Messages). The chat model picks one by the way in and never
touches a format's details.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import ClaudeRequest
from langchain_claude_relay.wire.openai_chat import (
    ChatChunkReader,
    ParsedChunk,
    ParsedCompletion,
    check_one_top_level_marker,
    parse_chat_completion,
    render_chat_payload,
)

__all__ = ["StreamReader", "WireFormat", "wire_format"]


class StreamReader(Protocol):
    """Reads a stream's decoded events one at a time (a format may keep state between them)."""

    def read(self, event: Any) -> ParsedChunk:
        """Validate and read one event."""
        ...


@dataclass(frozen=True)
class WireFormat:
    """A wire format's three operations.

    Attributes:
        render: ``(request, sampling params, canonical) -> body``; ``canonical`` asks for content
            as lists of parts (byte-stable when caching).
        parse: a non-streamed answer's decoded body -> ``ParsedCompletion``.
        stream_reader: a fresh reader for one stream.
    """

    render: Callable[[ClaudeRequest, Mapping[str, Any], bool], dict[str, Any]]
    parse: Callable[[Any], ParsedCompletion]
    stream_reader: Callable[[], StreamReader]


def _render_chat(
    request: ClaudeRequest, params: Mapping[str, Any], canonical: bool
) -> dict[str, Any]:
    payload = render_chat_payload(request, canonical=canonical)
    check_one_top_level_marker(request, params)
    if payload.get("parallel_tool_calls") is False and params.get("parallel_tool_calls") is True:
        msg = (
            "tool_choice has disable_parallel_tool_use=True but parallel_tool_calls=True is also "
            "given: give one of them"
        )
        raise RequestValidationError(msg)
    if not request.tools and "parallel_tool_calls" in params:
        # a per-call setting means nothing without tools (the Messages format drops it too), and
        # OpenAI-schema validators refuse it there
        params = {k: v for k, v in params.items() if k != "parallel_tool_calls"}
    payload.update(params)
    return payload


_CHAT = WireFormat(_render_chat, parse_chat_completion, ChatChunkReader)


def _messages_format() -> WireFormat:
    from langchain_claude_relay.wire.anthropic_messages import (
        MessageStreamReader,
        parse_message,
        render_messages_payload,
    )

    def render(
        request: ClaudeRequest, params: Mapping[str, Any], canonical: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = render_messages_payload(request, params, canonical=canonical)
        return payload

    return WireFormat(render, parse_message, MessageStreamReader)


def wire_format(native: bool) -> WireFormat:
    """The Messages format for a native way in, else chat completions."""
    return _messages_format() if native else _CHAT
