"""The four ways in to Claude and their SDK clients: relays, the native API, Bedrock, Vertex.

``"openai"``: an OpenAI-compatible relay, through the ``openai`` SDK (``/chat/completions``).
``"anthropic"``: Anthropic's Messages API, through the ``anthropic`` SDK (``/v1/messages``).
``"bedrock"``: the Messages API on AWS Bedrock (``/model/{id}/invoke``), through
``anthropic.AnthropicBedrock`` (SigV4 signing, AWS credentials from the usual chain).
``"vertex"``: the Messages API on Google Vertex AI (``...:rawPredict``), through
``anthropic.AnthropicVertex`` (Google credentials or an access token).

The ``anthropic`` SDK is an optional extra, imported only when a native way in is used; a missing
one is reported with the extra to install. The SDK clients are built with their own retries off:
retries, errors and secrets are the transport's business, the same for every way in.

Without an ``http_client`` of the user's, the HTTP client is built here on the SDK's defaults
(``DefaultHttpxClient``), with two changes: every response body is capped
(``limits.response_cap_hooks``, so that the SDK's own read of an error page is bounded too), and
a plain ``http://`` base URL ignores the environment's proxy settings (``HTTP_PROXY``,
``ALL_PROXY``...: a plain-http request sent through a proxy hands it the key in clear text).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from langchain_claude_relay._env import API_KEY_ENVS, BASE_URL_ENVS
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.transport.limits import ResponseLimits, response_cap_hooks

__all__ = [
    "API_KINDS",
    "ApiKind",
    "ApiSpec",
    "API_SPECS",
    "build_sdk_client",
    "default_http_client",
    "require_sdk",
]

ApiKind = Literal["openai", "anthropic", "bedrock", "vertex"]


@dataclass(frozen=True)
class ApiSpec:
    """What differs between the ways in, as data.

    Attributes:
        kind: the way in.
        path: the request path the SDK client posts to (Bedrock and Vertex clients rewrite
            ``/v1/messages`` into their own paths).
        native: the body is Anthropic's Messages format (else OpenAI's chat completions).
        binary_stream: streams come as AWS event-stream frames (Bedrock), else as SSE.
        extra: the package extra that installs the SDK.
        count_tokens: the API has a count-tokens endpoint the client can reach.
        key_env: environment variables read for the key, in order.
        base_url_env: environment variables read for the base URL, in order.
    """

    kind: ApiKind
    path: str
    native: bool
    binary_stream: bool
    extra: str | None
    count_tokens: bool
    key_env: tuple[str, ...]
    base_url_env: tuple[str, ...]


API_SPECS: dict[str, ApiSpec] = {
    "openai": ApiSpec(
        "openai",
        "/chat/completions",
        native=False,
        binary_stream=False,
        extra=None,
        count_tokens=False,
        key_env=API_KEY_ENVS,
        base_url_env=BASE_URL_ENVS,
    ),
    "anthropic": ApiSpec(
        "anthropic",
        "/v1/messages",
        native=True,
        binary_stream=False,
        extra="anthropic",
        count_tokens=True,
        key_env=("ANTHROPIC_API_KEY",),
        base_url_env=("ANTHROPIC_BASE_URL",),
    ),
    "bedrock": ApiSpec(
        "bedrock",
        "/v1/messages",
        native=True,
        binary_stream=True,
        extra="bedrock",
        count_tokens=False,  # the SDK refuses: "Token counting is not supported in Bedrock yet"
        key_env=("AWS_BEARER_TOKEN_BEDROCK",),
        base_url_env=("ANTHROPIC_BEDROCK_BASE_URL",),
    ),
    "vertex": ApiSpec(
        "vertex",
        "/v1/messages",
        native=True,
        binary_stream=False,
        extra="vertex",
        count_tokens=True,
        key_env=(),
        base_url_env=("ANTHROPIC_VERTEX_BASE_URL",),
    ),
}
API_KINDS: tuple[str, ...] = tuple(API_SPECS)

# The SDK classes and the third-party modules each native way in needs.
_CLIENT_CLASSES: dict[str, tuple[str, str]] = {
    "anthropic": ("Anthropic", "AsyncAnthropic"),
    "bedrock": ("AnthropicBedrock", "AsyncAnthropicBedrock"),
    "vertex": ("AnthropicVertex", "AsyncAnthropicVertex"),
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "anthropic": ("anthropic",),
    "bedrock": ("anthropic", "boto3", "botocore"),
    "vertex": ("anthropic", "google.auth"),
}


def api_spec(kind: str) -> ApiSpec:
    """The spec of a way in.

    Raises:
        RequestValidationError: for an unknown kind, naming the known ones.
    """
    spec = API_SPECS.get(kind)
    if spec is None:
        msg = f"api={kind!r} is not a way in: use one of {', '.join(map(repr, API_KINDS))}"
        raise RequestValidationError(msg)
    return spec


def require_sdk(kind: str) -> Any:
    """Import the SDK a native way in needs, or say which extra installs it.

    Args:
        kind: ``"anthropic"``, ``"bedrock"`` or ``"vertex"``.

    Returns:
        The ``anthropic`` module.

    Raises:
        RequestValidationError: if the SDK (or the AWS / Google libraries) is not installed.
    """
    spec = api_spec(kind)
    for module in _NEEDS.get(kind, ()):
        try:
            importlib.import_module(module)
        except ImportError:
            msg = (
                f"api={kind!r} needs the {module!r} package: "
                f"pip install 'langchain-claude-relay[{spec.extra}]'"
            )
            raise RequestValidationError(msg) from None
    return importlib.import_module("anthropic")


def _revealed(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def default_http_client(
    sdk: Any, *, is_async: bool, base_url: str | None, limits: ResponseLimits
) -> Any:
    """The SDK's default HTTP client, bodies capped, no environment proxies for plain http.

    Args:
        sdk: the ``openai`` or ``anthropic`` module.
        is_async: build the async client.
        base_url: the base URL (``None``: the SDK's https default).
        limits: the response caps.

    Returns:
        A ``DefaultHttpxClient`` (or ``DefaultAsyncHttpxClient``) of the SDK.
    """
    plain_http = base_url is not None and base_url.lower().startswith("http://")
    cls = sdk.DefaultAsyncHttpxClient if is_async else sdk.DefaultHttpxClient
    return cls(trust_env=not plain_http, event_hooks=response_cap_hooks(limits, is_async=is_async))


def build_sdk_client(
    kind: str,
    *,
    is_async: bool,
    base_url: str | None,
    api_key: SecretStr | None,
    timeout: float | None,
    default_headers: Mapping[str, str] | None,
    http_client: Any,
    options: Mapping[str, Any],
    limits: ResponseLimits | None = None,
) -> Any:
    """Build the SDK client of a way in, its own retries off.

    Args:
        kind: the way in.
        is_async: build the async client.
        base_url: the base URL (``None``: the SDK's default or its environment variable).
        api_key: the key (relay key, Anthropic key, Bedrock bearer token; unused by Vertex).
        timeout: seconds per attempt (``None``: the SDK's default).
        default_headers: extra headers, credentials revealed.
        http_client: an ``httpx``-compatible client, or ``None`` (``default_http_client``).
        options: the way in's own settings: ``aws_region``, ``aws_access_key_id``,
            ``aws_secret_access_key``, ``aws_session_token``, ``aws_profile`` (Bedrock);
            ``vertex_project``, ``vertex_region``, ``vertex_access_token``,
            ``vertex_credentials`` (Vertex). ``None`` values are left to the SDK's defaults.
        limits: the response caps of the default HTTP client (default: ``ResponseLimits()``).

    Returns:
        The client.

    Raises:
        RequestValidationError: if the SDK is missing or a required setting (a region) is not
            given nor in the environment.
    """
    common: dict[str, Any] = {"max_retries": 0, "default_headers": dict(default_headers or {})}
    if base_url is not None:
        common["base_url"] = base_url
    if timeout is not None:
        common["timeout"] = timeout
    if kind == "openai":
        import openai

        sdk: Any = openai
    else:
        sdk = require_sdk(kind)
    common["http_client"] = http_client or default_http_client(
        sdk, is_async=is_async, base_url=base_url, limits=limits or ResponseLimits()
    )
    if kind == "openai":
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return cls(api_key=_revealed(api_key), **common)
    cls = getattr(sdk, _CLIENT_CLASSES[kind][1 if is_async else 0])
    settings: dict[str, Any]
    if kind == "anthropic":
        settings = {"api_key": _revealed(api_key)}
    elif kind == "bedrock":
        settings = {
            "aws_region": options.get("aws_region"),
            "aws_access_key": _revealed(options.get("aws_access_key_id")),
            "aws_secret_key": _revealed(options.get("aws_secret_access_key")),
            "aws_session_token": _revealed(options.get("aws_session_token")),
            "aws_profile": options.get("aws_profile"),
            "api_key": _revealed(api_key),
        }
    else:
        settings = {
            "project_id": options.get("vertex_project"),
            "region": options.get("vertex_region"),
            "access_token": _revealed(options.get("vertex_access_token")),
            "credentials": options.get("vertex_credentials"),
        }
    settings = {k: v for k, v in settings.items() if v is not None}
    try:
        return cls(**settings, **common)
    except (ValueError, RuntimeError) as exc:  # the SDK's own "no region" etc.
        msg = f"cannot set up api={kind!r}: {exc}"
        raise RequestValidationError(msg) from None
