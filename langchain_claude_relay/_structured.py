"""Strict tools and JSON-schema answers, spelled as OpenAI-compatible relays take them.

Claude's strict tool use and structured outputs accept only closed objects: every object in the
schema says ``additionalProperties: false``. ``strict=True`` closes them here, as
``ChatOpenAI`` does (with ``langchain_core``'s ``convert_to_openai_function(strict=True)``).

>>> strict_function({"name": "f", "parameters": {"type": "object", "properties": {}}}, True)
{'parameters': {'type': 'object', 'properties': {}, 'additionalProperties': False}, 'strict': True}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_function

from langchain_claude_relay._json_schema import SUBSCHEMA_LISTS, SUBSCHEMA_MAPS

__all__ = [
    "closed_schema",
    "objects_closed",
    "strict_function",
    "response_format_for",
    "structured_output_misfit",
]

_BOUNDS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
)
"""Constraints Claude's structured outputs may refuse (numbers, string lengths, array sizes):
left to the tool call, which takes them, when the method is ours to choose."""


def objects_closed(schema: Any, path: str = "") -> Any:
    """A JSON schema with every object in it closed (``additionalProperties: false``).

    What Claude's structured outputs require, whether or not ``strict`` was asked (Anthropic,
    structured outputs, read 2026-12). Only objects change: which properties are required stays
    as written.

    Raises:
        ValueError: for an object that allows other properties (``additionalProperties`` true
            or a schema: a ``dict[str, int]`` field), which Claude refuses there; the message
            says where. (The ``anthropic`` SDK overwrites it with false, so that the model can
            only answer ``{}`` for such a field.)

    >>> objects_closed({"type": "object", "properties": {"a": {"type": "object"}}})
    {'type': 'object', 'properties': {'a': {'type': 'object', 'additionalProperties': False}}, 'additionalProperties': False}
    """  # noqa: E501
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    for key in SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {
                name: objects_closed(sub, f"{path}{key}.{name}.") for name, sub in out[key].items()
            }
    for key in SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [objects_closed(sub, f"{path}{key}.{i}.") for i, sub in enumerate(out[key])]
    for key in ("items", "not", "contains"):
        if isinstance(out.get(key), Mapping):
            out[key] = objects_closed(out[key], f"{path}{key}.")
    kind = out.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in out:
        extra = out.get("additionalProperties", False)
        if extra is not False:
            where = path.rstrip(".") or "the schema itself"
            msg = (
                f"structured output on the Messages API takes closed objects only, but {where} "
                f"allows other properties (additionalProperties: {json.dumps(extra)}, a dict "
                "field?): give it named properties, or use method='function_calling'"
            )
            raise ValueError(msg)
        out["additionalProperties"] = False
    return out


def closed_schema(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` as ``strict=True`` sends them.

    Every object closed, and (as LangChain's strict OpenAI functions have it) every property
    required.
    """
    function = convert_to_openai_function(
        {"name": "schema", "description": "", "parameters": dict(parameters)}, strict=True
    )
    closed: dict[str, Any] = function["parameters"]
    return closed


def strict_function(function: Mapping[str, Any], strict: bool) -> dict[str, Any]:
    """What ``strict`` changes in an OpenAI ``function`` entry.

    Its flag, and when ``True`` its parameters, closed.
    """
    changes: dict[str, Any] = {"strict": strict}
    if strict and isinstance(function.get("parameters"), Mapping):
        changes = {"parameters": closed_schema(function["parameters"]), **changes}
    return changes


def response_format_for(schema: Any, *, strict: bool | None = None) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for JSON shaped by ``schema``.

    Args:
        schema: a pydantic class, a TypedDict, or a JSON schema.
        strict: when given, sent as ``json_schema.strict``; ``True`` also closes every object.

    Returns:
        ``{"type": "json_schema", "json_schema": {"name", "schema"[, "strict"]}}``; the name is
        the schema's title in the characters OpenAI's format takes (a relay checking it would
        refuse ``"Extracted Person"``; Claude does not read it).

    >>> response_format_for({"title": "Extracted Person", "type": "object"})["json_schema"]["name"]
    'Extracted_Person'
    """
    json_schema = convert_to_json_schema(schema)
    if strict:
        json_schema = closed_schema(json_schema)
    title = str(json_schema.get("title") or "")
    name = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] or "output"
    spec: dict[str, Any] = {"name": name, "schema": json_schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def structured_output_misfit(schema: Any) -> str | None:
    """Why Claude's structured outputs might not take ``schema`` as is; ``None`` if they do.

    Conservative, for choosing ``with_structured_output``'s default method (an explicit
    ``method="json_schema"`` sends the schema as given): an object that cannot be closed (a
    ``dict[str, int]`` field), a bound (``Field(ge=0)``, ``max_length``; Claude's structured
    outputs take few of them), ``minItems`` above 1, a value of any type (``Any``, or where
    LangChain cut a recursive model's cycle), or a recursive definition.

    >>> structured_output_misfit({"type": "object", "properties": {"a": {"type": "string"}}})
    >>> structured_output_misfit({"type": "object", "properties": {"n": {"minimum": 0}}})
    "'minimum' at properties.n"
    """
    try:
        objects_closed(schema)
    except ValueError:
        return "an object that allows other properties (a dict field?)"
    found = _first_bound(schema, "")
    if found is not None:
        return found
    definitions = {
        f"#/{key}/{name}": sub
        for key in ("$defs", "definitions")
        if isinstance(schema, Mapping) and isinstance(schema.get(key), Mapping)
        for name, sub in schema[key].items()
    }
    for ref, sub in definitions.items():
        if _reaches(sub, ref, definitions, set()):
            return f"a recursive definition ({ref})"
    return None


def _first_bound(schema: Any, path: str) -> str | None:
    """The first keyword of ``_BOUNDS`` (or ``minItems`` above 1) in ``schema``, with where."""
    if not isinstance(schema, Mapping):
        return None
    if not schema and path:  # ``Any``, or a recursive model's cut cycle
        return f"a value of any type at {path.rstrip('.')}"
    for key in _BOUNDS:
        if key in schema:
            return f"{key!r} at {path.rstrip('.') or 'the schema itself'}"
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and min_items > 1:
        return f"'minItems' {min_items} at {path.rstrip('.') or 'the schema itself'}"
    children: list[tuple[str, Any]] = []
    for key in SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), Mapping):
            children += [(f"{path}{key}.{name}.", sub) for name, sub in schema[key].items()]
    for key in SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            children += [(f"{path}{key}.{i}.", sub) for i, sub in enumerate(schema[key])]
    for key in ("items", "not", "contains", "additionalProperties"):
        children.append((f"{path}{key}.", schema.get(key)))
    for where, sub in children:
        found = _first_bound(sub, where)
        if found is not None:
            return found
    return None


def _reaches(schema: Any, target: str, definitions: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether ``schema`` refers to ``target``, directly or through other definitions."""
    if isinstance(schema, list):
        return any(_reaches(sub, target, definitions, seen) for sub in schema)
    if not isinstance(schema, Mapping):
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref == target:
            return True
        if ref in definitions and ref not in seen:
            seen.add(ref)
            if _reaches(definitions[ref], target, definitions, seen):
                return True
    return any(_reaches(sub, target, definitions, seen) for sub in schema.values())
