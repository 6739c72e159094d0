"""``RelayTransport``: the SDK client of the way in, our retries, and the package's errors.

Every way in (see ``transport.apis``) goes through here: an OpenAI-compatible relay through the
``openai`` SDK; Anthropic's own API, Bedrock and Vertex through the ``anthropic`` SDK's clients
(which sign Bedrock requests and fetch Google tokens). Native streams end with ``message_stop``
(a stream that stops before it was cut) and their ``error`` events become the typed status
errors; Bedrock streams come as AWS event-stream frames (``wire.aws_eventstream``).

The SDK's own retries are off (``max_retries=0``): retries follow ``transport.retry`` so that the
policy, the typed errors and the ``retry-after`` handling are the same everywhere. The SDK's
parsing is bypassed too: bodies are read as text and validated by the wire module, so an HTML
page, an empty body or SSE garbage become ``APIResponseError``, never a ``KeyError``.

A stream is retried only before its first event; after that a failure is raised as is. The
payload is already the wire body (rendered by ``wire``), so it goes through the client's
``post`` as it is, without the SDK's request transformation.

What a relay may do to us is bounded (``transport.limits``): every answer is read as a stream
and capped in bytes as it is decoded (``ResponseLimits``; a stream's lines too), and the whole
call -- attempts, waits, the answer's headers, the body or stream to its end -- has a deadline
(``call_timeout``, derived by default from ``timeout`` and the retries), past which it ends in
``APITimeoutError``. Redirects are not
followed: a ``3xx`` is an ``APIStatusError`` naming where it pointed (following it would send
the key's headers -- ``x-api-key``, ``api-key`` -- to another address, which the HTTP library
strips only for ``Authorization``).

The key never leaves in an error: a relay that echoes it (``"Incorrect API key provided: ..."``,
in an error page or in a 200 error object) has it replaced by ``***`` in every body and stream
line before anything parses them, whatever the key looks like (the pattern-based ``redact`` only
knows ``sk-...`` keys and ``Bearer`` values). The values of credential headers
(``checks.is_secret_header``, passed as ``secret_headers``) are kept as ``SecretStr`` until the
SDK client is built, and scrubbed the same way (``transport.checks``). No raised error holds the
request: the SDK's exceptions (which keep it, headers and all) are never chained (``_failure``).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
import re
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from pydantic import SecretStr

from langchain_claude_relay._plumbing import warn_once
from langchain_claude_relay.errors import (
    ERROR_TYPE_STATUS,
    APIResponseError,
    APITimeoutError,
    ClaudeRelayError,
    CutResponseError,
    RequestValidationError,
    WayIn,
    make_status_error,
    redact,
)
from langchain_claude_relay.transport import progress
from langchain_claude_relay.transport.apis import api_spec, build_sdk_client
from langchain_claude_relay.transport.checks import (
    REDACTED,
    chain_mentions,
    check_base_url_for_api,
    hide_in_http_logs,
    redact_url,
    scrub_error,
    url_credentials,
    warn_if_unverified,
)
from langchain_claude_relay.transport.limits import (
    Deadline,
    ResponseLimits,
    acapped_chunks,
    aiter_capped_lines,
    aread_capped,
    capped_chunks,
    derived_call_timeout,
    error_body_head,
    iter_capped_lines,
    read_capped,
)
from langchain_claude_relay.transport.retry import RetryPolicy, aretry_call, retry_call
from langchain_claude_relay.transport.translate import translate_sdk_error
from langchain_claude_relay.wire.aws_eventstream import (
    aiter_eventstream_json,
    iter_eventstream_json,
)
from langchain_claude_relay.wire.sse import aiter_sse_json, iter_sse_json

__all__ = ["RawResponse", "RelayTransport"]

logger = logging.getLogger("langchain_claude_relay.transport")

_END: Any = object()
_MIN_SCRUBBED_SECRET = 8  # shorter "keys" (test placeholders) are not scrubbed from answers

T = TypeVar("T")


@dataclass(frozen=True)
class _Failure:
    """An attempt's error, ready to raise, and what to chain it to (``None``: nothing)."""

    error: ClaudeRelayError
    cause: BaseException | None


@dataclass(frozen=True)
class RawResponse:
    """A decoded JSON answer with its status and headers."""

    body: Any
    status_code: int
    headers: Mapping[str, str]


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _raw_response(http: Any, text: str) -> RawResponse:
    """A non-streamed answer (``text``: its body, scrubbed), decoded.

    Raises:
        APIResponseError: if the body is empty or not JSON.
    """
    return RawResponse(_decode_body(text, http.status_code), http.status_code, dict(http.headers))


def _not_an_event_stream(response: Any, content_type: str, text: str) -> APIResponseError:
    """The error for a streaming request answered with something else (``text``: its body)."""
    msg = f"relay answered {content_type or 'no content type'} to a streaming request"
    return APIResponseError(msg, status_code=response.status_code, body=error_body_head(text))


def _decode_body(text: str, status_code: int) -> Any:
    """The JSON of a non-streamed answer.

    Raises:
        CutResponseError: for a 2xx answer whose JSON ended part-way (billed by Claude).
        APIResponseError: for an empty body or one that is not JSON.
    """
    if not text.strip():
        msg = "relay answered an empty body"
        raise APIResponseError(msg, status_code=status_code)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        body = error_body_head(text)
        if 200 <= status_code < 300 and _cut_answer(text, exc):
            msg = "relay's answer ended part-way through its JSON (cut short; Claude bills it)"
            raise CutResponseError(
                msg, status_code=status_code, body=body, response_id=_answer_id(text)
            ) from None
        msg = "relay answered a body that is not JSON (an HTML error page?)"
        raise APIResponseError(msg, status_code=status_code, body=body) from None


_ERROR_OBJECT = re.compile(r'\s*\{\s*"(?:error"|type"\s*:\s*"error")')
_CUT_TOKEN = re.compile(r"(?:t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?|-|\.|[eE][+-]?)\s*\Z")
"""The start of a literal or of a number's next part, then the end of the text."""
_CUT_ESCAPE = re.compile(r"u[0-9a-fA-F]{0,4}\s*\Z")
"""A ``\\u`` escape not yet whole (or whole, awaiting its low surrogate), then the end."""
_ANSWER_ID = re.compile(r'\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_\-.:]{1,200})"')


def _cut_answer(text: str, error: BaseException) -> bool:
    r"""Whether ``text``, which failed to parse with ``error``, is a JSON object cut part-way.

    It opens an object (not an error's: a relay's JSON error is whole, or opens with
    ``"error"``), and the parser ran out of text: inside a string, or where more was due.
    An error page is HTML; broken JSON fails before its end.

    >>> def cut(text):
    ...     try:
    ...         json.loads(text)
    ...     except ValueError as exc:
    ...         return _cut_answer(text, exc)
    >>> cut('{"id": "chatcmpl-1", "choices": [{"message": {"content": "Hel'), cut('{"id": "x", "a": [')
    (True, True)
    >>> cut('{"error": {"message": "overlo'), cut("<html>")
    (False, False)
    >>> cut('{"a": 1}]'), cut('{"a": 1, "b": }')
    (False, False)
    >>> cut('{"a": nu'), cut('{"a": -1500.'), cut(r'{"a": "Caf\u00'), cut('{"a": nux')
    (True, True, True, False)
    """  # noqa: E501
    if not isinstance(error, json.JSONDecodeError):
        return False
    if not text.lstrip().startswith("{") or _ERROR_OBJECT.match(text):
        return False
    if error.msg.startswith("Extra data"):  # a whole object, then something: not cut
        return False
    if error.msg.startswith("Unterminated string"):  # raised only at the end of the text
        return True
    if error.pos >= len(text.rstrip()):
        return True
    # the parser stops where an unfinished token starts: "nu", "-", "1500.", "1e-", "\u4e"
    pattern = _CUT_ESCAPE if error.msg.startswith("Invalid \\uXXXX") else _CUT_TOKEN
    return pattern.match(text, error.pos) is not None


def _answer_id(text: str) -> str | None:
    """The ``id`` a cut answer opens with (OpenAI's and Claude's both lead with it), if any."""
    match = _ANSWER_ID.match(text)
    return match.group(1) if match else None


# The SDK's own HTTP library (httpx2 in openai 3.x and anthropic 2.x, httpx before): asking its
# ``post`` for the raw response skips the SDK's request transformation and response parsing,
# about 0.7 ms a call.
_SDK_HTTP_NAMES = ("httpx2", "httpx")


def _http_response_class(client: Any) -> Any:
    """The ``Response`` class of the HTTP library an SDK client is built on."""
    return _sdk_response_class(type(client).__module__.partition(".")[0])


@functools.cache
def _sdk_response_class(sdk_name: str) -> Any:
    base = sys.modules[sdk_name]._base_client
    library = next(getattr(base, name) for name in _SDK_HTTP_NAMES if hasattr(base, name))
    return library.Response


def _stream_error(
    event: Mapping[str, Any], way_in: Callable[[int | None], WayIn]
) -> ClaudeRelayError:
    """The typed error for a native stream's ``error`` event (``overloaded_error`` is a 529).

    ``way_in`` gives the way in for a status (``RelayTransport._way_in``), for the hint.
    """
    error = event.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    status = ERROR_TYPE_STATUS.get(str(kind))
    body = json.dumps(event, default=str)
    if status is None:
        return APIResponseError("the API streamed an error event", status_code=200, body=body)
    return make_status_error(status, body, way_in=way_in(status))


def _native_event(event: Any, seen_stop: list[bool], way_in: Callable[[int | None], WayIn]) -> Any:
    """Check one native stream event: an ``error`` event raises; ``message_stop`` is noted."""
    if isinstance(event, Mapping):
        kind = event.get("type")
        if kind == "error":
            raise _stream_error(event, way_in)
        if kind == "message_stop":
            seen_stop[0] = True
    return event


_REQUEST_ATTRIBUTES = ("request", "response", "_request", "_response")
"""Attributes the SDKs' and HTTP libraries' exceptions keep the request or response in."""

_REQUEST_HOLDING_MODULES = frozenset(
    {"openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2", "botocore", "boto3"}
)
"""Libraries whose exceptions may hold a request (and so the credential headers sent)."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def _holds_request(exc: BaseException | None) -> bool:
    """Whether ``exc`` or its chain may hold a request or a response (see ``_failure``)."""
    for current in _chain(exc):
        if type(current).__module__.partition(".")[0] in _REQUEST_HOLDING_MODULES:
            return True
        held = getattr(current, "__dict__", {})
        if any(held.get(name) is not None for name in _REQUEST_ATTRIBUTES):
            return True
    return False


def _safe_to_chain(exc: BaseException | None, secrets: tuple[str, ...]) -> bool:
    """Whether ``exc`` may be kept in a raised error's chain: no request, no secret mentioned."""
    if exc is None:
        return True
    if _holds_request(exc):
        return False
    return not any(chain_mentions(exc, s) for s in secrets)


def _note_origin(error: ClaudeRelayError, exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Note on ``error`` which SDK exception it stands for (the SDK exception is not chained)."""
    origin = f"{type(exc).__module__}.{type(exc).__qualname__}"
    request_id = getattr(exc, "request_id", None) or getattr(error, "request_id", None)
    note = f"from {origin}" + (f" (request id {request_id})" if isinstance(request_id, str) else "")
    note = redact(note, *secrets)
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:  # pragma: no cover - Python 3.10: kept where 3.11's tracebacks would show it
        setattr(error, "__notes__", [*getattr(error, "__notes__", []), note])  # noqa: B010


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop, if any (and if it can be held weakly, as asyncio's can)."""
    try:
        loop = asyncio.get_running_loop()
        weakref.ref(loop)
    except (RuntimeError, TypeError):
        return None
    return loop


def _note_failure(exc: BaseException) -> None:
    """Tell the current attempt (``transport.progress``) if ``exc`` is a read that timed out.

    The HTTP library's ``ReadTimeout`` (``httpx``, ``httpx2``, httpcore), anywhere in the chain
    the SDK raised it in. Outside an attempt (a stream read after its first event) it does
    nothing.
    """
    if any(type(link).__name__ == "ReadTimeout" for link in _chain(exc)):
        progress.note_read_timeout()


def _attempt(send: Callable[[], T], on_lost: Callable[[BaseException], None] | None) -> T:
    """One attempt of ``send``, tracked: ``on_lost`` is told if it was sent and its answer lost."""
    attempt = progress.AttemptProgress()
    with progress.tracking(attempt):
        try:
            return send()
        except BaseException as exc:
            if on_lost is not None and progress.answer_lost(attempt, exc):
                on_lost(exc)
            raise


async def _aattempt(
    send: Callable[[], Awaitable[T]], on_lost: Callable[[BaseException], None] | None
) -> T:
    """Async :func:`_attempt`."""
    attempt = progress.AttemptProgress()
    with progress.tracking(attempt):
        try:
            return await send()
        except BaseException as exc:
            if on_lost is not None and progress.answer_lost(attempt, exc):
                on_lost(exc)
            raise


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes scheduled on this thread's loop by ``RelayTransport.close`` (held until done)."""


async def _close_async_client(client: Any) -> None:
    """Close an async SDK client (and its HTTP client); a failure is logged, never raised."""
    try:
        await client.close()
    except Exception as exc:
        logger.debug("closing the async SDK client failed: %s", type(exc).__name__)


def _cut_native_stream() -> APIResponseError:
    msg = "the stream ended before message_stop: it was cut"
    return APIResponseError(msg, status_code=200)


class RelayTransport:
    """Sends rendered payloads through the way in's SDK client, with retries and typed errors.

    Args:
        base_url: the base URL (a relay's usually ends in ``/v1``); ``None`` for a native way in
            means the SDK's default (Anthropic's API, the regional Bedrock or Vertex endpoint).
        api_key: the relay key, Anthropic key or Bedrock bearer token (``None`` where the way in
            authenticates otherwise: AWS credentials, Google credentials).
        api: the way in (``"openai"``, ``"anthropic"``, ``"bedrock"``, ``"vertex"``).
        options: the way in's own settings (see ``apis.build_sdk_client``); ``SecretStr``
            values are kept secret and scrubbed from errors like the key.
        timeout: seconds per attempt (``None`` for the SDK default).
        retry_policy: how many times and how long to wait.
        default_headers: extra headers on every request.
        secret_headers: extra credential headers on every request (``x-api-key``,
            ``Authorization``...), kept secret and scrubbed from errors like the key.
        http_client: an ``httpx``-compatible client for the sync SDK client (tests, proxies).
        http_async_client: the same for the async client.
        sleep: injected for tests; ``time.sleep`` by default.
        asleep: injected for tests; ``asyncio.sleep`` by default.
        call_timeout: seconds a whole call may take, retries and stream included (``None``:
            ``limits.derived_call_timeout`` of ``timeout`` and the retry policy).
        limits: how many bytes an answer may hold (default: ``ResponseLimits()``).
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: SecretStr | None,
        api: str = "openai",
        options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, SecretStr] | None = None,
        http_client: Any = None,
        http_async_client: Any = None,
        sleep: Callable[[float], None] | None = None,
        asleep: Callable[[float], Any] | None = None,
        call_timeout: float | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        self.spec = api_spec(api)
        if base_url is not None:  # a base URL that does not fit the way in; the warn-once one
            check_base_url_for_api(base_url, self.spec.kind)
        self.base_url = base_url
        self._api_key = api_key
        self._options = dict(options or {})
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.default_headers = dict(default_headers or {})
        self._secret_headers = dict(secret_headers or {})
        self._http_client = http_client
        self._http_async_client = http_async_client
        self._clients: dict[bool, tuple[int, Any]] = {}  # is_async -> (pid that built it, client)
        self._async_clients: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = (
            weakref.WeakKeyDictionary()
        )  # event loop -> (pid, client)
        self._sleep = sleep
        self._asleep = asleep
        self.limits = limits or ResponseLimits()
        policy = self.retry_policy
        self.call_timeout = (
            call_timeout
            if call_timeout is not None
            else derived_call_timeout(timeout, policy.max_retries, policy.max_delay)
        )
        warn_if_unverified(base_url or "https://", http_client, http_async_client)
        hide_in_http_logs(base_url, self._scrubbed_secrets)

    def __repr__(self) -> str:
        shown = None if self.base_url is None else redact_url(self.base_url)
        return f"RelayTransport(api={self.spec.kind!r}, base_url={shown!r})"

    def call_deadline(self) -> Deadline:
        """A new call's deadline (``call_timeout`` from now).

        The chat model starts it before its limiter booking and hands it to ``create`` or
        ``stream``, so that a wait for the limiter comes off the call's time.
        """
        return Deadline(self.call_timeout)

    def _request_options(self, deadline: Deadline) -> dict[str, Any]:
        """Per-request SDK options: no redirects; the attempt's timeout cut to the deadline.

        Raises:
            APITimeoutError: if the deadline has passed.
        """
        options: dict[str, Any] = {"follow_redirects": False}
        timeout = deadline.attempt_timeout(self.timeout)
        if timeout is not None:
            options["timeout"] = timeout
        return options

    def _headers(self) -> dict[str, str]:
        """Every extra header to send, the credential ones revealed (for the SDK client only)."""
        secret = {name: value.get_secret_value() for name, value in self._secret_headers.items()}
        return {**self.default_headers, **secret}

    def _secrets(self) -> list[str]:
        """The key, secret settings, credential headers and tokens, the base URL's credentials.

        The base URL's credentials are its userinfo and query values. Values (and tokens)
        shorter than ``_MIN_SCRUBBED_SECRET`` are left out, so that scrubbing does not mangle
        messages. Found once (``_secret_list``): the settings are fixed once the transport is
        built (the chat model builds a new one for new settings), and every stream line is
        scrubbed with them.
        """
        return list(self._secret_list)

    @cached_property
    def _secret_list(self) -> tuple[str, ...]:
        extra = [v.get_secret_value() for v in self._options.values() if isinstance(v, SecretStr)]
        for value in self._secret_headers.values():
            revealed = value.get_secret_value()
            extra += [revealed, revealed.partition(" ")[2].strip()]
        if self.base_url is not None:
            extra += url_credentials(self.base_url)
        long_enough = [s for s in extra if len(s) >= _MIN_SCRUBBED_SECRET]
        key = self._api_key.get_secret_value() if self._api_key is not None else ""
        return tuple(s for s in dict.fromkeys([key, *long_enough]) if s)

    @cached_property
    def _scrubbed_secrets(self) -> tuple[str, ...]:
        """The secrets ``_scrub_text`` replaces (long enough not to mangle answers)."""
        return tuple(s for s in self._secret_list if len(s) >= _MIN_SCRUBBED_SECRET)

    def _build_client(self, *, is_async: bool) -> Any:
        return build_sdk_client(
            self.spec.kind,
            is_async=is_async,
            base_url=self.base_url,
            api_key=self._api_key,
            timeout=self.timeout,
            default_headers=self._headers() or None,
            http_client=self._http_async_client if is_async else self._http_client,
            options=self._options,
            limits=self.limits,
        )

    def _client_for_this_process(self, *, is_async: bool) -> Any:
        """The SDK client built in this process, and for async, on this event loop.

        A child of ``fork`` inherits the parent's connection pool, live keep-alive sockets
        included: children writing requests to one socket read each other's answers (or a
        garbled status line), and one may wait forever on a socket another drained. So a
        client is used only in the process that built it. A client of your own
        (``http_client=``) cannot be rebuilt: it is shared, with one warning.

        An async client's pooled connections belong to the event loop they were opened on:
        a model used again under a new loop (a second ``asyncio.run``, pytest-asyncio's loop
        per test) failed with "Event loop is closed". Each loop gets its own async client;
        those of loops that have closed are dropped when another loop's client is built.
        """
        pid = os.getpid()
        loop = _running_loop() if is_async else None
        if loop is not None and loop not in self._async_clients:
            self._drop_closed_loops()
        slots: Any = self._async_clients if loop is not None else self._clients
        key: Any = loop if loop is not None else is_async
        built = slots.get(key)
        if built is not None and built[0] == pid:
            return built[1]
        own = self._http_async_client if is_async else self._http_client
        if built is not None and own is not None:
            warn_once(
                ("forked_http_client", id(own)),
                "a forked process is using the http_client you gave, whose connections it "
                "shares with its parent: give each process its own client (build the model "
                "after the fork, or use the spawn start method)",
                RuntimeWarning,
            )
        client = self._build_client(is_async=is_async)
        slots[key] = (pid, client)
        return client

    def _drop_closed_loops(self) -> None:
        """Forget the async clients of event loops that have closed.

        A client's pooled connections hold its loop, so the weak key never died: every
        ``asyncio.run`` left a client and its open sockets behind for the model's lifetime (a
        service running ``asyncio.run(llm.ainvoke(...))`` per request ran out of file
        descriptors). Dropped, a client and its loop are collected, which closes the sockets.
        """
        try:
            stale = [old for old in list(self._async_clients) if old.is_closed()]
        except RuntimeError:  # another thread's loop changed the slots meanwhile: next time
            return
        for old in stale:
            self._async_clients.pop(old, None)

    # -- closing ------------------------------------------------------------------------------

    def _take_clients(self) -> list[tuple[Any, Any]]:
        """Forget every SDK client; return ``(slot, client)`` of those this process may close.

        The slot is ``False`` (the sync client), ``True`` (an async client built outside an
        asyncio loop) or the event loop of an async client. Left out (forgotten only): a client
        inherited over ``fork`` (its sockets are the parent's too) and one built on an HTTP
        client you gave (``http_client``, ``http_async_client``: closing the SDK client closes
        it, and it is yours to close). ``popitem`` takes each one once, whichever thread closes.
        """
        pid = os.getpid()
        taken: list[tuple[Any, Any]] = []
        slots: tuple[Any, ...] = (self._clients, self._async_clients)
        for slot_map in slots:
            while True:
                try:
                    slot, (built_in, client) = slot_map.popitem()
                except KeyError:
                    break
                yours = self._http_client if slot is False else self._http_async_client
                if built_in == pid and yours is None:
                    taken.append((slot, client))
        return taken

    def _close_where_possible(self, slot: Any, client: Any) -> None:
        """Close a taken client without awaiting: the sync one now, an async one on its loop.

        An async client's connections belong to its event loop and can only be closed there
        (``await client.close()``; the HTTP library has no synchronous close for them). On a
        loop that is running (another thread's, or this thread's when ``close()`` is called
        from a coroutine) the close is scheduled on it. On a loop that is not running (ended,
        or idle between ``run_until_complete`` calls) nothing can run it: the client is only
        forgotten, and its sockets are closed with the loop's transports when they are
        collected (asyncio warns ``unclosed transport`` then). ``aclose()`` on the loop before
        it ends closes them properly.
        """
        if slot is False:
            try:
                client.close()
            except Exception as exc:  # closing must not fail the caller
                logger.debug("closing the SDK client failed: %s", type(exc).__name__)
            return
        if isinstance(slot, asyncio.AbstractEventLoop) and slot.is_running():
            closing = _close_async_client(client)
            if slot is _running_loop():
                # this thread's loop (close() from a coroutine): the task starts on the loop's
                # next turn, ahead of whatever ends the loop (``asyncio.run`` returning), where
                # a callback scheduled to create it would come after and find it cancelled
                task = slot.create_task(closing)
                _CLOSING.add(task)  # the loop holds its tasks weakly
                task.add_done_callback(_CLOSING.discard)
                return
            try:
                asyncio.run_coroutine_threadsafe(closing, slot)
            except RuntimeError:  # the loop closed meanwhile: forgotten after all
                closing.close()

    def close(self) -> None:
        """Close the SDK clients (and their HTTP clients) built here; later calls build new ones.

        Closed: the sync client, and the async clients of running event loops (scheduled on
        their loop, see ``_close_where_possible``); only forgotten: the async clients of loops
        that are not running, clients inherited over ``fork``, and those built on an HTTP
        client you gave (you close it). A client that fails to close is logged at DEBUG,
        never raised. Calling it again closes what was built since.

        A call in flight (another thread's) on a client closed here finishes, or fails with a
        typed error: ``APIConnectionError`` for the connection closed under it (retried, on a
        new client), ``RequestValidationError`` naming the closed client if it was just
        sending, ``APITimeoutError`` at its timeout if its read was blocked on a socket
        closed under it (a blocked read is not woken by the close). Close a model once the
        calls you care about are done.
        """
        for slot, client in self._take_clients():
            self._close_where_possible(slot, client)

    async def aclose(self) -> None:
        """:meth:`close`, awaiting the close of the running event loop's async client."""
        loop = _running_loop()
        mine = loop if loop is not None else True  # the slot this loop's client is kept in
        for slot, client in self._take_clients():
            if slot is mine:
                await _close_async_client(client)
            else:
                self._close_where_possible(slot, client)

    @property
    def client(self) -> Any:
        """The sync SDK client, built on first use in this process."""
        return self._client_for_this_process(is_async=False)

    @property
    def async_client(self) -> Any:
        """The async SDK client of this process and event loop, built on first use."""
        return self._client_for_this_process(is_async=True)

    @property
    def resolved_base_url(self) -> str:
        """The base URL requests go to (the SDK's default when none was given)."""
        return self.base_url or str(self.client.base_url)

    def _failure(self, exc: BaseException, deadline: Deadline | None = None) -> _Failure:
        """The typed, scrubbed error for ``exc``, and the cause to chain it to.

        Callers raise it outside their ``except`` block, so that no implicit ``__context__``
        is kept. Nothing that holds the request is ever chained: the SDK's and the HTTP
        library's exceptions keep it (``.request.headers``: the key and the credential headers
        in plain text), and their messages may hold error bodies that echo the key. So an SDK
        exception is never the cause; the typed error gets a note instead (``__notes__``, shown
        under its traceback) naming the SDK exception's class and the request id, if any. Other
        causes (a local failure's) are chained only when nothing in their chain holds a request
        or mentions a secret. A timeout once the call's ``deadline`` has passed (a socket wait
        cut to it) is the deadline's error.
        """
        _note_failure(exc)  # every attempt's failure comes here: a read timeout means sent
        secrets = self._secret_list
        way_in = self._way_in(getattr(exc, "status_code", None))
        error = translate_sdk_error(exc, secret=secrets[0] if secrets else None, way_in=way_in)
        if deadline is not None and isinstance(error, APITimeoutError) and deadline.passed():
            error = deadline.error()
        for other in secrets[1:]:
            scrub_error(error, other)
        if error is exc:  # our own error: its chain may hold what it was raised from
            cause = exc.__cause__
            if not _safe_to_chain(exc.__cause__, secrets) or not _safe_to_chain(
                exc.__context__, secrets
            ):
                error.__cause__ = error.__context__ = cause = None
            return _Failure(error, cause)
        if _holds_request(exc):
            _note_origin(error, exc, secrets)
            return _Failure(error, None)
        return _Failure(error, exc if _safe_to_chain(exc, secrets) else None)

    def _key_source(self) -> str | None:
        """The environment variable of the way in that holds the key sent, if one does.

        Only its name leaves here, for the 401 hint (a key read from ``OPENAI_API_KEY``, the
        relay's fallback, is often an OpenAI key sent to the relay by mistake).
        """
        if self._api_key is None:
            return None
        key = self._api_key.get_secret_value().encode("utf-8", "surrogateescape")
        for name in self.spec.key_env:
            value = os.environ.get(name)
            if value and hmac.compare_digest(value.encode("utf-8", "surrogateescape"), key):
                return name
        return None

    def _way_in(self, status_code: int | None) -> WayIn:
        """This way in, for a failure's hint; which variable the key came from, for a 401."""
        return WayIn(
            api=self.spec.kind,
            key_env=self.spec.key_env,
            key_from=self._key_source() if status_code == 401 else None,
            has_key=self._api_key is not None,
        )

    def _scrub_text(self, text: str) -> str:
        """An answer's text with the key replaced by ``***`` (a relay may echo it)."""
        for secret in self._scrubbed_secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
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

    def _retry_kwargs(self, *, is_async: bool, deadline: Deadline) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"on_retry": self._on_retry, "remaining": deadline.remaining}
        if is_async and self._asleep is not None:
            kwargs["sleep"] = self._asleep
        if not is_async and self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return kwargs

    # -- non-streaming -------------------------------------------------------------------------

    def _create_once(
        self, payload: Mapping[str, Any] | None, deadline: Deadline, path: str | None = None
    ) -> RawResponse:
        """One attempt: POST ``payload`` (``None``: GET ``path``), read capped, typed errors."""
        failure: _Failure | None = None
        http: Any = None
        try:
            client = self.client
            options = self._request_options(deadline)
            cast_to = _http_response_class(client)
            with deadline.sending():  # the headers, too, within the deadline
                http = (  # stream: read here, capped and against the deadline
                    client.get(path, cast_to=cast_to, stream=True, options=options)
                    if payload is None
                    else client.post(
                        path or self.spec.path,
                        body=dict(payload),
                        cast_to=cast_to,
                        stream=True,
                        options=options,
                    )
                )
            progress.note_answer_began()
            body = read_capped(deadline.iter_bytes(http), self.limits.max_response_bytes, deadline)
            text = self._scrub_text(_text(body))
        except Exception as exc:
            failure = self._failure(exc, deadline)
        finally:
            if http is not None:
                http.close()
        if failure is not None:
            raise failure.error from failure.cause
        return _raw_response(http, text)

    def create_once(
        self,
        payload: Mapping[str, Any],
        timeout: float,
        *,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> RawResponse:
        """Send a non-streaming request once, without retries, within ``timeout`` seconds.

        For requests a retry could not help (a keep-alive that comes late pays the write it
        was meant to save): a failed attempt raises its typed error at once. ``on_lost``: as
        for :meth:`create`.
        """
        deadline = Deadline(timeout)
        return _attempt(lambda: self._create_once(payload, deadline), on_lost)

    def create(
        self,
        payload: Mapping[str, Any],
        deadline: Deadline | None = None,
        *,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> RawResponse:
        """Send a non-streaming request, retrying per the policy, within the call's deadline.

        Args:
            payload: the request body.
            deadline: the call's deadline, if it started earlier (``call_deadline``); default:
                ``call_timeout`` from now.
            on_lost: called with the error of each attempt that was sent and whose answer was
                lost (cut part-way, timed out, dropped, cancelled or interrupted: billed by
                Claude, its usage unknown; see ``transport.progress``), before that attempt is
                retried or its error raised.
        """
        deadline = self.call_deadline() if deadline is None else deadline
        return retry_call(
            lambda: _attempt(lambda: self._create_once(payload, deadline), on_lost),
            self.retry_policy,
            **self._retry_kwargs(is_async=False, deadline=deadline),
        )

    async def _acreate_once(
        self, payload: Mapping[str, Any], deadline: Deadline, path: str | None = None
    ) -> RawResponse:
        failure: _Failure | None = None
        http: Any = None
        try:
            client = self.async_client
            http = await deadline.within(  # the headers, too, within the deadline
                client.post(
                    path or self.spec.path,
                    body=dict(payload),
                    cast_to=_http_response_class(client),
                    stream=True,
                    options=self._request_options(deadline),
                )
            )
            progress.note_answer_began()
            body = await aread_capped(http.aiter_bytes(), self.limits.max_response_bytes, deadline)
            text = self._scrub_text(_text(body))
        except Exception as exc:
            failure = self._failure(exc, deadline)
        finally:
            if http is not None:
                await http.aclose()
        if failure is not None:
            raise failure.error from failure.cause
        return _raw_response(http, text)

    async def acreate(
        self,
        payload: Mapping[str, Any],
        deadline: Deadline | None = None,
        *,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> RawResponse:
        """Async :meth:`create`."""
        deadline = self.call_deadline() if deadline is None else deadline
        return await aretry_call(
            lambda: _aattempt(lambda: self._acreate_once(payload, deadline), on_lost),
            self.retry_policy,
            **self._retry_kwargs(is_async=True, deadline=deadline),
        )

    # -- token counting (native API, Vertex) ------------------------------------------------------

    def _count_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        if not self.spec.count_tokens:
            msg = f"api={self.spec.kind!r} has no count-tokens endpoint"
            raise RequestValidationError(msg)
        dropped = ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences")
        return {k: v for k, v in payload.items() if k not in dropped}

    @staticmethod
    def _count_of(raw: RawResponse) -> int:
        count = raw.body.get("input_tokens") if isinstance(raw.body, Mapping) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            msg = "count_tokens answered without a non-negative integer 'input_tokens'"
            raise APIResponseError(msg, status_code=raw.status_code, body=json.dumps(raw.body))
        return count

    def count_tokens(self, payload: Mapping[str, Any]) -> int:
        """Claude's exact input token count for a Messages payload (``/v1/messages/count_tokens``).

        Raises:
            RequestValidationError: if the way in has no count-tokens endpoint (relays, Bedrock).
        """
        body = self._count_payload(payload)
        deadline = self.call_deadline()
        raw = retry_call(
            lambda: self._create_once(body, deadline, "/v1/messages/count_tokens"),
            self.retry_policy,
            **self._retry_kwargs(is_async=False, deadline=deadline),
        )
        return self._count_of(raw)

    async def acount_tokens(self, payload: Mapping[str, Any]) -> int:
        """Async :meth:`count_tokens`."""
        body = self._count_payload(payload)
        deadline = self.call_deadline()
        raw = await aretry_call(
            lambda: self._acreate_once(body, deadline, "/v1/messages/count_tokens"),
            self.retry_policy,
            **self._retry_kwargs(is_async=True, deadline=deadline),
        )
        return self._count_of(raw)

    def list_models(self) -> RawResponse:
        """The relay's ``GET /models`` (its catalogue; some relays publish prices there).

        Raises:
            ClaudeRelayError: the typed error of the request, after the retry policy.
        """
        deadline = self.call_deadline()
        return retry_call(
            lambda: self._create_once(None, deadline, "/models"),
            self.retry_policy,
            **self._retry_kwargs(is_async=False, deadline=deadline),
        )

    # -- streaming -----------------------------------------------------------------------------

    def _is_stream(self, content_type: str) -> bool:
        if self.spec.binary_stream:
            return "eventstream" in content_type
        return "event-stream" in content_type

    def _events(self, response: Any, deadline: Deadline) -> Iterator[Any]:
        """Decoded events of an open stream, checked for the way in's end and error events."""
        native = self.spec.native
        body = deadline.iter_bytes(response)
        if self.spec.binary_stream:
            chunks = capped_chunks(body, self.limits.max_stream_bytes, deadline)
            raw = iter_eventstream_json(chunks, scrub=self._scrub_text)
        else:
            lines = self._scrub_lines(iter_capped_lines(body, self.limits, deadline))
            raw = iter_sse_json(lines, require_done=not native, pass_errors=native)
        if not native:
            return raw
        return self._checked_native(raw)

    def _checked_native(self, events: Iterator[Any]) -> Iterator[Any]:
        seen_stop = [False]
        for event in events:
            yield _native_event(event, seen_stop, self._way_in)
        if not seen_stop[0]:
            raise _cut_native_stream()

    def _aevents(self, response: Any, deadline: Deadline) -> AsyncIterator[Any]:
        native = self.spec.native
        if self.spec.binary_stream:
            chunks = acapped_chunks(response.aiter_bytes(), self.limits.max_stream_bytes, deadline)
            raw = aiter_eventstream_json(chunks, scrub=self._scrub_text)
        else:
            lines = self._ascrub_lines(
                aiter_capped_lines(response.aiter_bytes(), self.limits, deadline)
            )
            raw = aiter_sse_json(lines, require_done=not native, pass_errors=native)
        if not native:
            return raw
        return self._achecked_native(raw)

    async def _achecked_native(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        seen_stop = [False]
        async for event in events:
            yield _native_event(event, seen_stop, self._way_in)
        if not seen_stop[0]:
            raise _cut_native_stream()

    def _open_stream(
        self, payload: Mapping[str, Any], deadline: Deadline
    ) -> tuple[Any, Iterator[Any], Any]:
        failure: _Failure | None = None
        try:
            client = self.client
            options = self._request_options(deadline)
            with deadline.sending():  # the headers, too, within the deadline
                response = client.post(
                    self.spec.path,
                    body=dict(payload),
                    cast_to=_http_response_class(client),
                    stream=True,
                    options=options,
                )
            progress.note_answer_began()
        except Exception as exc:
            failure = self._failure(exc, deadline)
        if failure is not None:
            raise failure.error from failure.cause
        try:
            content_type = response.headers.get("content-type", "")
            if not self._is_stream(content_type):
                body = read_capped(
                    deadline.iter_bytes(response), self.limits.max_response_bytes, deadline
                )
                raise _not_an_event_stream(response, content_type, self._scrub_text(_text(body)))
            events = self._events(response, deadline)
            first = next(events, _END)
        except Exception as exc:
            failure = self._failure(exc, deadline)
        if failure is not None:
            response.close()
            raise failure.error from failure.cause
        return response, events, first

    def stream(
        self,
        payload: Mapping[str, Any],
        deadline: Deadline | None = None,
        *,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> Iterator[Any]:
        """Stream a request's decoded events; retried only until the first event arrives.

        The whole stream is within the call's deadline (``deadline``, as for ``create``) and
        the stream caps. ``on_lost``: as for :meth:`create`, for the attempts that failed
        before their first event (after it, the stream's consumer sees what came).
        """
        deadline = self.call_deadline() if deadline is None else deadline
        response, events, first = retry_call(
            lambda: _attempt(lambda: self._open_stream(payload, deadline), on_lost),
            self.retry_policy,
            **self._retry_kwargs(is_async=False, deadline=deadline),
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
        self, payload: Mapping[str, Any], deadline: Deadline
    ) -> tuple[Any, AsyncIterator[Any], Any]:
        failure: _Failure | None = None
        try:
            client = self.async_client
            response = await deadline.within(  # the headers, too, within the deadline
                client.post(
                    self.spec.path,
                    body=dict(payload),
                    cast_to=_http_response_class(client),
                    stream=True,
                    options=self._request_options(deadline),
                )
            )
            progress.note_answer_began()
        except Exception as exc:
            failure = self._failure(exc, deadline)
        if failure is not None:
            raise failure.error from failure.cause
        try:
            content_type = response.headers.get("content-type", "")
            if not self._is_stream(content_type):
                body = await aread_capped(
                    response.aiter_bytes(), self.limits.max_response_bytes, deadline
                )
                raise _not_an_event_stream(response, content_type, self._scrub_text(_text(body)))
            events = self._aevents(response, deadline)
            first = await anext(events, _END)
        except Exception as exc:
            failure = self._failure(exc, deadline)
        if failure is not None:
            await response.aclose()
            raise failure.error from failure.cause
        return response, events, first

    async def astream(
        self,
        payload: Mapping[str, Any],
        deadline: Deadline | None = None,
        *,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        deadline = self.call_deadline() if deadline is None else deadline
        response, events, first = await aretry_call(
            lambda: _aattempt(lambda: self._aopen_stream(payload, deadline), on_lost),
            self.retry_policy,
            **self._retry_kwargs(is_async=True, deadline=deadline),
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
