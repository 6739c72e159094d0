"""The OpenAI chat-completions wire format, as Claude relays take it.

The one place that renders a ``ClaudeRequest`` (with its cache markers) onto the wire, and that
reads a relay's answer back. Markers go where relays look for them:

- on a content part: ``{"type": "text", "text": ..., "cache_control": {...}}`` (system, user,
  assistant text, tool results);
- on a tool: ``{"type": "function", "function": {...}, "cache_control": {...}}``;
- on the message, for blocks that have no content part of their own in this format (an
  assistant turn's last ``tool_use``): relays read a message-level marker as "its last part";
- a top-level ``cache_control`` (automatic caching) as a top-level field of the body, which
  relays that know it (OpenRouter) pass on to Claude.

Responses are validated here: anything that is not a chat completion raises
:class:`~langchain_claude_relay.errors.APIResponseError` with the status and a body excerpt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_claude_relay.errors import APIResponseError, RequestValidationError
from langchain_claude_relay.request import Block, ClaudeRequest, Message, Tool, canonical_json
from langchain_claude_relay.usage import normalize_usage

__all__ = [
    "render_chat_payload",
    "check_one_top_level_marker",
    "render_tool_choice",
    "ParsedCompletion",
    "ParsedChunk",
    "parse_chat_completion",
    "parse_chat_chunk",
    "checked_usage",
]


def _sorted(value: Any) -> Any:
    """A deep copy with dict keys sorted, so the JSON on the wire is byte-stable."""
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _image_url(source: Mapping[str, Any]) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    return str(source.get("url", ""))


def _part(block: Block) -> dict[str, Any]:
    """One block as an OpenAI content part (with its marker)."""
    data = block.data
    part: dict[str, Any]
    if block.type == "text":
        part = {"type": "text", "text": data["text"]}
    elif block.type == "image":
        part = {"type": "image_url", "image_url": {"url": _image_url(data["source"])}}
    elif block.type == "document":
        file: dict[str, Any] = {"file_data": _image_url(data["source"])}
        if data.get("title"):
            file["filename"] = data["title"]
        part = {"type": "file", "file": file}
    else:  # pragma: no cover - callers route other types elsewhere
        msg = f"a {block.type} block is not a content part"
        raise ValueError(msg)
    if block.cache_control is not None:
        part["cache_control"] = block.cache_control.to_wire()
    return part


def _content(blocks: list[Block], canonical: bool) -> str | list[dict[str, Any]]:
    """Content parts; a plain string for one unmarked text block only when not ``canonical``.

    When caching, the shape must not depend on where the markers are: a block sent as a string
    on one call and as a marked part on the next is different bytes to a relay that copies the
    shape through, and the earlier write would never be read.
    """
    if (
        not canonical
        and len(blocks) == 1
        and blocks[0].type == "text"
        and blocks[0].cache_control is None
    ):
        return str(blocks[0].data["text"])
    return [_part(b) for b in blocks]


def _tool(tool: Tool, canonical: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = _sorted(tool.parameters) if canonical else dict(tool.parameters)
    function.update(tool.extra)
    rendered: dict[str, Any] = {"type": "function", "function": function}
    if tool.cache_control is not None:
        rendered["cache_control"] = tool.cache_control.to_wire()
    return rendered


def _tool_result_message(block: Block, canonical: bool) -> dict[str, Any]:
    content: Any = block.data.get("content", "")
    if block.cache_control is not None or (canonical and isinstance(content, str)):
        parts: list[dict[str, Any]] = (
            [{"type": "text", "text": content}]
            if isinstance(content, str)
            else [dict(p) for p in content]
        )
        if not parts:
            parts = [{"type": "text", "text": ""}]
        if block.cache_control is not None:  # the marker rides on the last part
            parts[-1] = {**parts[-1], "cache_control": block.cache_control.to_wire()}
        content = [_result_part(p) for p in parts]
    elif not isinstance(content, str):
        content = [_result_part(p) for p in content]
    return {"role": "tool", "tool_call_id": block.data["tool_use_id"], "content": content}


def _result_part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image" and isinstance(part.get("source"), Mapping):
        rendered: dict[str, Any] = {
            "type": "image_url",
            "image_url": {"url": _image_url(part["source"])},
        }
        if "cache_control" in part:
            rendered["cache_control"] = part["cache_control"]
        return rendered
    return dict(part)


def _assistant_message(message: Message, canonical: bool) -> dict[str, Any]:
    parts = [b for b in message.content if b.type in ("text", "image", "document")]
    thinking = [b for b in message.content if b.type in ("thinking", "redacted_thinking")]
    calls = [b for b in message.content if b.type == "tool_use"]
    rendered: dict[str, Any] = {
        "role": "assistant",
        "content": _content(parts, canonical) if parts else None,
    }
    if thinking:
        rendered["thinking_blocks"] = [{"type": b.type, **b.data} for b in thinking]
    if calls:
        rendered["tool_calls"] = [
            {
                "id": b.data["id"],
                "type": "function",
                "function": {"name": b.data["name"], "arguments": canonical_json(b.data["input"])},
            }
            for b in calls
        ]
        if calls[-1].cache_control is not None and message.content[-1] is calls[-1]:
            rendered["cache_control"] = calls[-1].cache_control.to_wire()
    if rendered["content"] is None and not calls:
        rendered["content"] = ""
    return rendered


def render_tool_choice(tool_choice: Any) -> Any:
    """LangChain/Claude tool choices in OpenAI's spelling (``"any"`` -> ``"required"``)."""
    if tool_choice is None or isinstance(tool_choice, Mapping):
        return tool_choice
    if tool_choice is True or tool_choice in ("any", "required"):
        return "required"
    if tool_choice in ("auto", "none"):
        return tool_choice
    if isinstance(tool_choice, str):
        return {"type": "function", "function": {"name": tool_choice}}
    msg = f"tool_choice {tool_choice!r} is not understood: use 'auto', 'any', 'none' or a tool name"
    raise RequestValidationError(msg)


def render_chat_payload(request: ClaudeRequest, *, canonical: bool = True) -> dict[str, Any]:
    """``model``, ``messages``, ``tools`` and ``tool_choice`` for ``chat.completions.create``.

    Args:
        request: the request, with the cache markers it should carry.
        canonical: make the wire bytes stable across calls whatever the markers (on when
            caching): tool schemas with sorted keys, content always as a list of parts. Off,
            tool schemas go as the user wrote them and a lone text block as a plain string.

    Returns:
        The payload (other sampling settings are added by the caller).
    """
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _content(list(request.system), canonical)})
    for message in request.messages:
        if message.role == "assistant":
            messages.append(_assistant_message(message, canonical))
        elif message.content and all(b.type == "tool_result" for b in message.content):
            messages.extend(_tool_result_message(b, canonical) for b in message.content)
        else:
            messages.append({"role": "user", "content": _content(list(message.content), canonical)})
    payload: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.tools:
        payload["tools"] = [_tool(t, canonical) for t in request.tools]
    choice = render_tool_choice(request.tool_choice)
    if choice is not None:
        payload["tool_choice"] = choice
    if request.cache_control is not None:
        payload["cache_control"] = request.cache_control.to_wire()
    return payload


def check_one_top_level_marker(request: ClaudeRequest, params: Mapping[str, Any]) -> None:
    """Refuse a top-level ``cache_control`` given twice: on the request and in the settings.

    Raises:
        RequestValidationError: if both carry one (model_kwargs / extra_body would replace the
            request's silently, and the planner counted the request's).
    """
    if request.cache_control is not None and "cache_control" in params:
        msg = (
            "the request already carries a top-level cache_control (automatic caching): give "
            "it once, not also in model_kwargs/extra_body"
        )
        raise RequestValidationError(msg)


@dataclass(frozen=True)
class ParsedCompletion:
    """A validated chat completion, reduced to what a chat model needs."""

    id: str | None
    model: str | None
    content: str
    tool_calls: list[dict[str, Any]]
    reasoning: str | None
    finish_reason: str | None
    usage: Mapping[str, Any] | None
    raw_tool_calls: list[Any] = field(default_factory=list)
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)
    """Complete thinking blocks with their signatures (the native API returns them; they must
    be sent back unchanged in later turns)."""
    diagnostics: Mapping[str, Any] | None = None
    """The native API's ``diagnostics`` object (``cache_miss_reason``), when present."""


def _reasoning_of(message: Mapping[str, Any]) -> str | None:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list):
        text = "".join(str(b.get("thinking", "")) for b in blocks if isinstance(b, Mapping))
        return text or None
    return None


def _text_of(content: Any, where: str, status: int | None, body: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in content
        )
    msg = f"{where} is neither text nor a list of parts"
    raise APIResponseError(msg, status_code=status, body=body)


def checked_usage(
    usage: Any, where: str, status: int | None, body: Any, *, dump: bool = False
) -> Mapping[str, Any] | None:
    """The usage object, validated now so that garbage is reported with its status and body.

    Used by both wire formats' parsers.

    ``dump``: ``body`` is a decoded chunk, serialized for the excerpt only when reporting.
    """
    if usage is None:
        return None
    problem: str | None = None
    if not isinstance(usage, Mapping):
        problem = f"relay {where} 'usage' that is not an object"
    else:
        try:
            normalize_usage(usage)
        except APIResponseError as exc:
            problem = str(exc)
    if problem is not None:
        excerpt_source = json.dumps(body, default=str) if dump else body
        raise APIResponseError(problem, status_code=status, body=excerpt_source)
    return usage  # type: ignore[no-any-return]  # checked to be a Mapping above


def _arguments(
    raw: Any, where: str, status: int | None, body: Any, *, default: str | None
) -> str | None:
    """Tool-call arguments as JSON text (an object some relays send is serialized)."""
    if raw is None:
        return default
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping):
        return json.dumps(raw, default=str)
    msg = f"relay {where} tool-call arguments that are neither JSON text nor an object"
    raise APIResponseError(msg, status_code=status, body=body)


def _optional_str(raw: Any, what: str, where: str, status: int | None, body: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    msg = f"relay {where} a tool call whose {what} is not a string"
    raise APIResponseError(msg, status_code=status, body=body)


def _tool_call(raw: Mapping[str, Any], status: int, body: Any) -> dict[str, Any]:
    """One complete tool call in OpenAI's shape, checked (name, JSON arguments, id)."""
    function = raw.get("function")
    if not isinstance(function, Mapping):
        msg = "relay answered a tool call without a 'function' object"
        raise APIResponseError(msg, status_code=status, body=body)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        msg = "relay answered a tool call without a function name"
        raise APIResponseError(msg, status_code=status, body=body)
    arguments = _arguments(function.get("arguments"), "answered", status, body, default="{}")
    try:
        decoded = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        decoded = None  # not JSON: LangChain reports it as an invalid tool call
    if decoded is not None and not isinstance(decoded, Mapping):
        msg = "relay answered tool-call arguments that are JSON but not an object"
        raise APIResponseError(msg, status_code=status, body=body)
    return {
        "id": _optional_str(raw.get("id"), "id", "answered", status, body),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _tool_call_delta(raw: Mapping[str, Any], chunk: Any) -> dict[str, Any]:
    """One streamed tool-call delta, checked: every field optional, but of the right type."""

    def body() -> str:
        return json.dumps(chunk, default=str)

    index = raw.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        msg = "relay streamed a tool-call delta whose index is not an integer"
        raise APIResponseError(msg, status_code=200, body=body())
    function = raw.get("function")
    if function is None:
        function = {}
    if not isinstance(function, Mapping):
        msg = "relay streamed a tool-call delta whose 'function' is not an object"
        raise APIResponseError(msg, status_code=200, body=body())
    try:
        return {
            "index": index,
            "id": _optional_str(raw.get("id"), "id", "streamed", None, None),
            "type": "function",
            "function": {
                "name": _optional_str(function.get("name"), "name", "streamed", None, None),
                "arguments": _arguments(
                    function.get("arguments"), "streamed", None, None, default=None
                ),
            },
        }
    except APIResponseError as exc:
        raise APIResponseError(str(exc), status_code=200, body=body()) from None


def parse_chat_completion(
    body: Any, *, status_code: int = 200, text: str | None = None
) -> ParsedCompletion:
    """Validate and read a non-streaming chat completion.

    Args:
        body: the decoded JSON body.
        status_code: the HTTP status, for error messages.
        text: the raw body text, for error excerpts.

    Returns:
        The parsed completion.

    Raises:
        APIResponseError: if the body is not a chat completion (no ``choices``, wrong types) or
            its usage is garbage (see :func:`~langchain_claude_relay.usage.normalize_usage`).
    """
    excerpt_source = text if text is not None else body
    if not isinstance(body, Mapping):
        msg = "relay answered JSON that is not an object"
        raise APIResponseError(msg, status_code=status_code, body=excerpt_source)
    if "error" in body and "choices" not in body:
        msg = "relay answered an error object with a success status"
        raise APIResponseError(msg, status_code=status_code, body=excerpt_source)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        msg = "relay answered JSON without 'choices'"
        raise APIResponseError(msg, status_code=status_code, body=excerpt_source)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        msg = "relay answered a choice without a 'message'"
        raise APIResponseError(msg, status_code=status_code, body=excerpt_source)
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        msg = "relay answered 'tool_calls' that is not a list"
        raise APIResponseError(msg, status_code=status_code, body=excerpt_source)
    usage = checked_usage(body.get("usage"), "answered", status_code, excerpt_source)
    return ParsedCompletion(
        id=body.get("id") if isinstance(body.get("id"), str) else None,
        model=body.get("model") if isinstance(body.get("model"), str) else None,
        content=_text_of(message.get("content"), "message content", status_code, excerpt_source),
        tool_calls=[
            _tool_call(c, status_code, excerpt_source) for c in raw_calls if isinstance(c, Mapping)
        ],
        reasoning=_reasoning_of(message),
        finish_reason=choice.get("finish_reason")
        if isinstance(choice.get("finish_reason"), str)
        else None,
        usage=usage,
        raw_tool_calls=raw_calls,
    )


@dataclass(frozen=True)
class ParsedChunk:
    """One streamed chunk: text, reasoning and tool-call deltas, and usage if present."""

    id: str | None
    model: str | None
    content: str
    reasoning: str | None
    tool_call_deltas: list[dict[str, Any]]
    finish_reason: str | None
    usage: Mapping[str, Any] | None
    thinking_blocks: list[dict[str, Any]] = field(default_factory=list)
    """Thinking blocks completed by this event, with their signatures (native API streams)."""
    diagnostics: Mapping[str, Any] | None = None
    """The native API's ``diagnostics`` object, when this event carries it."""


def parse_chat_chunk(chunk: Any) -> ParsedChunk:
    """Validate and read one streamed ``chat.completion.chunk``.

    Raises:
        APIResponseError: if the chunk is not a chat completion chunk or its usage is garbage.
    """
    if not isinstance(chunk, Mapping):
        msg = "relay streamed a chunk that is not a JSON object"
        raise APIResponseError(msg, status_code=200, body=json.dumps(chunk, default=str)[:300])
    if "error" in chunk and "choices" not in chunk:
        msg = "relay streamed an error"
        raise APIResponseError(msg, status_code=200, body=json.dumps(chunk, default=str))
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        msg = "relay streamed 'choices' that is not a list"
        raise APIResponseError(msg, status_code=200, body=json.dumps(chunk, default=str))
    usage = checked_usage(chunk.get("usage"), "streamed", 200, chunk, dump=True)
    content = ""
    reasoning: str | None = None
    deltas: list[dict[str, Any]] = []
    finish: str | None = None
    if choices and isinstance(choices[0], Mapping):
        choice = choices[0]
        delta = choice.get("delta") or {}
        if isinstance(delta, Mapping):
            content = _text_of(delta.get("content"), "streamed content", 200, chunk)
            reasoning = _reasoning_of(delta)
            raw = delta.get("tool_calls") or []
            if isinstance(raw, list):
                deltas = [_tool_call_delta(d, chunk) for d in raw if isinstance(d, Mapping)]
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
    return ParsedChunk(
        id=chunk.get("id") if isinstance(chunk.get("id"), str) else None,
        model=chunk.get("model") if isinstance(chunk.get("model"), str) else None,
        content=content,
        reasoning=reasoning,
        tool_call_deltas=deltas,
        finish_reason=finish,
        usage=usage,
    )
