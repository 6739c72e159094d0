"""Transport: the ``openai`` SDK client, our retries, and translation to the package's errors.

The SDK's own retries are off (``max_retries=0``): retries follow :mod:`langchain_claude_relay.retry`
so that the policy, the typed errors and the ``retry-after`` handling are the same everywhere. The
SDK's parsing is bypassed too: bodies are read as text and validated by the wire module, so an HTML
page, an empty body or SSE garbage become :class:`APIResponseError`, never a ``KeyError``.

A stream is retried only before its first event; after that a failure is raised as is.
"""

from __future__ import annotations

import ipaddress
import json
import logging
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
    APITimeoutError,
    ClaudeRelayError,
    RequestValidationError,
    make_status_error,
)
from langchain_claude_relay.retry import RetryPolicy, aretry_call, parse_retry_after, retry_call
from langchain_claude_relay.wire.sse import aiter_sse_json, iter_sse_json

__all__ = ["RawResponse", "RelayTransport", "check_base_url", "translate_sdk_error"]

logger = logging.getLogger(__name__)

_END: Any = object()


def check_base_url(base_url: str | None, *, allow_insecure_http: bool = False) -> str:
    """Validate a relay base URL before anything is sent.

    Raises:
        RequestValidationError: if it is missing, not http(s), or plain ``http://`` to a host
            other than loopback without ``allow_insecure_http=True``.
    """
    if not base_url:
        msg = (
            "no relay base URL: pass base_url=... or set CLAUDE_RELAY_BASE_URL (or OPENAI_BASE_URL),"
            " e.g. 'https://relay.example.com/v1'"
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
    """Map an SDK or HTTP-library exception to the package's typed errors."""
    if isinstance(exc, ClaudeRelayError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return APITimeoutError()
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return APIConnectionError(f"cannot reach the relay: {type(cause).__name__}: {cause}")
    if isinstance(exc, openai.APIStatusError):
        response = exc.response
        headers = dict(response.headers)
        try:
            body: Any = response.text
        except Exception:  # a streamed error body that cannot be read
            body = exc.body
        return make_status_error(
            exc.status_code,
            body,
            request_id=headers.get("x-request-id") or headers.get("request-id"),
            retry_after=parse_retry_after(headers),
        )
    name = type(exc).__name__
    if "Timeout" in name:
        return APITimeoutError(f"Request timed out ({name}).")
    if isinstance(exc, OSError) or name.endswith(("ProtocolError", "ReadError", "NetworkError", "ConnectError", "StreamError", "CloseError")):
        return APIConnectionError(f"the connection to the relay broke: {name}: {exc}")
    return APIResponseError(f"unexpected failure while reading the relay's answer: {name}")


@dataclass(frozen=True)
class RawResponse:
    """A decoded JSON answer with its status and headers."""

    body: Any
    status_code: int
    headers: Mapping[str, str]


def _decode_body(text: str, status_code: int) -> Any:
    if not text.strip():
        msg = "relay answered an empty body"
        raise APIResponseError(msg, status_code=status_code)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        msg = "relay answered a body that is not JSON (an HTML error page?)"
        raise APIResponseError(msg, status_code=status_code, body=text) from None


def _split_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """SDK keyword arguments: model and messages named, the rest sent verbatim as extra_body."""
    rest = {k: v for k, v in payload.items() if k not in ("model", "messages", "stream")}
    return {"model": payload["model"], "messages": payload["messages"], "extra_body": rest}


class RelayTransport:
    """Sends chat-completion payloads to a relay, with retries and typed errors.

    Args:
        base_url: the relay's OpenAI-compatible base URL (usually ending in ``/v1``).
        api_key: the relay key.
        timeout: seconds per attempt (``None`` for the SDK default).
        retry_policy: how many times and how long to wait.
        default_headers: extra headers on every request.
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
        self._http_client = http_client
        self._http_async_client = http_async_client
        self._sleep = sleep
        self._asleep = asleep

    def __repr__(self) -> str:
        return f"RelayTransport(base_url={self.base_url!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "api_key": self._api_key.get_secret_value(),
            "base_url": self.base_url,
            "max_retries": 0,
            "default_headers": self.default_headers or None,
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

    def _translate(self, exc: BaseException) -> ClaudeRelayError:
        return translate_sdk_error(exc, secret=self._api_key.get_secret_value())

    @staticmethod
    def _on_retry(attempt: int, error: BaseException, delay: float) -> None:
        logger.debug("retrying relay call (attempt %d) in %.2fs after %s", attempt, delay, type(error).__name__)

    def _retry_kwargs(self, *, is_async: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"on_retry": self._on_retry}
        if is_async and self._asleep is not None:
            kwargs["sleep"] = self._asleep
        if not is_async and self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return kwargs

    # -- non-streaming -------------------------------------------------------------------------

    def _create_once(self, payload: Mapping[str, Any]) -> RawResponse:
        try:
            raw = self.client.chat.completions.with_raw_response.create(**_split_payload(payload))
            http = raw.http_response
            text = http.text
        except Exception as exc:
            raise self._translate(exc) from exc
        return RawResponse(_decode_body(text, http.status_code), http.status_code, dict(http.headers))

    def create(self, payload: Mapping[str, Any]) -> RawResponse:
        """Send a non-streaming request, retrying per the policy."""
        return retry_call(lambda: self._create_once(payload), self.retry_policy, **self._retry_kwargs(is_async=False))

    async def _acreate_once(self, payload: Mapping[str, Any]) -> RawResponse:
        try:
            raw = await self.async_client.chat.completions.with_raw_response.create(**_split_payload(payload))
            http = raw.http_response
            text = http.text
        except Exception as exc:
            raise self._translate(exc) from exc
        return RawResponse(_decode_body(text, http.status_code), http.status_code, dict(http.headers))

    async def acreate(self, payload: Mapping[str, Any]) -> RawResponse:
        """Async :meth:`create`."""
        return await aretry_call(lambda: self._acreate_once(payload), self.retry_policy, **self._retry_kwargs(is_async=True))

    # -- streaming -----------------------------------------------------------------------------

    def _open_stream(self, payload: Mapping[str, Any]) -> tuple[Any, Iterator[Any], Any]:
        manager = self.client.chat.completions.with_streaming_response.create(stream=True, **_split_payload(payload))
        try:
            response = manager.__enter__()
        except Exception as exc:
            raise self._translate(exc) from exc
        try:
            content_type = response.headers.get("content-type", "")
            if "event-stream" not in content_type:
                text = response.text()
                msg = f"relay answered {content_type or 'no content type'} to a streaming request"
                raise APIResponseError(msg, status_code=response.status_code, body=text)
            events = iter_sse_json(response.iter_lines())
            first = next(events, _END)
        except Exception as exc:
            manager.__exit__(None, None, None)
            raise self._translate(exc) from exc
        return manager, events, first

    def stream(self, payload: Mapping[str, Any]) -> Iterator[Any]:
        """Stream a request's decoded SSE events; retried only until the first event arrives."""
        manager, events, first = retry_call(
            lambda: self._open_stream(payload), self.retry_policy, **self._retry_kwargs(is_async=False)
        )
        try:
            if first is not _END:
                yield first
            while True:
                try:
                    event = next(events, _END)
                except Exception as exc:
                    raise self._translate(exc) from exc
                if event is _END:
                    return
                yield event
        finally:
            manager.__exit__(None, None, None)

    async def _aopen_stream(self, payload: Mapping[str, Any]) -> tuple[Any, AsyncIterator[Any], Any]:
        manager = self.async_client.chat.completions.with_streaming_response.create(stream=True, **_split_payload(payload))
        try:
            response = await manager.__aenter__()
        except Exception as exc:
            raise self._translate(exc) from exc
        try:
            content_type = response.headers.get("content-type", "")
            if "event-stream" not in content_type:
                text = await response.text()
                msg = f"relay answered {content_type or 'no content type'} to a streaming request"
                raise APIResponseError(msg, status_code=response.status_code, body=text)
            events = aiter_sse_json(response.iter_lines())
            first = await anext(events, _END)
        except Exception as exc:
            await manager.__aexit__(None, None, None)
            raise self._translate(exc) from exc
        return manager, events, first

    async def astream(self, payload: Mapping[str, Any]) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        manager, events, first = await aretry_call(
            lambda: self._aopen_stream(payload), self.retry_policy, **self._retry_kwargs(is_async=True)
        )
        try:
            if first is not _END:
                yield first
            while True:
                try:
                    event = await anext(events, _END)
                except Exception as exc:
                    raise self._translate(exc) from exc
                if event is _END:
                    return
                yield event
        finally:
            await manager.__aexit__(None, None, None)
