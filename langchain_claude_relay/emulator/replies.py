"""Deterministic replies: text, tool calls and JSON built from the input, not from a model.

* Text: a short sentence whose words are drawn from a hash of the last user text (so equal inputs
  give equal replies), honoring ``max_tokens`` (the longest word prefix that fits; reported as
  exactly ``max_tokens`` output tokens with stop reason ``max_tokens``) and stop sequences.
* A tool call when ``tool_choice`` forces one (a named tool, or ``required``/``any``: the tool the
  last user text names, else the first), or, with ``auto``, when the last user text names a tool
  (its full name, or a distinctive word of it: "weather" names ``get_weather``). Its arguments
  are a minimal instance of the tool's JSON schema, with literals of the user text (quoted
  strings, numbers) copied into fields they fit: ``magic_function(3)`` gives ``{"input": 3}``.
* With a ``json_schema`` response format (OpenAI's ``response_format``, Anthropic's
  ``output_config.format``), a minimal instance of the schema as the content, whenever no tool
  is called: after a tool result too, as Claude's structured outputs always follow the schema.
  With ``json_object``, a JSON object holding the sentence (``{"reply": ...}``), likewise.
* After a tool result (the last block is a ``tool_result``), text (or the JSON above), so that
  agent loops end; unless ``tool_choice`` forces a tool this conversation has not called yet
  (the named one, or with ``required``/``any`` the first such tool): an agent that forces a
  final tool (LangChain's ``ToolStrategy`` structured output) gets that call, once.
* A tool call longer than ``max_tokens`` is cut off as Claude cuts it: no call, stop reason
  ``max_tokens``, exactly ``max_tokens`` output tokens (a keep-alive with ``max_tokens`` 1 of a
  request that would call a tool is billed one output token).

Stop reasons use Anthropic's names (``end_turn``, ``max_tokens``, ``stop_sequence``,
``tool_use``); the server maps them to OpenAI's.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_claude_relay.emulator.engine import PrefixRequest

__all__ = [
    "ToolSpec",
    "ReplySpec",
    "ToolCall",
    "Reply",
    "reply_spec",
    "make_reply",
    "schema_instance",
    "split_chunks",
]

_WORDS = (
    "amber", "basalt", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lantern", "meadow", "nectar", "onyx", "pebble", "quartz", "river", "saffron",
    "tundra", "umber", "velvet", "willow", "yarrow", "zephyr", "anchor", "beacon", "canyon",
    "dune", "echo", "falcon", "glacier", "horizon", "island", "jasper", "kelp", "lagoon", "marble",
    "north", "orchard", "prairie", "quiet", "ridge", "summit", "timber", "upland", "valley",
)  # fmt: skip
_TOOL_MODES: dict[str, str] = {"auto": "auto", "none": "none", "required": "any", "any": "any"}
_STRING_FORMATS: dict[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "hostname": "example.com",
}
TOOL_CALL_OVERHEAD_TOKENS = 10
"""Output tokens a tool call costs beyond its name and arguments."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as replies need it: its name and JSON schema."""

    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class ReplySpec:
    """What shapes the reply: the input it derives from and the generation parameters.

    Attributes:
        last_user_text: the text the reply is derived from.
        after_tool_result: whether the last block is a tool result (a text or JSON reply,
            unless a forced tool has not been called yet).
        tools: the tools offered.
        tool_mode: ``"auto"``, ``"none"``, ``"any"`` or ``"tool"``.
        tool_name: the forced tool for ``"tool"``.
        max_tokens: output cap, if any.
        stop: stop sequences.
        response_schema: JSON schema the content must follow, if any.
        json_object: whether the content must be a JSON object.

    """

    last_user_text: str
    after_tool_result: bool = False
    tools: tuple[ToolSpec, ...] = ()
    tool_mode: str = "auto"
    tool_name: str | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    response_schema: Mapping[str, Any] | None = None
    json_object: bool = False
    called: frozenset[str] = frozenset()
    """Names of the tools the conversation has called so far."""


@dataclass(frozen=True)
class ToolCall:
    """A tool call with its arguments as a JSON string."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Reply:
    """A generated reply.

    Attributes:
        text: the content (empty for a tool call).
        tool_calls: the tool calls, if any.
        stop_reason: ``end_turn``, ``max_tokens``, ``stop_sequence`` or ``tool_use``.
        stop_sequence: the stop sequence that ended the text, if any.
        output_tokens: output tokens, counted by the emulator's tokenizer.

    """

    text: str
    tool_calls: tuple[ToolCall, ...]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


def _tool_specs(tools: Sequence[Any]) -> tuple[ToolSpec, ...]:
    out = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function", tool)
        schema = fn.get("parameters") or fn.get("input_schema") or {"type": "object"}
        out.append(ToolSpec(str(fn.get("name", "")), schema))
    return tuple(out)


def _called_tools(messages: Any) -> frozenset[str]:
    """The tools an OpenAI or Anthropic conversation has called (``tool_calls``, ``tool_use``)."""
    names: set[str] = set()
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, Mapping):
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                names.add(function["name"])
        content = message.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, Mapping) and block.get("type") == "tool_use":
                names.add(str(block.get("name")))
    return frozenset(names)


def _tool_choice(choice: Any) -> tuple[str, str | None]:
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        return _TOOL_MODES.get(choice, "auto"), None
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        if kind == "function":
            return "tool", str((choice.get("function") or {}).get("name"))
        if kind == "tool":
            return "tool", str(choice.get("name"))
        return _TOOL_MODES.get(str(kind), "auto"), None
    return "auto", None


def _response_schema(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
    """OpenAI's ``response_format``, Anthropic's ``output_config.format`` or ``output_format``."""
    config = payload.get("output_config")
    native = config.get("format") if isinstance(config, Mapping) else None
    fmt = payload.get("response_format") or native or payload.get("output_format")
    if not isinstance(fmt, Mapping):
        return None, False
    if fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema", fmt)
        schema = inner.get("schema") if isinstance(inner, Mapping) else None
        return (schema if isinstance(schema, Mapping) else {"type": "object"}), False
    return None, fmt.get("type") == "json_object"


def reply_spec(payload: Mapping[str, Any], request: PrefixRequest) -> ReplySpec:
    """Read the reply parameters of an OpenAI or Anthropic payload.

    Args:
        payload: the request body (either wire format).
        request: its parsed prefix (the source of the last user text).

    Returns:
        The reply specification.

    """
    messages = [b for b in request.blocks if b.section == "messages"]
    user_texts = [b.text for b in messages if b.role == "user" and b.kind == "text"]
    after_tool = bool(messages) and messages[-1].kind == "tool_result"
    seed_text = messages[-1].text if after_tool else (user_texts[-1] if user_texts else "")
    mode, name = _tool_choice(payload.get("tool_choice"))
    stop = payload.get("stop", payload.get("stop_sequences")) or ()
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    schema, json_object = _response_schema(payload)
    return ReplySpec(
        last_user_text=seed_text,
        after_tool_result=after_tool,
        tools=_tool_specs(payload.get("tools") or ()),
        tool_mode=mode,
        tool_name=name,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=(stop,) if isinstance(stop, str) else tuple(str(s) for s in stop),
        response_schema=schema,
        json_object=json_object,
        called=_called_tools(payload.get("messages")) if after_tool else frozenset(),
    )


_GENERIC_NAME_WORDS = frozenset({"tool", "function", "call", "data", "info", "query", "search"})


def _name_words(name: str) -> list[str]:
    """Split out a tool name's distinctive words (``get_weather`` -> ``weather``)."""
    parts = re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name)
    return [p for p in parts if len(p) >= 4 and p.lower() not in _GENERIC_NAME_WORDS]


def _named_tool(spec: ReplySpec) -> ToolSpec | None:
    """The first tool the last user text names, by full name, else by a distinctive word of it."""
    text = spec.last_user_text
    for pattern in (lambda t: [t.name], lambda t: _name_words(t.name)):
        for tool in spec.tools:
            words = [w for w in pattern(tool) if w]
            if any(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in words):
                return tool
    return None


def _chosen_tool(spec: ReplySpec) -> ToolSpec | None:
    if not spec.tools or spec.tool_mode == "none":
        return None
    if spec.after_tool_result:  # only a forced tool not called yet: loops end
        if spec.tool_mode not in ("tool", "any"):
            return None
        fresh = [t for t in spec.tools if t.name not in spec.called]
        if spec.tool_mode == "tool":
            return next((t for t in fresh if t.name == spec.tool_name), None)
        return fresh[0] if fresh else None
    if spec.tool_mode == "tool":
        return next((t for t in spec.tools if t.name == spec.tool_name), spec.tools[0])
    if spec.tool_mode == "any":
        return _named_tool(spec) or spec.tools[0]
    return _named_tool(spec)


def _sentence(seed: str, after_tool: bool) -> str:
    rng = random.Random(int(seed[:16], 16))
    words = [rng.choice(_WORDS) for _ in range(rng.randint(12, 24))]
    lead = "Tool result noted:" if after_tool else "Emulated reply:"
    return f"{lead} {' '.join(words)}."


def _fit(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    """Cut ``text`` to its longest word prefix of at most ``max_tokens`` tokens."""
    pieces = re.findall(r"\S+\s*", text)
    lo, hi = 0, len(pieces)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count("".join(pieces[:mid]).rstrip()) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return "".join(pieces[:lo]).rstrip()


def make_reply(spec: ReplySpec, count: Callable[[str], int]) -> Reply:
    """Build the deterministic reply for ``spec``.

    Args:
        spec: the reply parameters.
        count: counts output tokens (the emulator's tokenizer).

    Returns:
        The reply.

    """
    seed = hashlib.sha256(spec.last_user_text.encode()).hexdigest()
    tool = _chosen_tool(spec)
    if tool is not None:
        arguments = json.dumps(schema_instance(tool.schema, hint_text=spec.last_user_text))
        call = ToolCall(f"toolu_emu_{seed[:20]}", tool.name, arguments)
        tokens = count(f"{tool.name} {arguments}") + TOOL_CALL_OVERHEAD_TOKENS
        if spec.max_tokens is not None and tokens > spec.max_tokens:  # cut before the call ends
            return Reply("", (), "max_tokens", None, spec.max_tokens)
        return Reply("", (call,), "tool_use", None, tokens)
    if spec.response_schema is not None:  # structured outputs follow the schema, always
        text = json.dumps(schema_instance(spec.response_schema))
        return Reply(text, (), "end_turn", None, count(text))
    sentence = _sentence(seed, spec.after_tool_result)
    if spec.json_object:
        text = json.dumps({"reply": sentence})
        return Reply(text, (), "end_turn", None, count(text))
    hits = [(sentence.find(s), s) for s in spec.stop if s and s in sentence]
    stop_at, stop_seq = min(hits) if hits else (len(sentence), None)
    text = sentence[:stop_at]
    if spec.max_tokens is not None and count(text) > spec.max_tokens:
        return Reply(_fit(text, spec.max_tokens, count), (), "max_tokens", None, spec.max_tokens)
    reason = "stop_sequence" if stop_seq is not None else "end_turn"
    return Reply(text, (), reason, stop_seq, count(text))


def split_chunks(text: str, parts: int = 4) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty pieces (word boundaries where possible).

    >>> split_chunks("a b c d e f", 3)
    ['a b ', 'c d ', 'e f']
    """
    pieces = re.findall(r"\S+\s*|\s+", text) or ([text] if text else [])
    if len(pieces) < parts and len(text) >= parts:  # one long word, such as a JSON document
        size = math.ceil(len(text) / parts)
        return [text[i : i + size] for i in range(0, len(text), size)]
    size = max(1, math.ceil(len(pieces) / parts))
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


# ---------------------------------------------------------------------------------- schemas

_T = TypeVar("_T")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"")
_NUMBER = re.compile(r"(?<![\w.\-])(-?\d+(?:\.\d+)?)(?![\w.])")


@dataclass
class _Context:
    """What instance building needs besides the schema: the ``$ref`` root and value hints."""

    root: Mapping[str, Any]
    strings: list[str] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)

    def take_string(self, schema: Mapping[str, Any]) -> str | None:
        if "format" in schema or "pattern" in schema:
            return None
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        return _take(self.strings, lambda v: lo <= len(v) and (hi is None or len(v) <= hi))

    def take_number(self, schema: Mapping[str, Any], integer: bool) -> float | None:
        def fits(v: float) -> bool:
            multiple = schema.get("multipleOf")
            return (
                (not integer or float(v).is_integer())
                and v >= schema.get("minimum", -math.inf)
                and v <= schema.get("maximum", math.inf)
                and v > schema.get("exclusiveMinimum", -math.inf)
                and v < schema.get("exclusiveMaximum", math.inf)
                and (not multiple or (v / multiple).is_integer())
            )

        return _take(self.numbers, fits)


def _take(pool: list[_T], fits: Callable[[_T], bool]) -> _T | None:
    for i, value in enumerate(pool):
        if fits(value):
            return pool.pop(i)
    return None


def schema_instance(
    schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, hint_text: str = ""
) -> Any:
    """Build a minimal instance that validates against a JSON schema.

    Handles ``$ref`` (local), ``const``, ``enum``, ``anyOf``/``oneOf`` (first non-null option),
    ``allOf``, type lists, required properties (recursively), ``minProperties``, arrays with
    ``minItems``/``prefixItems``/``uniqueItems``, string ``minLength``/``maxLength``/``format``,
    and numeric bounds and ``multipleOf``. ``pattern`` is not honored. Values found in
    ``hint_text`` (quoted strings, numbers) fill string and numeric fields in order where they
    fit the schema, the way a model copies literals from the question.

    >>> schema_instance({"type": "object", "required": ["n"],
    ...                  "properties": {"n": {"type": "integer", "minimum": 3}}})
    {'n': 3}
    >>> schema_instance({"type": "object", "required": ["n", "who"],
    ...                  "properties": {"n": {"type": "integer"}, "who": {"type": "string"}}},
    ...                 hint_text="call f(7) for 'Ada'")
    {'n': 7, 'who': 'Ada'}

    Args:
        schema: the JSON schema.
        root: the document ``$ref`` pointers resolve against (defaults to ``schema``).
        hint_text: text whose literals may fill fields.

    Returns:
        A JSON-able value that validates against the schema.

    """
    strings = [a or b for a, b in _QUOTED.findall(hint_text)]
    numbers = [float(n) for n in _NUMBER.findall(hint_text)]
    return _instance(schema, _Context(schema if root is None else root, strings, numbers), 0, 0)


def _instance(schema: Any, ctx: _Context, depth: int, variant: int) -> Any:
    if not isinstance(schema, Mapping) or depth > 40:
        return None
    if "$ref" in schema:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        target = _resolve(ctx.root, str(schema["$ref"]))
        return _instance({**target, **rest}, ctx, depth + 1, variant)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][variant % len(schema["enum"])]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = schema[key]
            pick = next((o for o in options if o.get("type") != "null"), options[0])
            return _instance(pick, ctx, depth + 1, variant)
    if schema.get("allOf"):
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(ctx.root, part["$ref"]) if "$ref" in part else part
            merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        return _instance(merged, ctx, depth + 1, variant)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _BUILDERS.get(str(kind), _build_string)(schema, ctx, depth, variant)


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node if isinstance(node, Mapping) else {}


def _build_object(schema: Mapping[str, Any], ctx: _Context, depth: int, _: int) -> Any:
    props: Mapping[str, Any] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    fallback = extra if isinstance(extra, Mapping) else {}
    names = list(schema.get("required") or [])
    missing = max(0, schema.get("minProperties", 0) - len(names))
    names += [n for n in props if n not in names][:missing]
    return {name: _instance(props.get(name, fallback), ctx, depth + 1, 0) for name in names}


def _build_array(schema: Mapping[str, Any], ctx: _Context, depth: int, _: int) -> Any:
    prefix = schema.get("prefixItems") or []
    items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
    count = int(schema.get("minItems", 0))
    unique = bool(schema.get("uniqueItems"))
    return [
        _instance(prefix[i] if i < len(prefix) else items, ctx, depth + 1, i if unique else 0)
        for i in range(count)
    ]


def _build_string(schema: Mapping[str, Any], ctx: _Context, _d: int, variant: int) -> Any:
    hinted = None if variant else ctx.take_string(schema)
    if hinted is not None:
        return hinted
    text = _STRING_FORMATS.get(str(schema.get("format")), "example")
    text += str(variant) if variant else ""
    text = text.ljust(int(schema.get("minLength", 0)), "x")
    return text[: int(schema["maxLength"])] if "maxLength" in schema else text


def _build_number(schema: Mapping[str, Any], ctx: _Context, variant: int, integer: bool) -> Any:
    hinted = None if variant else ctx.take_number(schema, integer)
    value = _bounded(schema, variant, integer) if hinted is None else hinted
    return int(value) if integer else float(value)


def _bounded(schema: Mapping[str, Any], variant: int, integer: bool) -> float:
    step = 1 if integer else 0.5
    lo = schema.get("minimum")
    if "exclusiveMinimum" in schema and isinstance(schema["exclusiveMinimum"], (int, float)):
        lo = schema["exclusiveMinimum"] + step
    hi = schema.get("maximum")
    if "exclusiveMaximum" in schema and isinstance(schema["exclusiveMaximum"], (int, float)):
        hi = schema["exclusiveMaximum"] - step
    value: float = 0 + variant
    value = max(value, lo) if lo is not None else value
    value = min(value, hi) if hi is not None else value
    multiple = schema.get("multipleOf")
    if multiple:
        value = math.ceil(value / multiple) * multiple
    return math.ceil(value) if integer else value


_BUILDERS: dict[str, Callable[[Mapping[str, Any], _Context, int, int], Any]] = {
    "object": _build_object,
    "array": _build_array,
    "string": _build_string,
    "integer": lambda s, c, _d, v: _build_number(s, c, v, integer=True),
    "number": lambda s, c, _d, v: _build_number(s, c, v, integer=False),
    "boolean": lambda _s, _c, _d, _v: False,
    "null": lambda _s, _c, _d, _v: None,
}
