"""Response rendering: usage in each relay dialect, OpenAI and Anthropic bodies and SSE events.

Each usage dialect is data: the fields it sends (a dotted path -> a quantity) and whether its
``prompt_tokens`` includes cached tokens. Quantities: ``read`` (cache reads), ``write`` (all cache
writes), ``write_5m``, ``write_1h``. ``prompt_tokens`` is the full input (plain + reads + writes)
unless the dialect or the ``prompt_excludes_cached`` flag says otherwise, in which case it is the
plain input only (Anthropic's ``input_tokens``).

>>> from langchain_claude_relay.emulator.engine import TokenSplit
>>> render_usage(TokenSplit(10, 1000, 200, 0, 5), "openrouter")["prompt_tokens_details"]
{'cached_tokens': 1000, 'cache_write_tokens': 200}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_claude_relay.emulator.engine import TokenSplit
from langchain_claude_relay.emulator.replies import Reply, split_chunks

__all__ = [
    "DIALECTS",
    "DIALECT_FIELDS",
    "PROMPT_EXCLUDES_CACHED",
    "OPENAI_FINISH_REASONS",
    "StreamEvent",
    "MessageEvent",
    "render_usage",
    "anthropic_usage",
    "openai_body",
    "openai_stream",
    "anthropic_body",
    "anthropic_events",
    "anthropic_stream",
    "message_id",
]

_CACHED = "prompt_tokens_details.cached_tokens"
_ANTHROPIC_FIELDS = {
    "cache_read_input_tokens": "read",
    "cache_creation_input_tokens": "write",
    "cache_creation.ephemeral_5m_input_tokens": "write_5m",
    "cache_creation.ephemeral_1h_input_tokens": "write_1h",
}

DIALECT_FIELDS: dict[str, dict[str, str]] = {
    # every field at once (the default): the normalizer must not double count
    "superset": {_CACHED: "read", **_ANTHROPIC_FIELDS},
    # OpenAI's own shape: reads only, writes are not reported at all
    "openai": {_CACHED: "read"},
    # OpenRouter: writes inside prompt_tokens_details
    "openrouter": {_CACHED: "read", "prompt_tokens_details.cache_write_tokens": "write"},
    # LiteLLM: OpenAI's field plus Anthropic's top-level totals
    "litellm": {
        _CACHED: "read",
        "cache_read_input_tokens": "read",
        "cache_creation_input_tokens": "write",
    },
    # Anthropic-style relays: Anthropic's fields, prompt_tokens excludes cached tokens
    "anthropic": dict(_ANTHROPIC_FIELDS),
    # new-api
    "newapi": {_CACHED: "read", "prompt_tokens_details.cached_creation_tokens": "write"},
    # AxonHub-style: write_cached_tokens
    "axonhub": {_CACHED: "read", "prompt_tokens_details.write_cached_tokens": "write"},
    # one-api forks: a top-level cache_creation_tokens
    "oneapi": {_CACHED: "read", "cache_creation_tokens": "write"},
}

PROMPT_EXCLUDES_CACHED: frozenset[str] = frozenset({"anthropic"})
"""Dialects whose ``prompt_tokens`` counts plain input only."""

DIALECTS: tuple[str, ...] = tuple(DIALECT_FIELDS)
"""Every dialect name, for ``EmulatorSettings(dialect=...)``."""


def _quantities(split: TokenSplit) -> dict[str, int]:
    return {
        "read": split.cache_read,
        "write": split.cache_write,
        "write_5m": split.cache_write_5m,
        "write_1h": split.cache_write_1h,
    }


def render_usage(
    split: TokenSplit, dialect: str = "superset", prompt_excludes_cached: bool | None = None
) -> dict[str, Any]:
    """Render a request's OpenAI-format ``usage`` object in a relay dialect.

    Args:
        split: the request's tokens by kind.
        dialect: one of ``DIALECTS``.
        prompt_excludes_cached: force ``prompt_tokens`` to exclude (``True``) or include
            (``False``) cached tokens; ``None`` keeps the dialect's habit.

    Returns:
        The usage object (``total_tokens`` is ``prompt_tokens + completion_tokens`` as reported).

    Raises:
        ValueError: for an unknown dialect.

    """
    if dialect not in DIALECT_FIELDS:
        msg = f"unknown usage dialect {dialect!r}: choose one of {', '.join(DIALECTS)}"
        raise ValueError(msg)
    excludes = (
        dialect in PROMPT_EXCLUDES_CACHED
        if prompt_excludes_cached is None
        else prompt_excludes_cached
    )
    prompt = split.input_tokens if excludes else split.prompt_total
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": split.output_tokens,
        "total_tokens": prompt + split.output_tokens,
    }
    values = _quantities(split)
    for path, quantity in DIALECT_FIELDS[dialect].items():
        *parents, leaf = path.split(".")
        node = usage
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = values[quantity]
    return usage


def anthropic_usage(split: TokenSplit, inference_geo: str | None = None) -> dict[str, Any]:
    """Anthropic Messages ``usage`` (``input_tokens`` excludes cache reads and writes).

    ``inference_geo``: the request's data residency, echoed as the Claude API echoes it.
    """
    geo = {} if inference_geo is None else {"inference_geo": inference_geo}
    return {
        **geo,
        "input_tokens": split.input_tokens,
        "cache_creation_input_tokens": split.cache_write,
        "cache_read_input_tokens": split.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": split.cache_write_5m,
            "ephemeral_1h_input_tokens": split.cache_write_1h,
        },
        "output_tokens": split.output_tokens,
    }


# ---------------------------------------------------------------------------------- bodies

OPENAI_FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
STREAM_PARTS = 4
"""Pieces a streamed text or tool-call argument string is split into."""


@dataclass(frozen=True)
class StreamEvent:
    """One stream event as sent (SSE text, or AWS event-stream bytes for Bedrock).

    Tagged ``head``, ``content``, ``usage`` (the event that delivers the final usage) or
    ``final``.
    """

    tag: str
    data: str | bytes


def _sse(obj: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def openai_body(
    request_id: str, model: str, created: int, reply: Reply, usage: dict[str, Any]
) -> dict[str, Any]:
    """Render a ``chat.completion`` body."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if reply.tool_calls else reply.text,
        "refusal": None,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": OPENAI_FINISH_REASONS[reply.stop_reason],
        "logprobs": None,
    }
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }


def openai_stream(
    request_id: str, model: str, created: int, reply: Reply, usage: dict[str, Any] | None
) -> list[StreamEvent]:
    """``chat.completion.chunk`` events: role, content pieces, finish, usage (if asked), DONE."""
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": created}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**base, "choices": [choice]})

    events = [StreamEvent("head", chunk({"role": "assistant", "content": ""}))]
    for k, call in enumerate(reply.tool_calls):
        start = {"index": k, "id": call.id, "type": "function"}
        start["function"] = {"name": call.name, "arguments": ""}
        events.append(StreamEvent("content", chunk({"tool_calls": [start]})))
        events.extend(
            StreamEvent(
                "content", chunk({"tool_calls": [{"index": k, "function": {"arguments": p}}]})
            )
            for p in split_chunks(call.arguments, STREAM_PARTS)
        )
    if not reply.tool_calls:
        events.extend(
            StreamEvent("content", chunk({"content": p}))
            for p in split_chunks(reply.text, STREAM_PARTS)
        )
    events.append(StreamEvent("final", chunk({}, OPENAI_FINISH_REASONS[reply.stop_reason])))
    if usage is not None:
        events.append(StreamEvent("usage", _sse({**base, "choices": [], "usage": usage})))
    events.append(StreamEvent("final", "data: [DONE]\n\n"))
    return events


def _anthropic_blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    blocks += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": json.loads(c.arguments)}
        for c in reply.tool_calls
    ]
    if blocks or (reply.stop_reason == "max_tokens" and reply.output_tokens == 0):
        return blocks  # max_tokens 0 (a cache warm-up) answers no content at all
    return [{"type": "text", "text": ""}]


def anthropic_body(
    request_id: str,
    model: str,
    reply: Reply,
    split: TokenSplit,
    extra: Mapping[str, Any] | None = None,
    inference_geo: str | None = None,
) -> dict[str, Any]:
    """Render an Anthropic ``message`` body.

    Args:
        request_id: the emulator's request id (the message id is ``msg_emu_<request_id>``).
        model: the model id to echo.
        reply: the generated reply.
        split: the request's tokens by kind.
        extra: further top-level fields (``diagnostics``), if any.
        inference_geo: the request's data residency, echoed in the usage (``None``: none).

    Returns:
        The message body.

    """
    return {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _anthropic_blocks(reply),
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        **(extra or {}),
        "usage": anthropic_usage(split, inference_geo),
    }


def message_id(request_id: str) -> str:
    """The Anthropic message id of a request (what ``diagnostics.previous_message_id`` names)."""
    return f"msg_emu_{request_id}"


@dataclass(frozen=True)
class MessageEvent:
    """One Anthropic stream event as a dict, tagged like ``StreamEvent``."""

    tag: str
    event: dict[str, Any]


def anthropic_events(
    request_id: str,
    model: str,
    reply: Reply,
    split: TokenSplit,
    extra: Mapping[str, Any] | None = None,
    inference_geo: str | None = None,
) -> list[MessageEvent]:
    """Anthropic's stream events for a reply, as dicts (SSE or AWS event-stream render them).

    message_start (usage with cache fields, and ``extra``), ping, per block
    content_block_start/delta/stop, message_delta (final usage), message_stop. A reply without
    content blocks (``max_tokens`` 0) has no block events.
    """
    start = anthropic_body(request_id, model, reply, split, extra, inference_geo)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"]["output_tokens"] = min(1, split.output_tokens)
    events = [
        MessageEvent("head", {"type": "message_start", "message": start}),
        MessageEvent("head", {"type": "ping"}),
    ]
    for index, block in enumerate(_anthropic_blocks(reply)):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            pieces = [
                {"type": "input_json_delta", "partial_json": p}
                for p in split_chunks(json.dumps(block["input"]), STREAM_PARTS)
            ]
        else:
            opening = {"type": "text", "text": ""}
            pieces = [
                {"type": "text_delta", "text": p} for p in split_chunks(block["text"], STREAM_PARTS)
            ]
        begin = {"type": "content_block_start", "index": index, "content_block": opening}
        events.append(MessageEvent("head", begin))
        events.extend(
            MessageEvent("content", {"type": "content_block_delta", "index": index, "delta": d})
            for d in pieces
        )
        events.append(MessageEvent("head", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence}
    usage = anthropic_usage(split, inference_geo)
    final = {"type": "message_delta", "delta": delta, "usage": usage}
    events.append(MessageEvent("usage", final))
    events.append(MessageEvent("final", {"type": "message_stop"}))
    return events


def anthropic_stream(
    request_id: str,
    model: str,
    reply: Reply,
    split: TokenSplit,
    extra: Mapping[str, Any] | None = None,
    inference_geo: str | None = None,
) -> list[StreamEvent]:
    """Render Anthropic's SSE events for a reply (``anthropic_events`` as ``event:``/``data:``)."""
    return [
        StreamEvent(e.tag, _sse(e.event, e.event["type"]))
        for e in anthropic_events(request_id, model, reply, split, extra, inference_geo)
    ]
