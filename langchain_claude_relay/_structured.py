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

_STRUCTURAL = ("type", "enum", "const", "anyOf", "allOf", "$ref")
"""Keywords that say what a value is: a subschema with none of them allows any value."""

_ANNOTATIONS = ("title", "description", "default", "examples")
"""Keywords that only describe."""

_FITTING = frozenset(
    {*_STRUCTURAL, *_ANNOTATIONS, "properties", "required", "additionalProperties", "items"}
    | {"minItems", "format", "$defs", "definitions"}
)
"""Every keyword the default takes Claude's structured outputs to accept (anything else, such as
a bound, ``oneOf`` or ``pattern``, keeps the tool): Anthropic, structured outputs, JSON Schema
limitations, read 2026-12."""

_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
"""The string formats Claude's structured outputs document (same source)."""

_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
"""JSON Schema's seven types."""


def _primitive(value: Any) -> bool:
    """Whether ``value`` may stand in an ``enum`` or ``const`` of Claude's structured outputs."""
    return value is None or isinstance(value, (str, int, float, bool))


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

    For choosing ``with_structured_output``'s default method, so it admits only what the
    documented subset surely takes (an explicit ``method="json_schema"`` sends any schema as
    given): every subschema says what it is (``type``, ``enum``, ``const``, ``anyOf``,
    ``allOf`` or a ``$ref`` into ``$defs``), with no keyword outside ``_FITTING``; objects have
    named properties and allow no others (not a ``dict`` field, not a bare ``{"type":
    "object"}``); arrays say their items, ``minItems`` at most 1; formats are the documented
    ten; no recursion (a ``$ref`` to ``#`` or back to its own definition).

    >>> structured_output_misfit({"type": "object", "properties": {"a": {"type": "string"}}})
    >>> structured_output_misfit({"type": "object", "properties": {"n": {"type": "integer",
    ...                                                                  "minimum": 0}}})
    "'minimum' at properties.n"
    """
    definitions = {
        f"#/{key}/{name}": sub
        for key in ("$defs", "definitions")
        if isinstance(schema, Mapping) and isinstance(schema.get(key), Mapping)
        for name, sub in schema[key].items()
    }
    for ref, sub in definitions.items():
        if _reaches(sub, ref, definitions, set()):
            return f"a recursive definition ({ref})"
    return _first_misfit(schema, "", definitions)


def _first_misfit(schema: Any, path: str, definitions: Mapping[str, Any]) -> str | None:
    """What of ``schema`` (at ``path``) falls outside what ``structured_output_misfit`` admits."""
    where = path.rstrip(".") or "the schema itself"
    if not isinstance(schema, Mapping):
        return f"a subschema that is not an object at {where}"
    for key in schema:
        if key not in _FITTING:
            return f"{key!r} at {where}"
    if not any(key in schema for key in _STRUCTURAL):
        return f"a value of any type at {where} (Any, or a recursive model's cut cycle?)"
    ref = schema.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref in definitions):
        return f"a reference Claude cannot follow ({ref!r}) at {where}"
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if "type" in schema else []
    if "type" in schema and not (kinds and all(isinstance(k, str) and k in _TYPES for k in kinds)):
        return f"the type {schema['type']!r} at {where}"
    if "enum" in schema and not (
        isinstance(schema["enum"], list) and schema["enum"] and all(map(_primitive, schema["enum"]))
    ):
        return f"an enum that is not a list of strings, numbers, booleans or null at {where}"
    if "const" in schema and not _primitive(schema["const"]):
        return f"a const that is not a string, number, boolean or null at {where}"
    if "object" in kinds or "properties" in schema:
        if not isinstance(schema.get("properties"), Mapping) or not schema["properties"]:
            return f"an object with no named properties at {where} (a free-form dict?)"
        if schema.get("additionalProperties", False) is not False:
            return f"an object that allows other properties at {where} (a dict field?)"
    if "array" in kinds and not isinstance(schema.get("items"), Mapping):
        return f"an array whose items are not described at {where}"
    min_items = schema.get("minItems", 0)
    if isinstance(min_items, bool) or min_items not in (0, 1):
        return f"'minItems' {min_items!r} at {where}"
    fmt = schema.get("format")
    if "format" in schema and not (isinstance(fmt, str) and fmt in _FORMATS):
        return f"the format {fmt!r} at {where}"
    children: list[tuple[str, Any]] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(key), Mapping):
            children += [(f"{path}{key}.{name}.", sub) for name, sub in schema[key].items()]
    for key in ("anyOf", "allOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                return f"{key!r} that is not a list of schemas at {where}"
            if key == "allOf" and any(isinstance(s, Mapping) and "$ref" in s for s in schema[key]):
                return f"a reference inside 'allOf' at {where}"
            children += [(f"{path}{key}.{i}.", sub) for i, sub in enumerate(schema[key])]
    if "items" in schema:
        children.append((f"{path}items.", schema["items"]))
    for child_path, sub in children:
        found = _first_misfit(sub, child_path, definitions)
        if found is not None:
            return found
    return None


def _reaches(schema: Any, target: str, definitions: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether ``schema`` refers to ``target`` (or to the root), directly or through others."""
    if isinstance(schema, list):
        return any(_reaches(sub, target, definitions, seen) for sub in schema)
    if not isinstance(schema, Mapping):
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in (target, "#"):
            return True
        if ref in definitions and ref not in seen:
            seen.add(ref)
            if _reaches(definitions[ref], target, definitions, seen):
                return True
    return any(_reaches(sub, target, definitions, seen) for sub in schema.values())
