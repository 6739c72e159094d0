"""The transport: from a rendered payload to a relay's answer, and nothing else (internal).

``apis`` (the four ways in as data, and their SDK clients), ``checks`` (base URL, TLS and
credential checks; secrets scrubbed from errors), ``retry`` (which failures to retry, how long to
wait), ``translate`` (SDK exceptions -> the package's typed errors) and ``relay``
(``RelayTransport``, which ties them together). ``ChatClaudeRelay`` is its only user; nothing
here is public API.
"""

from __future__ import annotations

from langchain_claude_relay.transport.apis import API_SPECS, ApiKind, ApiSpec, api_spec
from langchain_claude_relay.transport.checks import (
    SECRET_HEADER_NAMES,
    check_base_url,
    client_skips_tls_verification,
    scrub_error,
    split_secret_headers,
)
from langchain_claude_relay.transport.relay import RawResponse, RelayTransport
from langchain_claude_relay.transport.retry import RetryPolicy
from langchain_claude_relay.transport.translate import translate_sdk_error

__all__ = [
    "API_SPECS",
    "ApiKind",
    "ApiSpec",
    "api_spec",
    "SECRET_HEADER_NAMES",
    "check_base_url",
    "client_skips_tls_verification",
    "scrub_error",
    "split_secret_headers",
    "RawResponse",
    "RelayTransport",
    "RetryPolicy",
    "translate_sdk_error",
]
