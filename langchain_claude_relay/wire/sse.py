"""A small, strict server-sent-events reader for relay streams.

Pure: it takes text lines and yields decoded JSON payloads. ``[DONE]`` ends the stream; an
``error`` payload, a non-JSON ``data`` line or a stream that stops before ``[DONE]`` raise
:class:`~langchain_claude_relay.errors.APIResponseError`, so nothing but the package's typed
errors escapes.

>>> list(iter_sse_json(['data: {"a": 1}', '', 'data: [DONE]', '']))
[{'a': 1}]
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from langchain_claude_relay.errors import APIResponseError

__all__ = ["SSEDecoder", "iter_sse_json", "aiter_sse_json"]


class SSEDecoder:
    """Turns lines into complete ``data`` payloads (multi-line data joined with newlines)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self.done = False

    def feed(self, line: str) -> str | None:
        """Feed one line (without its newline); returns a payload when an event is complete."""
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            payload = "\n".join(self._data)
            self._data = []
            return payload
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The pending payload at end of input, if a final blank line was missing."""
        if not self._data:
            return None
        payload = "\n".join(self._data)
        self._data = []
        return payload


def _decode(payload: str, pass_errors: bool = False) -> Any:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        msg = "relay streamed an event whose data is not JSON"
        raise APIResponseError(msg, status_code=200, body=payload) from None
    if pass_errors:
        return value
    if isinstance(value, dict) and "error" in value and "choices" not in value:
        msg = "relay streamed an error event"
        raise APIResponseError(msg, status_code=200, body=payload)
    return value


def _finish(decoder: SSEDecoder, require_done: bool, pass_errors: bool) -> Iterator[Any]:
    """At end of input: the pending event, then an error if ``[DONE]`` never came."""
    payload = decoder.flush()
    if payload is not None and payload.strip() == "[DONE]":
        return
    if payload is not None:
        yield _decode(payload, pass_errors)
    if require_done:
        msg = "relay stream ended before its end ([DONE] never came): the stream was cut"
        raise APIResponseError(msg, status_code=200)


def iter_sse_json(
    lines: Iterable[str], *, require_done: bool = True, pass_errors: bool = False
) -> Iterator[Any]:
    """Decoded JSON payloads from SSE lines, up to ``[DONE]``.

    Args:
        lines: the stream's lines.
        require_done: raise if the stream ends without ``[DONE]`` (a cut stream; Anthropic's
            streams end with a ``message_stop`` event instead, checked by the caller).
        pass_errors: yield error payloads instead of raising (the caller types them).

    Yields:
        Each event's decoded JSON.

    Raises:
        APIResponseError: for a non-JSON event, an error event, or a stream cut before its end.
    """
    decoder = SSEDecoder()
    for line in lines:
        payload = decoder.feed(line)
        if payload is None:
            continue
        if payload.strip() == "[DONE]":
            return
        yield _decode(payload, pass_errors)
    yield from _finish(decoder, require_done, pass_errors)


async def aiter_sse_json(
    lines: AsyncIterator[str], *, require_done: bool = True, pass_errors: bool = False
) -> AsyncIterator[Any]:
    """Async version of :func:`iter_sse_json`."""
    decoder = SSEDecoder()
    async for line in lines:
        payload = decoder.feed(line)
        if payload is None:
            continue
        if payload.strip() == "[DONE]":
            return
        yield _decode(payload, pass_errors)
    for event in _finish(decoder, require_done, pass_errors):
        yield event
