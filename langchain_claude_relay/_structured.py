"""Strict tools and JSON-schema answers, spelled as OpenAI-compatible relays take them.

Claude's strict tool use and structured outputs accept only closed objects: every object in the
schema says ``additionalProperties: false``. ``strict=True`` closes them here, as
``ChatOpenAI`` does (with ``langchain_core``'s ``convert_to_openai_function(strict=True)``).

>>> strict_function({"name": "f", "parameters": {"type": "object", "properties": {}}}, True)
{'parameters': {'type': 'object', 'properties': {}, 'additionalProperties': False}, 'strict': True}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_function

__all__ = ["strict_function", "response_format_for"]


def _closed(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` with every object closed (``additionalProperties: false``)."""
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
        changes = {"parameters": _closed(function["parameters"]), **changes}
    return changes


def response_format_for(schema: Any, *, strict: bool | None = None) -> dict[str, Any]:
    """An OpenAI ``response_format`` asking for JSON shaped by ``schema``.

    Args:
        schema: a pydantic class, a TypedDict, or a JSON schema.
        strict: when given, sent as ``json_schema.strict``; ``True`` also closes every object.

    Returns:
        ``{"type": "json_schema", "json_schema": {"name", "schema"[, "strict"]}}``.
    """
    json_schema = convert_to_json_schema(schema)
    if strict:
        json_schema = _closed(json_schema)
    spec: dict[str, Any] = {"name": json_schema.get("title", "output"), "schema": json_schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}
