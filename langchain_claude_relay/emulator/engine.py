"""The emulator's cache engine: Claude's prompt-caching rules and billing, as pure functions.

No I/O and no clock of its own: callers pass the request's start time. The flow for one request::

    request = parse_openai(payload)          # or parse_anthropic(payload): blocks in prefix order
    request = apply_bad_relay(request, mode)  # optional: what a misbehaving relay does to markers
    bill = engine.plan(request, now)          # validates markers, looks up, splits the tokens
    engine.commit(bill)                       # at response begin: refresh hits, write entries

Rules reproduced (Anthropic's prompt-caching page, as ``models.json`` cites it):

* Prefix order tools -> system -> messages. Each block is hashed byte-exactly: its JSON as
  received (key order kept, ``cache_control`` removed) plus its role; hashes are chained in
  prefix order, seeded with the model id. ``tool_choice``, thinking settings and the presence of
  images enter the chain where the messages part begins, so a change there invalidates messages
  only; Claude parses those settings, so their key order does not matter.
* Images and documents are billed as Claude bills them, in a user turn or in a tool result: an
  image by its size, a PDF by its pages, a text document by its text (``_image_text``,
  ``_document_text``, with the planner's rules from ``langchain_claude_relay.tokens``).
* At most 4 markers (400 otherwise), and no 1h marker after a 5m one (400).
* Automatic caching (a top-level ``cache_control``, on both the Messages and the chat path):
  one marker on the last block that can carry one, walking back past thinking and empty text
  blocks (none: no caching). It takes one of the 4 slots (4 explicit + top-level: 400); a last
  block already marked with the same TTL makes it a no-op, with the other TTL a 400; it obeys
  the TTL order (a top-level 1h after an explicit 5m: 400). Placed by ``place_automatic``
  before the other rules, so prices, minimums and lookback are the same.
* Sampling values Claude refuses are a 400 on every path (``check_sampling_payload``): a
  negative ``max_tokens``, ``temperature`` or ``top_p`` outside 0-1, a negative ``top_k``.
* Generation settings Claude refuses together are a 400 on every path that generates
  (``check_generation_payload``): extended thinking with a forced tool choice, a thinking
  budget not below ``max_tokens``, and (Messages paths) a ``max_tokens: 0`` warm-up without a
  breakpoint or with thinking, structured outputs or a forced tool choice.
* What the request's model refuses is a 400 on every path that generates
  (``check_model_payload``, the model table's facts through ``lookup_model``): a
  ``thinking.type`` it does not take, ``temperature``/``top_p``/``top_k`` on Claude 4.7 and
  later (``temperature`` with ``top_p`` on Opus 4.1 to 4.6), a ``temperature`` other than 1, a
  ``top_k`` or a ``top_p`` below 0.95 with thinking on, a last assistant turn (a prefill) on
  Claude 4.6 and later, and (Messages paths) a structured-output schema with an object not
  closed by ``additionalProperties: false``.
* The Messages paths (Anthropic, Bedrock, Vertex) refuse a top-level field the Messages API
  does not know, as Claude does (``<field>: Extra inputs are not permitted``): the fields
  allowed are ``MESSAGES_FIELDS``, plus the platform's own body fields (``PLATFORM_FIELDS``:
  ``anthropic_version`` on Bedrock and Vertex, ``inference_geo`` on the Claude API). OpenAI's
  ``reasoning_effort`` is the common mistake (Claude's is ``output_config.effort``).
* Data residency (the Claude API's ``inference_geo``, ``"global"`` or ``"us"``) is refused on
  the models billed the same everywhere (Claude 4.5 and earlier); the usage echoes it and the
  bill applies the model's multiplier (1.1x for ``"us"``), as the model table says.
* Bedrock and Vertex refuse a Files API source (``{"type": "file", "file_id": ...}``) of an
  image or a document, also inside a tool result or a ``content`` document source
  (``check_file_sources``): the Files API is the Claude API's own.
* On the chat path ``parallel_tool_calls: false`` (with tools) keys the messages part, as the
  ``tool_choice.disable_parallel_tool_use`` relays turn it into does.
* A marker writes an entry at its block boundary only if its prefix reaches the model's minimum.
* A read at a marker checks the marker's boundary and the earlier ones up to 19 lookback
  positions back (20 positions in all); the highest hit over all markers wins. Each block is
  one position, except that a run of consecutive ``tool_use`` blocks is one position, and so
  is a run of consecutive ``tool_result`` blocks (``lookback_positions``), on every path: the
  chat path's assistant ``tool_calls`` are ``tool_use`` blocks and its ``tool`` messages
  ``tool_result`` blocks, so parallel tool calls and their results form runs there too.
  Every hit restarts the entry's own TTL from the request's start; an entry is alive while
  ``now < expires_at`` (a 5m entry written at t=0 is gone at t=300).
* Billing: tokens up to the highest hit are reads; from there to the last 1h marker that writes,
  1h writes; from there to the last marker that writes, 5m writes; the rest is plain input.
* Entries are written by ``commit`` (called when the response begins), so two concurrent requests
  that planned before either committed both pay the write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from langchain_claude_relay._json_schema import SUBSCHEMA_LISTS, SUBSCHEMA_MAPS
from langchain_claude_relay._settings_checks import (
    MIN_TOP_K,
    SAMPLING_RANGES,
    THINKING_TOP_P_FLOOR,
    refused_between_tools_effort,
    refused_sampling,
)
from langchain_claude_relay.emulator.tokens import MediaText
from langchain_claude_relay.models import INFERENCE_GEO, cache_model_key, lookup_model
from langchain_claude_relay.request import Block
from langchain_claude_relay.tokens import block_parts, image_size, image_tokens

__all__ = [
    "MAX_MARKERS",
    "LOOKBACK_BOUNDARIES",
    "RUN_KINDS",
    "TTL_SECONDS",
    "BAD_RELAY_MODES",
    "InvalidRequest",
    "PrefixBlock",
    "PrefixRequest",
    "SplitTotals",
    "TokenSplit",
    "CacheBill",
    "BillingEntry",
    "BlockCounter",
    "CacheEngine",
    "check_sampling_payload",
    "check_generation_payload",
    "check_model_payload",
    "check_messages_fields",
    "check_file_sources",
    "MESSAGES_FIELDS",
    "PLATFORM_FIELDS",
    "INFERENCE_GEO_REFUSED",
    "FILES_API_PLATFORMS",
    "parse_openai",
    "parse_anthropic",
    "lookback_positions",
    "place_automatic",
    "apply_bad_relay",
    "cost_usd",
]

MAX_MARKERS = 4
LOOKBACK_BOUNDARIES = 20
"""Lookback positions a read checks per marker: its own and the 19 before it."""
RUN_KINDS = frozenset({"tool_use", "tool_result"})
"""Block kinds whose consecutive runs count as one lookback position each."""
TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
UNMARKABLE_KINDS = frozenset({"thinking", "redacted_thinking"})
IMAGE_KINDS = frozenset({"image", "image_url"})
DOCUMENT_KINDS = frozenset({"document", "file"})
_PURGE_FLOOR = 4096


class InvalidRequest(ValueError):
    """A request Claude would reject with a 400 ``invalid_request_error``."""


@dataclass(frozen=True)
class PrefixBlock:
    """One block of the cached prefix (a tool, a system block or a message content block).

    Attributes:
        section: ``"tools"``, ``"system"`` or ``"messages"``.
        kind: ``"tool"`` or the content type (``"text"``, ``"image"``, ``"tool_use"``...).
        role: ``"tool"``, ``"system"``, ``"user"`` or ``"assistant"``.
        hash: hash of the role and the block's JSON as received, ``cache_control`` removed.
        text: what a tokenizer reads (transient: never stored by the engine).
        ttl: the block's marker (``"5m"`` or ``"1h"``), or ``None``.
        where: the block's location in the payload, for error messages.

    """

    section: str
    kind: str
    role: str
    hash: str
    text: str
    ttl: str | None
    where: str


@dataclass(frozen=True)
class PrefixRequest:
    """A request as the cache sees it: the model, blocks in prefix order, the messages context.

    Attributes:
        model: the model id.
        blocks: the blocks in prefix order.
        context_hash: what invalidates the messages part though it is no block.
        automatic: the TTL of a top-level ``cache_control`` not yet placed (``place_automatic``).
    """

    model: str
    blocks: tuple[PrefixBlock, ...]
    context_hash: str
    automatic: str | None = None

    @property
    def prefix_keys(self) -> tuple[str, ...]:
        """For each block, the chained hash of the prefix ending there (the cache key).

        Claude keeps a cache per model: the chain starts from the model, as one model however
        it is spelled (an alias, its dated id, a relay's or a platform's id: ``cache_model_key``).
        """
        cached: tuple[str, ...] | None = self.__dict__.get("_keys")
        if cached is None:
            seed = b"emulator-prefix-v2\0" + cache_model_key(self.model).encode("utf-8", "replace")
            running = hashlib.sha256(seed)
            keys: list[str] = []
            context_added = False
            for block in self.blocks:
                if block.section == "messages" and not context_added:
                    running.update(self.context_hash.encode())
                    context_added = True
                running.update(block.hash.encode())
                keys.append(running.copy().hexdigest()[:32])
            cached = tuple(keys)
            object.__setattr__(self, "_keys", cached)
        return cached

    @property
    def marker_indices(self) -> tuple[int, ...]:
        """Indices of the blocks that carry a marker, in prefix order."""
        return tuple(i for i, block in enumerate(self.blocks) if block.ttl)


# ---------------------------------------------------------------------------------- parsing


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _block_hash(role: str, obj: Any) -> str:
    return hashlib.sha256(f"{role}\0{_dumps(obj)}".encode()).hexdigest()[:32]


def _without_marker(part: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in part.items() if k != "cache_control"}


def _ttl(marker: Any, where: str) -> str | None:
    if marker is None:
        return None
    if not isinstance(marker, Mapping) or marker.get("type") != "ephemeral":
        msg = f"{where}.cache_control: expected {{'type': 'ephemeral'}}, got {marker!r}"
        raise InvalidRequest(msg)
    ttl = marker.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        msg = f"{where}.cache_control.ttl: Input should be '5m' or '1h'"
        raise InvalidRequest(msg)
    return str(ttl)


def _text_of(kind: str, obj: Mapping[str, Any]) -> str:
    if kind == "text":
        return str(obj.get("text", ""))
    if kind == "thinking":
        return str(obj.get("thinking", ""))
    if kind == "tool_use":
        return f"{obj.get('name', '')} {_dumps(obj.get('input', {}))}"
    if kind == "tool_result":
        return _flatten_text(obj.get("content", ""))
    if kind in IMAGE_KINDS:
        return _image_text(obj)
    if kind in DOCUMENT_KINDS:
        return _document_text(obj)
    return _dumps(obj)


def _flatten_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _joined([_part_text(p) for p in content])
    return "" if content is None else _dumps(content)


def _joined(texts: Sequence[str]) -> str:
    """The texts on lines of their own, with the media any of them carries."""
    text = "\n".join(texts)
    media = [t for t in texts if isinstance(t, MediaText)]
    if not media:
        return text
    tokens = sum(t.media_tokens for t in media)
    return MediaText(text, tokens, sum(t.unsized_images for t in media))


def _part_text(part: Any) -> str:
    """What a tool result's part is billed for.

    A search result: its title, source and texts; an image or a document: as in a user turn
    (Claude bills them there too, and the planner estimates them so).
    """
    if not isinstance(part, Mapping):
        return str(part)
    kind = part.get("type")
    if kind == "search_result":
        fields = (str(part.get("title", "")), str(part.get("source", "")))
        return "\n".join((*fields, _flatten_text(part.get("content", []))))
    if kind in IMAGE_KINDS:
        return _image_text(part)
    if kind in DOCUMENT_KINDS:
        return _document_text(part)
    return str(part.get("text", ""))


def _image_text(obj: Mapping[str, Any]) -> MediaText:
    """An image, Claude's ``source`` or OpenAI's ``image_url``, billed by its size.

    ``tokens.image_tokens``, the rule the planner estimates with, is Claude's published one
    (``width * height / 750`` after resizing to the long-edge limit); an image whose size
    cannot be read (a URL) is billed ``TokenCosts.image_tokens``.
    """
    source = obj.get("source")
    if obj.get("type") == "image_url":
        source = _data_url_source(obj.get("image_url"))
    if image_size(source) is None:
        return MediaText("", unsized_images=1)
    return MediaText("", media_tokens=image_tokens(source))


def _document_text(obj: Mapping[str, Any]) -> MediaText:
    """A document (Claude's, or OpenAI's ``file`` part) billed the planner's way.

    Its title, context and text (a text or content source) are text; a base64 PDF costs
    ``tokens.PDF_PAGE_TOKENS`` per page counted by ``tokens.pdf_pages``, a PDF by URL or file
    id ``tokens.PDF_UNKNOWN_PAGES`` pages. Claude's per-page figure is not public (text plus a
    page image, ~1,500-3,000 tokens per Anthropic's docs): the emulator takes the planner's, so
    the two agree by construction there, and never bills a PDF's base64 as text.
    """
    if obj.get("type") == "file":  # OpenAI: {"file": {"file_data": "data:...", "filename"}}
        file = obj.get("file")
        file = file if isinstance(file, Mapping) else {}
        obj = {"title": file.get("filename"), "source": _data_url_source(file.get("file_data"))}
    parts = block_parts(Block("document", obj))
    return MediaText("\n".join(parts.prose), media_tokens=round(parts.media))


def _data_url_source(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``image_url`` or ``file_data``: a ``data:...;base64,`` URL as a base64 source."""
    url = value.get("url") if isinstance(value, Mapping) else value
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    if not head.endswith(";base64"):
        return None
    return {"type": "base64", "media_type": head[5:-7], "data": data}


def _block(
    section: str, role: str, obj: Mapping[str, Any], ttl: str | None, where: str
) -> PrefixBlock:
    kind = str(obj.get("type", "text"))
    kind = "image" if kind in IMAGE_KINDS else kind
    return PrefixBlock(section, kind, role, _block_hash(role, obj), _text_of(kind, obj), ttl, where)


def _content_parts(content: Any, where: str) -> list[tuple[dict[str, Any], Any, str]]:
    """(part without marker, raw marker, location) for a string or a list of parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [({"type": "text", "text": content}, None, where)] if content else []
    if not isinstance(content, list):
        msg = f"{where}: content must be a string or a list of content parts"
        raise InvalidRequest(msg)
    out = []
    for j, part in enumerate(content):
        if not isinstance(part, Mapping):
            msg = f"{where}.{j}: a content part must be an object"
            raise InvalidRequest(msg)
        out.append((_without_marker(part), part.get("cache_control"), f"{where}.{j}"))
    return out


def _markable(block: PrefixBlock) -> bool:
    return block.kind not in UNMARKABLE_KINDS and not (block.kind == "text" and not block.text)


def _check_markable(block: PrefixBlock) -> None:
    if block.ttl is None:
        return
    if block.kind in UNMARKABLE_KINDS:
        msg = f"{block.where}: cache_control cannot be set on {block.kind} blocks"
        raise InvalidRequest(msg)
    if block.kind == "text" and not block.text:
        msg = f"{block.where}: cache_control cannot be set for empty text blocks"
        raise InvalidRequest(msg)


def _mark_last(blocks: list[PrefixBlock], marker: Any, where: str) -> None:
    """Apply a message's marker to its last block."""
    ttl = _ttl(marker, where)
    if ttl is None:
        return
    if not blocks:
        msg = f"{where}: cache_control on a message without content blocks"
        raise InvalidRequest(msg)
    if blocks[-1].ttl is None:
        blocks[-1] = replace(blocks[-1], ttl=ttl, where=where)


def _context_hash(
    payload: Mapping[str, Any], blocks: Iterable[PrefixBlock], *, openai: bool = False
) -> str:
    """The hash of what invalidates the messages part though it is no block.

    These are settings Claude parses, so their key order is not part of them (unlike a block's
    bytes, matched exactly): ``{"type": "enabled", "budget_tokens": N}`` in either order is one
    key, as the planner's content hash has it.

    On the chat path (``openai``), ``parallel_tool_calls: false`` with tools (and a tool choice
    other than ``"none"``) is part of it: relays such as LiteLLM turn it into Claude's
    ``tool_choice.disable_parallel_tool_use``, which keys the messages part as the Messages
    path's ``tool_choice`` does. Absent and ``true`` are Claude's default (parallel tool use)
    and key alike, and leave the hash as it was without the field.
    """
    has_images = any(b.kind == "image" for b in blocks if b.section == "messages")
    context: dict[str, Any] = {
        "tool_choice": _sorted(payload.get("tool_choice")),
        "thinking": _sorted(payload.get("thinking")),
        "reasoning_effort": _sorted(payload.get("reasoning_effort")),
        "images": has_images,
    }
    if openai and _disables_parallel_tool_use(payload):
        context["disable_parallel_tool_use"] = True
    return hashlib.sha256(_dumps(context).encode()).hexdigest()[:32]


def _disables_parallel_tool_use(payload: Mapping[str, Any]) -> bool:
    """Whether a chat payload's ``parallel_tool_calls`` reaches Claude as no parallel tool use."""
    return (
        payload.get("parallel_tool_calls") is False
        and bool(payload.get("tools"))
        and payload.get("tool_choice") != "none"
    )


def _sorted(value: Any) -> Any:
    """A copy with every object's keys sorted (what parsed JSON is, whatever its key order)."""
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _require(payload: Mapping[str, Any]) -> tuple[str, list[Any]]:
    model, messages = payload.get("model"), payload.get("messages")
    if not isinstance(model, str) or not model:
        msg = "model: Field required (a model id such as 'claude-sonnet-4-6')"
        raise InvalidRequest(msg)
    if not isinstance(messages, list) or not messages:
        msg = "messages: Field required (a non-empty list of messages)"
        raise InvalidRequest(msg)
    return model, messages


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sampling_payload(payload: Mapping[str, Any]) -> None:
    """Refuse the sampling values Claude refuses, with its 400 wording.

    ``max_tokens`` (or OpenAI's ``max_completion_tokens``) must be an integer >= 0 (0 is the
    native APIs' cache warm-up), ``temperature`` and ``top_p`` numbers within
    ``SAMPLING_RANGES`` (0 to 1), ``top_k`` an integer >= 0. Absent or ``null`` values are fine.

    Args:
        payload: the request body (OpenAI chat completions or Anthropic Messages).

    Raises:
        InvalidRequest: for the first bad value.

    >>> check_sampling_payload({"temperature": 5})
    Traceback (most recent call last):
    ...
    langchain_claude_relay.emulator.engine.InvalidRequest: temperature: range: 0..1
    """
    for name in ("max_tokens", "max_completion_tokens", "top_k"):
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            msg = f"{name}: Input should be a valid integer"
            raise InvalidRequest(msg)
        if value < (MIN_TOP_K if name == "top_k" else 0):
            msg = f"{name}: Input should be greater than or equal to 0"
            raise InvalidRequest(msg)
    for name, (low, high) in SAMPLING_RANGES.items():
        value = payload.get(name)
        if value is None:
            continue
        if not _is_number(value):
            msg = f"{name}: Input should be a valid number"
            raise InvalidRequest(msg)
        if not low <= value <= high:  # NaN fails both comparisons
            msg = f"{name}: range: {low:g}..{high:g}"
            raise InvalidRequest(msg)


_THINKING_ON = frozenset({"enabled", "adaptive"})
_FORCING_CHOICES = frozenset({"any", "tool", "required", "function"})
THINKING_FORCED_TOOL = "Thinking may not be enabled when tool_choice forces tool use."
"""Claude's 400 for extended thinking with a ``tool_choice`` that forces a tool."""
BUDGET_NOT_BELOW_MAX = "max_tokens must be greater than thinking.budget_tokens"
"""Claude's 400 for ``thinking.budget_tokens`` >= ``max_tokens``."""
WARMUP_ONLY = (
    "max_tokens: 0 is only allowed for cache pre-warming: it needs a cache_control breakpoint "
    "and cannot be used with extended thinking, structured outputs or a forced tool choice"
)
"""Claude's 400 for a ``max_tokens: 0`` request that cannot be a cache warm-up."""
_DOCS = (
    " Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/"
    "extended-thinking#important-considerations-when-using-extended-thinking"
)
THINKING_TYPE_REFUSED = '"thinking.type.{kind}" is not supported for this model.'
"""Claude's 400 for a ``thinking.type`` the model does not take (the model table's
``thinking_types``); for ``enabled`` on a model that takes ``adaptive``, ``USE_ADAPTIVE``
follows."""
USE_ADAPTIVE = (
    ' Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
)
SAMPLING_DEPRECATED = "`{name}` is deprecated for this model."
"""Claude's 400 for ``temperature``, ``top_p`` or ``top_k`` on Claude 4.7 and later."""
SAMPLING_NOT_BOTH = (
    "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
)
"""Claude's 400 for ``temperature`` with ``top_p`` on Opus 4.1 to the 4.6 models."""
THINKING_TEMPERATURE = (
    "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode."
)
"""Claude's 400 for a ``temperature`` other than 1 with thinking on."""
THINKING_TOP_K = "`top_k` must be unset when thinking is enabled or in adaptive mode."
"""Claude's 400 for a ``top_k`` with thinking on."""
THINKING_TOP_P = (
    f"`top_p` must be unset or at least {THINKING_TOP_P_FLOOR:g} when thinking is enabled or in "
    "adaptive mode."
)
"""The 400 for a ``top_p`` below 0.95 with thinking on (the emulator's wording)."""
NO_PREFILL = (
    "This model does not support assistant message prefill. The conversation must end with a "
    "user message."
)
FORCED_TOOL_REFUSED = 'tool_choice: type "tool" and "any" are not supported for this model.'
BETWEEN_TOOLS_EFFORT = '"thinking.type.between_tools" is not supported at effort "{effort}".'
"""The 400 for ``between_tools`` thinking above effort ``high`` (the emulator's wording: the
source says only that it is a 400)."""
"""Claude's 400 for a forced tool choice on Opus 5.5, Sonnet 5.5 and Fable 5.1 (the model
table's ``forced_tool_choice``)."""
"""Claude's 400 for a request ending with an assistant turn on Claude 4.6 and later."""
OPEN_OBJECT = "{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
"""Claude's 400 for a structured-output schema with an object lacking
``additionalProperties: false``."""
OPEN_OBJECT_VALUE = (
    "{where}: For 'object' type, 'additionalProperties: {value}' is not supported. Please set "
    "'additionalProperties' to false"
)
"""Claude's 400 for a structured-output object whose ``additionalProperties`` is not false."""
INFERENCE_GEO_REFUSED = "inference_geo is not supported for this model."
"""The emulator's 400 for data residency on a model without it (Claude's wording not known)."""
EXTRA_INPUT = "{name}: Extra inputs are not permitted"
"""Claude's 400 for a top-level field the Messages API does not know."""
MESSAGES_FIELDS = frozenset(
    {
        # Source: the anthropic SDK 2.16's MessageCreateParams (the body messages.create
        # sends), without the ones it sends as headers (betas, user_profile_id, workspace_id).
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "output_config",
        "cache_control",  # automatic caching (DESIGN.md, since 2026-02-19)
        "diagnostics",  # cache diagnostics (DESIGN.md); the package sends it
        "speed",
        # Sampling: gone from SDK 2.16's params, still taken by Claude 4.6 and earlier and
        # refused per model by ``check_model_payload``; the package sends them.
        "temperature",
        "top_p",
        "top_k",
        # Beta fields (the SDK's beta MessageCreateParams; their anthropic-beta header is not
        # checked here), and the older structured-outputs beta's ``output_format``.
        "context_management",
        "mcp_servers",
        "compaction",
        "thread",
        "fallbacks",
        "fallback_credit_token",
        "billing_policy",
        "output_format",
    }
)
"""The top-level fields of a Messages request body: any other is a 400 on the Messages paths
(``check_messages_fields``), as Claude answers an unknown field. The count-tokens endpoints are
checked against the same list, though Claude's takes fewer (no ``max_tokens``, ``stream``,
sampling...: the package drops those before counting)."""
PLATFORM_FIELDS: dict[str, frozenset[str]] = {
    # data residency is the Claude API's (models.json's ``inference_geo`` note)
    "anthropic": frozenset({"inference_geo"}),
    # the anthropic SDK 2.16's AnthropicBedrock adds these to the body (``lib/bedrock``):
    # the API version, the anthropic-beta header's betas and the user-profile header
    "bedrock": frozenset({"anthropic_version", "anthropic_beta", "user_profile_id"}),
    # AnthropicVertex adds the API version (``lib/vertex``); count-tokens keeps ``model``
    "vertex": frozenset({"anthropic_version"}),
}
"""The top-level body fields a platform's Messages path takes beyond ``MESSAGES_FIELDS``.
Bedrock's ``model`` and ``stream`` come from the path (``platforms.native_payload``)."""
FILES_API_PLATFORMS = frozenset({"anthropic"})
"""The Messages paths that take Files API sources: the Claude API only (Anthropic's Files API
page: not on Amazon Bedrock or Google Vertex AI)."""
FILE_SOURCE_REFUSED = (
    "{where}: Input tag 'file' found using 'type' does not match any of the expected tags: {tags}"
)
"""The 400 for a Files API source on Bedrock or Vertex, worded as Claude's validator words a
source type it does not know (the emulator's wording; the tags listed are the source types the
emulator takes there, ``_SOURCE_TAGS``)."""
_SOURCE_TAGS: dict[str, tuple[str, ...]] = {
    "image": ("base64", "url"),
    "document": ("base64", "content", "text", "url"),
}


def _thinking_on(payload: Mapping[str, Any]) -> bool:
    """Whether ``thinking`` turns extended thinking on (``enabled``, ``adaptive``)."""
    thinking = payload.get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") in _THINKING_ON


def _forces_tool(choice: Any) -> bool:
    """Whether a tool choice forces a tool, in either spelling.

    Claude's ``{"type": "any"}`` and ``{"type": "tool", "name": ...}``; OpenAI's ``"required"``
    and ``{"type": "function", "function": {"name": ...}}``. ``auto`` and ``none`` do not.
    """
    if isinstance(choice, str):
        return choice in _FORCING_CHOICES
    return isinstance(choice, Mapping) and choice.get("type") in _FORCING_CHOICES


def _structured_output(payload: Mapping[str, Any]) -> bool:
    """Whether the Messages payload asks for structured outputs.

    ``output_config.format`` (what the package's Messages renderer sends for a JSON schema) or
    the older beta's top-level ``output_format``; an ``output_config`` with only ``effort`` is
    not one.
    """
    config = payload.get("output_config")
    in_config = isinstance(config, Mapping) and config.get("format") is not None
    return in_config or payload.get("output_format") is not None


def _last_turn_role(payload: Mapping[str, Any], *, native: bool) -> Any:
    """The role of the conversation's last turn as Claude receives it.

    On the chat path system and developer messages become system blocks wherever they sit, so
    the last turn is the last other message.
    """
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if native or role not in ("system", "developer"):
            return role
    return None


def _output_schema(payload: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Where a Messages payload's structured-output JSON schema sits, and the schema."""
    config = payload.get("output_config")
    places = (
        ("output_config.format", config.get("format") if isinstance(config, Mapping) else None),
        ("output_format", payload.get("output_format")),
    )
    for where, found in places:
        if isinstance(found, Mapping) and found.get("type") == "json_schema":
            return f"{where}.schema", found.get("schema")
    return None


def _open_object(schema: Any, path: str = "") -> tuple[str, Any] | None:
    """The first object in a schema that is not closed (``additionalProperties: false``).

    Looks through ``properties``, ``patternProperties``, ``items``, ``prefixItems``, ``$defs``,
    ``definitions``, ``anyOf``, ``allOf`` and ``oneOf``. Returns the object's path (``""`` for
    the schema itself) and its ``additionalProperties`` (``...`` when absent), or ``None``.

    >>> _open_object({"type": "object", "properties": {"a": {"type": "object"}},
    ...               "additionalProperties": False})
    ('properties.a', Ellipsis)
    """
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            found = _open_object(item, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
        return None
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object and schema.get("additionalProperties") is not False:
        return path, schema.get("additionalProperties", ...)
    for key in (*SUBSCHEMA_MAPS, "items", *SUBSCHEMA_LISTS):
        sub = schema.get(key)
        where = f"{path}.{key}" if path else key
        if key in SUBSCHEMA_MAPS and isinstance(sub, Mapping):
            for name, value in sub.items():
                found = _open_object(value, f"{where}.{name}")
                if found is not None:
                    return found
        elif key not in SUBSCHEMA_MAPS and sub is not None:
            found = _open_object(sub, where)
            if found is not None:
                return found
    return None


def check_model_payload(
    payload: Mapping[str, Any], request: PrefixRequest, *, native: bool
) -> None:
    """Refuse what the request's model refuses, with Claude's 400 wording.

    The model's facts come from the model table (``lookup_model``: ``thinking_types``,
    ``sampling``, ``takes_prefill``, ``takes_forced_tool``, with their sources); a fact the table
    does not have
    refuses nothing. In this order:

    * a ``thinking.type`` not in the model's ``thinking_types`` (``enabled`` on Claude 4.7 and
      later, ``adaptive`` on 4.5 and earlier, ``disabled`` on the models that always think);
    * ``sampling == "none"`` (Claude 4.7 and later): a ``temperature``, ``top_p`` or ``top_k``
      other than Claude's defaults (``temperature=1``, ``top_p=1``; the first refused is named);
      ``"temperature_or_top_p"`` (Opus 4.1 to the 4.6 models): ``temperature`` with ``top_p``
      (``_settings_checks.refused_sampling``, the client's rule);
    * with thinking on (``enabled`` or ``adaptive``): a ``temperature`` other than 1, a
      ``top_k``, a ``top_p`` below 0.95;
    * ``takes_prefill is False`` (Claude 4.6 and later): a conversation whose last turn is the
      assistant's (on the chat path, the last message that is not a system or developer one);
    * ``takes_forced_tool is False`` (Opus 5.5, Sonnet 5.5, Fable 5.1): a ``tool_choice`` that
      forces a tool, in either spelling;
    * ``between_tools`` thinking at an effort above ``high`` (``refused_between_tools_effort``);
    * (Messages paths) an ``inference_geo`` that is not a geo of the model table, or on a model
      billed the same everywhere (Claude 4.5 and earlier: no data residency);
    * (Messages paths) a structured-output schema (``output_config.format`` or the older
      ``output_format``, type ``json_schema``) with an object that is not closed by
      ``additionalProperties: false``, at any depth. The chat path's ``response_format`` is
      left alone: relays translate it (and close its objects) on their way to Claude.

    ``null`` values count as absent, as in ``check_sampling_payload``.

    Args:
        payload: the request body (OpenAI chat completions or Anthropic Messages).
        request: its parsed prefix (the model id).
        native: whether it came in on a Messages path (Anthropic, Bedrock, Vertex).

    Raises:
        InvalidRequest: for the first refused setting.

    >>> ask = {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "hi"}]}
    >>> payload = {**ask, "temperature": 0.2}
    >>> check_model_payload(payload, parse_anthropic(payload), native=True)
    Traceback (most recent call last):
    ...
    langchain_claude_relay.emulator.engine.InvalidRequest: `temperature` is deprecated for this model.
    """  # noqa: E501
    spec = lookup_model(request.model)
    thinking = payload.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if spec.thinking_types and isinstance(kind, str) and kind not in spec.thinking_types:
        msg = THINKING_TYPE_REFUSED.format(kind=kind)
        if kind == "enabled" and "adaptive" in spec.thinking_types:
            msg += USE_ADAPTIVE
        raise InvalidRequest(msg)
    refused = refused_sampling(payload, spec.sampling)
    if spec.sampling == "none" and refused:
        raise InvalidRequest(SAMPLING_DEPRECATED.format(name=refused[0]))
    if spec.sampling == "temperature_or_top_p" and refused:
        raise InvalidRequest(SAMPLING_NOT_BOTH)
    if _thinking_on(payload):
        temperature, top_p = payload.get("temperature"), payload.get("top_p")
        if temperature is not None and temperature != 1:
            raise InvalidRequest(THINKING_TEMPERATURE + _DOCS)
        if payload.get("top_k") is not None:
            raise InvalidRequest(THINKING_TOP_K + _DOCS)
        if top_p is not None and _is_number(top_p) and top_p < THINKING_TOP_P_FLOOR:
            raise InvalidRequest(THINKING_TOP_P + _DOCS)
    if spec.takes_prefill is False and _last_turn_role(payload, native=native) == "assistant":
        raise InvalidRequest(NO_PREFILL)
    if spec.takes_forced_tool is False and _forces_tool(payload.get("tool_choice")):
        raise InvalidRequest(FORCED_TOOL_REFUSED)
    effort = refused_between_tools_effort(payload)  # the client's rule
    if effort is not None:
        raise InvalidRequest(BETWEEN_TOOLS_EFFORT.format(effort=effort))
    geo = payload.get("inference_geo") if native else None  # the Claude API's field
    if geo is not None and (not isinstance(geo, str) or geo not in INFERENCE_GEO.geos):
        choices = " or ".join(repr(g) for g in sorted(INFERENCE_GEO.geos))
        raise InvalidRequest(f"inference_geo: Input should be {choices}")
    if geo is not None and not spec.inference_geo_multipliers:
        raise InvalidRequest(INFERENCE_GEO_REFUSED)
    schema = _output_schema(payload) if native else None
    if schema is not None:
        where, found = schema[0], _open_object(schema[1])
        if found is not None:
            path, value = found
            at = f" (at {path})" if path else ""
            if value is ...:
                raise InvalidRequest(OPEN_OBJECT.format(where=where) + at)
            shown = json.dumps(value) if isinstance(value, bool) else _dumps(value)
            raise InvalidRequest(OPEN_OBJECT_VALUE.format(where=where, value=shown) + at)


def check_generation_payload(
    payload: Mapping[str, Any], request: PrefixRequest, *, native: bool, interleaved: bool = False
) -> None:
    """Refuse the combinations of generation settings Claude refuses, with its 400 wording.

    Claude checks these on the Messages API, Bedrock and Vertex; an OpenAI-compatible relay
    forwards the same settings to Claude, so the chat path refuses them too (the package's
    tests then catch the package sending them on any path). First what the request's model
    refuses (``check_model_payload``), then:

    * ``max_tokens: 0`` (Messages paths only; the chat path keeps answering an empty, cut
      reply) is a cache pre-warm: it needs a ``cache_control`` breakpoint (on a block, a tool
      or at the top level) and cannot come with extended thinking, structured outputs
      (``output_config.format``, ``output_format``) or a forced tool choice.
    * Extended thinking (``thinking`` of type ``enabled`` or ``adaptive``) with a tool choice
      that forces a tool (``any``/``tool``; on the chat path ``required``/``function``).
    * ``thinking.budget_tokens`` (type ``enabled``) of at least ``max_tokens`` (on the chat
      path ``max_completion_tokens``, else ``max_tokens``, checked only when given), unless
      interleaved thinking is on (the ``interleaved-thinking-2025-05-14`` beta: the budget
      spans every thinking block of the turn).

    Args:
        payload: the request body (OpenAI chat completions or Anthropic Messages).
        request: its parsed prefix, as Claude receives it (the markers a warm-up needs).
        native: whether it came in on a Messages path (Anthropic, Bedrock, Vertex).
        interleaved: whether the request's ``anthropic-beta`` header asks for interleaved
            thinking.

    Raises:
        InvalidRequest: for the first refused combination.

    >>> ask = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    >>> payload = {**ask, "thinking": {"type": "adaptive"}, "tool_choice": "required"}
    >>> request = parse_openai(payload)
    >>> check_generation_payload(payload, request, native=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    langchain_claude_relay.emulator.engine.InvalidRequest: Thinking may not be enabled when ...
    """
    check_model_payload(payload, request, native=native)
    thinking, forced = _thinking_on(payload), _forces_tool(payload.get("tool_choice"))
    if native and payload.get("max_tokens") == 0:
        reasons = [
            "no cache_control breakpoint"
            if not request.marker_indices and request.automatic is None
            else "",
            "extended thinking" if thinking else "",
            "structured outputs" if _structured_output(payload) else "",
            "a forced tool choice" if forced else "",
        ]
        found = [r for r in reasons if r]
        if found:
            msg = f"{WARMUP_ONLY} (this request has {', '.join(found)})"
            raise InvalidRequest(msg)
    if thinking and forced:
        raise InvalidRequest(THINKING_FORCED_TOOL)
    config = payload.get("thinking")
    budget = config.get("budget_tokens") if isinstance(config, Mapping) else None
    names = ("max_tokens",) if native else ("max_completion_tokens", "max_tokens")
    name = next((n for n in names if payload.get(n) is not None), None)
    if (
        thinking
        and not interleaved
        and config is not None
        and config.get("type") == "enabled"
        and _is_number(budget)
        and name is not None
        and budget >= payload[name]
    ):
        msg = f"{BUDGET_NOT_BELOW_MAX} (got {name}={payload[name]}, budget_tokens={budget})"
        raise InvalidRequest(msg)


def _finish(
    payload: Mapping[str, Any], model: str, blocks: list[PrefixBlock], *, openai: bool = False
) -> PrefixRequest:
    for block in blocks:
        _check_markable(block)
    automatic = _ttl(payload.get("cache_control"), "cache_control")
    context = _context_hash(payload, blocks, openai=openai)
    return PrefixRequest(model, tuple(blocks), context, automatic)


def _tool_block(tool: Any, where: str, openai: bool) -> PrefixBlock:
    if not isinstance(tool, Mapping):
        msg = f"{where}: a tool must be an object"
        raise InvalidRequest(msg)
    obj = _without_marker(tool)
    marker = tool.get("cache_control")
    schema_part: Any = obj
    if openai and isinstance(tool.get("function"), Mapping):
        function = tool["function"]
        obj["function"] = _without_marker(function)
        marker = marker or function.get("cache_control")
        schema_part = obj["function"]
    ttl = _ttl(marker, where)
    return PrefixBlock(
        "tools", "tool", "tool", _block_hash("tool", obj), _dumps(schema_part), ttl, where
    )


def parse_openai(payload: Mapping[str, Any]) -> PrefixRequest:
    """Read an OpenAI chat-completions payload the way a Claude relay converts it.

    System and developer messages become system blocks (in order, wherever they sit); a string
    content is one text block; assistant ``tool_calls`` become ``tool_use`` blocks; ``tool``
    messages become ``tool_result`` blocks of a user turn. A marker may sit on a content part,
    on a message (it applies to the message's last block), on a tool call, or on a tool (at the
    top level or inside ``function``). Markers inside a tool message's parts are hoisted to its
    ``tool_result`` block. A top-level ``cache_control`` asks for automatic caching (as
    OpenRouter passes it on for Claude).

    Args:
        payload: the request body.

    Returns:
        The prefix as the cache sees it.

    Raises:
        InvalidRequest: if the payload is malformed, a marker is invalid or a sampling value
            is out of Claude's range.

    """
    model, messages = _require(payload)
    check_sampling_payload(payload)
    parallel = payload.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        msg = "parallel_tool_calls: Input should be a valid boolean"
        raise InvalidRequest(msg)
    tools = [_tool_block(t, f"tools.{i}", True) for i, t in enumerate(payload.get("tools") or [])]
    system: list[PrefixBlock] = []
    turns: list[PrefixBlock] = []
    for m, msg in enumerate(messages):
        where = f"messages.{m}"
        role = msg.get("role") if isinstance(msg, Mapping) else None
        content = (msg.get("content"), f"{where}.content") if isinstance(msg, Mapping) else None
        if role in ("system", "developer") and content:
            out, target = _blocks("system", "system", *content), system
        elif role in ("user", "assistant") and content:
            out, target = _blocks("messages", str(role), *content), turns
            out.extend(_tool_uses(msg.get("tool_calls") or [], f"{where}.tool_calls"))
        elif role in ("tool", "function"):
            out, target = [_tool_result(msg, where)], turns
        else:
            text = (
                f"{where}.role: expected system, developer, user, assistant or tool, got {role!r}"
            )
            raise InvalidRequest(text)
        _mark_last(out, msg.get("cache_control"), where)
        target.extend(out)
    return _finish(payload, model, [*tools, *system, *turns], openai=True)


def _blocks(section: str, role: str, content: Any, where: str) -> list[PrefixBlock]:
    return [_block(section, role, p, _ttl(c, w), w) for p, c, w in _content_parts(content, where)]


def _tool_uses(calls: Sequence[Any], where: str) -> list[PrefixBlock]:
    out = []
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            msg = f"{where}.{k}: a tool call needs a 'function' with 'name' and 'arguments'"
            raise InvalidRequest(msg)
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            msg = f"{where}.{k}.function.arguments: not valid JSON"
            raise InvalidRequest(msg) from None
        obj = {
            "type": "tool_use",
            "id": call.get("id"),
            "name": function.get("name"),
            "input": arguments,
        }
        ttl = _ttl(call.get("cache_control"), f"{where}.{k}")
        out.append(_block("messages", "assistant", obj, ttl, f"{where}.{k}"))
    return out


def _tool_result(msg: Mapping[str, Any], where: str) -> PrefixBlock:
    parts = _content_parts(msg.get("content"), f"{where}.content")
    content: Any = (
        msg.get("content") if isinstance(msg.get("content"), str) else [p for p, _, _ in parts]
    )
    hoisted = next((c for _, c, _ in parts if c is not None), None)
    obj = {
        "type": "tool_result",
        "tool_use_id": msg.get("tool_call_id") or msg.get("name"),
        "content": content,
    }
    return _block("messages", "user", obj, _ttl(hoisted, where), where)


def check_messages_fields(payload: Mapping[str, Any], platform: str = "anthropic") -> None:
    """Refuse a top-level field the Messages API does not know, with Claude's 400 wording.

    Allowed: ``MESSAGES_FIELDS`` and the platform's ``PLATFORM_FIELDS`` (``anthropic_version``
    on Bedrock and Vertex). The first other field, in the payload's order, is refused.

    Args:
        payload: the Messages request body (for Bedrock and Vertex, with the path's ``model``
            and, on Bedrock, ``stream`` added: ``platforms.native_payload``).
        platform: ``"anthropic"``, ``"bedrock"`` or ``"vertex"``.

    Raises:
        InvalidRequest: for an unknown field.

    >>> check_messages_fields({"model": "m", "messages": [], "reasoning_effort": "low"})
    Traceback (most recent call last):
    ...
    langchain_claude_relay.emulator.engine.InvalidRequest: reasoning_effort: Extra inputs are not permitted
    """  # noqa: E501
    allowed = MESSAGES_FIELDS | PLATFORM_FIELDS[platform]
    for name in payload:
        if name not in allowed:
            raise InvalidRequest(EXTRA_INPUT.format(name=name))


def _file_source(content: Any, where: str) -> tuple[str, str] | None:
    """The location and block type of the first Files API source in a list of blocks.

    Looks into a tool result's content and a ``content`` document source's blocks too; the
    location is written as Claude's validator writes it (with the block and source types).
    """
    if not isinstance(content, list):
        return None
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        at, nested, inner = f"{where}.{j}", None, ""
        if kind == "tool_result":
            nested, inner = part.get("content"), f"{at}.tool_result.content"
        elif kind in _SOURCE_TAGS and isinstance(part.get("source"), Mapping):
            source = part["source"]
            if source.get("type") == "file":
                return f"{at}.{kind}.source", str(kind)
            nested, inner = source.get("content"), f"{at}.{kind}.source.content.content"
        found = _file_source(nested, inner)
        if found is not None:
            return found
    return None


def check_file_sources(payload: Mapping[str, Any], platform: str = "anthropic") -> None:
    """Refuse a Files API source on a platform without the Files API (Bedrock, Vertex).

    A Files API source is ``{"type": "file", "file_id": ...}`` as an image's or a document's
    ``source``, in a turn, in a tool result's content or in a ``content`` document source.
    ``FILES_API_PLATFORMS`` (the Claude API) take it.

    Args:
        payload: the Messages request body.
        platform: ``"anthropic"``, ``"bedrock"`` or ``"vertex"``.

    Raises:
        InvalidRequest: for the first Files API source, with ``FILE_SOURCE_REFUSED``.

    >>> image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    >>> check_file_sources({"messages": [{"role": "user", "content": [image]}]}, "vertex")
    Traceback (most recent call last):
    ...
    langchain_claude_relay.emulator.engine.InvalidRequest: messages.0.content.0.image.source: Input tag 'file' found using 'type' does not match any of the expected tags: 'base64', 'url'
    """  # noqa: E501
    messages = payload.get("messages")
    if platform in FILES_API_PLATFORMS or not isinstance(messages, list):
        return
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        found = _file_source(content, f"messages.{m}.content")
        if found is not None:
            tags = ", ".join(f"'{tag}'" for tag in _SOURCE_TAGS[found[1]])
            raise InvalidRequest(FILE_SOURCE_REFUSED.format(where=found[0], tags=tags))


def parse_anthropic(payload: Mapping[str, Any], platform: str = "anthropic") -> PrefixRequest:
    """Read an Anthropic Messages payload (``tools``, ``system``, ``messages``, ``cache_control``).

    Args:
        payload: the request body.
        platform: where it came in: ``"anthropic"`` (the Claude API), ``"bedrock"`` or
            ``"vertex"`` (their body fields and what they refuse differ).

    Returns:
        The prefix as the cache sees it.

    Raises:
        InvalidRequest: if the payload is malformed, has a field the Messages API does not
            know (``check_messages_fields``), a Files API source the platform does not take
            (``check_file_sources``), an invalid marker, or a sampling value out of Claude's
            range.

    """
    model, messages = _require(payload)
    check_messages_fields(payload, platform)
    check_file_sources(payload, platform)
    check_sampling_payload(payload)
    tools = [_tool_block(t, f"tools.{i}", False) for i, t in enumerate(payload.get("tools") or [])]
    system = _blocks("system", "system", payload.get("system"), "system")
    turns: list[PrefixBlock] = []
    for m, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, Mapping) else None
        if role not in ("user", "assistant"):
            text = f"messages.{m}.role: Input should be 'user' or 'assistant'"
            raise InvalidRequest(text)
        turns.extend(_blocks("messages", str(role), msg.get("content"), f"messages.{m}.content"))
    return _finish(payload, model, [*tools, *system, *turns])


def place_automatic(request: PrefixRequest) -> PrefixRequest:
    """Put a top-level marker where Claude puts it: on the last block that can carry one.

    Walks back past blocks that cannot carry a marker (thinking, redacted thinking, empty text);
    with none left there is no marker and no caching. A last block that already carries a
    marker with the same TTL makes it a no-op. The slot count and the TTL order are checked
    afterwards with the other markers' (``validate_markers``).

    Args:
        request: the parsed request (``request.automatic`` is the top-level marker's TTL).

    Returns:
        The request with the marker on its block and ``automatic`` cleared.

    Raises:
        InvalidRequest: if the last block carries a marker with the other TTL.
    """
    ttl = request.automatic
    if ttl is None:
        return request
    blocks = list(request.blocks)
    last = next((i for i in range(len(blocks) - 1, -1, -1) if _markable(blocks[i])), None)
    if last is not None:
        block = blocks[last]
        if block.ttl is None:
            where = f"{block.where} (top-level cache_control)"
            blocks[last] = replace(block, ttl=ttl, where=where)
        elif block.ttl != ttl:
            msg = (
                f"cache_control: the top-level cache_control (ttl='{ttl}') applies to the last "
                f"cacheable block, {block.where}, which already has cache_control with "
                f"ttl='{block.ttl}'; the two must have the same ttl."
            )
            raise InvalidRequest(msg)
    return replace(request, blocks=tuple(blocks), automatic=None)


# ---------------------------------------------------------------------------------- bad relays


def _drop_markers(request: PrefixRequest) -> PrefixRequest:
    blocks = tuple(replace(b, ttl=None) for b in request.blocks)
    return replace(request, blocks=blocks, automatic=None)


def _drop_ttl(request: PrefixRequest) -> PrefixRequest:
    blocks = tuple(replace(b, ttl="5m" if b.ttl else None) for b in request.blocks)
    return replace(request, blocks=blocks, automatic="5m" if request.automatic else None)


def _drop_block_markers(request: PrefixRequest) -> PrefixRequest:
    """Strip the markers on blocks and tools but forward the top-level one (automatic caching)."""
    return replace(request, blocks=tuple(replace(b, ttl=None) for b in request.blocks))


def _drop_automatic(request: PrefixRequest) -> PrefixRequest:
    """Forward the block markers but not the top-level field (a relay that does not know it)."""
    return replace(request, automatic=None)


def _inject_marker(request: PrefixRequest) -> PrefixRequest:
    """Add a 5m marker on the last block of the last user turn (as some relays do)."""
    blocks = list(request.blocks)
    for i in range(len(blocks) - 1, -1, -1):
        if blocks[i].section == "messages" and blocks[i].role == "user" and blocks[i].ttl is None:
            if blocks[i].kind not in UNMARKABLE_KINDS and (
                blocks[i].kind != "text" or blocks[i].text
            ):
                blocks[i] = replace(
                    blocks[i], ttl="5m", where=blocks[i].where + " (injected by relay)"
                )
            break
        if blocks[i].section == "messages" and blocks[i].role == "user":
            break
    return replace(request, blocks=tuple(blocks))


BAD_RELAY_MODES: dict[str, Callable[[PrefixRequest], PrefixRequest]] = {
    "drop_cache_control": _drop_markers,
    "drop_ttl": _drop_ttl,
    "inject_marker": _inject_marker,
    "drop_automatic": _drop_automatic,
    "drop_block_markers": _drop_block_markers,
}
"""What misbehaving relays do to markers: strip them all, strip ``ttl`` (1h becomes 5m), add
one, drop the top-level ``cache_control`` (automatic caching) while keeping block markers, or
the reverse (strip block markers, forward the top-level one)."""


def apply_bad_relay(request: PrefixRequest, mode: str | None) -> PrefixRequest:
    """Do to the markers what a misbehaving relay does (``mode=None``: nothing)."""
    return request if mode is None else BAD_RELAY_MODES[mode](request)


# ---------------------------------------------------------------------------------- billing


class SplitTotals:
    """Input totals derived from the counts by billing kind (of a split, a bill or a log entry)."""

    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int

    @property
    def cache_write(self) -> int:
        """All cache-write tokens (5m + 1h)."""
        return self.cache_write_5m + self.cache_write_1h

    @property
    def prompt_total(self) -> int:
        """All input tokens: plain + reads + writes."""
        return self.input_tokens + self.cache_read + self.cache_write


@dataclass(frozen=True)
class TokenSplit(SplitTotals):
    """One request's tokens by billing kind (plain input excludes cache reads and writes)."""

    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    output_tokens: int = 0


def cost_usd(model: str, split: TokenSplit, inference_geo: str | None = None) -> float | None:
    """USD cost of ``split`` at the model's prices, or ``None`` for an unpriced model.

    ``inference_geo`` (the request's data residency) multiplies every price by the model's
    multiplier for it (``ModelSpec.price_multiplier``: 1.1 for ``"us"`` on 4.6 and later).
    """
    spec = lookup_model(model)
    if spec.prices is None:
        return None
    charges = spec.prices.charges(
        split.input_tokens,
        split.cache_read,
        split.cache_write_5m,
        split.cache_write_1h,
        split.output_tokens,
        multiplier=spec.price_multiplier(inference_geo),
    )
    return round(sum(charges), 10)


@dataclass(frozen=True)
class CacheBill:
    """The engine's verdict for one request, before anything is committed.

    Attributes:
        model: the model id.
        start: the request's start time (the clock TTLs restart from).
        split: the input tokens by kind (``output_tokens`` is 0 here).
        block_tokens: each block's token count, in prefix order.
        hit_index: the block index of the highest hit, or ``None``.
        marker_indices: blocks carrying a marker.
        writes: (block index, cache key, ttl) of each entry to write.
        refreshes: (cache key, ttl) of each entry hit (its TTL restarts at ``start``).

    """

    model: str
    start: float
    split: TokenSplit
    block_tokens: tuple[int, ...]
    hit_index: int | None
    marker_indices: tuple[int, ...]
    writes: tuple[tuple[int, str, str], ...]
    refreshes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BillingEntry(SplitTotals):
    """One billed request, as the emulator's billing log keeps it (numbers only, no text)."""

    request_id: str
    model: str
    time: float
    endpoint: str
    streamed: bool
    input_tokens: int
    cache_read: int
    cache_write_5m: int
    cache_write_1h: int
    output_tokens: int
    cost_usd: float | None
    hit_index: int | None
    marker_indices: tuple[int, ...]
    write_indices: tuple[int, ...]
    block_count: int


class BlockCounter(Protocol):
    """Counts a prefix block's tokens (the emulator's tokenizer, or a stub in tests)."""

    def count_block(self, block_hash: str, kind: str, text: str) -> int:
        """Tokens of one block."""
        ...


@dataclass
class _Entry:
    ttl: str
    expires_at: float


def _default_minimum(model: str) -> int:
    return lookup_model(model).min_cache_tokens


def validate_markers(request: PrefixRequest) -> None:
    """Claude's marker rules: at most 4, and no 1h marker after a 5m one.

    A top-level marker is placed first (``place_automatic``) and counts like the others.

    Raises:
        InvalidRequest: with Anthropic's wording.

    """
    request = place_automatic(request)
    marked = [request.blocks[i] for i in request.marker_indices]
    if len(marked) > MAX_MARKERS:
        msg = (
            f"A maximum of {MAX_MARKERS} blocks with cache_control may be provided. "
            f"Found {len(marked)}."
        )
        raise InvalidRequest(msg)
    first_5m = next((b for b in marked if b.ttl == "5m"), None)
    if first_5m is not None:
        late = next((b for b in marked[marked.index(first_5m) :] if b.ttl == "1h"), None)
        if late is not None:
            msg = (
                "Invalid cache_control TTL ordering: a ttl='1h' cache_control block must not "
                f"come after a ttl='5m' cache_control block (ttl='1h' at {late.where} comes "
                f"after ttl='5m' at {first_5m.where})."
            )
            raise InvalidRequest(msg)


@dataclass
class CacheEngine:
    """The cache store and the rules that read, bill and write it.

    Attributes:
        counter: counts block tokens (memoized per block hash).
        minimum: the minimum cacheable prefix for a model id.
        lookback: lookback positions a read checks per marker (20 on Claude), counted by
            ``lookback_positions``.

    """

    counter: BlockCounter
    minimum: Callable[[str], int] = _default_minimum
    lookback: int = LOOKBACK_BOUNDARIES
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _purge_at: int = _PURGE_FLOOR

    def plan(self, request: PrefixRequest, now: float) -> CacheBill:
        """Validate, look up and bill a request without changing the store.

        Args:
            request: the parsed request.
            now: the request's start time.

        Returns:
            The bill, with the entries to write and refresh when the response begins.

        Raises:
            InvalidRequest: if the markers break Claude's rules.

        """
        request = place_automatic(request)
        validate_markers(request)
        blocks, keys = request.blocks, request.prefix_keys
        tokens = tuple(self.counter.count_block(b.hash, b.kind, b.text) for b in blocks)
        cumulative = _running_sum(tokens)
        markers = request.marker_indices
        positions = lookback_positions(blocks)
        hit, refreshes = -1, []
        for index in markers:
            for j in range(index, -1, -1):
                if positions[index] - positions[j] >= self.lookback:
                    break
                entry = self._entries.get(keys[j])
                if entry is not None and now < entry.expires_at:
                    refreshes.append((keys[j], entry.ttl))
                    hit = max(hit, j)
                    break
        read = cumulative[hit] if hit >= 0 else 0
        floor = self.minimum(request.model)
        writers = [i for i in markers if i > hit and cumulative[i] >= floor]
        last_1h = max((i for i in writers if blocks[i].ttl == "1h"), default=None)
        end_1h = cumulative[last_1h] if last_1h is not None else read
        end_all = cumulative[writers[-1]] if writers else read
        split = TokenSplit(
            input_tokens=(cumulative[-1] if cumulative else 0) - end_all,
            cache_read=read,
            cache_write_5m=end_all - end_1h,
            cache_write_1h=end_1h - read,
        )
        return CacheBill(
            model=request.model,
            start=now,
            split=split,
            block_tokens=tokens,
            hit_index=hit if hit >= 0 else None,
            marker_indices=markers,
            writes=tuple((i, keys[i], str(blocks[i].ttl)) for i in writers),
            refreshes=tuple(dict.fromkeys(refreshes)),
        )

    def input_total(self, request: PrefixRequest) -> int:
        """All input tokens of a request (plain + reads + writes, whatever the cache holds).

        This is what ``/v1/messages/count_tokens`` answers: ``plan(...).split.prompt_total``
        for the same request, without validating markers or touching the store.
        """
        return sum(self.counter.count_block(b.hash, b.kind, b.text) for b in request.blocks)

    def commit(self, bill: CacheBill) -> None:
        """Make the bill's writes readable and restart the TTL of every entry it hit."""
        for key, ttl in (*bill.refreshes, *((k, t) for _, k, t in bill.writes)):
            expires = bill.start + TTL_SECONDS[ttl]
            entry = self._entries.get(key)
            if entry is None or entry.expires_at < expires:
                self._entries[key] = _Entry(ttl, expires)
        if len(self._entries) > self._purge_at:
            self._entries = {k: e for k, e in self._entries.items() if e.expires_at > bill.start}
            self._purge_at = max(_PURGE_FLOOR, 2 * len(self._entries))

    def entry_count(self, now: float) -> int:
        """How many entries are alive at ``now``."""
        return sum(1 for e in self._entries.values() if now < e.expires_at)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


def lookback_positions(blocks: Sequence[PrefixBlock]) -> list[int]:
    """Each block's lookback position, in prefix order (a read reaches 20 positions back).

    Every block is one position, except that consecutive blocks of the same kind in
    ``RUN_KINDS`` share one: a run of ``tool_use`` blocks (parallel tool calls) is one position,
    and so is a run of ``tool_result`` blocks, wherever the run sits in the payload (the chat
    path's ``tool`` messages, one block each, form a run like a native user turn's results).

    >>> kinds = ["text", "tool_use", "tool_use", "tool_result", "tool_result", "text"]
    >>> lookback_positions([PrefixBlock("messages", k, "user", "", "", None, "") for k in kinds])
    [0, 1, 1, 2, 2, 3]
    """
    out: list[int] = []
    position, previous = -1, ""
    for block in blocks:
        if block.kind not in RUN_KINDS or block.kind != previous:
            position += 1
        out.append(position)
        previous = block.kind
    return out


def _running_sum(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for value in values:
        total += value
        out.append(total)
    return out
