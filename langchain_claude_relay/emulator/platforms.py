"""What the cloud platforms change about a Messages request and its errors: Bedrock and Vertex.

* Bedrock (``POST /model/{model}/invoke`` and ``.../invoke-with-response-stream``): the model is
  in the path, the path says whether to stream, and the body is Anthropic's without ``model``
  and ``stream`` (both rejected, as Bedrock does) but with ``anthropic_version`` (required, any
  value accepted). Errors are ``{"message": ...}`` with the AWS error type in the
  ``x-amzn-ErrorType`` header.
* Vertex (``POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict``
  and ``:streamRawPredict``): the model is in the path (a ``model`` in the body is ignored), the
  body keeps ``stream`` and needs ``anthropic_version``. Errors are Anthropic's.

>>> native_payload("bedrock", {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1},
...                "anthropic.claude-sonnet-4-6", stream=True)["model"]
'anthropic.claude-sonnet-4-6'
>>> bedrock_error(429, "Too many requests")
({'message': 'Too many requests'}, {'x-amzn-ErrorType': 'ThrottlingException'})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from langchain_claude_relay.emulator.engine import InvalidRequest
from langchain_claude_relay.models import lookup_model

__all__ = [
    "PLATFORMS",
    "BEDROCK_ERROR_TYPES",
    "native_payload",
    "bedrock_error",
    "error_message",
]

PLATFORMS = ("openai", "anthropic", "bedrock", "vertex")
"""Where a request came in: the OpenAI or the Anthropic API, Bedrock or Vertex AI."""

BEDROCK_ERROR_TYPES: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
    529: "ServiceUnavailableException",
}
"""The AWS error type Bedrock names for a status (529 is the emulator's overload fault)."""

_BEDROCK_MALFORMED = "Malformed input request: #: {}, please reformat your input and try again."


def native_payload(
    platform: str, body: Any, path_model: str | None, stream: bool | None = None
) -> dict[str, Any]:
    """The Anthropic Messages payload a platform request stands for.

    Args:
        platform: one of ``PLATFORMS``.
        body: the decoded JSON body.
        path_model: the model id from the URL path (Bedrock, Vertex), else ``None``.
        stream: whether the path asks for a stream (Bedrock), else ``None``.

    Returns:
        The payload with ``model`` (and, for Bedrock, ``stream``) set from the path.

    Raises:
        InvalidRequest: if the body is not an object or breaks the platform's body rules.

    """
    if not isinstance(body, dict):
        msg = "the request body must be a JSON object"
        raise InvalidRequest(msg)
    if platform == "bedrock":
        for key in ("model", "stream"):
            if key in body:
                problem = f"extraneous key [{key}] is not permitted (the path carries it)"
                raise InvalidRequest(_BEDROCK_MALFORMED.format(problem))
        if "anthropic_version" not in body:
            problem = "required key [anthropic_version] not found"
            raise InvalidRequest(_BEDROCK_MALFORMED.format(problem))
        refused = bool(path_model) and not lookup_model(
            str(path_model)
        ).accepts_automatic_caching_on("bedrock")
        if "cache_control" in body and refused:
            problem = "extraneous key [cache_control] is not permitted"
            raise InvalidRequest(_BEDROCK_MALFORMED.format(problem))
        return {**body, "model": path_model, "stream": bool(stream)}
    if platform == "vertex" and path_model is not None:
        if "anthropic_version" not in body:
            msg = "anthropic_version: Field required (Vertex AI expects 'vertex-2023-10-16')"
            raise InvalidRequest(msg)
        return {**body, "model": path_model}
    return body


def bedrock_error(status: int, message: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Bedrock's error body and headers for a status.

    Args:
        status: the HTTP status.
        message: the error message.

    Returns:
        ``({"message": message}, {"x-amzn-ErrorType": type})``.

    """
    kind = BEDROCK_ERROR_TYPES.get(status, "InternalServerException")
    return {"message": message}, {"x-amzn-ErrorType": kind}


def error_message(body: str) -> str:
    """The message of an Anthropic error body (the body itself if it is not one)."""
    try:
        parsed: Mapping[str, Any] = json.loads(body)
        return str(parsed["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body
