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

__all__ = ["closed_schema", "objects_closed", "strict_function", "response_format_for"]


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
