"""The OpenAI chat-completions wire format, as Claude relays take it.

The one place that renders a ``ClaudeRequest`` (with its cache markers) onto the wire, and that
reads a relay's answer back. Markers go where relays look for them:

- on a content part: ``{"type": "text", "text": ..., "cache_control": {...}}`` (system, user,
  assistant text, tool results);
- on a tool: ``{"type": "function", "function": {...}, "cache_control": {...}}``;
- on an entry of an assistant turn's ``tool_calls`` (a ``tool_use`` block has no content part of
  its own in this format): LiteLLM copies ``tool_calls[i].cache_control`` onto the ``tool_use``
  block it builds (BerriAI/litellm ``litellm/litellm_core_utils/prompt_templates/factory.py``,
  ``convert_to_anthropic_tool_invoke``), while it reads a message-level marker of an assistant
  turn only onto a string ``content`` (``anthropic_messages_pt``): so every marked tool call
  carries its own marker, and no message-level marker is sent;
- a top-level ``cache_control`` (automatic caching) as a top-level field of the body, which
  relays that know it (OpenRouter) pass on to Claude.

Thinking: an assistant turn's signed thinking blocks go back unchanged, in both spellings relays
use: LiteLLM's ``thinking_blocks`` (Claude's blocks, put first in the turn by
``anthropic_messages_pt``) and OpenRouter's ``reasoning_details`` (``reasoning.text`` with its
``signature``, ``reasoning.encrypted`` for redacted thinking). Unsigned thinking (reasoning text
without a signature) is never sent: Claude refuses it. Answers are read back the same two ways,
into whole signed blocks in Claude's shape (``ParsedCompletion.thinking_blocks``); a stream's
pieces are assembled by :class:`ChatChunkReader`.

Responses are validated here: anything that is not a chat completion raises
:class:`~langchain_claude_relay.errors.APIResponseError` with the status and a body excerpt. A
tool call answered (or streamed) without an id is given one (:func:`made_up_call_id`), since it
could not be answered otherwise; a legacy ``function_call`` is kept as it came, not made a tool
call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_claude_relay._plumbing import warn_once
from langchain_claude_relay.errors import APIResponseError, RequestValidationError
from langchain_claude_relay.request import (
    Block,
    ClaudeRequest,
    Message,
    Tool,
    canonical_json,
    claude_tool_choice,
)
from langchain_claude_relay.usage import normalize_usage

__all__ = [
    "MAX_TOOL_CALLS",
    "check_tool_call_count",
    "made_up_call_id",
    "render_chat_payload",
    "check_one_top_level_marker",
    "render_tool_choice",
    "render_tool_choice_fields",
    "ChatChunkReader",
    "ParsedCompletion",
    "ParsedChunk",
    "ThinkingPiece",
    "parse_chat_completion",
    "parse_chat_chunk",
    "checked_usage",
]


MAX_TOOL_CALLS = 512
"""The most tool calls one answer may hold; more ends in ``APIResponseError``.

Far above any real parallel tool use (Claude makes a handful at a time), and low enough to
bound what a broken or hostile relay costs: LangChain merges a stream's tool-call chunks by
index, at a cost of (events x distinct indices) once the stream is read -- after the call's
deadline, which can then not stop it -- and every non-streamed tool call becomes several
objects (150,000 of them took 12 s and 330 MB). Streams are checked as they are read (an index
at or above the cap, or more distinct indices than the cap), answers before their calls are
parsed."""


def check_tool_call_count(count: int, where: str, status: int | None, body: Any) -> None:
    """Raise ``APIResponseError`` if an answer holds more than :data:`MAX_TOOL_CALLS` calls.

    Used by both wire formats' parsers and stream readers.

    Args:
        count: the number of tool calls (or the highest index plus one) seen so far.
        where: ``"answered"`` or ``"streamed"``, for the message.
        status: the HTTP status, for the message.
        body: the body, or a callable giving it (serialized only when reporting).

    >>> check_tool_call_count(MAX_TOOL_CALLS, "answered", 200, "")
    >>> check_tool_call_count(MAX_TOOL_CALLS + 1, "answered", 200, "")
    Traceback (most recent call last):
    ...
    langchain_claude_relay.errors.APIResponseError: relay answered more than 512 tool calls ...
    """
    if count <= MAX_TOOL_CALLS:
        return
    msg = (
        f"relay {where} more than {MAX_TOOL_CALLS} tool calls in one answer, which no real "
        "answer holds (a broken relay?)"
    )
    raise APIResponseError(msg, status_code=status, body=body() if callable(body) else body)


def _sorted(value: Any) -> Any:
    """A deep copy with dict keys sorted, so the JSON on the wire is byte-stable."""
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _image_url(source: Mapping[str, Any]) -> str:
    """A base64 or URL source as the URL an ``image_url`` or ``file`` part carries."""
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url":
        return str(source.get("url", ""))
    if source.get("type") == "file":
        msg = (
            f"an uploaded file ({source.get('file_id')!r}) cannot be sent through a relay, which "
            "cannot see your uploads: send the data itself (base64) or a URL, or use "
            "api='anthropic' (Claude's Files API)"
        )
        raise RequestValidationError(msg)
    msg = f"a {source.get('type')!r} source cannot be sent as a URL or as base64 data"
    raise RequestValidationError(msg)


DOCUMENT_KEYS_NOT_SENT = ("citations", "context")
"""A document's keys the OpenAI chat format has no place for: left out, with one warning."""


def _document_parts(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A document as OpenAI content parts.

    A PDF (base64 or URL) is a ``file`` part, its title the ``filename``. A text document (a
    ``text`` or ``content`` source) is its text (and images) as parts, after a part holding its
    title: LiteLLM makes a ``file`` part's data a base64 document of the data's media type,
    which Claude takes only for PDFs (BerriAI/litellm ``prompt_templates/factory.py``,
    ``anthropic_process_openai_file_message``).
    """
    if any(key in data for key in DOCUMENT_KEYS_NOT_SENT):
        warn_once(
            ("openai_document_keys",),
            "a document's citations and context cannot be sent in the OpenAI chat format and "
            "are left out; use api='anthropic' (or Bedrock, Vertex) to send them",
        )
    source = data["source"]
    title = data.get("title")
    if source.get("type") not in ("text", "content"):
        file: dict[str, Any] = {"file_data": _image_url(source)}
        if title:
            file["filename"] = title
        return [{"type": "file", "file": file}]
    parts: list[dict[str, Any]] = [{"type": "text", "text": str(title)}] if title else []
    if source["type"] == "text":
        parts.append({"type": "text", "text": str(source.get("data", ""))})
    else:
        for inner in source.get("content") or ():
            if inner.get("type") == "image":
                parts.append(
                    {"type": "image_url", "image_url": {"url": _image_url(inner["source"])}}
                )
            else:
                parts.append({"type": "text", "text": str(inner.get("text", ""))})
    return parts


def _parts(block: Block) -> list[dict[str, Any]]:
    """One block as OpenAI content parts (a text document: several), its marker on the last."""
    data = block.data
    parts: list[dict[str, Any]]
    if block.type == "text":
        parts = [{"type": "text", "text": data["text"]}]
    elif block.type == "image":
        parts = [{"type": "image_url", "image_url": {"url": _image_url(data["source"])}}]
    elif block.type == "document":
        parts = _document_parts(data)
    else:  # pragma: no cover - callers route other types elsewhere
        msg = f"a {block.type} block is not a content part"
        raise ValueError(msg)
    if block.cache_control is not None:
        parts[-1]["cache_control"] = block.cache_control.to_wire()
    return parts


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
    return [part for b in blocks for part in _parts(b)]


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
        content = [rendered for p in parts for rendered in _result_parts(p)]
    elif not isinstance(content, str):
        content = [rendered for p in content for rendered in _result_parts(p)]
    return {"role": "tool", "tool_call_id": block.data["tool_use_id"], "content": content}


def _result_parts(part: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A part of a tool result as OpenAI content parts, as in a user turn (:func:`_parts`).

    LiteLLM's tool-result converter reads text, ``image_url`` and ``file`` parts only: an image
    or document in Claude's shape would be dropped.
    """
    kind = part.get("type")
    if kind not in ("image", "document") or not isinstance(part.get("source"), Mapping):
        return [dict(part)]
    data = {k: v for k, v in part.items() if k not in ("type", "cache_control")}
    rendered = _parts(Block(kind, data))
    if "cache_control" in part:
        rendered[-1]["cache_control"] = part["cache_control"]
    return rendered


OPENROUTER_CLAUDE_FORMAT = "anthropic-claude-v1"
"""The ``format`` OpenRouter gives Claude's entries of ``reasoning_details`` (and reads back)."""


def _signed(block: Block) -> bool:
    """Whether Claude takes this thinking block back: signed thinking, or redacted thinking."""
    key = "signature" if block.type == "thinking" else "data"
    value = block.data.get(key)
    return isinstance(value, str) and bool(value)


def _reasoning_detail(block: Block, index: int) -> dict[str, Any]:
    """A signed thinking block as an entry of OpenRouter's ``reasoning_details``."""
    if block.type == "redacted_thinking":
        detail: dict[str, Any] = {"type": "reasoning.encrypted", "data": block.data["data"]}
    else:
        detail = {
            "type": "reasoning.text",
            "text": str(block.data.get("thinking", "")),
            "signature": block.data["signature"],
        }
    return {**detail, "format": OPENROUTER_CLAUDE_FORMAT, "index": index}


def _tool_call_entry(block: Block) -> dict[str, Any]:
    """A ``tool_use`` block as an entry of ``tool_calls``, with its own marker."""
    entry: dict[str, Any] = {
        "id": block.data["id"],
        "type": "function",
        "function": {"name": block.data["name"], "arguments": canonical_json(block.data["input"])},
    }
    if block.cache_control is not None:
        entry["cache_control"] = block.cache_control.to_wire()
    return entry


def _assistant_message(message: Message, canonical: bool) -> dict[str, Any]:
    parts = [b for b in message.content if b.type in ("text", "image", "document")]
    thinking = [
        b for b in message.content if b.type in ("thinking", "redacted_thinking") and _signed(b)
    ]
    calls = [b for b in message.content if b.type == "tool_use"]
    rendered: dict[str, Any] = {
        "role": "assistant",
        "content": _content(parts, canonical) if parts else None,
    }
    if thinking:
        rendered["thinking_blocks"] = [{"type": b.type, **b.data} for b in thinking]
        rendered["reasoning_details"] = [_reasoning_detail(b, i) for i, b in enumerate(thinking)]
    if calls:
        rendered["tool_calls"] = [_tool_call_entry(b) for b in calls]
    if rendered["content"] is None and not calls:
        rendered["content"] = ""
    return rendered


def _function_choice(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def render_tool_choice_fields(tool_choice: Any) -> dict[str, Any]:
    """``tool_choice`` (and ``parallel_tool_calls``) in OpenAI's spelling, for the request body.

    The choice is read by :func:`~langchain_claude_relay.request.claude_tool_choice` (the one
    reading of every spelling), then written the way relays map OpenAI's back to Claude's
    (BerriAI/litellm ``litellm/llms/anthropic/chat/transformation.py``, ``map_openai_params``:
    ``tool_choice`` and ``parallel_tool_calls`` together make Claude's ``tool_choice``):
    ``{"type": "tool", "name": N}`` -> ``{"type": "function", "function": {"name": N}}``,
    ``{"type": "any"}`` -> ``"required"``, ``{"type": "auto"}`` / ``{"type": "none"}`` -> the
    string, and ``disable_parallel_tool_use: True`` -> ``parallel_tool_calls: False``.

    >>> render_tool_choice_fields({"type": "auto", "disable_parallel_tool_use": True})
    {'tool_choice': 'auto', 'parallel_tool_calls': False}
    >>> render_tool_choice_fields({"type": "tool", "name": "get_weather"})
    {'tool_choice': {'type': 'function', 'function': {'name': 'get_weather'}}}

    Returns:
        The fields to add to the body (none for no tool choice).

    Raises:
        RequestValidationError: for a tool choice that is not understood (never sent as given).
    """
    try:
        choice = claude_tool_choice(tool_choice)
    except ValueError as exc:
        raise RequestValidationError(str(exc)) from None
    if choice is None:
        return {}
    kind = choice["type"]
    fields: dict[str, Any] = {
        "tool_choice": _function_choice(choice["name"])
        if kind == "tool"
        else ("required" if kind == "any" else kind)
    }
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        fields["parallel_tool_calls"] = False
    return fields


def render_tool_choice(tool_choice: Any) -> Any:
    """LangChain/Claude tool choices in OpenAI's spelling (``"any"`` -> ``"required"``).

    ``parallel_tool_calls`` is left out: see :func:`render_tool_choice_fields`.
    """
    return render_tool_choice_fields(tool_choice).get("tool_choice")


def render_chat_payload(request: ClaudeRequest, *, canonical: bool = True) -> dict[str, Any]:
    """``model``, ``messages``, ``tools`` and ``tool_choice`` for ``chat.completions.create``.

    A tool choice that forbids parallel tool use also sets ``parallel_tool_calls: False``. With no
    tools there is no ``tool_choice`` (nor ``parallel_tool_calls``): it means nothing then, as
    the Messages format has it, and OpenAI-schema validators refuse a ``tool_choice`` without
    ``tools`` (a choice that asks for a tool call was refused before: ``check_tool_choice``).

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
    choice_fields = render_tool_choice_fields(request.tool_choice)  # checked with or without tools
    if request.tools:
        payload["tools"] = [_tool(t, canonical) for t in request.tools]
        payload.update(choice_fields)
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
    """Complete thinking blocks with their signatures, in Claude's shape (the native API and
    relays return them; they must be sent back unchanged in later turns). Unsigned thinking is
    not among them: it is only ``reasoning``."""
    diagnostics: Mapping[str, Any] | None = None
    """The native API's ``diagnostics`` object (``cache_miss_reason``), when present."""
    function_call: Mapping[str, Any] | None = None
    """A legacy ``function_call`` of the message (``{"name", "arguments"}``), as it came: for
    ``additional_kwargs["function_call"]``, as ChatOpenAI keeps it (not a tool call)."""
    refusal: str | None = None
    """OpenAI's ``message.refusal`` text, which some relays fill when Claude refused: for
    ``additional_kwargs["refusal"]``, as ChatOpenAI keeps it (a standard refusal block)."""


def _reasoning_of(message: Mapping[str, Any]) -> str | None:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    for key, text_key in (("thinking_blocks", "thinking"), ("reasoning_details", "text")):
        blocks = message.get(key)
        if isinstance(blocks, list):
            text = "".join(_text_field(b, text_key) for b in blocks if isinstance(b, Mapping))
            if text:
                return text
    return None


@dataclass(frozen=True)
class ThinkingPiece:
    """One piece of thinking as a relay sends it, in Claude's terms.

    Whole blocks in a non-streamed answer; in a stream, LiteLLM sends a block's text in pieces
    and its signature last, in a piece of its own (``thinking_blocks`` of each delta, without an
    index: BerriAI/litellm ``litellm/llms/anthropic/chat/handler.py``, ``ModelResponseIterator``),
    and OpenRouter the same with the block's ``index`` (``reasoning_details`` of each delta).

    Attributes:
        type: ``"thinking"`` or ``"redacted_thinking"`` (always whole).
        index: the block's index where the relay gives one (OpenRouter), else ``None``.
        thinking: text of a thinking block (or a piece of it).
        signature: the signature, once it comes ("" before).
        data: the opaque data of a redacted thinking block.
    """

    type: str
    index: int | None = None
    thinking: str = ""
    signature: str = ""
    data: str = ""

    def whole(self) -> dict[str, Any] | None:
        """The block in Claude's shape if it can go back to Claude: signed, or redacted."""
        if self.type == "redacted_thinking":
            return {"type": "redacted_thinking", "data": self.data} if self.data else None
        if not self.signature:
            return None
        return {"type": "thinking", "thinking": self.thinking, "signature": self.signature}


def _text_field(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    return value if isinstance(value, str) else ""


def _litellm_piece(entry: Mapping[str, Any]) -> ThinkingPiece | None:
    """An entry of LiteLLM's ``thinking_blocks`` (Claude's block shape)."""
    if entry.get("type") == "redacted_thinking":
        return ThinkingPiece("redacted_thinking", data=_text_field(entry, "data"))
    if entry.get("type") == "thinking":
        thinking, signature = _text_field(entry, "thinking"), _text_field(entry, "signature")
        return ThinkingPiece("thinking", thinking=thinking, signature=signature)
    return None


def _openrouter_piece(entry: Mapping[str, Any]) -> ThinkingPiece | None:
    """An entry of OpenRouter's ``reasoning_details`` (``reasoning.summary`` is not thinking)."""
    raw_index = entry.get("index")
    index = raw_index if type(raw_index) is int else None
    if entry.get("type") == "reasoning.encrypted":
        return ThinkingPiece("redacted_thinking", index, data=_text_field(entry, "data"))
    if entry.get("type") == "reasoning.text":
        text, signature = _text_field(entry, "text"), _text_field(entry, "signature")
        return ThinkingPiece("thinking", index, thinking=text, signature=signature)
    return None


def _thinking_pieces(message: Mapping[str, Any]) -> list[ThinkingPiece]:
    """The thinking a message or delta carries.

    LiteLLM's ``thinking_blocks`` if any, else OpenRouter's ``reasoning_details``. Entries that
    are not well-formed are skipped: thinking is never worth failing a call.
    """
    readers = (("thinking_blocks", _litellm_piece), ("reasoning_details", _openrouter_piece))
    for key, read in readers:
        entries = message.get(key)
        if isinstance(entries, list) and entries:
            pieces = (read(e) for e in entries if isinstance(e, Mapping))
            return [p for p in pieces if p is not None]
    return []


def _whole_blocks(pieces: list[ThinkingPiece]) -> list[dict[str, Any]]:
    return [block for piece in pieces if (block := piece.whole()) is not None]


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


def made_up_call_id() -> str:
    """An id for a tool call a relay answered without one: Claude's prefix, then random.

    Without an id the call cannot be answered: LangChain's ``ToolMessage`` needs its
    ``tool_call_id``, and Claude a ``tool_use`` id for the ``tool_result``. Random, not drawn
    from the answer's id: a relay that leaves ids out may well send one answer id for every
    answer, and two calls of one conversation with one id are a 400 ("`tool_use` ids must be
    unique").

    >>> made_up_call_id().startswith("toolu_"), made_up_call_id() != made_up_call_id()
    (True, True)
    """
    return "toolu_" + uuid.uuid4().hex[:24]


def _tool_call(raw: Mapping[str, Any], status: int, body: Any) -> dict[str, Any]:
    """One complete tool call in OpenAI's shape, checked (name, JSON arguments, id).

    A call without an id is given one (:func:`made_up_call_id`): it could not be answered.
    """
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
    call_id = _optional_str(raw.get("id"), "id", "answered", status, body)
    return {
        "id": call_id or made_up_call_id(),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _dumped(chunk: Any) -> str:
    return json.dumps(chunk, default=str)


def _tool_call_delta(raw: Mapping[str, Any], chunk: Any) -> dict[str, Any]:
    """One streamed tool-call delta, checked: every field optional, but of the right type."""

    def body() -> str:
        return json.dumps(chunk, default=str)

    index = raw.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        msg = "relay streamed a tool-call delta whose index is not an integer"
        raise APIResponseError(msg, status_code=200, body=body())
    if index is not None:
        check_tool_call_count(index + 1, "streamed", 200, body)
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
    check_tool_call_count(len(raw_calls), "answered", status_code, excerpt_source)
    usage = checked_usage(body.get("usage"), "answered", status_code, excerpt_source)
    response_id = body.get("id") if isinstance(body.get("id"), str) else None
    return ParsedCompletion(
        id=response_id,
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
        thinking_blocks=_whole_blocks(_thinking_pieces(message)),
        function_call=_legacy_function_call(message),
        refusal=_refusal_of(message),
    )


def _refusal_of(message: Mapping[str, Any]) -> str | None:
    """OpenAI's ``refusal`` text of a message or a streamed delta, if a non-empty string."""
    refusal = message.get("refusal")
    return refusal if isinstance(refusal, str) and refusal else None


def _legacy_function_call(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """A legacy ``function_call`` (``{name, arguments}``) of a message, kept as it came.

    Older relays answer OpenAI's deprecated function calling this way. It is not a tool call
    (it has no id to answer), but it is not dropped either: ChatOpenAI keeps it in
    ``additional_kwargs["function_call"]``.
    """
    function_call = message.get("function_call")
    if not isinstance(function_call, Mapping):
        return None
    return dict(function_call)


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
    """Thinking blocks completed by this event, with their signatures (a stream reader fills
    them in: :class:`ChatChunkReader` from ``thinking_pieces``)."""
    diagnostics: Mapping[str, Any] | None = None
    """The native API's ``diagnostics`` object, when this event carries it."""
    thinking_pieces: list[ThinkingPiece] = field(default_factory=list)
    """The pieces of thinking blocks this chunk carries (a relay's, not yet assembled)."""
    refusal: str | None = None
    """A piece of OpenAI's ``delta.refusal`` text (see ``ParsedCompletion.refusal``)."""
    text_index: int | None = None
    """Claude's content-block index of the text this chunk carries (``None``: not known)."""
    reasoning_index: int | None = None
    """Claude's content-block index of the reasoning this chunk carries (``None``: not known)."""


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
    pieces: list[ThinkingPiece] = []
    finish: str | None = None
    refusal: str | None = None
    if choices and isinstance(choices[0], Mapping):
        choice = choices[0]
        delta = choice.get("delta") or {}
        if isinstance(delta, Mapping):
            content = _text_of(delta.get("content"), "streamed content", 200, chunk)
            reasoning = _reasoning_of(delta)
            pieces = _thinking_pieces(delta)
            refusal = _refusal_of(delta)
            raw = delta.get("tool_calls") or []
            if isinstance(raw, list):
                check_tool_call_count(len(raw), "streamed", 200, lambda: _dumped(chunk))
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
        thinking_pieces=pieces,
        refusal=refusal,
    )


class ChatChunkReader:
    """Reads a chat-completion stream, assembling thinking blocks from their pieces.

    Everything else a chunk means it carries by itself. Thinking comes in pieces (see
    :class:`ThinkingPiece`): a block's text is gathered, by index where the relay gives one,
    until its signature comes; then the whole block is reported once, in ``thinking_blocks``,
    so that adding the stream's ``AIMessageChunk`` objects appends each block once. Text that
    never gets a signature stays reasoning text only.

    Blocks are numbered as Claude numbers its content blocks (and the native ways in report
    them), in the order they come: each run of reasoning or of text is one block, each tool
    call another (``text_index``, ``reasoning_index``, and the tool-call deltas' ``index``).
    Relays number tool calls from 0, which LangChain's ``output_version="v1"`` streaming would
    merge into the text block it numbers the same.
    """

    def __init__(self) -> None:
        self._texts: dict[int | None, list[str]] = {}
        self._tool_indices: set[int] = set()
        # by index, the id made up here for each started call (None: the relay gave one)
        self._made_up_ids: dict[int, str | None] = {}
        self._blocks = 0  # content blocks numbered so far
        self._run: tuple[str, int] | None = None  # the open run of reasoning or text, its block
        self._tool_blocks: dict[int, int] = {}  # a relay's tool-call index -> its block
        self._last_call: int | None = None  # the relay index of the call last streamed

    def _run_index(self, kind: str) -> int:
        """The block of a piece of reasoning or text: the open run's, or a new one."""
        if self._run is None or self._run[0] != kind:
            self._run = (kind, self._blocks)
            self._blocks += 1
        return self._run[1]

    def _with_relay_index(self, delta: dict[str, Any]) -> dict[str, Any]:
        """A tool-call delta with an index, if the relay gave none.

        A delta with an id or a name starts a call (the next free index); one with neither
        continues the last call. Without an index LangChain took every delta for a call of its
        own, and a call's later arguments were lost.
        """
        if delta["index"] is not None:
            self._last_call = delta["index"]
            return delta
        if delta["id"] or delta["function"]["name"] or self._last_call is None:
            self._last_call = max(self._tool_indices, default=-1) + 1
            self._tool_indices.add(self._last_call)
        return {**delta, "index": self._last_call}

    def _numbered(self, delta: dict[str, Any]) -> dict[str, Any]:
        """A tool-call delta with its block index (a new call's is the next block)."""
        index = delta["index"]
        if index not in self._tool_blocks:
            self._tool_blocks[index] = self._blocks
            self._blocks += 1
            self._run = None  # reasoning or text after a call is a block of its own
        return {**delta, "index": self._tool_blocks[index]}

    def _with_call_id(self, delta: dict[str, Any]) -> dict[str, Any]:
        """A tool-call delta, with an id made up for a call the relay started without one.

        LangChain merges a call's deltas by index and joins the ids it finds, so a call gets
        one id, on the delta that starts it (the one with the name), and never a second: a
        later id for a call given one here is left out. Every delta has an index by now
        (``_with_relay_index``).
        """
        index = delta["index"]
        if delta["id"]:
            if self._made_up_ids.setdefault(index, None) is not None:
                return {**delta, "id": None}
            return delta
        if not delta["function"]["name"] or index in self._made_up_ids:
            return delta  # a continuation of a call
        call_id = made_up_call_id()
        self._made_up_ids[index] = call_id
        return {**delta, "id": call_id}

    def read(self, event: Any) -> ParsedChunk:
        """Validate and read one streamed chunk (see :func:`parse_chat_chunk`).

        Raises:
            APIResponseError: as :func:`parse_chat_chunk`, and once the stream's tool calls
                (distinct indices) are more than :data:`MAX_TOOL_CALLS`.
        """
        parsed = parse_chat_chunk(event)
        if parsed.reasoning or parsed.thinking_pieces:
            parsed = replace(parsed, reasoning_index=self._run_index("reasoning"))
        if parsed.content:
            parsed = replace(parsed, text_index=self._run_index("text"))
        if parsed.tool_call_deltas:
            indexed = [self._with_relay_index(d) for d in parsed.tool_call_deltas]
            seen = self._tool_indices
            seen.update(d["index"] for d in indexed)
            check_tool_call_count(len(seen), "streamed", 200, lambda: _dumped(event))
            deltas = [self._numbered(self._with_call_id(d)) for d in indexed]
            parsed = replace(parsed, tool_call_deltas=deltas)
        if not parsed.thinking_pieces:
            return parsed
        done: list[dict[str, Any]] = []
        for piece in parsed.thinking_pieces:
            if piece.type == "redacted_thinking":
                block = piece.whole()
            else:
                self._texts.setdefault(piece.index, []).append(piece.thinking)
                block = None
                if piece.signature:
                    text = "".join(self._texts.pop(piece.index))
                    block = replace(piece, thinking=text).whole()
            if block is not None:
                done.append(block)
        return replace(parsed, thinking_blocks=done) if done else parsed
