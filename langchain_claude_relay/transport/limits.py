r"""How much a relay may send and for how long: body caps, stream caps and the call's deadline.

A relay is trusted with neither memory nor time. Every answer is read in chunks, counted, and
cut with a typed error:

* ``ResponseLimits.max_response_bytes``: a non-streamed body (JSON, or an error page) longer than
  this ends in ``APIResponseError`` (a 200 MB body once took the process to 722 MiB);
* ``max_stream_line_bytes``: one line of a server-sent-events stream longer than this (a 200 MB
  line took it to 919 MiB);
* ``max_stream_bytes``: a whole stream longer than this (an endless fast stream grew to 1.7 GB).

``Deadline`` bounds a whole call -- every attempt, every wait between attempts, the answer's
headers, the body or the stream to its end -- ending in ``APITimeoutError``. The HTTP library's
``timeout`` only bounds each read, so a body trickling a byte every half second, headers
trickling the same way, or a stream that never ends, ran on for ever. Each attempt's own timeout
is cut to what is left, the time is checked after every chunk, and a read still waiting when the
deadline passes is ended: async requests and reads are cancelled (``Deadline.within``), sync
reads of a body have their socket shut down (``Deadline.iter_bytes``), and while a sync request
is sent and its headers awaited (``Deadline.sending``), every socket read or write of the
connection waits no longer than what is left (on the clients given ``response_cap_hooks``).

Bytes are counted as they are decoded: a compressed answer (``content-encoding: gzip``...) is
capped at what it unpacks to, not at what came over the wire (50 KiB of gzip unpacked to 50 MiB
and took the process 450 MiB further). An error takes at most ``MAX_ERROR_BODY_CHARS`` of a body
into its message (``error_body_head``).

>>> chunks, forever = [b"data: 1\n\ndata:", b" 2\r\n"], Deadline(None)
>>> list(iter_capped_lines(chunks, ResponseLimits(), forever))
['data: 1', '', 'data: 2']
>>> list(iter_capped_lines([b"x" * 20], ResponseLimits(max_stream_line_bytes=8), forever))
Traceback (most recent call last):
...
langchain_claude_relay.errors.APIResponseError: relay streamed a line longer than ...
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import heapq
import importlib
import itertools
import math
import socket
import sys
import threading
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork
from langchain_claude_relay.errors import APIResponseError, APITimeoutError
from langchain_claude_relay.transport import progress

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_STREAM_LINE_BYTES",
    "DEFAULT_MAX_STREAM_BYTES",
    "MAX_ERROR_BODY_CHARS",
    "SDK_DEFAULT_TIMEOUT",
    "ResponseLimits",
    "Deadline",
    "derived_call_timeout",
    "read_capped",
    "aread_capped",
    "capped_chunks",
    "acapped_chunks",
    "iter_capped_lines",
    "aiter_capped_lines",
    "response_cap_hooks",
    "error_body_head",
]

T = TypeVar("T")

DEFAULT_MAX_RESPONSE_BYTES = 16 * 2**20
"""A non-streamed answer longer than this is refused: 30x the longest Claude answer's JSON."""

DEFAULT_MAX_STREAM_LINE_BYTES = 2**20
"""One line of an SSE stream longer than this is refused (an event is a few hundred bytes)."""

DEFAULT_MAX_STREAM_BYTES = 32 * 2**20
"""A stream longer than this is refused: the longest Claude answer (128K output tokens, one
event of ~170-250 bytes each in the worst case) fits. LangChain's ``stream()`` also keeps every
event as a chunk object (~2.5 KB each), so a stream of tiny events at the cap costs ~0.5 GB:
lower the cap to bound that further."""

SDK_DEFAULT_TIMEOUT = 600.0
"""The ``openai`` and ``anthropic`` SDKs' timeout per attempt when none is given (seconds)."""

MAX_ERROR_BODY_CHARS = 8192
"""Characters of a body an error looks at (its excerpt shows fewer): an error page of
``max_response_bytes`` was whitespace-split and searched whole, several times its size."""

_SHORTEST_WAIT = 0.001  # a socket timeout of 0 would make the socket non-blocking


def error_body_head(text: str) -> str:
    """The start of a body, as much as an error looks at (``MAX_ERROR_BODY_CHARS``).

    >>> len(error_body_head("x" * 10**6))
    8192
    """
    return text[:MAX_ERROR_BODY_CHARS]


@dataclass(frozen=True)
class ResponseLimits:
    """How many bytes a relay may send (see the module docstring).

    Raises:
        ValueError: for a limit that is not a positive integer.
    """

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_stream_line_bytes: int = DEFAULT_MAX_STREAM_LINE_BYTES
    max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES

    def __post_init__(self) -> None:
        for name in ("max_response_bytes", "max_stream_line_bytes", "max_stream_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive number of bytes, got {value!r}"
                raise ValueError(msg)


def derived_call_timeout(timeout: float | None, max_retries: int, max_delay: float) -> float:
    """The default deadline of a call: every attempt's whole timeout, and every wait between.

    Args:
        timeout: seconds per attempt (``None``: the SDKs' default, ``SDK_DEFAULT_TIMEOUT``).
        max_retries: retries after the first attempt.
        max_delay: the longest backoff between two attempts.

    Returns:
        Seconds.

    >>> derived_call_timeout(5, 2, 8.0)
    31.0
    """
    per_attempt = SDK_DEFAULT_TIMEOUT if timeout is None else float(timeout)
    return (max_retries + 1) * per_attempt + max_retries * max_delay


class Deadline:
    """When a call must have ended (``seconds=None``: never).

    Args:
        seconds: the time the call may take, from now.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends = math.inf if seconds is None else clock() + seconds

    def remaining(self) -> float:
        """Seconds left (``inf`` without a deadline; 0 once passed)."""
        return max(0.0, self._ends - self._clock())

    def max_wait(self) -> float | None:
        """Seconds left as a limiter's ``max_wait`` (``None`` without a deadline)."""
        return None if self.seconds is None else self.remaining()

    def error(self) -> APITimeoutError:
        """The error for a call that ran past its deadline."""
        return APITimeoutError(
            f"the call did not finish within its deadline of {self.seconds:g} s "
            "(call_timeout; the relay was still sending or had not answered)"
        )

    def check(self) -> None:
        """Raise ``APITimeoutError`` if the deadline has passed.

        Raises:
            APITimeoutError: if it has.
        """
        if self._clock() >= self._ends:
            raise self.error()

    def passed(self) -> bool:
        """Whether the deadline has passed (within a millisecond: a socket timeout cut to it)."""
        return self.remaining() <= _SHORTEST_WAIT

    async def within(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, cancelled at the deadline (an async request, headers included).

        The HTTP library's read timeout starts again with every byte: a relay sending its
        headers a byte at a time held an async call for as long as it liked.

        Raises:
            APITimeoutError: if the deadline passed first.
        """
        left = self.remaining()
        if math.isinf(left):
            return await awaitable
        try:
            if sys.version_info >= (3, 11):  # no extra task per call, as wait_for makes on 3.11
                async with asyncio.timeout(left):
                    return await awaitable
            return await asyncio.wait_for(awaitable, left)
        except asyncio.TimeoutError:
            raise self.error() from None

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """While a sync request is sent and its headers awaited: no socket wait past the deadline.

        Each read and write on a connection of a client with ``response_cap_hooks`` (the
        clients this package builds) waits at most what is left (``_bound_connection``): a relay
        sending its headers a byte at a time held a sync call for as long as it liked, each
        byte starting the read timeout again. A timeout cut this way ends in ``APITimeoutError``
        (the caller checks ``passed``). Other clients keep their own timeouts.
        """
        token = _CALL_DEADLINE.set(self)
        try:
            yield
        finally:
            _CALL_DEADLINE.reset(token)

    def attempt_timeout(self, timeout: float | None) -> float | None:
        """An attempt's timeout: ``timeout`` cut to what is left (``None``: the SDK's own)."""
        left = self.remaining()
        if math.isinf(left):
            return timeout
        self.check()
        return left if timeout is None else min(float(timeout), left)

    def iter_bytes(self, response: Any) -> Iterator[bytes]:
        """``response.iter_bytes()``, with a read still waiting at the deadline cut short.

        Each attempt's timeout is cut to what was left when it began, but a read that starts
        later waits up to that whole timeout: a relay that goes silent in the middle of an
        answer held a sync call past its deadline by up to one more deadline (async reads are
        cancelled instead). At the deadline ``_Watchdog`` shuts the response's socket down, the
        read ends at once, and the body ends in ``APITimeoutError``. Without a socket to cut
        (a transport of your own, HTTP/2) the body is read as it comes.

        The watch ends in the same step as the body: the HTTP library may hand the connection
        to another request as soon as the body is read, and a watch left armed while a caller
        held a finished stream could then cut that request's socket.

        Raises:
            APITimeoutError: if the deadline cut the read.
        """
        left = self.remaining()
        sock = None if math.isinf(left) else _socket_of(response)
        if sock is None:
            yield from response.iter_bytes()
            return
        watch = _WATCHDOG.arm(time.monotonic() + left, sock)
        try:
            yield from response.iter_bytes()
        except Exception:
            if watch.fired:
                raise self.error() from None
            raise
        finally:
            _WATCHDOG.disarm(watch)
        if watch.fired:  # the cut looked like the end of the answer
            raise self.error()


def _socket_of(response: Any) -> Any:
    """The socket a sync response reads from, where the HTTP library says (httpx on httpcore)."""
    extensions = getattr(response, "extensions", None)
    stream = extensions.get("network_stream") if isinstance(extensions, Mapping) else None
    extra = getattr(stream, "get_extra_info", None)
    sock = extra("socket") if callable(extra) else None
    return sock if isinstance(sock, socket.socket) else None


# ---------------------------------------------------------- sync requests within the deadline
#
# The HTTP library (httpcore) reads an answer's headers with a timeout per read, started again
# after every byte. While ``Deadline.sending`` holds, the connections of our clients cut each
# read's and write's timeout to what is left of the call. httpcore's ``trace`` request extension
# (set by the request hook of ``response_cap_hooks``) hands over each network stream as it is
# opened (``connect_tcp`` / ``start_tls``); its ``read`` and ``write`` are wrapped once, so a
# kept-alive connection used again by a later call is bounded too. An HTTP/2 connection (shared
# by concurrent requests) is left alone.

_CALL_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "claude_relay_call_deadline", default=None
)
_NEW_STREAM_EVENTS = ("connect_tcp.complete", "connect_unix_socket.complete", "start_tls.complete")
_BOUNDED_MARK = "_claude_relay_bounded"


def _cut_to_call(timeout: float | None) -> float | None:
    """A socket wait's ``timeout``, cut to what is left of the current call, if any."""
    deadline = _CALL_DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if math.isinf(left):
        return timeout
    left = max(left, _SHORTEST_WAIT)
    return left if timeout is None else min(float(timeout), left)


def _read_within_call(read: Callable[..., bytes], max_bytes: int, timeout: Any = None) -> bytes:
    return read(max_bytes, timeout=_cut_to_call(timeout))


def _write_within_call(write: Callable[..., None], buffer: bytes, timeout: Any = None) -> None:
    write(buffer, timeout=_cut_to_call(timeout))


def _bound_connection(stream: Any) -> None:
    """Wrap a new sync network stream's ``read`` and ``write`` (see above); once."""
    if stream is None or getattr(stream, _BOUNDED_MARK, False):
        return
    read, write = getattr(stream, "read", None), getattr(stream, "write", None)
    extra = getattr(stream, "get_extra_info", None)
    if not (callable(read) and callable(write) and callable(extra)):
        return
    ssl_object = extra("ssl_object")
    alpn = getattr(ssl_object, "selected_alpn_protocol", None)
    if callable(alpn) and alpn() == "h2":
        return
    with contextlib.suppress(AttributeError, TypeError):  # a stream with slots: left alone
        stream.read = functools.partial(_read_within_call, read)
        stream.write = functools.partial(_write_within_call, write)
        setattr(stream, _BOUNDED_MARK, True)


def _on_connection_event(name: str, info: Mapping[str, Any]) -> None:
    """The ``trace`` callback httpcore calls: bound each network stream as it is opened.

    It also notes when the request has been written (``progress``: an attempt lost after
    that was billed).
    """
    if name.endswith(_NEW_STREAM_EVENTS):
        _bound_connection(info.get("return_value"))
    progress.note_trace_event(name, info)


async def _aon_request_event(name: str, info: Mapping[str, Any]) -> None:
    """The async ``trace`` callback: notes when the request has been written (``progress``)."""
    progress.note_trace_event(name, info)


async def _achained_trace(
    first: Callable[[str, Any], Awaitable[Any]], name: str, info: Any
) -> None:
    await first(name, info)
    await _aon_request_event(name, info)


def _add_trace(request: Any, callback: Any, chained: Any) -> None:
    """Set ``callback`` as the request's httpcore ``trace``, after one already there (once).

    The current attempt (``progress``) is told that a request of its starts.
    """
    progress.note_request()
    extensions = getattr(request, "extensions", None)
    if not isinstance(extensions, dict):
        return
    previous = extensions.get("trace")
    if previous is None:
        extensions["trace"] = callback
    elif previous is not callback and not (
        isinstance(previous, functools.partial) and previous.func is chained
    ):
        extensions["trace"] = functools.partial(chained, previous)


async def _atrace_requests(request: Any) -> None:
    """An async request hook: ask httpcore to tell when the request has been written."""
    _add_trace(request, _aon_request_event, _achained_trace)


def _chained_trace(first: Callable[[str, Any], Any], name: str, info: Any) -> None:
    first(name, info)
    _on_connection_event(name, info)


def _trace_connections(request: Any) -> None:
    """A sync request hook: ask httpcore for the request's new network streams."""
    _add_trace(request, _on_connection_event, _chained_trace)


class _Watch:
    """One armed read: its socket, when to cut it, and whether it was cut."""

    __slots__ = ("fired", "sock", "token", "when")

    def __init__(self, sock: socket.socket, when: float, token: int) -> None:
        self.sock = sock
        self.when = when
        self.token = token
        self.fired = False


class _Watchdog:
    """Shuts down the sockets of sync reads still open at their deadline.

    Arming and disarming cost a lock and a heap push: no thread per call. One
    ``_plumbing.WriteBehind`` thread (the keep-warm scheduler's timer, too) wakes at the
    earliest deadline, cuts what is due, and ends after a minute with nothing armed. Disarmed
    entries leave the heap lazily, and the heap is rebuilt once it holds more than twice what
    is armed.
    """

    _IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._worker = WriteBehind(
            "claude-relay-deadline",
            take=lambda: None,
            send=lambda _batch: self._cut_due(),
            retry_interval=self._seconds_to_next,
            idle_exit=self._IDLE_SECONDS,
        )
        self._reset()
        on_exit_and_fork(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, _Watch] = {}
        self._tokens = itertools.count()

    def arm(self, when: float, sock: socket.socket) -> _Watch:
        """Cut ``sock`` at ``when`` (``time.monotonic``) unless disarmed first."""
        with self._lock:
            watch = _Watch(sock, when, next(self._tokens))
            self._armed[watch.token] = watch
            heapq.heappush(self._heap, (when, watch.token))
            if len(self._heap) > 2 * len(self._armed) + 64:
                self._heap = [(w.when, t) for t, w in self._armed.items()]
                heapq.heapify(self._heap)
            earliest = self._heap[0][1] == watch.token
        if earliest:  # wake (or start) the thread: it sleeps until the earliest deadline
            self._worker.queued()
        return watch

    def disarm(self, watch: _Watch) -> None:
        """The read ended: never cut it."""
        with self._lock:
            self._armed.pop(watch.token, None)

    def _seconds_to_next(self) -> float | None:
        """Seconds until the earliest entry, or ``None`` with nothing in the heap.

        Lock-free (the worker asks under its own lock): only the worker pops, and a push or a
        rebuild is one step.
        """
        heap = self._heap
        return max(0.0, heap[0][0] - time.monotonic()) if heap else None

    def _cut_due(self) -> None:
        due: list[_Watch] = []
        with self._lock:
            now = time.monotonic()
            while self._heap and (self._heap[0][1] not in self._armed or self._heap[0][0] <= now):
                _when, token = heapq.heappop(self._heap)
                watch = self._armed.pop(token, None)
                if watch is not None:
                    watch.fired = True
                    due.append(watch)
        for watch in due:
            with contextlib.suppress(OSError):
                watch.sock.shutdown(socket.SHUT_RDWR)

    def _at_exit(self) -> None:
        """Nothing to finish: the thread is a daemon and cuts nothing that matters then."""

    def _after_fork_in_child(self) -> None:
        self._reset()
        self._worker.reset()


_WATCHDOG = _Watchdog()


def _too_long(what: str, setting: str, limit: int) -> APIResponseError:
    return APIResponseError(
        f"relay {what} longer than {setting}={limit} bytes: refused (raise the setting if the "
        "relay is right)",
        status_code=200,
    )


def capped_chunks(
    chunks: Iterable[bytes], limit: int, deadline: Deadline, setting: str = "max_stream_bytes"
) -> Iterator[bytes]:
    """The chunks, until ``limit`` bytes in all or the deadline (checked after each chunk).

    Raises:
        APIResponseError: past ``limit`` bytes.
        APITimeoutError: past the deadline.
    """
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise _too_long("sent an answer", setting, limit) from None
        deadline.check()
        yield chunk


async def acapped_chunks(
    chunks: AsyncIterable[bytes],
    limit: int,
    deadline: Deadline,
    setting: str = "max_stream_bytes",
) -> AsyncIterator[bytes]:
    """Async ``capped_chunks``; a read still waiting at the deadline is cancelled."""
    iterator = chunks.__aiter__()
    total = 0
    while True:
        left = deadline.remaining()
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), None if math.isinf(left) else left)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise deadline.error() from None
        total += len(chunk)
        if total > limit:
            raise _too_long("sent an answer", setting, limit) from None
        deadline.check()
        yield chunk


def read_capped(chunks: Iterable[bytes], limit: int, deadline: Deadline) -> bytes:
    """A whole body, refused past ``limit`` bytes (``max_response_bytes``) or the deadline.

    Raises:
        APIResponseError: past ``limit`` bytes.
        APITimeoutError: past the deadline.
    """
    return b"".join(capped_chunks(chunks, limit, deadline, "max_response_bytes"))


async def aread_capped(chunks: AsyncIterable[bytes], limit: int, deadline: Deadline) -> bytes:
    """Async ``read_capped``."""
    parts = [c async for c in acapped_chunks(chunks, limit, deadline, "max_response_bytes")]
    return b"".join(parts)


class _LineSplitter:
    """Bytes in, text lines out (LF, CR LF or CR ends a line), each one capped."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        lines: list[str] = []
        buffer = self._buffer
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            carriage = buffer.find(b"\r", start, newline if newline >= 0 else len(buffer))
            if carriage >= 0 and carriage == len(buffer) - 1:
                break  # a '\r' at the end: wait for a '\n' that may follow
            end = carriage if carriage >= 0 else newline
            if end < 0:
                break
            lines.append(buffer[start:end].decode("utf-8", errors="replace"))
            start = end + (2 if buffer[end : end + 2] == b"\r\n" else 1)
        del buffer[:start]
        if len(buffer) > self._max_line:
            raise _too_long("streamed a line", "max_stream_line_bytes", self._max_line)
        for line in lines:
            if len(line) > self._max_line:
                raise _too_long("streamed a line", "max_stream_line_bytes", self._max_line)
        return lines

    def flush(self) -> list[str]:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest.rstrip(b"\r").decode("utf-8", errors="replace")] if rest else []


def iter_capped_lines(
    chunks: Iterable[bytes], limits: ResponseLimits, deadline: Deadline
) -> Iterator[str]:
    """A stream's lines, within the line and stream caps and the deadline.

    Raises:
        APIResponseError: past ``max_stream_line_bytes`` in one line or ``max_stream_bytes``.
        APITimeoutError: past the deadline.
    """
    splitter = _LineSplitter(limits.max_stream_line_bytes)
    for chunk in capped_chunks(chunks, limits.max_stream_bytes, deadline):
        yield from splitter.feed(chunk)
    yield from splitter.flush()


async def aiter_capped_lines(
    chunks: AsyncIterable[bytes], limits: ResponseLimits, deadline: Deadline
) -> AsyncIterator[str]:
    """Async ``iter_capped_lines``."""
    splitter = _LineSplitter(limits.max_stream_line_bytes)
    async for chunk in acapped_chunks(chunks, limits.max_stream_bytes, deadline):
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.flush():
        yield line


# ------------------------------------------------------------- bodies the SDK reads itself
#
# The SDK reads an error answer's body itself (for its message) before we see it; on the clients
# this package builds, a response hook caps that read too: the response's byte stream is
# replaced by one that refuses to go past the cap, and, for a compressed answer, its decoder by
# one that counts what it unpacks (the SDK reads the decoded body whole).


@functools.cache
def _capped_stream_class(library: str, is_async: bool) -> type:
    """A byte-stream class of the HTTP library (``httpx`` or ``httpx2``) that stops at a cap."""
    module = importlib.import_module(library)
    base = module.AsyncByteStream if is_async else module.SyncByteStream

    class CappedStream(base):  # type: ignore[misc,valid-type]
        def __init__(self, inner: Any, limit: int, setting: str) -> None:
            self._inner, self._limit, self._setting = inner, limit, setting

        def _count(self, total: int) -> None:
            if total > self._limit:
                raise _too_long("sent an answer", self._setting, self._limit)

        def __iter__(self) -> Iterator[bytes]:
            total = 0
            for chunk in self._inner:
                total += len(chunk)
                self._count(total)
                yield chunk

        async def __aiter__(self) -> AsyncIterator[bytes]:
            total = 0
            async for chunk in self._inner:
                total += len(chunk)
                self._count(total)
                yield chunk

        def close(self) -> None:
            self._inner.close()

        async def aclose(self) -> None:
            await self._inner.aclose()

    return CappedStream


class _CappedDecoder:
    """A content decoder (gzip, deflate, br, zstd) that refuses to unpack past a cap.

    Wraps the HTTP library's own: ``httpx2`` decoders yield pieces (of at most 1 MiB), older
    ``httpx`` ones return bytes; both are counted as they come out.
    """

    def __init__(self, inner: Any, limit: int, setting: str) -> None:
        self._inner, self._limit, self._setting = inner, limit, setting
        self._total = 0

    def _count(self, piece: bytes) -> bytes:
        self._total += len(piece)
        if self._total > self._limit:
            raise _too_long("sent an answer", self._setting, self._limit)
        return piece

    def _counted(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            yield self._count(piece)

    def decode(self, data: bytes) -> Any:
        out = self._inner.decode(data)
        return self._count(out) if isinstance(out, bytes) else self._counted(out)

    def flush(self) -> Any:
        out = self._inner.flush()
        return self._count(out) if isinstance(out, bytes) else self._counted(out)


def _cap_decoded(response: Any, limit: int, setting: str) -> None:
    """Count a compressed response's body as it is unpacked, not as it came over the wire.

    The HTTP library builds its decoder once per response (``_get_content_decoder``, kept in
    ``_decoder``), from the ``content-encoding`` header: it is wrapped before the body is read.
    Without that method (another HTTP library) only the wire bytes are capped.
    """
    encodings = [e for e in response.headers.get("content-encoding", "").split(",") if e.strip()]
    if all(e.strip().lower() == "identity" for e in encodings):
        return
    get_decoder = getattr(response, "_get_content_decoder", None)
    if not callable(get_decoder):
        return
    try:
        decoder = get_decoder()
    except Exception:  # e.g. too many encodings: the read reports it
        return
    response._decoder = _CappedDecoder(decoder, limit, setting)


def _cap_response(response: Any, limits: ResponseLimits, is_async: bool) -> None:
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        progress.note_status(status)
    content_type = str(response.headers.get("content-type", ""))
    if "event-stream" in content_type or "eventstream" in content_type:
        limit, setting = limits.max_stream_bytes, "max_stream_bytes"
    else:
        limit, setting = limits.max_response_bytes, "max_response_bytes"
    library = type(response).__module__.partition(".")[0]
    response.stream = _capped_stream_class(library, is_async)(response.stream, limit, setting)
    _cap_decoded(response, limit, setting)


def response_cap_hooks(
    limits: ResponseLimits | None = None, *, is_async: bool = False
) -> dict[str, list[Any]]:
    """``event_hooks`` for an HTTP client: every response body is capped (see above).

    The clients this package builds have them. Give them to a client of your own (a proxy, a
    custom TLS setup) that you pass as ``http_client``: the package reads answers through its
    caps whatever the client, but the SDK reads an error answer's body itself, and on a client
    without these hooks that read is not capped. On a sync client they also let the call's
    deadline bound the wait for an answer's headers (``Deadline.sending``); async calls are
    bounded whatever the client. On both they tell when a request has been written, so that a
    call cancelled or interrupted while its answer is awaited is recorded as billed
    (``transport.progress``). (Nothing is added to your client behind your back: it may serve
    other APIs, with other sizes.)

    Args:
        limits: the caps (default: ``ResponseLimits()``, the chat model's defaults; pass the
            model's own if you changed them).
        is_async: hooks for an async client (``httpx.AsyncClient``).

    >>> import httpx
    >>> client = httpx.Client(event_hooks=response_cap_hooks())
    >>> client.close()
    """
    limits = limits if limits is not None else ResponseLimits()
    if is_async:

        async def acap(response: Any) -> None:
            _cap_response(response, limits, is_async=True)

        return {"request": [_atrace_requests], "response": [acap]}

    def cap(response: Any) -> None:
        _cap_response(response, limits, is_async=False)

    return {"request": [_trace_connections], "response": [cap]}
