"""SDK and HTTP-library exceptions -> the package's typed errors (``errors``), the key scrubbed.

What the relay did becomes an ``APIStatusError``, ``APIConnectionError`` or ``APIResponseError``
(retried). What failed in this process -- a setting the HTTP library cannot send (a header
value with a newline or a non-ASCII character), an exception that comes from neither the SDK nor
the HTTP library -- is a ``RequestValidationError``: no relay saw it, and another attempt would
fail the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai

from langchain_claude_relay.errors import (
    BODY_EXCERPT_CHARS,
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    ClaudeRelayError,
    RequestValidationError,
    WayIn,
    make_status_error,
    redact,
)
from langchain_claude_relay.transport.checks import redact_url, scrub_error
from langchain_claude_relay.transport.limits import error_body_head
from langchain_claude_relay.transport.retry import parse_retry_after

__all__ = ["translate_sdk_error"]

# The modules whose exceptions are about the connection or the relay's answer.
_HTTP_LIBRARIES = frozenset(
    {"httpx", "httpx2", "httpcore", "httpcore2", "h11", "h2", "anyio", "ssl", "socket", "zlib"}
)


def translate_sdk_error(
    exc: BaseException, *, secret: str | None = None, way_in: WayIn | None = None
) -> ClaudeRelayError:
    """Map an SDK or HTTP-library exception to the package's typed errors.

    Args:
        exc: the exception.
        secret: the API key, replaced by ``***`` in the error's message, arguments and body
            excerpt (also for an error of the package's own, which is scrubbed in place).
        way_in: the way the call went (an HTTP error's hint is that way's: which key variables
            to check, a native base URL without ``/v1``); ``None``: a relay's.

    Returns:
        The typed error.
    """
    return scrub_error(_translate(exc, secret, way_in), secret)


def _sdk_errors(name: str) -> tuple[type[BaseException], ...]:
    """An exception class of the ``openai`` SDK and, once it is loaded, of the ``anthropic`` one."""
    classes: list[type[BaseException]] = [getattr(openai, name)]
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(getattr(anthropic, name, None), type):
        classes.append(getattr(anthropic, name))
    return tuple(classes)


def _local_failure(exc: BaseException, secret: str | None) -> RequestValidationError:
    """The error for a call that failed in this process, not at the relay (not retried).

    The HTTP library's protocol error is not quoted: it prints the offending header value as
    bytes, with a newline printed as backslash-n: a form no scrubbing of the raw secret matches.
    """
    name = type(exc).__name__
    if name == "LocalProtocolError":
        text = (
            f"the request could not be sent ({name}): a header value, most likely the key or "
            "one of default_headers, holds a character HTTP headers cannot carry (a newline?)"
        )
        return RequestValidationError(text)
    detail = str(exc)[:BODY_EXCERPT_CHARS]
    text = f"the call failed in this process, not at the relay: {name}: {detail}"
    return RequestValidationError(redact(text, secret))


def _translate(exc: BaseException, secret: str | None, way_in: WayIn | None) -> ClaudeRelayError:
    if isinstance(exc, ClaudeRelayError):
        return exc
    if isinstance(exc, _sdk_errors("APITimeoutError")):
        return APITimeoutError()
    if isinstance(exc, _sdk_errors("APIConnectionError")):
        cause = exc.__cause__ or exc
        if type(cause).__name__ == "LocalProtocolError":  # e.g. a header value with a newline
            return _local_failure(cause, secret)
        text = f"cannot reach the relay: {type(cause).__name__}: {cause}"
        return APIConnectionError(redact(text, secret))
    if isinstance(exc, _sdk_errors("APIStatusError")):
        response: Any = getattr(exc, "response", None)
        status_code = int(getattr(exc, "status_code", 0) or 0)
        headers = dict(response.headers)
        try:
            body: Any = response.text
        except Exception:  # a streamed error body that cannot be read
            body = getattr(exc, "body", None)
        if not isinstance(body, str):
            body = json.dumps(body, default=str) if body is not None else ""
        body = error_body_head(body)
        location = headers.get("location")
        if 300 <= status_code < 400 and location:
            body = f"Location: {redact_url(str(location))} {body}".strip()
        return make_status_error(
            status_code,
            redact(body, secret),
            request_id=headers.get("x-request-id")
            or headers.get("request-id")
            or headers.get("x-amzn-requestid"),
            retry_after=parse_retry_after(headers),
            way_in=way_in,
        )
    name = type(exc).__name__
    if name == "LocalProtocolError":
        return _local_failure(exc, secret)
    if "Timeout" in name:
        return APITimeoutError(f"Request timed out ({name}).")
    if isinstance(exc, OSError) or name.endswith(
        ("ProtocolError", "ReadError", "NetworkError", "ConnectError", "StreamError", "CloseError")
    ):
        text = f"the connection to the relay broke: {name}: {exc}"
        return APIConnectionError(redact(text, secret))
    relay_side = isinstance(exc, _sdk_errors("APIError"))  # e.g. a response that fails checks
    if relay_side or type(exc).__module__.partition(".")[0] in _HTTP_LIBRARIES:  # a bad gzip
        return APIResponseError(f"unexpected failure while reading the relay's answer: {name}")
    return _local_failure(exc, secret)
