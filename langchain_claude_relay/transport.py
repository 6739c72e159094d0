"""Transport: the ``openai`` SDK client, our retries, and translation to the package's errors.

The SDK's own retries are off (``max_retries=0``): retries follow
:mod:`langchain_claude_relay.retry` so that the policy, the typed errors and the ``retry-after``
handling are the same everywhere. The SDK's parsing is bypassed too: bodies are read as text and
validated by the wire module, so an HTML page, an empty body or SSE garbage become
:class:`APIResponseError`, never a ``KeyError``.

A stream is retried only before its first event; after that a failure is raised as is. The
payload is already the wire body (rendered by ``wire.openai_chat``), so it goes through the
client's ``post`` as it is, without the SDK's request transformation.

The key never leaves in an error: a relay that echoes it (``"Incorrect API key provided: ..."``,
in an error page or in a 200 error object) has it replaced by ``***`` in every body and stream
line before anything parses them, whatever the key looks like (the pattern-based ``redact`` only
knows ``sk-...`` keys and ``Bearer`` values). The values of credential headers
(:data:`SECRET_HEADER_NAMES`, passed as ``secret_headers``) are kept as ``SecretStr`` until the
SDK client is built, and scrubbed the same way.

TLS verification cannot be switched off silently: an ``http_client`` whose TLS settings are
readable (``httpx``/``httpx2`` clients and their proxy mounts) and that does not verify
certificates or host names draws an :class:`InsecureTransportWarning` when the base URL is
``https://``. A client whose transport hides its settings (a custom transport) is not checked.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import openai
from pydantic import SecretStr

from langchain_claude_relay.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClaudeRelayError,
    RequestValidationError,
    make_status_error,
    redact,
)
from langchain_claude_relay.retry import RetryPolicy, aretry_call, parse_retry_after, retry_call
from langchain_claude_relay.wire.sse import aiter_sse_json, iter_sse_json

__all__ = [
    "SECRET_HEADER_NAMES",
    "InsecureTransportWarning",
    "RawResponse",
    "RelayTransport",
    "check_base_url",
    "client_skips_tls_verification",
    "scrub_error",
    "split_secret_headers",
    "translate_sdk_error",
]

logger = logging.getLogger(__name__)

_END: Any = object()
_REDACTED = "***"
_MIN_SCRUBBED_SECRET = 8  # shorter "keys" (test placeholders) are not scrubbed from answers


SECRET_HEADER_NAMES = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
"""Headers (lower case) whose values are credentials: kept secret like the API key."""


def split_secret_headers(
    headers: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, SecretStr]]:
    """Split headers into plain ones and credentials (:data:`SECRET_HEADER_NAMES`, any case).

    Args:
        headers: the headers as given.

    Returns:
        ``(plain headers, credential headers as SecretStr)``, names as given.

    >>> plain, secret = split_secret_headers({"X-Api-Key": "sk-1", "x-team": "a"})
    >>> plain, secret
    ({'x-team': 'a'}, {'X-Api-Key': SecretStr('**********')})
    """
    plain: dict[str, str] = {}
    secret: dict[str, SecretStr] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADER_NAMES:
            secret[name] = SecretStr(value)
        else:
            plain[name] = value
    return plain, secret


class InsecureTransportWarning(UserWarning):
    """The HTTP client given does not verify the relay's TLS certificate or host name."""


def check_base_url(base_url: str | None, *, allow_insecure_http: bool = False) -> str:
    """Validate a relay base URL before anything is sent.

    Raises:
        RequestValidationError: if it is missing, not http(s), or plain ``http://`` to a host
            other than loopback without ``allow_insecure_http=True``.
    """
    if not base_url:
        msg = (
            "no relay base URL: pass base_url=... or set CLAUDE_RELAY_BASE_URL "
            "(or OPENAI_BASE_URL), e.g. 'https://relay.example.com/v1'"
        )
        raise RequestValidationError(msg)
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        msg = f"base_url {base_url!r} is not an http(s) URL such as 'https://relay.example.com/v1'"
        raise RequestValidationError(msg)
    if parsed.scheme == "http" and not allow_insecure_http and not _is_loopback(parsed.hostname):
        msg = (
            f"base_url uses plain http:// to {parsed.hostname!r}: your API key would travel "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you really mean it."
        )
        raise RequestValidationError(msg)
    return base_url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def translate_sdk_error(exc: BaseException, *, secret: str | None = None) -> ClaudeRelayError:
    """Map an SDK or HTTP-library exception to the package's typed errors.

    Args:
        exc: the exception.
        secret: the API key, replaced by ``***`` in the error's message, arguments and body
            excerpt (also for an error of the package's own, which is scrubbed in place).

    Returns:
        The typed error.
    """
    return scrub_error(_translate(exc, secret), secret)


def _translate(exc: BaseException, secret: str | None) -> ClaudeRelayError:
    if isinstance(exc, ClaudeRelayError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return APITimeoutError()
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        text = f"cannot reach the relay: {type(cause).__name__}: {cause}"
        return APIConnectionError(redact(text, secret))
    if isinstance(exc, openai.APIStatusError):
        response = exc.response
        headers = dict(response.headers)
        try:
            body: Any = response.text
        except Exception:  # a streamed error body that cannot be read
            body = exc.body
        if not isinstance(body, str):
            body = json.dumps(body, default=str) if body is not None else ""
        return make_status_error(
            exc.status_code,
            redact(body, secret),
            request_id=headers.get("x-request-id") or headers.get("request-id"),
            retry_after=parse_retry_after(headers),
        )
    name = type(exc).__name__
    if "Timeout" in name:
        return APITimeoutError(f"Request timed out ({name}).")
    if isinstance(exc, OSError) or name.endswith(
        ("ProtocolError", "ReadError", "NetworkError", "ConnectError", "StreamError", "CloseError")
    ):
        text = f"the connection to the relay broke: {name}: {exc}"
        return APIConnectionError(redact(text, secret))
    return APIResponseError(f"unexpected failure while reading the relay's answer: {name}")


def scrub_error(error: ClaudeRelayError, secret: str | None) -> ClaudeRelayError:
    """Replace ``secret`` by ``***`` in an error's arguments and body excerpt, in place.

    Args:
        error: the error.
        secret: the API key (nothing is done when it is empty).

    Returns:
        The same error.
    """
    if not secret:
        return error
    if any(isinstance(a, str) and secret in a for a in error.args):
        error.args = tuple(
            a.replace(secret, _REDACTED) if isinstance(a, str) else a for a in error.args
        )
    if isinstance(error, APIStatusError | APIResponseError) and secret in error.body_excerpt:
        error.body_excerpt = error.body_excerpt.replace(secret, _REDACTED)
    return error


def _tls_contexts(client: Any) -> list[ssl.SSLContext]:
    """The SSL contexts an ``httpx``/``httpx2`` client's transports will use, where readable."""
    transports = [getattr(client, "_transport", None)]
    mounts = getattr(client, "_mounts", None)
    if isinstance(mounts, Mapping):
        transports.extend(mounts.values())
    contexts = []
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        for holder in (transport, pool):
            for name in ("_ssl_context", "_proxy_ssl_context"):
                context = getattr(holder, name, None)
                if isinstance(context, ssl.SSLContext):
                    contexts.append(context)
    return contexts


def client_skips_tls_verification(client: Any) -> bool:
    """Say whether an HTTP client is known not to verify TLS certificates or host names.

    Reads the SSL contexts of ``httpx``/``httpx2`` clients (``verify=False``, or a context with
    ``CERT_NONE`` or without host-name checking). A client whose settings cannot be read is not
    known to skip verification.

    Args:
        client: the client (``None``: the SDK's own client, which verifies).

    Returns:
        ``True`` if some transport of the client does not verify.
    """
    if client is None:
        return False
    contexts = _tls_contexts(client)
    return any(c.verify_mode == ssl.CERT_NONE or not c.check_hostname for c in contexts)


def _warn_if_unverified(base_url: str, *clients: Any) -> None:
    if urlparse(base_url).scheme != "https":
        return  # plain http (loopback or explicitly allowed): there is no TLS to verify
    if any(client_skips_tls_verification(c) for c in clients):
        warnings.warn(
            "the http_client given to ChatClaudeRelay does not verify TLS certificates "
            "(verify=False, CERT_NONE or check_hostname=False): anyone on the network path can "
            "impersonate the relay and read your API key and prompts. Pass a client that "
            "verifies (point verify= at your CA bundle for a private CA).",
            InsecureTransportWarning,
            stacklevel=4,
        )


@dataclass(frozen=True)
class _Failure:
    """An attempt's error, ready to raise, and what to chain it to (``None``: nothing)."""

    error: ClaudeRelayError
    cause: BaseException | None


def _chain_mentions(exc: BaseException, secret: str) -> bool:
    """Whether ``secret`` appears in the message or arguments of ``exc`` or its chain."""
    if not secret:
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        try:
            text = f"{current}{current.args!r}{getattr(current, 'body', '')!r}"
        except Exception:  # a broken __str__: assume the worst
            return True
        if secret in text:
            return True
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class RawResponse:
    """A decoded JSON answer with its status and headers."""

    body: Any
    status_code: int
    headers: Mapping[str, str]


def _raw_response(http: Any, text: str) -> RawResponse:
    """A non-streamed answer (``text``: its body, scrubbed), decoded.

    Raises:
        APIResponseError: if the body is empty or not JSON.
    """
    return RawResponse(_decode_body(text, http.status_code), http.status_code, dict(http.headers))


def _not_an_event_stream(response: Any, content_type: str, text: str) -> APIResponseError:
    """The error for a streaming request answered with something else (``text``: its body)."""
    msg = f"relay answered {content_type or 'no content type'} to a streaming request"
    return APIResponseError(msg, status_code=response.status_code, body=text)


def _decode_body(text: str, status_code: int) -> Any:
    if not text.strip():
        msg = "relay answered an empty body"
        raise APIResponseError(msg, status_code=status_code)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        msg = "relay answered a body that is not JSON (an HTML error page?)"
        raise APIResponseError(msg, status_code=status_code, body=text) from None


_PATH = "/chat/completions"
# The SDK's own HTTP library (httpx2 in openai 3.x, httpx before): asking its ``post`` for the raw
# response skips the SDK's request transformation and response parsing, about 0.7 ms a call.
_SDK_HTTP_NAMES = ("httpx2", "httpx")
_HTTP_LIBRARY: Any = next(
    getattr(openai._base_client, name)
    for name in _SDK_HTTP_NAMES
    if hasattr(openai._base_client, name)
)
_HTTP_RESPONSE: Any = _HTTP_LIBRARY.Response


class RelayTransport:
    """Sends chat-completion payloads to a relay, with retries and typed errors.

    Args:
        base_url: the relay's OpenAI-compatible base URL (usually ending in ``/v1``).
        api_key: the relay key.
        timeout: seconds per attempt (``None`` for the SDK default).
        retry_policy: how many times and how long to wait.
        default_headers: extra headers on every request.
        secret_headers: extra credential headers on every request (``x-api-key``,
            ``Authorization``...), kept secret and scrubbed from errors like the key.
        http_client: an ``httpx``-compatible client for the sync SDK client (tests, proxies).
        http_async_client: the same for the async client.
        sleep: injected for tests; ``time.sleep`` by default.
        asleep: injected for tests; ``asyncio.sleep`` by default.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, SecretStr] | None = None,
        http_client: Any = None,
        http_async_client: Any = None,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.default_headers = dict(default_headers or {})
        self._secret_headers = dict(secret_headers or {})
        self._http_client = http_client
        self._http_async_client = http_async_client
        self._sleep = sleep
        self._asleep = asleep
        _warn_if_unverified(base_url, http_client, http_async_client)

    def __repr__(self) -> str:
        return f"RelayTransport(base_url={self.base_url!r})"

    def _headers(self) -> dict[str, str]:
        """Every extra header to send, the credential ones revealed (for the SDK client only)."""
        secret = {name: value.get_secret_value() for name, value in self._secret_headers.items()}
        return {**self.default_headers, **secret}

    def _secrets(self) -> list[str]:
        """The API key, then each credential header's value and its token after the scheme.

        Header values (and tokens) shorter than ``_MIN_SCRUBBED_SECRET`` are left out, so that
        scrubbing does not mangle messages.
        """
        extra: list[str] = []
        for value in self._secret_headers.values():
            revealed = value.get_secret_value()
            extra += [revealed, revealed.partition(" ")[2].strip()]
        long_enough = [s for s in extra if len(s) >= _MIN_SCRUBBED_SECRET]
        return list(dict.fromkeys([self._api_key.get_secret_value(), *long_enough]))

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "api_key": self._api_key.get_secret_value(),
            "base_url": self.base_url,
            "max_retries": 0,
            "default_headers": self._headers() or None,
        }
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return kwargs

    @cached_property
    def client(self) -> openai.OpenAI:
        """The sync SDK client, built on first use."""
        return openai.OpenAI(**self._client_kwargs(), http_client=self._http_client)

    @cached_property
    def async_client(self) -> openai.AsyncOpenAI:
        """The async SDK client, built on first use."""
        return openai.AsyncOpenAI(**self._client_kwargs(), http_client=self._http_async_client)

    def _failure(self, exc: BaseException) -> _Failure:
        """The typed, scrubbed error for ``exc``, and the cause to chain it to.

        Callers raise it outside their ``except`` block, so that no implicit ``__context__``
        is kept: the SDK's own exception is chained as the cause only when nothing in its chain
        holds the key (the SDK puts error bodies, which may echo the key, in its messages).
        """
        secrets = self._secrets()
        error = translate_sdk_error(exc, secret=self._api_key.get_secret_value())
        for other in secrets[1:]:
            scrub_error(error, other)
        cause = exc.__cause__ if error is exc else exc
        if cause is not None and any(_chain_mentions(cause, s) for s in secrets):
            cause = None
        return _Failure(error, cause)

    def _scrub_text(self, text: str) -> str:
        """An answer's text with the key replaced by ``***`` (a relay may echo it)."""
        for secret in self._secrets():
            if len(secret) >= _MIN_SCRUBBED_SECRET and secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def _scrub_lines(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            yield self._scrub_text(line)

    async def _ascrub_lines(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        async for line in lines:
            yield self._scrub_text(line)

    @staticmethod
    def _on_retry(attempt: int, error: BaseException, delay: float) -> None:
        logger.debug(
            "retrying relay call (attempt %d) in %.2fs after %s",
            attempt,
            delay,
            type(error).__name__,
        )

    def _retry_kwargs(self, *, is_async: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"on_retry": self._on_retry}
        if is_async and self._asleep is not None:
            kwargs["sleep"] = self._asleep
        if not is_async and self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return kwargs

    # -- non-streaming -------------------------------------------------------------------------

    def _create_once(self, payload: Mapping[str, Any]) -> RawResponse:
        failure: _Failure | None = None
        try:
            http = self.client.post(_PATH, body=dict(payload), cast_to=_HTTP_RESPONSE)
            text = self._scrub_text(http.text)
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            raise failure.error from failure.cause
        return _raw_response(http, text)

    def create(self, payload: Mapping[str, Any]) -> RawResponse:
        """Send a non-streaming request, retrying per the policy."""
        return retry_call(
            lambda: self._create_once(payload),
            self.retry_policy,
            **self._retry_kwargs(is_async=False),
        )

    async def _acreate_once(self, payload: Mapping[str, Any]) -> RawResponse:
        failure: _Failure | None = None
        try:
            http = await self.async_client.post(_PATH, body=dict(payload), cast_to=_HTTP_RESPONSE)
            text = self._scrub_text(http.text)
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            raise failure.error from failure.cause
        return _raw_response(http, text)

    async def acreate(self, payload: Mapping[str, Any]) -> RawResponse:
        """Async :meth:`create`."""
        return await aretry_call(
            lambda: self._acreate_once(payload),
            self.retry_policy,
            **self._retry_kwargs(is_async=True),
        )

    # -- streaming -----------------------------------------------------------------------------

    def _open_stream(self, payload: Mapping[str, Any]) -> tuple[Any, Iterator[Any], Any]:
        failure: _Failure | None = None
        try:
            response = self.client.post(
                _PATH, body=dict(payload), cast_to=_HTTP_RESPONSE, stream=True
            )
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            raise failure.error from failure.cause
        try:
            content_type = response.headers.get("content-type", "")
            if "event-stream" not in content_type:
                response.read()
                raise _not_an_event_stream(response, content_type, self._scrub_text(response.text))
            events = iter_sse_json(self._scrub_lines(response.iter_lines()))
            first = next(events, _END)
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            response.close()
            raise failure.error from failure.cause
        return response, events, first

    def stream(self, payload: Mapping[str, Any]) -> Iterator[Any]:
        """Stream a request's decoded SSE events; retried only until the first event arrives."""
        response, events, first = retry_call(
            lambda: self._open_stream(payload),
            self.retry_policy,
            **self._retry_kwargs(is_async=False),
        )
        try:
            if first is not _END:
                yield first
            while True:
                failure: _Failure | None = None
                try:
                    event = next(events, _END)
                except Exception as exc:
                    failure = self._failure(exc)
                if failure is not None:
                    raise failure.error from failure.cause
                if event is _END:
                    return
                yield event
        finally:
            response.close()

    async def _aopen_stream(
        self, payload: Mapping[str, Any]
    ) -> tuple[Any, AsyncIterator[Any], Any]:
        failure: _Failure | None = None
        try:
            response = await self.async_client.post(
                _PATH, body=dict(payload), cast_to=_HTTP_RESPONSE, stream=True
            )
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            raise failure.error from failure.cause
        try:
            content_type = response.headers.get("content-type", "")
            if "event-stream" not in content_type:
                await response.aread()
                raise _not_an_event_stream(response, content_type, self._scrub_text(response.text))
            events = aiter_sse_json(self._ascrub_lines(response.aiter_lines()))
            first = await anext(events, _END)
        except Exception as exc:
            failure = self._failure(exc)
        if failure is not None:
            await response.aclose()
            raise failure.error from failure.cause
        return response, events, first

    async def astream(self, payload: Mapping[str, Any]) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        response, events, first = await aretry_call(
            lambda: self._aopen_stream(payload),
            self.retry_policy,
            **self._retry_kwargs(is_async=True),
        )
        try:
            if first is not _END:
                yield first
            while True:
                failure: _Failure | None = None
                try:
                    event = await anext(events, _END)
                except Exception as exc:
                    failure = self._failure(exc)
                if failure is not None:
                    raise failure.error from failure.cause
                if event is _END:
                    return
                yield event
        finally:
            await response.aclose()
