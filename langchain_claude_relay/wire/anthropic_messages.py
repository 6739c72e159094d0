"""The Anthropic Messages wire format (``POST /v1/messages``): native API, Anthropic-style relays.

Renders a ``ClaudeRequest`` (with its cache markers) as a Messages request body, and reads a
``message`` body or its server-sent events back into the ``ParsedCompletion`` / ``ParsedChunk``
that the OpenAI chat format produces, so the chat model handles both formats alike.

Rendering:

- a marker rides on the block that carries it (tool, system text, text, image, document,
  ``tool_use``, ``tool_result``): the body carries exactly the request's markers. A
  ``cache_control`` found inside a ``tool_result``'s content parts is dropped: Claude's marker for
  a tool result goes on the ``tool_result`` block, and one the planner cannot see could push the
  request over the limit of four.
- a ``tool_result`` with ``native_content`` (a tool's ``search_result`` blocks, see
  ``_convert``) sends that as its ``content``: Claude's own blocks, which it can cite, where the
  OpenAI format sends them as text.
- content is always a list of blocks, whatever the markers, so the bytes do not change when a
  marker moves; consecutive turns of one role are merged (the tool results answering one
  assistant turn must all come in the next user turn); empty text blocks are dropped (Claude
  rejects them) unless that would leave a turn empty; thinking blocks without a signature
  (reasoning text from another API) are dropped, since Claude accepts only signed ones back.
- with ``canonical`` (the default) tool schemas and ``tool_use`` inputs are sent with sorted keys:
  the planner hashes them key-order-blind, so the wire must not differ where the hash does not.

Reading: tool calls come back in OpenAI's shape (``{"id", "type": "function", "function":
{"name", "arguments"}}``) so the chat model's tool-call parsing applies; thinking blocks come back
whole, with their signatures, to be sent back unchanged. Anything that is not a message raises
:class:`~langchain_claude_relay.errors.APIResponseError` with the status and a body excerpt; an
``error`` event in a stream raises the typed status error its type names (``overloaded_error`` ->
529, ``rate_limit_error`` -> 429, ...).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_claude_relay._structured import objects_closed
from langchain_claude_relay.errors import (
    ERROR_TYPE_STATUS,
    APIResponseError,
    RequestValidationError,
    make_status_error,
)
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Tool,
    claude_tool_choice,
)
from langchain_claude_relay.wire.openai_chat import (
    ParsedChunk,
    ParsedCompletion,
    check_one_top_level_marker,
    check_tool_call_count,
    checked_usage,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "render_messages_payload",
    "parse_message",
    "MessageStreamReader",
]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the caller gave none (the Messages API requires it)."""

_BLOCK_TYPES = frozenset(
    {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
# Keys of Anthropic's ToolParam that a Tool may carry in ``extra`` (others are OpenAI-only).
_TOOL_EXTRA_KEYS = frozenset(
    {"strict", "allowed_callers", "defer_loading", "eager_input_streaming", "input_examples"}
)
# The request renders these; a params key of the same name would replace the planned payload.
_REQUEST_OWNED_PARAMS = ("model", "messages", "system", "tools", "tool_choice")
# Params read here (mapped or dropped) rather than passed through.
_MAPPED_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "thinking",
        "response_format",
        "output_config",
        "parallel_tool_calls",
        "reasoning_effort",  # -> output_config.effort
        "stream_options",  # the Messages API always streams usage
    }
)

# -- rendering -------------------------------------------------------------------------------------


def _plain(value: Any, *, sort_keys: bool = False) -> Any:
    """A deep copy as JSON types (dicts and lists), keys sorted when asked."""
    if isinstance(value, Mapping):
        keys = sorted(value, key=str) if sort_keys else list(value)
        return {k: _plain(value[k], sort_keys=sort_keys) for k in keys}
    if isinstance(value, list | tuple):
        return [_plain(v, sort_keys=sort_keys) for v in value]
    return value


def _with_marker(rendered: dict[str, Any], marker: CacheControl | None) -> dict[str, Any]:
    if marker is not None:
        rendered["cache_control"] = marker.to_wire()
    return rendered


def _is_empty_text(part: Any) -> bool:
    """An unmarked text block with no text (Claude rejects it)."""
    return (
        isinstance(part, Mapping)
        and part.get("type") == "text"
        and part.get("text") == ""
        and "cache_control" not in part
    )


def _without_empty_text(parts: list[Any]) -> list[Any]:
    """Parts without empty text, unless that would leave none."""
    kept = [p for p in parts if not _is_empty_text(p)]
    return kept or parts


def _tool_result_content(content: Any) -> Any:
    """A tool result's content: a string as is, a list of parts without inner markers."""
    if not isinstance(content, list | tuple):
        return _plain(content)
    parts = [
        {k: _plain(v) for k, v in p.items() if k != "cache_control"}
        if isinstance(p, Mapping)
        else _plain(p)
        for p in content
    ]
    return _without_empty_text(parts)


def _block(block: Block, where: str, canonical: bool) -> dict[str, Any] | None:
    """One block as a Messages content block with its marker, or ``None`` if it is dropped."""
    if block.type not in _BLOCK_TYPES:
        msg = f"{where}: block type {block.type!r} cannot be sent to the Messages API"
        raise RequestValidationError(msg)
    if block.cache_control is not None and not block.markable:
        msg = (
            f"{where}: a {block.type} block{' with empty text' if block.type == 'text' else ''} "
            "cannot carry cache_control; mark the block before or after it"
        )
        raise RequestValidationError(msg)
    signature = block.data.get("signature")
    if block.type == "thinking" and not (isinstance(signature, str) and signature):
        return None
    rendered: dict[str, Any] = {"type": block.type}
    native = block.data.get("native_content") if block.type == "tool_result" else None
    for key, value in block.data.items():
        if key in ("type", "cache_control", "native_content"):
            continue
        if block.type == "tool_use" and key == "input":
            rendered[key] = _plain(value, sort_keys=canonical)
        elif block.type == "tool_result" and key == "content":
            rendered[key] = _tool_result_content(value if native is None else native)
        else:
            rendered[key] = _plain(value)
    return _with_marker(rendered, block.cache_control)


def _system(request: ClaudeRequest, canonical: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, block in enumerate(request.system):
        if block.type != "text":
            msg = f"system[{i}]: system blocks must be text, not {block.type}"
            raise RequestValidationError(msg)
        rendered = _block(block, f"system[{i}]", canonical)
        if rendered is not None and not _is_empty_text(rendered):
            blocks.append(rendered)
    return blocks


def _turns(request: ClaudeRequest, canonical: bool) -> list[dict[str, Any]]:
    """User and assistant turns, consecutive turns of one role merged into one."""
    turns: list[dict[str, Any]] = []
    for m, message in enumerate(request.messages):
        if message.role not in ("user", "assistant"):
            msg = f"messages[{m}]: role {message.role!r} is neither 'user' nor 'assistant'"
            raise RequestValidationError(msg)
        blocks = [
            rendered
            for j, block in enumerate(message.content)
            if (rendered := _block(block, f"messages[{m}].content[{j}]", canonical)) is not None
        ]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": message.role, "content": blocks})
    for turn in turns:
        turn["content"] = _without_empty_text(turn["content"])
    return turns


def _tool(tool: Tool, canonical: bool) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": tool.name}
    if tool.description:
        rendered["description"] = tool.description
    rendered["input_schema"] = _plain(tool.parameters, sort_keys=canonical)
    for key in sorted(tool.extra):
        if key in _TOOL_EXTRA_KEYS:
            rendered[key] = _plain(tool.extra[key])
    return _with_marker(rendered, tool.cache_control)


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    """A wire-neutral tool choice in Claude's spelling (``None`` when there is none).

    Read by :func:`~langchain_claude_relay.request.claude_tool_choice`, as the planner and the
    input checks read it.
    """
    try:
        claude = claude_tool_choice(choice)
    except ValueError as exc:
        raise RequestValidationError(str(exc)) from None
    return None if claude is None else dict(_plain(claude))


def _max_tokens(params: Mapping[str, Any]) -> int:
    value = params.get("max_tokens")
    if value is None:
        value = params.get("max_completion_tokens")
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = (
            f"max_tokens must be a non-negative integer, got {value!r} (0 only fills the cache; "
            f"leave it unset for {DEFAULT_MAX_TOKENS})"
        )
        raise RequestValidationError(msg)
    return value


def _stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list | tuple) or not all(isinstance(s, str) for s in sequences):
        msg = f"stop must be a string or a list of strings, got {stop!r}"
        raise RequestValidationError(msg)
    return list(sequences) or None


def _output_format(response_format: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` as the Messages API's ``output_config.format``."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        msg = (
            "response_format={'type': 'json_object'} (JSON mode) has no equivalent in the "
            "Anthropic Messages API: use with_structured_output(schema, method='json_schema') "
            "or method='function_calling'"
        )
        raise RequestValidationError(msg)
    if kind == "json_schema" and isinstance(response_format, Mapping):
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else response_format.get("schema")
        if isinstance(schema, Mapping):  # Claude's structured outputs take closed objects only
            try:
                return {"type": "json_schema", "schema": objects_closed(_plain(schema))}
            except ValueError as exc:
                raise RequestValidationError(str(exc)) from None
        msg = (
            "response_format {'type': 'json_schema'} needs its JSON schema object in "
            "response_format['json_schema']['schema']"
        )
        raise RequestValidationError(msg)
    msg = (
        f"response_format {response_format!r} is not understood: use "
        "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}"
    )
    raise RequestValidationError(msg)


EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
"""``output_config.effort`` values (Anthropic, effort, read 2026-12; ``xhigh`` since Opus 4.7)."""


def _with_effort(given: Mapping[str, Any] | None, reasoning_effort: Any) -> Any:
    """``output_config`` with OpenAI's ``reasoning_effort`` as its ``effort``.

    The Messages API refuses an unknown top-level field, and ``reasoning_effort`` (what
    ``ChatOpenAI`` code passes) means what Claude's ``output_config.effort`` does.
    """
    if reasoning_effort is None:
        return given
    if reasoning_effort not in EFFORT_LEVELS:
        msg = (
            f"reasoning_effort={reasoning_effort!r} has no equivalent on the Messages API, whose "
            f"output_config.effort is one of {', '.join(EFFORT_LEVELS)}: pass one of those"
        )
        raise RequestValidationError(msg)
    if given is not None and given.get("effort") not in (None, reasoning_effort):
        msg = "give the effort once: reasoning_effort or output_config['effort'], not both"
        raise RequestValidationError(msg)
    return {**(given or {}), "effort": reasoning_effort}


def _output_config(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """``output_config`` given in params, with ``response_format`` and ``reasoning_effort``.

    ``response_format`` becomes its format, ``reasoning_effort`` its effort.
    """
    given = params.get("output_config")
    if given is not None and not isinstance(given, Mapping):
        msg = f"output_config must be a dict such as {{'effort': 'high'}}, got {given!r}"
        raise RequestValidationError(msg)
    given = _with_effort(given, params.get("reasoning_effort"))
    fmt = _output_format(params.get("response_format"))
    if fmt is None:
        return None if given is None else dict(_plain(given))
    if given is not None and given.get("format") is not None:
        msg = "give the output format once: response_format or output_config['format'], not both"
        raise RequestValidationError(msg)
    return {**_plain(given or {}), "format": fmt}


def _params(
    params: Mapping[str, Any], choice: dict[str, Any] | None, has_tools: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Sampling settings in the Messages API's naming, and the tool choice they may amend."""
    owned = [k for k in _REQUEST_OWNED_PARAMS if k in params]
    if owned:
        msg = (
            f"{owned} cannot be given as model_kwargs/extra_body for the Messages API: they come "
            "from the messages, tools and tool_choice of the call"
        )
        raise RequestValidationError(msg)
    out: dict[str, Any] = {
        k: _plain(v) for k, v in params.items() if k not in _MAPPED_PARAMS and isinstance(k, str)
    }
    stop = _stop_sequences(params.get("stop"))
    if stop is not None:
        if out.get("stop_sequences") not in (None, stop):
            msg = "give stop sequences once: stop or stop_sequences, not both"
            raise RequestValidationError(msg)
        out["stop_sequences"] = stop
    output_config = _output_config(params)
    if output_config is not None:
        out["output_config"] = output_config
    if params.get("parallel_tool_calls") is False and has_tools:
        base = choice or {"type": "auto"}
        if base["type"] != "none":
            choice = {**base, "disable_parallel_tool_use": True}
    return out, choice


def render_messages_payload(
    request: ClaudeRequest, params: Mapping[str, Any], *, canonical: bool = True
) -> dict[str, Any]:
    """The body for ``POST /v1/messages``.

    Args:
        request: the request, with the cache markers it should carry (not modified).
        params: sampling settings in the chat model's OpenAI-ish naming: ``max_tokens`` (default
            ``DEFAULT_MAX_TOKENS``; 0 is valid and only fills the cache; ``max_completion_tokens``
            is read when it is missing), ``stop`` (-> ``stop_sequences``), ``response_format``
            (``json_schema`` -> ``output_config.format``), ``parallel_tool_calls=False`` (->
            ``tool_choice.disable_parallel_tool_use``), ``thinking`` (used only when the request
            has none); ``stream_options`` is dropped; anything else (``temperature``,
            ``top_p``, ``top_k``, ``stream``, ``diagnostics``, a user's ``model_kwargs``) is
            passed through as is.
        canonical: send tool schemas and ``tool_use`` inputs with sorted keys, so the bytes
            match the planner's key-order-blind hashes (on when caching).

    Returns:
        A JSON-serializable payload with keys in a fixed order: ``model``, ``max_tokens``,
        ``system`` (when there is system text), ``messages``, ``tools``, ``tool_choice``,
        ``thinking``, ``cache_control`` (the request's top-level marker: automatic caching),
        then the other settings sorted by name.

    Raises:
        RequestValidationError: for input the Messages API cannot take (JSON mode, a
            ``tool_choice`` it cannot express, a bad ``max_tokens`` or ``stop``, a marker on a
            block that cannot carry one, params that would replace the messages or tools).
    """
    payload: dict[str, Any] = {"model": request.model, "max_tokens": _max_tokens(params)}
    system = _system(request, canonical)
    if system:
        payload["system"] = system
    payload["messages"] = _turns(request, canonical)
    if request.tools:
        payload["tools"] = [_tool(t, canonical) for t in request.tools]
    choice = _tool_choice(request.tool_choice)
    if choice is not None and not request.tools and choice["type"] in ("auto", "none"):
        choice = None  # means nothing without tools
    settings, choice = _params(params, choice, bool(request.tools))
    if choice is not None:
        payload["tool_choice"] = choice
    thinking = request.thinking if request.thinking is not None else params.get("thinking")
    if thinking is not None:
        payload["thinking"] = _plain(thinking)
    if request.cache_control is not None:
        check_one_top_level_marker(request, params)
        payload["cache_control"] = request.cache_control.to_wire()
    for key in sorted(settings):
        payload[key] = settings[key]
    return payload


# -- reading a message -----------------------------------------------------------------------------


def _dump(value: Any) -> str:
    """JSON text of a decoded event for an error excerpt (``repr`` if it is not JSON-able)."""
    try:
        return json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError):
        return repr(value)


def _arguments(tool_input: Mapping[str, Any], problem: Callable[[str], APIResponseError]) -> str:
    try:
        return json.dumps(tool_input, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        raise problem("a tool_use input that cannot be written as JSON") from None


def _checked_tool_use(
    block: Mapping[str, Any], problem: Callable[[str], APIResponseError]
) -> tuple[str, str, Mapping[str, Any]]:
    """The id, name and input of a ``tool_use`` block, each of the right type."""
    call_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise problem("a tool_use block without a string id")
    if not isinstance(name, str) or not name:
        raise problem("a tool_use block without a tool name")
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, Mapping):
        raise problem("a tool_use block whose input is not a JSON object")
    return call_id, name, tool_input


def _checked_str(
    block: Mapping[str, Any],
    key: str,
    problem: Callable[[str], APIResponseError],
    *,
    default: str | None = None,
) -> str:
    value = block.get(key, default)
    if not isinstance(value, str):
        raise problem(f"a {block.get('type')} block whose {key!r} is not a string")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _optional_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def parse_message(
    body: Any, *, status_code: int = 200, text: str | None = None
) -> ParsedCompletion:
    """Validate and read a non-streaming Messages API ``message``.

    Args:
        body: the decoded JSON body.
        status_code: the HTTP status, for error messages.
        text: the raw body text, for error excerpts.

    Returns:
        The parsed message: text blocks joined as ``content``; ``tool_use`` blocks as OpenAI
        tool calls (``raw_tool_calls`` holds the blocks); thinking text joined as ``reasoning``;
        the thinking and redacted thinking blocks, whole, as ``thinking_blocks``; ``stop_reason``
        as ``finish_reason``; the usage as sent (validated); ``diagnostics`` when present.
        Block types it does not know (server tools, newer kinds) are skipped.

    Raises:
        APIResponseError: if the body is not a message (an error object, no ``content`` list,
            a block of the wrong shape, a ``tool_use`` without id or name or with an input that
            is not an object), holds more than ``MAX_TOOL_CALLS`` ``tool_use`` blocks, or its
            usage is garbage.
    """
    source = text if text is not None else body

    def problem(what: str) -> APIResponseError:
        return APIResponseError(f"relay answered {what}", status_code=status_code, body=source)

    if not isinstance(body, Mapping):
        raise problem("JSON that is not an object")
    if body.get("type") == "error" or ("error" in body and "content" not in body):
        raise problem("an error object with a success status")
    if body.get("type", "message") != "message":
        raise problem("an object whose type is not 'message'")
    content = body.get("content")
    if not isinstance(content, list):
        raise problem("a message without a 'content' list")
    uses = sum(1 for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use")
    check_tool_call_count(uses, "answered", status_code, source)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    raw_calls: list[Any] = []
    thinking_blocks: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise problem("a content block that is not an object with a string 'type'")
        kind = block["type"]
        if kind == "text":
            texts.append(_checked_str(block, "text", problem))
        elif kind == "tool_use":
            call_id, name, tool_input = _checked_tool_use(block, problem)
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": _arguments(tool_input, problem)},
                }
            )
            raw_calls.append(block)
        elif kind == "thinking":
            thoughts.append(_checked_str(block, "thinking", problem))
            _checked_str(block, "signature", problem, default="")
            thinking_blocks.append(dict(_plain(block)))
        elif kind == "redacted_thinking":
            _checked_str(block, "data", problem)
            thinking_blocks.append(dict(_plain(block)))
    usage = checked_usage(body.get("usage"), "answered", status_code, source)
    reasoning = "".join(thoughts)
    return ParsedCompletion(
        id=_optional_str(body.get("id")),
        model=_optional_str(body.get("model")),
        content="".join(texts),
        tool_calls=calls,
        reasoning=reasoning or None,
        finish_reason=_optional_str(body.get("stop_reason")),
        usage=usage,
        raw_tool_calls=raw_calls,
        thinking_blocks=thinking_blocks,
        diagnostics=_optional_mapping(body.get("diagnostics")),
    )


# -- reading a stream ------------------------------------------------------------------------------


@dataclass
class _OpenBlock:
    """A content block between its ``content_block_start`` and ``content_block_stop``."""

    type: str
    thinking: list[str] = field(default_factory=list)
    signature: list[str] = field(default_factory=list)
    data: str = ""


_HANDLED_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
# Delta type -> (block type it belongs to, field holding its text).
_DELTAS: dict[str, tuple[str, str]] = {
    "text_delta": ("text", "text"),
    "input_json_delta": ("tool_use", "partial_json"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("thinking", "signature"),
}


class MessageStreamReader:
    """Reads Anthropic SSE events (decoded JSON objects, each with a ``type``) into chunks.

    One reader per stream: it remembers the message id and model, the open content blocks (to
    hand back each thinking block whole, with its signature, when it stops) and the usage
    (``message_start`` usage, overridden field by field by ``message_delta`` usage, whose counts
    are cumulative).

    >>> reader = MessageStreamReader()
    >>> _ = reader.read({"type": "message_start", "message": {"id": "msg_1", "model": "m",
    ...     "usage": {"input_tokens": 5, "output_tokens": 1}}})
    >>> reader.read({"type": "content_block_start", "index": 0,
    ...     "content_block": {"type": "text", "text": ""}}).content
    ''
    >>> reader.read({"type": "content_block_delta", "index": 0,
    ...     "delta": {"type": "text_delta", "text": "Hi"}}).content
    'Hi'
    >>> chunk = reader.read({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
    ...     "usage": {"output_tokens": 3}})
    >>> chunk.finish_reason, dict(chunk.usage or {})
    ('end_turn', {'input_tokens': 5, 'output_tokens': 3})
    """

    def __init__(self) -> None:
        self._id: str | None = None
        self._model: str | None = None
        self._usage: dict[str, Any] | None = None
        self._blocks: dict[int, _OpenBlock] = {}
        self._tool_uses = 0  # tool_use blocks started: at most MAX_TOOL_CALLS
        self._handlers: dict[str, Callable[[Mapping[str, Any]], ParsedChunk]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "error": self._error,
        }

    @property
    def usage(self) -> Mapping[str, Any] | None:
        """The usage merged so far (``None`` before any event carried usage)."""
        return None if self._usage is None else dict(self._usage)

    def read(self, event: Any) -> ParsedChunk:
        """Read one event.

        Args:
            event: one decoded SSE ``data`` payload.

        Returns:
            What the event adds: text, reasoning, tool-call deltas in OpenAI's shape, a thinking
            block completed by ``content_block_stop``, the stop reason and the merged usage (on
            ``message_delta`` only), diagnostics. ``ping``, ``message_stop`` and unknown event
            types give an empty chunk.

        Raises:
            APIResponseError: if the event is not an object with a string ``type``, a field has
                the wrong type, a delta or stop names a block that was not started, the stream
                starts more than ``MAX_TOOL_CALLS`` ``tool_use`` blocks, or the usage is
                garbage; or for an ``error`` event of an unknown type.
            APIStatusError: for an ``error`` event whose type names a status (the typed subclass,
                such as ``OverloadedError`` for ``overloaded_error``).
        """
        if not isinstance(event, Mapping):
            raise self._problem("an event that is not a JSON object", event)
        kind = event.get("type")
        if not isinstance(kind, str):
            raise self._problem("an event without a string 'type'", event)
        handler = self._handlers.get(kind)
        return self._chunk() if handler is None else handler(event)

    # -- helpers

    @staticmethod
    def _problem(what: str, event: Any) -> APIResponseError:
        return APIResponseError(f"relay streamed {what}", status_code=200, body=_dump(event))

    def _chunk(self, **fields: Any) -> ParsedChunk:
        values: dict[str, Any] = {
            "id": self._id,
            "model": self._model,
            "content": "",
            "reasoning": None,
            "tool_call_deltas": [],
            "finish_reason": None,
            "usage": None,
        }
        values.update(fields)
        return ParsedChunk(**values)

    def _index(self, event: Mapping[str, Any]) -> int:
        index = event.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise self._problem("a content block event without a non-negative integer index", event)
        return index

    def _open(self, event: Mapping[str, Any]) -> tuple[int, _OpenBlock]:
        index = self._index(event)
        block = self._blocks.get(index)
        if block is None:
            raise self._problem(f"an event for content block {index}, which was not started", event)
        return index, block

    def _merge_usage(self, usage: Any, event: Mapping[str, Any]) -> None:
        checked = checked_usage(usage, "streamed", 200, event, dump=True)
        if checked is None:
            return
        merged = {**(self._usage or {}), **{k: v for k, v in checked.items() if v is not None}}
        checked_usage(merged, "streamed", 200, event, dump=True)
        self._usage = merged

    # -- event handlers

    def _message_start(self, event: Mapping[str, Any]) -> ParsedChunk:
        message = event.get("message")
        if not isinstance(message, Mapping):
            raise self._problem("a message_start without a 'message' object", event)
        self._id = _optional_str(message.get("id"))
        self._model = _optional_str(message.get("model"))
        self._merge_usage(message.get("usage"), event)
        return self._chunk(diagnostics=_optional_mapping(message.get("diagnostics")))

    def _block_start(self, event: Mapping[str, Any]) -> ParsedChunk:
        index = self._index(event)
        block = event.get("content_block")
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise self._problem("a content_block_start without a typed 'content_block'", event)
        if index in self._blocks:
            raise self._problem(f"a second start of content block {index}", event)

        def problem(what: str) -> APIResponseError:
            return self._problem(what, event)

        kind = block["type"]
        opened = _OpenBlock(kind)
        self._blocks[index] = opened
        if kind == "text":
            text = _checked_str(block, "text", problem, default="")
            return self._chunk(content=text, text_index=index)
        if kind == "tool_use":
            self._tool_uses += 1
            check_tool_call_count(self._tool_uses, "streamed", 200, lambda: _dump(event))
            call_id, name, tool_input = _checked_tool_use(block, problem)
            arguments = _arguments(tool_input, problem) if tool_input else ""
            delta = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            return self._chunk(tool_call_deltas=[delta])
        if kind == "thinking":
            thought = _checked_str(block, "thinking", problem, default="")
            opened.thinking.append(thought)
            opened.signature.append(_checked_str(block, "signature", problem, default=""))
            return self._chunk(reasoning=thought or None, reasoning_index=index)
        if kind == "redacted_thinking":
            opened.data = _checked_str(block, "data", problem)
        return self._chunk()

    def _block_delta(self, event: Mapping[str, Any]) -> ParsedChunk:
        index, opened = self._open(event)
        delta = event.get("delta")
        if not isinstance(delta, Mapping) or not isinstance(delta.get("type"), str):
            raise self._problem("a content_block_delta without a typed 'delta'", event)
        rule = _DELTAS.get(delta["type"])
        if rule is None or opened.type not in _HANDLED_BLOCKS:
            return self._chunk()  # citations, server tools, newer kinds: nothing to read
        belongs_to, key = rule
        if opened.type != belongs_to:
            raise self._problem(f"a {delta['type']} for a {opened.type} block", event)
        piece = delta.get(key)
        if not isinstance(piece, str):
            raise self._problem(f"a {delta['type']} whose {key!r} is not a string", event)
        if key == "text":
            return self._chunk(content=piece, text_index=index)
        if key == "partial_json":
            tool_delta = {
                "index": index,
                "id": None,
                "type": "function",
                "function": {"name": None, "arguments": piece},
            }
            return self._chunk(tool_call_deltas=[tool_delta])
        if key == "signature":
            opened.signature.append(piece)
            return self._chunk()
        opened.thinking.append(piece)
        return self._chunk(reasoning=piece or None, reasoning_index=index)

    def _block_stop(self, event: Mapping[str, Any]) -> ParsedChunk:
        index, opened = self._open(event)
        del self._blocks[index]
        if opened.type == "thinking":
            whole = {
                "type": "thinking",
                "thinking": "".join(opened.thinking),
                "signature": "".join(opened.signature),
            }
            return self._chunk(thinking_blocks=[whole])
        if opened.type == "redacted_thinking":
            return self._chunk(thinking_blocks=[{"type": "redacted_thinking", "data": opened.data}])
        return self._chunk()

    def _message_delta(self, event: Mapping[str, Any]) -> ParsedChunk:
        delta = event.get("delta", {})
        if not isinstance(delta, Mapping):
            raise self._problem("a message_delta whose 'delta' is not an object", event)
        stop_reason = delta.get("stop_reason")
        if stop_reason is not None and not isinstance(stop_reason, str):
            raise self._problem("a message_delta whose stop_reason is not a string", event)
        self._merge_usage(event.get("usage"), event)
        diagnostics = _optional_mapping(event.get("diagnostics")) or _optional_mapping(
            delta.get("diagnostics")
        )
        return self._chunk(finish_reason=stop_reason, usage=self.usage, diagnostics=diagnostics)

    def _error(self, event: Mapping[str, Any]) -> ParsedChunk:
        error = event.get("error")
        kind = error.get("type") if isinstance(error, Mapping) else None
        status = ERROR_TYPE_STATUS.get(kind) if isinstance(kind, str) else None
        if status is not None:
            raise make_status_error(status, _dump(event))
        raise self._problem("an error", event)
