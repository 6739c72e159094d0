"""Bedrock's streams: AWS event-stream frames carrying Anthropic's stream events.

Each frame of ``invoke-with-response-stream`` is a binary event-stream message (prelude, headers,
payload, CRCs: decoded by botocore's ``EventStreamBuffer``, which checks the CRCs). An ``event``
frame's payload is ``{"bytes": base64(json event)}``; an ``exception`` frame names the AWS error
(``:exception-type``, e.g. ``throttlingException``) with ``{"message": ...}``, and becomes an
Anthropic-style ``{"type": "error", "error": {"type", "message"}}`` event so that the caller types
it like a native stream's error. Anything malformed is an
:class:`~langchain_claude_relay.errors.APIResponseError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from langchain_claude_relay.errors import APIResponseError

__all__ = ["iter_eventstream_json", "aiter_eventstream_json", "decode_frame"]


def _buffer() -> Any:
    try:
        from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the bedrock extra installs it
        msg = "Bedrock streams need botocore: pip install 'langchain-claude-relay[bedrock]'"
        raise APIResponseError(msg) from None
    return EventStreamBuffer()


def _header(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _bad(what: str, payload: bytes | str) -> APIResponseError:
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
    return APIResponseError(f"Bedrock streamed {what}", status_code=200, body=text)


def decode_frame(headers: dict[str, Any], payload: bytes, scrub: Callable[[str], str]) -> Any:
    """One decoded event-stream message as an Anthropic stream event (``None``: not an event).

    Args:
        headers: the frame's headers (``:message-type``, ``:event-type``, ``:exception-type``).
        payload: the frame's payload.
        scrub: applied to decoded text before it is parsed (removes echoed secrets).

    Returns:
        The event dict, or ``None`` for a frame that carries no event (an empty ``chunk``).

    Raises:
        APIResponseError: for a payload that is not the documented JSON.
    """
    text = scrub(payload.decode(errors="replace"))
    try:
        body = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError):
        raise _bad("a frame whose payload is not JSON", text) from None
    if not isinstance(body, dict):
        raise _bad("a frame whose payload is not an object", text)
    kind = _header(headers, ":message-type") or "event"
    if kind in ("exception", "error"):
        name = _header(headers, ":exception-type") or _header(headers, ":error-code") or "error"
        message = body.get("message") or body.get("Message") or _header(headers, ":error-message")
        return {"type": "error", "error": {"type": _aws_error_type(name), "message": message}}
    raw = body.get("bytes")
    if raw is None:
        return None
    try:
        event_text = scrub(base64.b64decode(raw, validate=True).decode())
        event = json.loads(event_text)
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError, TypeError):
        raise _bad("a chunk whose bytes are not base64 JSON", text) from None
    return event


def _aws_error_type(name: str) -> str:
    """``throttlingException`` -> ``ThrottlingException`` (the spelling error tables use)."""
    return name[:1].upper() + name[1:]


def _frames(buffer: Any, scrub: Callable[[str], str]) -> Iterator[Any]:
    try:
        for message in buffer:
            event = decode_frame(message.headers, message.payload, scrub)
            if event is not None:
                yield event
    except APIResponseError:
        raise
    except Exception as exc:  # botocore's checksum / length errors
        msg = f"Bedrock streamed a frame that cannot be decoded ({type(exc).__name__})"
        raise APIResponseError(msg, status_code=200) from None


def iter_eventstream_json(
    chunks: Iterable[bytes], *, scrub: Callable[[str], str] = lambda t: t
) -> Iterator[Any]:
    """Anthropic stream events from the bytes of a Bedrock event stream.

    Args:
        chunks: the response body's bytes, in any chunking.
        scrub: applied to decoded text (removes echoed secrets).

    Yields:
        Each event's decoded JSON.

    Raises:
        APIResponseError: for a malformed frame.
    """
    buffer = _buffer()
    for chunk in chunks:
        buffer.add_data(chunk)
        yield from _frames(buffer, scrub)


async def aiter_eventstream_json(
    chunks: AsyncIterator[bytes], *, scrub: Callable[[str], str] = lambda t: t
) -> AsyncIterator[Any]:
    """Async :func:`iter_eventstream_json`."""
    buffer = _buffer()
    async for chunk in chunks:
        buffer.add_data(chunk)
        for event in _frames(buffer, scrub):
            yield event
