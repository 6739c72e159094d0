"""The provider-neutral request: tools, system blocks and message blocks, in Claude's prefix order.

Everything that plans, renders or bills works on this model, never on LangChain messages or on a
wire format. Blocks use Claude's shapes (``text``, ``image``, ``document``, ``tool_use``,
``tool_result``, ``thinking``, ``redacted_thinking``) with their type-specific fields in
``Block.data``:

=====================  ==========================================================================
type                   data
=====================  ==========================================================================
``text``               ``{"text": str}``
``image``              ``{"source": {"type": "base64", "media_type", "data"}}`` or a URL source
                       ``{"source": {"type": "url", "url"}}``
``document``           ``{"source": {...}, "title"?: str}``
``tool_use``           ``{"id": str, "name": str, "input": dict}``
``tool_result``        ``{"tool_use_id": str, "content": str | list[dict], "is_error"?: bool}``
``thinking``           ``{"thinking": str, "signature": str}``
``redacted_thinking``  ``{"data": str}``
=====================  ==========================================================================

Each block has a content hash over canonical JSON (sorted keys, no whitespace) that ignores its
cache marker, so that key order in a tool schema or tool-call arguments never looks like a change.
``prefix_hashes()`` chains those hashes in prefix order; ``tool_choice``, thinking settings and the
presence of images enter the chain where the messages part begins, because a change in them
invalidates the messages part only. The chain starts from the model (``cache_model_key``: its
family, so an alias and its dated id are one model): Claude keeps a cache per model, so the same
blocks sent to two models are two prefixes. It starts from the request's ``cache_scope`` too,
when it has one: the same blocks sent to two relays, or with keys of two accounts, reach two
caches (``ClaudeRequest.cache_partition``).

A request may also carry a top-level ``cache_control`` (*automatic caching*, since 2026-02-19):
Claude then places one marker itself on the last block that can carry one. It is a marker, not
content: it changes no hash. Its rules (a slot of the four, the TTL conflicts) are checked with
the other markers' in ``planner.rules``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, NamedTuple

from langchain_claude_relay.models import cache_model_key

__all__ = [
    "BlockType",
    "CacheTTL",
    "Section",
    "CacheControl",
    "Block",
    "Message",
    "Tool",
    "Position",
    "FlatBlock",
    "ClaudeRequest",
    "canonical_json",
    "claude_tool_choice",
    "content_hash",
    "remember_prefix_hashes",
    "cache_model_key",
    "chain_prefix_hashes",
    "MAX_CACHE_MARKERS",
    "TTL_SECONDS",
]

CacheTTL = Literal["5m", "1h"]
Section = Literal["tools", "system", "messages"]
BlockType = Literal[
    "text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"
]
UNMARKABLE_TYPES: frozenset[str] = frozenset({"thinking", "redacted_thinking"})

MAX_CACHE_MARKERS = 4
"""Claude rejects a request with more than four ``cache_control`` markers.

The markers' rules are checked in one place: ``planner.rules.validate_user_markers``."""

TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
"""How long a cache entry lives after its last write or hit, per ``cache_control`` TTL."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values always give equal text.

    >>> canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]})
    '{"a":[1,{"c":3,"d":2}],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """A short stable hash (SHA-256, 32 hex digits) of a JSON-like value.

    Equal exactly when the values' canonical JSON is equal, but computed without building that
    JSON: strings are fed as length-prefixed UTF-8, dicts in sorted key order, lists in order,
    other scalars as their JSON. About 8x faster than hashing ``canonical_json`` on large text.

    >>> content_hash({"b": 1, "a": "x"}) == content_hash({"a": "x", "b": 1})
    True
    """
    digest = hashlib.sha256()
    _feed(digest.update, value)
    return digest.hexdigest()[:32]


def _feed(update: Callable[[bytes], object], value: Any) -> None:
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        update(b"s%d:" % len(data))
        update(data)
    elif isinstance(value, Mapping):
        update(b"d%d:" % len(value))
        for key in sorted(value, key=str):
            _feed(update, str(key))
            _feed(update, value[key])
    elif isinstance(value, list | tuple):
        update(b"l%d:" % len(value))
        for item in value:
            _feed(update, item)
    elif value is None or type(value) is bool:
        update(_JSON_CONSTANTS[value])
    elif type(value) is int:
        update(b"j%d;" % value)  # json.dumps(int) is its decimal form
    else:
        update(b"j" + json.dumps(value).encode() + b";")


_JSON_CONSTANTS = {None: b"jnull;", True: b"jtrue;", False: b"jfalse;"}
"""``_feed``'s bytes for the JSON constants (what ``json.dumps`` gives them), without a call."""


_CONTEXT_HASHES: dict[tuple[str | None, str | None, bool], str] = {}
"""``messages_context_hash`` of the usual requests (no thinking settings or reasoning effort, a
tool choice of one of Claude's types, ``None`` or a name), by that type and name and whether
images are present: every plan needs one."""

_CLAUDE_TOOL_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})


def claude_tool_choice(choice: Any) -> dict[str, Any] | None:
    """A tool choice in Claude's spelling, however it was given (``None``: there is none).

    ``True``, ``"any"`` and ``"required"`` are ``{"type": "any"}``; ``"auto"``/``"none"`` their
    type; any other string names a tool; an OpenAI dict ``{"type": "function", "function":
    {"name": N}}`` is ``{"type": "tool", "name": N}``; Claude's own dicts keep what Claude reads
    of them (their type, a tool's name, ``disable_parallel_tool_use``), so that one choice is
    always spelled one way.

    >>> claude_tool_choice("required") == claude_tool_choice(True) == {"type": "any"}
    True
    >>> claude_tool_choice({"type": "function", "function": {"name": "f"}})
    {'type': 'tool', 'name': 'f'}

    Raises:
        ValueError: for a choice that is none of those.
    """
    if choice is None or choice is False:
        return None
    if choice is True or choice in ("any", "required"):
        return {"type": "any"}
    if choice in ("auto", "none"):
        return {"type": choice}
    if isinstance(choice, str) and choice:
        return {"type": "tool", "name": choice}
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        name: Any = choice.get("name")
        if kind in _CLAUDE_TOOL_CHOICE_TYPES and (
            kind != "tool" or (isinstance(name, str) and name)
        ):
            claude: dict[str, Any] = (
                {"type": kind, "name": name} if kind == "tool" else {"type": kind}
            )
            if choice.get("disable_parallel_tool_use") is True:
                claude["disable_parallel_tool_use"] = True
            return claude
        function = choice.get("function")
        if kind == "function" and isinstance(function, Mapping):
            name = function.get("name")
        if kind == "function" and isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    msg = (
        f"tool_choice {choice!r} is not understood: use 'auto', 'any', 'none', a tool name, "
        "{'type': 'function', 'function': {'name': ...}} or {'type': 'tool', 'name': ...}"
    )
    raise ValueError(msg)


def remember_prefix_hashes(request: ClaudeRequest, hashes: tuple[str, ...]) -> None:
    """Memoize ``request.prefix_hashes()`` when they were chained elsewhere.

    The planner's scan chains the same hashes from block hashes it memoized by content
    (``planner.scan``), so the chat model and ``observe`` reuse them instead of hashing every
    block of the request again. The first value memoized stays.
    """
    request.__dict__.setdefault("_prefix_hashes", hashes)


def chain_prefix_hashes(
    sections: Sequence[str],
    block_hashes: Sequence[str],
    messages_context: str,
    *,
    model_key: str,
) -> tuple[str, ...]:
    """Prefix hashes from block hashes in prefix order (see ``ClaudeRequest.prefix_hashes``).

    Args:
        sections: each block's section (``"tools"``, ``"system"`` or ``"messages"``).
        block_hashes: each block's content hash.
        messages_context: ``ClaudeRequest.messages_context_hash()``, chained in where the
            messages part begins.
        model_key: ``request.cache_partition()``, where the chain starts: Claude's cache is
            per model (and per relay or account), so equal blocks sent to two models are two
            prefixes.

    Returns:
        For each block, the hash of the whole prefix up to and including it.
    """
    out: list[str] = []
    running = hashlib.sha256(b"claude-prefix-v2\0" + model_key.encode("utf-8", "surrogatepass"))
    running.update(b"\0")
    context_added = False
    for section, block_hash in zip(sections, block_hashes, strict=True):
        if section == "messages" and not context_added:
            running.update(messages_context.encode())
            context_added = True
        running.update(block_hash.encode())
        out.append(running.copy().hexdigest()[:32])
    return tuple(out)


@dataclass(frozen=True)
class CacheControl:
    """A ``cache_control`` marker.

    Attributes:
        ttl: ``"5m"`` (the default, also for a marker written without ``ttl``) or ``"1h"``.
        explicit_ttl: whether ``ttl`` was written out; a marker is rendered back as it came.
    """

    ttl: CacheTTL = "5m"
    explicit_ttl: bool = True

    @classmethod
    def parse(cls, raw: Any) -> CacheControl:
        """Read a wire marker such as ``{"type": "ephemeral", "ttl": "1h"}``.

        Raises:
            ValueError: if it is not an ephemeral marker with a ``ttl`` of ``"5m"`` or ``"1h"``.
        """
        if isinstance(raw, CacheControl):
            return raw
        if not isinstance(raw, Mapping) or raw.get("type") != "ephemeral":
            msg = (
                f"invalid cache_control {raw!r}: expected {{'type': 'ephemeral'}} or "
                "{'type': 'ephemeral', 'ttl': '1h'}"
            )
            raise ValueError(msg)
        ttl = raw.get("ttl")
        if ttl is None:
            return cls("5m", explicit_ttl=False)
        if ttl not in ("5m", "1h"):
            msg = f"invalid cache_control ttl {ttl!r}: Claude accepts only '5m' and '1h'"
            raise ValueError(msg)
        return cls(ttl, explicit_ttl=True)

    def to_wire(self) -> dict[str, str]:
        """The wire form: ``{"type": "ephemeral"}`` plus ``ttl`` when it was explicit or is 1h."""
        if self.explicit_ttl or self.ttl == "1h":
            return {"type": "ephemeral", "ttl": self.ttl}
        return {"type": "ephemeral"}


@dataclass(frozen=True)
class Block:
    """One content block (see the module docstring for ``data`` by ``type``)."""

    type: BlockType
    data: Mapping[str, Any]
    cache_control: CacheControl | None = None

    @cached_property
    def hash(self) -> str:
        """Content hash of type and data; the cache marker is not part of the content."""
        return content_hash({"type": self.type, **self.data})

    @property
    def markable(self) -> bool:
        """Whether Claude accepts a ``cache_control`` marker on this block."""
        if self.type in UNMARKABLE_TYPES:
            return False
        return not (self.type == "text" and not self.data.get("text"))

    def text_for_tokens(self) -> str:
        """The text a tokenizer should see for this block (JSON for structured parts)."""
        if self.type == "text":
            return str(self.data.get("text", ""))
        if self.type == "thinking":
            return str(self.data.get("thinking", ""))
        if self.type == "tool_use":
            return f"{self.data.get('name', '')} {canonical_json(self.data.get('input', {}))}"
        if self.type == "tool_result":
            content = self.data.get("content", "")
            if isinstance(content, str):
                return content
            return "\n".join(
                str(part.get("text", "")) if isinstance(part, Mapping) else str(part)
                for part in content
            )
        return ""


@dataclass(frozen=True)
class Message:
    """A user or assistant turn (tool results travel in user turns, as in Claude's API)."""

    role: Literal["user", "assistant"]
    content: tuple[Block, ...]


@dataclass(frozen=True)
class Tool:
    """A tool definition; ``parameters`` is its JSON schema (Claude's ``input_schema``)."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    cache_control: CacheControl | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def hash(self) -> str:
        """Content hash over canonical JSON, so schema key order cannot look like a change."""
        return content_hash(
            {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                **self.extra,
            }
        )

    def text_for_tokens(self) -> str:
        """The schema as a tokenizer should see it."""
        return f"{self.name} {self.description} {canonical_json(self.parameters)}"


class Position(NamedTuple):
    """Where a block sits: ``("tools", i, 0)``, ``("system", i, 0)`` or ``("messages", m, j)``."""

    section: Section
    index: int  # type: ignore[assignment]  # shadows tuple.index; the name reads best here
    part: int = 0

    def __str__(self) -> str:
        if self.section == "messages":
            return f"messages[{self.index}].content[{self.part}]"
        return f"{self.section}[{self.index}]"


@dataclass(frozen=True)
class FlatBlock:
    """A block (or tool) seen in prefix order, with what planning needs to know about it."""

    position: Position
    kind: str  # "tool" or a BlockType
    role: str  # "tool", "system", "user" or "assistant"
    hash: str
    cache_control: CacheControl | None
    markable: bool
    text: str  # for token estimation; never stored


@dataclass(frozen=True)
class ClaudeRequest:
    """A Claude request in prefix order: tools, then system, then messages.

    Attributes:
        model: the model id as the relay spells it.
        tools: tool definitions.
        system: system text blocks (several system messages, merged in order).
        messages: user and assistant turns.
        tool_choice: the tool choice as given (``"auto"``, ``"any"``, ``"none"``, a name, or a
            dict in OpenAI's or Claude's spelling: ``claude_tool_choice`` reads them all).
        thinking: extended-thinking settings as given (``{"type": "adaptive"}`` or
            ``{"type": "enabled", "budget_tokens": N}``).
        parallel_tool_calls: the call's ``parallel_tool_calls`` (``False`` becomes Claude's
            ``disable_parallel_tool_use``, part of its tool choice).
        reasoning_effort: the call's ``reasoning_effort``, which relays turn into thinking
            settings.
        cache_control: a top-level marker (automatic caching): Claude puts it on the last
            block that can carry one (``planner.rules.automatic_marker`` says which).
        cache_scope: which prompt cache the request reaches, as an opaque digest (the chat
            model's of its way in, endpoint and credentials); ``""``: one cache for all, as for
            a planner used on its own. Never sent: it only seeds the prefix hashes.
    """

    model: str
    tools: tuple[Tool, ...] = ()
    system: tuple[Block, ...] = ()
    messages: tuple[Message, ...] = ()
    tool_choice: Any = None
    thinking: Mapping[str, Any] | None = None
    cache_control: CacheControl | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    cache_scope: str = ""

    def flat_blocks(self) -> tuple[FlatBlock, ...]:
        """Every tool and block in prefix order (memoized on the instance)."""
        cached: tuple[FlatBlock, ...] | None = self.__dict__.get("_flat")
        if cached is None:
            cached = tuple(self._iter_flat())
            object.__setattr__(self, "_flat", cached)
        return cached

    def _iter_flat(self) -> Iterator[FlatBlock]:
        for i, tool in enumerate(self.tools):
            yield FlatBlock(
                Position("tools", i), "tool", "tool", tool.hash, tool.cache_control, True,
                tool.text_for_tokens(),
            )  # fmt: skip
        for i, block in enumerate(self.system):
            yield FlatBlock(
                Position("system", i), block.type, "system", block.hash, block.cache_control,
                block.markable, block.text_for_tokens(),
            )  # fmt: skip
        for m, message in enumerate(self.messages):
            for j, block in enumerate(message.content):
                yield FlatBlock(
                    Position("messages", m, j), block.type, message.role, block.hash,
                    block.cache_control, block.markable, block.text_for_tokens(),
                )  # fmt: skip

    def messages_context_hash(self) -> str:
        """What invalidates the messages part though it is no block.

        That is the tool choice as Claude receives it (every spelling of one choice is one
        choice, ``disable_parallel_tool_use`` included), the thinking settings (and a reasoning
        effort, which relays turn into them) and whether images are present.
        """
        has_images = any(
            block.type == "image" for message in self.messages for block in message.content
        )
        choice = self._claude_tool_choice()
        common = self.thinking is None and self.reasoning_effort is None
        key = None
        if common and (choice is None or choice.keys() <= {"type", "name"}):
            kind, name = (None, None) if choice is None else (choice["type"], choice.get("name"))
            key = (kind, name if isinstance(name, str) else None, has_images)
            if (known := _CONTEXT_HASHES.get(key)) is not None:
                return known
        context: dict[str, Any] = {
            "tool_choice": choice,
            "thinking": self.thinking,
            "images": has_images,
        }
        if self.reasoning_effort is not None:
            context["reasoning_effort"] = self.reasoning_effort
        digest = content_hash(context)
        if key is not None and len(_CONTEXT_HASHES) < 1024:
            _CONTEXT_HASHES[key] = digest
        return digest

    def _claude_tool_choice(self) -> dict[str, Any] | None:
        """The tool choice Claude receives (as given when not understood: refused when sent)."""
        try:
            choice = claude_tool_choice(self.tool_choice)
        except ValueError:
            return {"given": repr(self.tool_choice)}
        if self.parallel_tool_calls is False and self.tools:
            base = choice or {"type": "auto"}
            if base["type"] != "none":
                choice = {**base, "disable_parallel_tool_use": True}
        return choice

    def cache_partition(self) -> str:
        """Where the prefix-hash chain starts: the cache the request's prefixes live in.

        The model's cache key (``cache_model_key``: Claude caches per model), and the request's
        ``cache_scope`` when it has one (two relays, or two accounts, are two caches). Without a
        scope it is the model's key alone, so a planner used on its own keys its records as
        before scopes existed.
        """
        model_key = cache_model_key(self.model)
        return f"{model_key}\0{self.cache_scope}" if self.cache_scope else model_key

    def prefix_hashes(self) -> tuple[str, ...]:
        """For each flat block, a hash of the whole prefix up to and including it.

        Two requests share a cache entry at block ``i`` exactly when their ``prefix_hashes()[i]``
        are equal: the chain starts from the model and the cache scope
        (``cache_partition``), since Claude caches per model and each relay or account has its
        own cache. Memoized on the instance.
        """
        cached: tuple[str, ...] | None = self.__dict__.get("_prefix_hashes")
        if cached is not None:
            return cached
        flats = self.flat_blocks()
        result = chain_prefix_hashes(
            [f.position.section for f in flats],
            [f.hash for f in flats],
            self.messages_context_hash(),
            model_key=self.cache_partition(),
        )
        remember_prefix_hashes(self, result)
        return result

    def markers(self) -> dict[Position, CacheControl]:
        """The block markers present in the request, by position, in prefix order.

        The top-level marker (``cache_control``) is not among them: see
        ``planner.rules.automatic_marker`` for where Claude would put it. (Read off the blocks,
        without ``flat_blocks``: no block is hashed.)
        """
        found: dict[Position, CacheControl] = {}
        for i, tool in enumerate(self.tools):
            if tool.cache_control:
                found[Position("tools", i)] = tool.cache_control
        for i, block in enumerate(self.system):
            if block.cache_control:
                found[Position("system", i)] = block.cache_control
        for m, message in enumerate(self.messages):
            for j, block in enumerate(message.content):
                if block.cache_control:
                    found[Position("messages", m, j)] = block.cache_control
        return found

    def with_markers(self, markers: Mapping[Position, CacheControl | None]) -> ClaudeRequest:
        """A copy with ``cache_control`` set (or removed, for ``None``) at the given positions.

        Args:
            markers: position -> marker; positions not named keep what they have.

        Returns:
            A new request; this one is not modified.

        Raises:
            ValueError: if a position does not exist or names a block that cannot carry a marker.
        """
        tools = list(self.tools)
        system = list(self.system)
        messages: dict[int, list[Block]] = {}  # the messages touched, by index
        for pos, marker in markers.items():
            try:
                if pos.section == "tools":
                    tools[pos.index] = replace(tools[pos.index], cache_control=marker)
                    continue
                if pos.section == "system":
                    block = system[pos.index]
                else:
                    at = range(len(self.messages))[pos.index]  # IndexError as a list gives
                    if at not in messages:
                        messages[at] = list(self.messages[at].content)
                    block = messages[at][pos.part]
            except IndexError:
                msg = f"no block at {pos}: cannot place a cache marker there"
                raise ValueError(msg) from None
            if marker is not None and not block.markable:
                msg = (
                    f"cannot place a cache marker on {pos}: {block.type} blocks and empty text "
                    "cannot carry one"
                )
                raise ValueError(msg)
            if pos.section == "system":
                system[pos.index] = replace(block, cache_control=marker)
            else:
                messages[at][pos.part] = replace(block, cache_control=marker)
        marked = replace(
            self,
            tools=tuple(tools),
            system=tuple(system),
            messages=tuple(
                replace(m, content=tuple(messages[i])) if i in messages else m
                for i, m in enumerate(self.messages)
            ),
        )
        known = self.__dict__.get("_prefix_hashes")
        if known is not None:  # markers are not content: the prefixes hash the same
            remember_prefix_hashes(marked, known)
        return marked
