"""LangChain messages and tools -> the provider-neutral ``ClaudeRequest``.

Accepts what LangChain users write: ``SystemMessage``/``HumanMessage``/``AIMessage``/
``ToolMessage`` (or OpenAI-style role dicts, converted by LangChain), string or list content with
OpenAI parts (``image_url``, ``file``), LangChain's standard blocks (``image``/``file`` with
``url``, ``base64`` or ``source_type``; ``text-plain``, which becomes a text document) and
Claude's own blocks (``image``/``document`` with a ``source``, ``thinking``). ``cache_control``
placed by the user is kept where it was put: on a content part, on a message
(``additional_kwargs["cache_control"]``, meaning its last part), on a tool (top level or inside
``"function"``) and on a tool result.

Images and documents are checked as Claude checks them, before anything is sent: an image is
JPEG, PNG, GIF or WebP (``image/jpg`` is read as ``image/jpeg``) of at most 5 MB; a base64
document is a PDF, or text/plain data, which is decoded and sent as Claude's ``text`` source;
Claude's ``text`` and ``content`` document sources are kept; a file id (Claude's Files API)
becomes Claude's ``file`` source, which only the Messages API takes (a relay's format refuses
it). A document's ``title``, ``citations`` and ``context`` are kept, written on the block
or, in a LangChain v1 block, in its ``extras`` (the Messages API sends them; the OpenAI format
has no place for citations and context).

An assistant turn's thinking goes back only as Claude can take it: signed ``thinking`` and
``redacted_thinking`` blocks (in its content, also as LangChain v1 writes redacted thinking,
wrapped in a ``non_standard`` block, or kept in ``additional_kwargs["thinking_blocks"]`` from an
earlier answer), and only from a turn Claude wrote (:func:`_made_by_claude`). Reasoning text
without a signature (``reasoning_content``) and another model's reasoning, signed or not, are
left out: Claude refuses unsigned thinking, and a signature it did not make.

A tool result (``ToolMessage`` content) may also hold the two block types LangChain's tool layer
accepts beyond those (``TOOL_MESSAGE_BLOCK_TYPES``):

- ``{"type": "json", "json": value}`` becomes a text block holding the value as canonical JSON
  (:func:`tool_json_text`: sorted keys, no whitespace, UTF-8 kept as is), so that the same value is
  the same bytes on every call and a cached prefix keeps being read.
- ``{"type": "search_result", "source", "title", "content": [text blocks], "citations"?}``,
  Claude's own search result block. The tool result's ``content`` then holds it as text (title
  line, source line, the texts: :func:`search_result_text`), which every wire can carry, and
  ``native_content`` holds the result as Claude's block, which the Messages API (native, Bedrock,
  Vertex) sends instead so that Claude can cite it (as langchain-anthropic sends it).

A ``cache_control`` on either (or on a text block inside a search result) moves to the parent
``tool_result``, like a marker on any other part of a tool result.

Tools are client tools, with names Claude takes (``^[a-zA-Z0-9_-]{1,128}$``, never renamed);
a provider's server tool (``{"type": "web_search_20250305", ...}``) is refused, not sent as an
empty client tool. A LangChain tool's ``extras`` (``BaseTool.extras``, or an ``"extras"`` dict on
a tool dict), where LangChain v1 and its middleware keep provider settings, is read as
ChatAnthropic reads it: its ``cache_control`` is the tool's marker (checked and planned like one
written on the tool), and Claude's tool settings (:data:`CLAUDE_TOOL_SETTINGS`) are kept as if
written in the tool's ``function``; any other key is not a Claude setting and is left out, with
one warning. ``tool_choice`` is understood exactly as ``request.claude_tool_choice``
reads it.

Bad input raises :class:`~langchain_claude_relay.errors.RequestValidationError` with the message
index and the fix, before anything is sent.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_claude_relay._plumbing import warn_once
from langchain_claude_relay._settings_checks import check_thinking_with_tool_choice
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Message,
    Tool,
    claude_tool_choice,
)

__all__ = [
    "CLAUDE_TOOL_SETTINGS",
    "IMAGE_MEDIA_TYPES",
    "MAX_IMAGE_BYTES",
    "MIN_THINKING_BUDGET",
    "to_claude_request",
    "convert_tools",
    "convert_tool",
    "check_thinking",
    "check_tool_choice",
    "search_result_text",
    "tool_json_text",
]

MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Claude rejects images larger than 5 MB (base64-decoded) in API requests.

Images only: a PDF's limit is the request's (32 MB for the whole body, a 413 from the API, raised
as ``RequestTooLargeError``)."""

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
"""The image types Claude takes (any other is a 400)."""

_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg"}  # a common misspelling, the same images
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")

MIN_THINKING_BUDGET = 1024
"""Claude rejects ``thinking.budget_tokens`` below 1,024."""

_THINKING_TYPES = ("enabled", "adaptive", "disabled", "between_tools")
"""Claude's ``thinking.type`` values; which a model takes is the model table's
``thinking_types`` (``between_tools``: Sonnet 5.5 thinks only between tool calls)."""

_BASE64_PREFIX = re.compile(r"^[A-Za-z0-9+/=_\-\s]+$")
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
"""What Claude takes as a tool name (``^[a-zA-Z0-9_-]{1,128}$``); anything else is a 400."""

CLAUDE_TOOL_SETTINGS = frozenset(
    {"allowed_callers", "defer_loading", "eager_input_streaming", "input_examples", "strict"}
)
"""Claude's tool settings (its ``ToolParam`` keys beyond name, description, schema and marker).

Taken from a tool's ``extras`` into ``Tool.extra``, where the same key written in an OpenAI
function dict goes: the Messages API sends them on the tool (as ChatAnthropic sends them from
``extras``); the OpenAI chat format carries them in the tool's ``function``, as for a dict tool.
"""

# A tool dict that is a JSON schema has one of these types (its ``title`` is the tool's name).
_JSON_SCHEMA_TYPES = frozenset(
    {"object", "array", "string", "number", "integer", "boolean", "null"}
)

_IGNORED_AI_PART_TYPES = frozenset(
    {"tool_use", "tool_call", "tool_call_chunk", "server_tool_call", "refusal"}
)
"""Assistant parts not sent as content: tool calls (from ``AIMessage.tool_calls``), and the
standard refusal block LangChain reads a refused answer as (Claude has no such block)."""
_THINKING_PART_TYPES = frozenset({"thinking", "reasoning", "redacted_thinking"})


def _fail(where: str, problem: str) -> RequestValidationError:
    return RequestValidationError(f"{where}: {problem}")


def _marker(raw: Any, where: str) -> CacheControl | None:
    if raw is None:
        return None
    try:
        return CacheControl.parse(raw)
    except ValueError as exc:
        raise _fail(where, str(exc)) from None


def _data_url(url: str, where: str) -> tuple[str, str] | None:
    """``data:image/png;base64,XXXX`` -> (media type, data); ``None`` for any other URL.

    Raises:
        RequestValidationError: for a ``data:`` URL that is not base64 (``data:text/plain,hi``):
            Claude takes inline data only as base64.
    """
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    media_type, *params = header[5:].split(";")
    if "base64" not in params:
        raise _fail(where, "a data: URL must hold base64 data, as in 'data:image/png;base64,...'")
    return media_type or "application/octet-stream", data


def _media_type(raw: Any) -> str:
    """A media type as Claude spells it: no parameters, lower case, ``image/jpg`` -> jpeg."""
    media_type = str(raw).split(";", 1)[0].strip().lower()
    return _MEDIA_TYPE_ALIASES.get(media_type, media_type)


def _check_base64(data: str, where: str) -> None:
    if not _BASE64_PREFIX.match(data[:256]):
        raise _fail(where, "the part's data is not valid base64")


def _text_source(text: Any, where: str) -> dict[str, Any]:
    """Claude's source for a plain-text document."""
    if not isinstance(text, str) or not text:
        raise _fail(where, "a text document needs its text as a non-empty string")
    return {"type": "text", "media_type": "text/plain", "data": text}


def _decoded_text(data: str, where: str) -> str:
    """Base64 text/plain data as the text itself (Claude takes text documents only as text)."""
    compact = "".join(data.split()).translate(_URLSAFE_TO_STANDARD)
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except ValueError:  # binascii.Error
        raise _fail(where, "the text/plain part's data is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(
            where,
            "the text/plain part's data is not UTF-8 text; decode it yourself and send the text "
            "as a 'text-plain' block ({'type': 'text-plain', 'text': ...}) or a text part",
        ) from None


def _base64_source(block_type: str, raw_media_type: Any, data: str, where: str) -> dict[str, Any]:
    """A base64 image or document as a source Claude takes, checked before it is sent.

    Images: JPEG, PNG, GIF or WebP of at most 5 MB. Documents: a PDF (no size check per part:
    its limit is the request's 32 MB), or text/plain data, decoded and sent as a ``text`` source
    (Claude refuses base64 data of any type but PDF in a document).
    """
    if not raw_media_type:
        example = "image/png" if block_type == "image" else "application/pdf"
        raise _fail(where, f"base64 {block_type} data needs a media type such as {example!r}")
    media_type = _media_type(raw_media_type)
    _check_base64(data, where)
    if block_type == "image":
        if media_type not in IMAGE_MEDIA_TYPES:
            raise _fail(
                where,
                f"image media type {media_type!r} is not one Claude takes: use "
                f"{', '.join(IMAGE_MEDIA_TYPES)} (convert the image, or fix its mime_type)",
            )
        size = len(data) * 3 // 4
        if size > MAX_IMAGE_BYTES:
            raise _fail(
                where,
                f"image of about {size / 1e6:.1f} MB is over Claude's 5 MB limit; resize or "
                "compress it, or pass a URL",
            )
    elif media_type == "text/plain":
        return _text_source(_decoded_text(data, where), where)
    elif media_type != "application/pdf":
        raise _fail(
            where,
            f"a base64 document of type {media_type!r} cannot be sent: Claude takes base64 "
            "documents only as application/pdf (and text/plain, sent as text); send other "
            "files' text as a text part, and images as an image part",
        )
    return {"type": "base64", "media_type": media_type, "data": data}


def _content_source(source: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Claude's ``content`` document source: its text and image blocks, checked.

    A string is one text block (so that every wire and the token count read one shape).
    """
    content = source.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list | tuple) or not content:
        raise _fail(
            where,
            "a 'content' document source needs 'content' as a string or a non-empty list of "
            "text and image blocks",
        )
    blocks: list[dict[str, Any]] = []
    for k, block in enumerate(content):
        block_where = f"{where}, source content[{k}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text" and isinstance(block.get("text"), str) and block["text"]:
            blocks.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            blocks.append({"type": "image", "source": _source("image", block, block_where)})
        else:
            raise _fail(
                block_where,
                "a 'content' document source holds only non-empty text blocks "
                f"{{'type': 'text', 'text': '...'}} and image blocks, not {block!r:.80}",
            )
    return {"type": "content", "content": blocks}


def _file_source(file_id: Any, where: str) -> dict[str, Any]:
    """Claude's source for a file uploaded with its Files API, by id (checked).

    The Messages API takes it (with the ``anthropic-beta: files-api-2025-04-14`` header in
    ``default_headers``); a relay cannot see your uploads, so the OpenAI format refuses it when
    the request is rendered (``wire.openai_chat``), before anything is sent.
    """
    if not isinstance(file_id, str) or not file_id:
        raise _fail(
            where, f"a file source needs its 'file_id' as a non-empty string, not {file_id!r}"
        )
    return {"type": "file", "file_id": file_id}


def _claude_source(block_type: str, source: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A source written in Claude's own shape (``{"type": "base64" | "url" | ...}``), checked."""
    source_type = source.get("type")
    if source_type == "base64":
        data = source.get("data")
        if not isinstance(data, str) or not data:
            raise _fail(where, f"{block_type} source has no base64 'data'")
        return _base64_source(block_type, source.get("media_type"), data, where)
    if source_type == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise _fail(where, f"{block_type} source of type 'url' needs a non-empty 'url'")
        return {"type": "url", "url": url}
    if source_type == "file":
        return _file_source(source.get("file_id"), where)
    if block_type == "document" and source_type == "text":
        return _text_source(source.get("data"), where)
    if block_type == "document" and source_type == "content":
        return _content_source(source, where)
    accepted = (
        "'base64' or 'url'" if block_type == "image" else "'base64', 'url', 'text' or 'content'"
    )
    raise _fail(
        where, f"{block_type} source type {source_type!r} is not understood: use {accepted}"
    )


def _source(kind: str, part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The Claude ``source`` of an image or file part in any of the accepted spellings.

    Checked here, before anything is sent, as Claude would check it: image media types and
    size, base64 document types (a text/plain one becomes a ``text`` source), file ids.
    """
    block_type = "image" if kind in ("image_url", "image") else "document"
    if isinstance(part.get("source"), Mapping):  # Claude's own shape
        return _claude_source(block_type, part["source"], where)
    url: Any = None
    file_info: Mapping[str, Any] = part["file"] if isinstance(part.get("file"), Mapping) else {}
    if kind == "image_url":
        image_url = part.get("image_url")
        url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    elif kind == "file":
        url = file_info.get("file_data") or file_info.get("url")
    source_type = part.get("source_type")
    if (kind == "text-plain" or source_type == "text") and "text" in part:
        return _text_source(part["text"], where)
    if url is None and (source_type == "url" or "url" in part):
        url = part.get("url")
    if url is None and (source_type == "base64" or "base64" in part or "data" in part):
        data = part.get("base64") or part.get("data")
        media_type = part.get("mime_type") or part.get("media_type")
        if kind == "text-plain":
            media_type = media_type or "text/plain"
        if not isinstance(data, str) or not data:
            raise _fail(where, f"{kind} part has no base64 data")
        if not media_type:
            raise _fail(where, f"base64 {kind} part needs a 'mime_type' such as 'image/png'")
        return _base64_source(block_type, media_type, data, where)
    if not isinstance(url, str) or not url:
        file_id = part.get("file_id") or file_info.get("file_id")
        if file_id is None and source_type == "id":  # LangChain's older standard blocks
            file_id = part.get("id")
        if file_id:
            return _file_source(file_id, where)
        raise _fail(where, f"{kind} part has neither a URL nor base64 data")
    decoded = _data_url(url, where)
    if decoded is not None:
        return _base64_source(block_type, *decoded, where)
    return {"type": "url", "url": url}


def _file_title(part: Mapping[str, Any]) -> str | None:
    """A file part's name, in any spelling LangChain writes it.

    Claude's ``title``; OpenAI's ``file.filename``; LangChain's standard file block with
    ``filename`` at the top, or (v1, as ``create_file_block`` stores extra keyword arguments, and
    as LangChain rewrites OpenAI's file parts before ``_generate``) ``extras["filename"]``, or
    the older ``metadata["filename"]`` (the spellings langchain-core's
    ``messages/block_translators/openai.py`` reads when it renders a file for OpenAI); a
    ``title`` in ``extras`` (where langchain-core's Anthropic translator puts a document's).
    """
    file_info = part.get("file")
    for candidate in (
        part.get("title"),
        part.get("filename"),
        _extra(part, "title"),
        _extra(part, "filename"),
        file_info.get("filename") if isinstance(file_info, Mapping) else None,
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def _extra(part: Mapping[str, Any], key: str) -> Any:
    """A key of a LangChain v1 block kept in ``extras`` (or the older ``metadata``), or ``None``."""
    for holder in (part.get("extras"), part.get("metadata")):
        if isinstance(holder, Mapping) and holder.get(key) is not None:
            return holder[key]
    return None


def _citations(citations: Any, where: str, what: str) -> dict[str, bool]:
    """A ``citations`` setting as Claude takes it: ``{"enabled": bool}``."""
    if (
        not isinstance(citations, Mapping)
        or set(citations) != {"enabled"}
        or not isinstance(citations["enabled"], bool)
    ):
        raise _fail(
            where,
            f"a {what}'s 'citations' must be {{'enabled': True}} or {{'enabled': False}} "
            f"(or left out), not {citations!r:.80}",
        )
    return {"enabled": citations["enabled"]}


def _document_options(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A document's ``citations`` and ``context``, checked, for the Messages API.

    Written on the block (Claude's shape) or, in a LangChain v1 block, in ``extras`` (where
    langchain-core's Anthropic translator puts them) or ``metadata``, as ChatAnthropic reads them.
    """
    options: dict[str, Any] = {}
    citations = part.get("citations", _extra(part, "citations"))
    if citations is not None:
        options["citations"] = _citations(citations, where, "document")
    context = part.get("context", _extra(part, "context"))
    if context is not None:
        if not isinstance(context, str):
            raise _fail(where, f"a document's 'context' must be a string, not {context!r:.80}")
        options["context"] = context
    return options


def _signed_thinking(part: Mapping[str, Any]) -> Block | None:
    """A thinking part as a block Claude takes back, or ``None`` when it cannot go back.

    Claude's ``thinking`` (with ``signature``) and ``redacted_thinking`` (with ``data``), and
    LangChain's standard ``reasoning`` block (the signature in ``extras``, where langchain-core's
    Anthropic block translator puts it). Thinking without a signature is reasoning text from
    elsewhere (a relay's ``reasoning_content``, another model): Claude refuses it back.
    """
    if part.get("type") == "redacted_thinking":
        data = part.get("data")
        return (
            Block("redacted_thinking", {"data": data}) if isinstance(data, str) and data else None
        )
    extras = part.get("extras")
    signature = part.get("signature")
    if signature is None and isinstance(extras, Mapping):
        signature = extras.get("signature")
    if not isinstance(signature, str) or not signature:
        return None
    thought = part.get("thinking", part.get("reasoning", ""))
    return Block("thinking", {"thinking": str(thought), "signature": signature})


def _content_blocks(content: Any, where: str, role: str, first_index: int = 0) -> list[Block]:
    """Convert a message's content (string or list of parts) to Claude blocks.

    ``first_index`` is the index of the first part in the message (for error locations).
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [Block("text", {"text": content})] if content else []
    if not isinstance(content, Sequence):
        raise _fail(
            where, f"content must be a string or a list of parts, not {type(content).__name__}"
        )
    blocks: list[Block] = []
    for j, part in enumerate(content, start=first_index):
        part_where = f"{where}, part {j}"
        if isinstance(part, str):
            if part:
                blocks.append(Block("text", {"text": part}))
            continue
        if not isinstance(part, Mapping):
            raise _fail(
                part_where, f"a content part must be a dict or a string, not {type(part).__name__}"
            )
        kind = part.get("type")
        if not isinstance(kind, str):
            raise _fail(part_where, f"a content part needs a string 'type', not {kind!r}")
        marker = _marker(part.get("cache_control"), part_where)
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _fail(part_where, "text part needs a string 'text'")
            if not text and marker is not None:
                raise _fail(
                    part_where,
                    "an empty text part cannot carry cache_control; mark a non-empty part",
                )
            if text:
                blocks.append(Block("text", {"text": text}, marker))
        elif kind in ("image_url", "image"):
            blocks.append(Block("image", {"source": _source(str(kind), part, part_where)}, marker))
        elif kind in ("file", "document", "text-plain"):
            data: dict[str, Any] = {"source": _source(str(kind), part, part_where)}
            title = _file_title(part)
            if title:
                data["title"] = title
            data.update(_document_options(part, part_where))
            blocks.append(Block("document", data, marker))
        elif role == "assistant" and (
            kind in _THINKING_PART_TYPES
            or (kind == "non_standard" and _wrapped_type(part) in _THINKING_PART_TYPES)
        ):
            if marker is not None:
                raise _fail(part_where, "thinking blocks cannot carry cache_control")
            # langchain-core's v1 translator wraps Claude's redacted thinking as non_standard
            block = _signed_thinking(part["value"] if kind == "non_standard" else part)
            if block is not None:  # unsigned thinking is reasoning text only: Claude refuses it
                blocks.append(block)
        elif kind in _IGNORED_AI_PART_TYPES and role == "assistant":
            continue  # tool calls are taken from AIMessage.tool_calls; a refusal is no content
        else:
            inside = f" holding {_wrapped_type(part)!r}" if kind == "non_standard" else ""
            raise _fail(
                part_where,
                f"unsupported content part type {kind!r}{inside}; use 'text', 'image_url', "
                "'image', 'file', 'document' or 'text-plain' (and 'thinking' in assistant "
                "turns, 'json' and 'search_result' in tool results)",
            )
    return blocks


def _wrapped_type(part: Mapping[str, Any]) -> str | None:
    """The type of the block a LangChain ``non_standard`` block wraps in its ``value``."""
    value = part.get("value")
    kind = value.get("type") if isinstance(value, Mapping) else None
    return kind if isinstance(kind, str) else None


def _with_message_marker(blocks: list[Block], raw: Any, where: str) -> list[Block]:
    """A message-level marker means its last block."""
    marker = _marker(raw, where)
    if marker is None:
        return blocks
    if not blocks or not blocks[-1].markable:
        raise _fail(where, "message-level cache_control needs a last block that can carry it")
    last = blocks[-1]
    blocks[-1] = Block(last.type, last.data, marker)
    return blocks


def tool_json_text(value: Any, where: str = "json part") -> str:
    """The text a tool result's ``{"type": "json", "json": value}`` part is sent as.

    Canonical JSON, one spelling for one value: keys sorted, no whitespace (``","`` and ``":"``),
    non-ASCII characters written as themselves (``ensure_ascii=False``); floats as Python's
    ``json`` writes them (``NaN`` and ``Infinity`` included, as text for the model to read). The
    same value gives the same bytes on every call, whatever its key order, so a cache written
    over it is read on the next turn.

    >>> tool_json_text({"b": [1, 2.5, None], "a": "é"})
    '{"a":"é","b":[1,2.5,null]}'

    Raises:
        RequestValidationError: if the value is not made of JSON types (a ``datetime``, a set,
            bytes, an object; keys of mixed types; a circular or too deeply nested value).
    """
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _fail(
            where,
            f"the 'json' part's value cannot be written as JSON ({type(exc).__name__}: {exc}); "
            "have the tool return JSON types only (dict with string keys, list, str, int, "
            "float, bool, None), e.g. a pydantic model's model_dump(mode='json'), or return "
            "the text itself",
        ) from None


def _json_part(part: Mapping[str, Any], where: str) -> tuple[dict[str, Any], CacheControl | None]:
    """A ``json`` part -> a text part (see :func:`tool_json_text`) and its marker."""
    if "json" not in part:
        raise _fail(
            where,
            "a 'json' part needs its value under 'json', as in {'type': 'json', 'json': {...}}",
        )
    return {"type": "text", "text": tool_json_text(part["json"], where)}, _marker(
        part.get("cache_control"), where
    )


_SEARCH_RESULT_SHAPE = (
    "{'type': 'search_result', 'source': 'https://...', 'title': '...', "
    "'content': [{'type': 'text', 'text': '...'}], 'citations': {'enabled': True}} "
    "('citations' optional)"
)


def search_result_text(source: str, title: str, texts: Sequence[str]) -> str:
    r"""A search result as text, for wires that cannot carry Claude's ``search_result`` block.

    A title line, a source line, a blank line, then the texts separated by blank lines.

    >>> search_result_text("https://x.test/a", "Guide", ["One.", "Two."])
    'Title: Guide\nSource: https://x.test/a\n\nOne.\n\nTwo.'
    """
    return f"Title: {title}\nSource: {source}\n\n" + "\n\n".join(texts)


def _search_result_part(
    part: Mapping[str, Any], where: str
) -> tuple[dict[str, Any], dict[str, Any], CacheControl | None]:
    """A ``search_result`` part -> (its text part, Claude's block, its marker).

    Claude's block keeps ``source``, ``title``, the non-empty texts and ``citations``; a marker
    on the block or on one of its texts is returned to go on the parent ``tool_result``.
    """
    for key in ("source", "title"):
        value = part.get(key)
        if not isinstance(value, str) or not value:
            found = "it is missing" if key not in part else f"got {value!r}"
            raise _fail(
                where,
                f"a 'search_result' part needs a non-empty string {key!r} ({found}); "
                f"write it as {_SEARCH_RESULT_SHAPE}",
            )
    marker = _marker(part.get("cache_control"), where)
    inner = part.get("content")
    if not isinstance(inner, list | tuple) or not inner:
        found = "it is missing" if "content" not in part else f"got {type(inner).__name__}"
        raise _fail(
            where,
            "a 'search_result' part needs 'content' as a non-empty list of text blocks "
            f"({found}); write it as {_SEARCH_RESULT_SHAPE}",
        )
    texts: list[str] = []
    inner_marker: CacheControl | None = None
    for k, text_part in enumerate(inner):
        text_where = f"{where}, content[{k}]"
        text = text_part.get("text") if isinstance(text_part, Mapping) else None
        if (
            not isinstance(text_part, Mapping)
            or text_part.get("type") != "text"
            or not isinstance(text, str)
        ):
            raise _fail(
                text_where,
                "a search result's content holds only text blocks {'type': 'text', 'text': '...'}"
                f", not {text_part!r:.80}",
            )
        inner_marker = _marker(text_part.get("cache_control"), text_where) or inner_marker
        if text:
            texts.append(text)
    if not texts:
        raise _fail(
            where,
            "a 'search_result' part's content has no text: give it at least one non-empty "
            "text block, or leave the result out",
        )
    native: dict[str, Any] = {
        "type": "search_result",
        "source": part["source"],
        "title": part["title"],
        "content": [{"type": "text", "text": t} for t in texts],
    }
    citations = part.get("citations")
    if citations is not None:
        native["citations"] = _citations(citations, where, "'search_result' part")
    text_part = {"type": "text", "text": search_result_text(part["source"], part["title"], texts)}
    return text_part, native, marker or inner_marker


def _tool_result_parts(
    content: Sequence[Any], where: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], CacheControl | None]:
    """A tool result's parts -> (as every wire carries them, as Claude's blocks, last marker).

    The two lists differ only where a ``search_result`` part is text in the first.
    """
    portable: list[dict[str, Any]] = []
    native: list[dict[str, Any]] = []
    marker: CacheControl | None = None
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        part_where = f"{where}, part {j}"
        if kind == "json":
            text_part, part_marker = _json_part(part, part_where)
            pairs = [(text_part, text_part, part_marker)]
        elif kind == "search_result":
            pairs = [_search_result_part(part, part_where)]
        else:
            pairs = [
                ((rendered := {"type": b.type, **b.data}), rendered, b.cache_control)
                for b in _content_blocks([part], where, "user", first_index=j)
            ]
        for portable_part, native_part, part_marker in pairs:
            portable.append(portable_part)
            native.append(native_part)
            if part_marker is not None:  # a marker inside moves to the parent tool_result
                marker = part_marker
    return portable, native, marker


def _tool_result(message: ToolMessage, where: str) -> Block:
    if not message.tool_call_id:
        raise _fail(where, "ToolMessage needs the tool_call_id of the call it answers")
    marker = _marker(message.additional_kwargs.get("cache_control"), where)
    content: Any = message.content
    native: list[dict[str, Any]] | None = None
    if isinstance(content, list):
        content, native, inner_marker = _tool_result_parts(content, where)
        marker = inner_marker or marker
    elif not isinstance(content, str):
        raise _fail(where, "ToolMessage content must be a string or a list of parts")
    data: dict[str, Any] = {"tool_use_id": message.tool_call_id, "content": content}
    if getattr(message, "status", "success") == "error":
        data["is_error"] = True
    if native is not None and native != content:  # a search result: Claude's block natively
        data["native_content"] = native
    return Block("tool_result", data, marker)


def _made_by_claude(message: AIMessage) -> bool:
    """Whether an assistant turn may hold Claude's thinking, by the model that wrote it.

    LangChain's chat models record ``response_metadata["model_provider"]``: this package's
    ``"claude-relay"``, ChatAnthropic's ``"anthropic"``, and the like. A turn without one (written
    by hand, or by an older LangChain) is taken as Claude's. Other providers sign their thinking
    too (langchain-google-genai keeps Gemini's thought signature as ``signature``), and Claude
    refuses a signature it did not make, on every later call: so a turn from a provider whose
    name says neither Claude nor Anthropic counts as Claude's only if its ``model_name`` does
    (Claude through Bedrock, OpenRouter, LiteLLM).
    """
    metadata = message.response_metadata or {}
    provider = str(metadata.get("model_provider") or "").lower()
    model = str(
        metadata.get("model_name") or metadata.get("model") or metadata.get("model_id") or ""
    ).lower()
    return not provider or any(
        claude in name for claude in ("claude", "anthropic") for name in (provider, model)
    )


def _ai_blocks(message: AIMessage, where: str) -> list[Block]:
    blocks = _content_blocks(message.content, where, "assistant")
    has_thinking = any(b.type in ("thinking", "redacted_thinking") for b in blocks)
    kept = message.additional_kwargs.get("thinking_blocks")  # the native API's or a relay's
    if isinstance(kept, list) and kept and not has_thinking:
        blocks[:0] = _content_blocks(
            kept, f"{where}.additional_kwargs.thinking_blocks", "assistant"
        )
    if not _made_by_claude(message):  # another model's thinking: Claude refuses its signature
        blocks = [b for b in blocks if b.type not in ("thinking", "redacted_thinking")]
    # ``reasoning_content`` alone (no signed blocks) stays out: unsigned, Claude would refuse it
    for call in message.tool_calls:
        if not call.get("id"):
            raise _fail(where, f"tool call {call.get('name')!r} has no id")
        blocks.append(
            Block("tool_use", {"id": call["id"], "name": call["name"], "input": dict(call["args"])})
        )
    return _with_message_marker(blocks, message.additional_kwargs.get("cache_control"), where)


def _refuse_server_tool(tool: Mapping[str, Any], where: str) -> None:
    """Refuse a tool dict of a type this package cannot send as a client tool.

    A provider's server tool (Claude's ``web_search_20250305``, ``text_editor_20250124``,
    ``code_execution_...``; OpenAI's ``web_search``, ``file_search``...) has a ``type`` and no
    schema: LangChain's ``convert_to_openai_tool`` turns it into a function with no parameters,
    which Claude would see as a client tool and call, and the agent could not run. The package
    does not claim server tools (neither the planner nor the OpenAI format can carry them), so
    such a dict is refused rather than sent as something else.
    """
    kind = tool.get("type")
    if not isinstance(kind, str) or kind in _JSON_SCHEMA_TYPES:
        return
    if kind == "function" or (kind == "custom" and "input_schema" in tool):
        return
    name = tool.get("name")
    what = f"tool {name!r}" if isinstance(name, str) else "a tool"
    raise _fail(
        where,
        f"{what} has type {kind!r}: a server tool (run by the provider, such as Claude's "
        "web search or text editor) or a tool type this package cannot convert. Server tools "
        "are not supported through ChatClaudeRelay's tool conversion: pass client tools only "
        "(a LangChain tool, a pydantic model, a typed function, an OpenAI function tool "
        "{'type': 'function', 'function': {...}} or Claude's {'name', 'description', "
        "'input_schema'})",
    )


def _check_tool_name(name: str, where: str) -> None:
    """Refuse a name Claude does not take as a tool name (:data:`TOOL_NAME`).

    Not renamed silently: the name is what the model calls and what the tool calls come back
    with (and what a parser or ``tool_choice`` matches), so a changed name would break them.
    LangChain's ``convert_to_openai_tool`` keeps a JSON schema's ``title`` as it is, spaces
    included, as ChatOpenAI and ChatAnthropic then send it.
    """
    if TOOL_NAME.fullmatch(name):
        return
    suggestion = re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_")[:128] or "my_tool"
    raise _fail(
        where,
        f"tool name {name!r} is not one Claude takes: 1 to 128 letters, digits, '_' or '-' "
        f"(^[a-zA-Z0-9_-]{{1,128}}$). Rename it, e.g. {suggestion!r} (a JSON schema's name is "
        "its 'title'; a pydantic model's, its class name; a function's, its __name__)",
    )


def _tool_extras(tool: Any, where: str) -> Mapping[str, Any]:
    """A tool's ``extras``: ``BaseTool.extras``, or a tool dict's ``"extras"`` (``{}`` if none).

    LangChain v1 keeps provider settings of a tool there; its middleware (model fallback, prompt
    caching) reads and writes ``extras["cache_control"]`` as Claude's marker on the tool.

    Raises:
        RequestValidationError: if a tool dict's ``"extras"`` is not a dict.
    """
    if isinstance(tool, Mapping):
        extras = tool.get("extras")
    elif "langchain_core.tools" in sys.modules:  # else no BaseTool exists yet: none to load
        from langchain_core.tools import BaseTool

        extras = getattr(tool, "extras", None) if isinstance(tool, BaseTool) else None
    else:
        extras = None
    if extras is None:
        return {}
    if not isinstance(extras, Mapping):
        raise _fail(
            where,
            f"the tool's extras must be a dict of provider settings such as "
            f"{{'cache_control': {{'type': 'ephemeral'}}}}, not {type(extras).__name__}",
        )
    return extras


def convert_tool(tool: Any, where: str = "tools") -> Tool:
    """One tool (LangChain tool, pydantic model, function, or dict) -> ``Tool``.

    Its ``extras`` (``BaseTool.extras`` or a tool dict's ``"extras"``) are read as ChatAnthropic
    reads them: ``extras["cache_control"]`` is the tool's marker, checked as one written on the
    tool (it takes one of the four slots, and the planner plans around it); Claude's settings
    (:data:`CLAUDE_TOOL_SETTINGS`) join the function's own keys; any other key is no Claude
    setting and is left out, with one warning.

    Raises:
        RequestValidationError: if the tool has no name or one Claude does not take, its schema
            is not a JSON object schema, or it is a server tool (see :func:`_refuse_server_tool`);
            if a marker is not Claude's, or its extras are not a dict or give a marker or a
            setting other than the one written on the tool.
    """
    extras = _tool_extras(tool, where)
    marker_raw: Any = None
    if isinstance(tool, Mapping):
        _refuse_server_tool(tool, where)
        marker_raw = tool.get("cache_control")
        if isinstance(tool.get("function"), Mapping):
            marker_raw = marker_raw or tool["function"].get("cache_control")
        if "input_schema" in tool and "name" in tool:  # Claude's own tool shape
            tool = {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool["input_schema"],
            }
        elif "function" not in tool and "name" in tool and "parameters" in tool:
            tool = {k: v for k, v in tool.items() if k not in ("cache_control", "extras")}
        else:
            tool = {k: v for k, v in tool.items() if k not in ("cache_control", "extras")}
            if isinstance(tool.get("function"), Mapping):
                tool["function"] = {
                    k: v for k, v in tool["function"].items() if k != "cache_control"
                }
    try:
        spec = convert_to_openai_tool(tool)
    except Exception as exc:
        msg = (
            f"{where}: cannot read this tool ({type(exc).__name__}: {exc}); pass a LangChain "
            "tool, a pydantic model, a typed function or an OpenAI tool dict"
        )
        raise RequestValidationError(msg) from None
    function = spec.get("function", {})
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(where, "tool has no name")
    _check_tool_name(name, where)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
        raise _fail(where, f"tool {name!r} parameters must be a JSON schema of type 'object'")
    if "properties" in parameters and not isinstance(parameters["properties"], Mapping):
        raise _fail(where, f"tool {name!r} schema 'properties' must be an object")
    extra = {k: v for k, v in function.items() if k not in ("name", "description", "parameters")}
    marker = _marker(marker_raw, where)
    if extras:
        marker = _extras_marker(extras, marker, name, where)
        extra = _extras_settings(extras, extra, name, where)
    return Tool(name, str(function.get("description", "")), parameters, marker, extra)


def _extras_marker(
    extras: Mapping[str, Any], marker: CacheControl | None, name: str, where: str
) -> CacheControl | None:
    """The tool's marker given ``extras["cache_control"]`` (read as a marker on the tool is).

    Raises:
        RequestValidationError: for a marker Claude does not take, or one whose TTL is not that
            of a marker written on the tool itself (which one was meant cannot be told).
    """
    own = _marker(extras.get("cache_control"), f"{where}.extras")
    if own is None:
        return marker
    if marker is not None and marker.ttl != own.ttl:
        raise _fail(
            where,
            f"tool {name!r} has two cache_control markers that disagree: "
            f"{marker.to_wire()} on the tool and {own.to_wire()} in its extras; keep one",
        )
    return marker or own


def _extras_settings(
    extras: Mapping[str, Any], extra: Mapping[str, Any], name: str, where: str
) -> dict[str, Any]:
    """``extra`` (the function's own keys) with Claude's settings from ``extras``.

    A key that is neither ``cache_control`` nor one of :data:`CLAUDE_TOOL_SETTINGS` is another
    provider's (ChatOpenAI reads ``async`` there) or unknown: it is left out, as ChatAnthropic
    leaves it, but said once rather than dropped unseen.

    Raises:
        RequestValidationError: if a setting is also written on the tool, with another value.
    """
    merged = dict(extra)
    for key, value in extras.items():
        if key not in CLAUDE_TOOL_SETTINGS:
            continue
        if key in merged and merged[key] != value:
            raise _fail(
                where,
                f"tool {name!r} sets {key!r} twice: {merged[key]!r} on the tool and {value!r} "
                "in its extras; keep one",
            )
        merged[key] = value
    left_out = sorted(
        str(k) for k in extras if k != "cache_control" and k not in CLAUDE_TOOL_SETTINGS
    )
    if left_out:
        warn_once(
            ("tool_extras_left_out", tuple(left_out)),
            f"tool {name!r}: extras {left_out} are not Claude tool settings and are not sent "
            f"(Claude's: cache_control, {', '.join(sorted(CLAUDE_TOOL_SETTINGS))})",
        )
    return merged


def convert_tools(tools: Sequence[Any] | None) -> tuple[Tool, ...]:
    """Every tool, in order (see :func:`convert_tool`)."""
    return tuple(convert_tool(t, f"tools[{i}]") for i, t in enumerate(tools or ()))


def check_thinking(thinking: Any) -> dict[str, Any] | None:
    """Validate extended-thinking settings given per call or on the model.

    Args:
        thinking: ``None``, ``{"type": "adaptive"}``, ``{"type": "disabled"}``,
            ``{"type": "between_tools"}`` (no other field) or
            ``{"type": "enabled", "budget_tokens": N}`` with ``N >= MIN_THINKING_BUDGET``.

    Returns:
        A copy of the settings, or ``None``.

    Raises:
        RequestValidationError: for anything else, with the fix.
    """
    if thinking is None:
        return None
    if not isinstance(thinking, Mapping):
        msg = (
            f"thinking must be a dict such as {{'type': 'adaptive'}}, not {type(thinking).__name__}"
        )
        raise RequestValidationError(msg)
    kind = thinking.get("type")
    if kind not in _THINKING_TYPES:
        msg = (
            f"thinking type {kind!r} is not understood: use 'adaptive', 'disabled', "
            "'between_tools' or 'enabled' with budget_tokens"
        )
        raise RequestValidationError(msg)
    if kind == "between_tools" and set(thinking) != {"type"}:
        others = sorted(str(k) for k in thinking if k != "type")
        msg = f"thinking={{'type': 'between_tools'}} takes no other field (got {others})"
        raise RequestValidationError(msg)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
            msg = (
                f"thinking={{'type': 'enabled'}} needs an integer budget_tokens of at least "
                f"{MIN_THINKING_BUDGET}, got {budget!r} (or use {{'type': 'adaptive'}})"
            )
            raise RequestValidationError(msg)
    return dict(thinking)


def check_tool_choice(tool_choice: Any, tools: Sequence[Tool]) -> None:
    """Check that ``tool_choice`` is understood and can be met by the tools sent with it.

    Understood are exactly the spellings :func:`~langchain_claude_relay.request.claude_tool_choice`
    reads, the one reading every wire format renders from, so that what passes here is never
    refused (or sent as given) later.

    Args:
        tool_choice: ``None``, ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True``, a tool
            name, or a dict in OpenAI's or Claude's spelling.
        tools: the tools of the request.

    Raises:
        RequestValidationError: if it names a tool that is not sent, asks for some tool when
            none is sent, or is not understood.
    """
    try:
        choice = claude_tool_choice(tool_choice)
    except ValueError as exc:
        raise RequestValidationError(str(exc)) from None
    if choice is None or choice["type"] in ("auto", "none"):
        return
    names = [t.name for t in tools]
    if choice["type"] == "any" and not names:
        msg = (
            f"tool_choice {tool_choice!r} asks for a tool call but no tools are bound: "
            "bind tools or drop tool_choice"
        )
        raise RequestValidationError(msg)
    if choice["type"] == "tool" and choice["name"] not in names:
        msg = f"tool_choice {choice['name']!r} names no bound tool; bound tools are {names}"
        raise RequestValidationError(msg)


def to_claude_request(
    messages: Sequence[Any] | Any,
    *,
    model: str,
    tools: Sequence[Any] | None = None,
    tool_choice: Any = None,
    thinking: Mapping[str, Any] | None = None,
    cache_scope: str = "",
) -> ClaudeRequest:
    """Convert LangChain input to a ``ClaudeRequest`` without touching the input.

    Args:
        messages: LangChain messages, OpenAI-style role dicts, or anything LangChain's
            ``convert_to_messages`` accepts (a string becomes one user turn).
        model: the model id as the relay spells it.
        tools: tools in any form LangChain's ``convert_to_openai_tool`` accepts (a
            ``cache_control`` key on a tool dict is kept).
        tool_choice: the tool choice as given (``"auto"``, ``"any"``, ``"none"``, a name).
        thinking: extended-thinking settings.
        cache_scope: which prompt cache the request reaches (``ClaudeRequest.cache_scope``).

    Returns:
        The request; system messages are merged, in order, into the system blocks.

    Raises:
        RequestValidationError: for input Claude cannot take (messages, tools, a ``tool_choice``
            naming no sent tool, thinking settings), with where and how to fix it.
    """
    if isinstance(messages, str):
        messages = [HumanMessage(content=messages)]
    try:
        lc_messages: list[BaseMessage] = convert_to_messages(messages)
    except Exception as exc:  # LangChain raises KeyError, TypeError, ValidationError...
        msg = f"messages: cannot read them as chat messages ({type(exc).__name__}: {exc})"
        raise RequestValidationError(msg) from None
    if not lc_messages:
        msg = "messages is empty: pass at least one user message"
        raise RequestValidationError(msg)
    system: list[Block] = []
    turns: list[Message] = []
    for i, message in enumerate(lc_messages):
        where = f"messages[{i}] ({message.type})"
        if isinstance(message, SystemMessage) or (
            isinstance(message, ChatMessage) and message.role == "system"
        ):
            blocks = _content_blocks(message.content, where, "system")
            blocks = _with_message_marker(
                blocks, message.additional_kwargs.get("cache_control"), where
            )
            if any(b.type != "text" for b in blocks):
                raise _fail(where, "system messages can hold only text")
            system.extend(blocks)
        elif isinstance(message, ToolMessage):
            turns.append(Message("user", (_tool_result(message, where),)))
        elif isinstance(message, AIMessage):
            blocks = _ai_blocks(message, where)
            if blocks:
                turns.append(Message("assistant", tuple(blocks)))
        elif isinstance(message, HumanMessage) or (
            isinstance(message, ChatMessage) and message.role == "user"
        ):
            blocks = _content_blocks(message.content, where, "user")
            blocks = _with_message_marker(
                blocks, message.additional_kwargs.get("cache_control"), where
            )
            if not blocks:
                raise _fail(
                    where, "user message has empty content; Claude needs non-empty text or an image"
                )
            turns.append(Message("user", tuple(blocks)))
        else:
            raise _fail(where, f"unsupported message type {type(message).__name__}")
    if not turns:
        msg = "messages hold only system text: add a user message"
        raise RequestValidationError(msg)
    converted_tools = convert_tools(tools)
    check_tool_choice(tool_choice, converted_tools)
    checked_thinking = check_thinking(thinking)
    check_thinking_with_tool_choice(checked_thinking, tool_choice)
    return ClaudeRequest(
        model=model,
        tools=converted_tools,
        system=tuple(system),
        messages=tuple(turns),
        tool_choice=tool_choice,
        thinking=checked_thinking or None,
        cache_scope=cache_scope,
    )
