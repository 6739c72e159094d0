"""How far an attempt got before it failed: was it sent, and so billed with its answer lost?

Claude bills a request once it began, whether or not its answer reaches us. An attempt that
fails after its request went out -- a timeout while the answer is awaited or read, the
connection dropped part-way through the answer, a JSON answer cut short, the caller cancelling
the call (``asyncio.wait_for``, a task cancelled) or interrupting it (Ctrl-C) -- was most likely
billed, but its usage went with the answer. ``RelayTransport`` tells its caller of each such
attempt (``on_lost``), and the chat model records an estimate for it, as it does for a stream
broken off. An attempt that failed before its request went out (no connection, a refused one,
the pool full), whose connection dropped before any answer came, or that was answered with an
error (a status, an error page), is taken as not billed and is not reported (``answer_lost``).

What an attempt did is noted in an ``AttemptProgress`` held in a context variable while it
runs (``tracking``), from two sources:

* the hooks of ``limits.response_cap_hooks`` (the clients this package builds have them): the
  HTTP library's ``trace`` request extension (httpcore's) tells when the whole request was
  written (``send_request_body.complete``; a proxy's ``CONNECT``, which gets the same trace, is
  not the request), and the response hook the answer's status (an error status was not
  billed, even when its body is lost);
* the attempt itself: a 2xx answer's headers arrived (``answer_began``), or, on a client
  without the hooks, the failure was a read that timed out (the request had been written).

On a client of your own, without the hooks, an attempt cancelled or interrupted before its
answer's headers arrived cannot be told from one that never left, and is not reported.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from langchain_claude_relay.errors import APIConnectionError, APITimeoutError, CutResponseError

__all__ = [
    "AttemptProgress",
    "answer_lost",
    "note_answer_began",
    "note_read_timeout",
    "note_request",
    "note_status",
    "note_trace_event",
    "tracking",
]

_REQUEST_WRITTEN = "send_request_body.complete"
"""httpcore's trace event (``http11.`` or ``http2.`` before it) once a request is written."""

_REQUEST_STARTED = "send_request_headers.started"
"""httpcore's trace event as it begins writing a request (its ``info`` names the request)."""


@dataclass
class AttemptProgress:
    """What one attempt did so far."""

    request_sent: bool = False
    """The whole request was written (the relay may have begun it)."""
    answer_began: bool = False
    """A 2xx answer's headers arrived (Claude began the request)."""
    refused: bool = False
    """The last answer's status was not 2xx (an error, a redirect): that request was not billed."""
    connecting: bool = False
    """The request being written is a proxy's ``CONNECT``, not the attempt's."""
    traced: bool = False
    """httpcore's trace (set by ``limits.response_cap_hooks``) reported on the current request:
    ``request_sent`` comes from it."""


_ATTEMPT: contextvars.ContextVar[AttemptProgress | None] = contextvars.ContextVar(
    "claude_relay_attempt", default=None
)


@contextlib.contextmanager
def tracking(progress: AttemptProgress) -> Iterator[AttemptProgress]:
    """Note what the HTTP library does in ``progress`` while the block runs (this context)."""
    token = _ATTEMPT.set(progress)
    try:
        yield progress
    finally:
        _ATTEMPT.reset(token)


def note_answer_began() -> None:
    """A 2xx answer's headers arrived: the current attempt began (Claude bills it)."""
    progress = _ATTEMPT.get()
    if progress is not None:
        progress.answer_began = True


def note_request() -> None:
    """A request of the current attempt starts (a redirect's too): nothing of it went out yet."""
    progress = _ATTEMPT.get()
    if progress is not None:
        progress.request_sent = progress.refused = progress.traced = False


def note_status(status_code: int) -> None:
    """An answer's headers arrived with ``status_code`` (the response hook)."""
    progress = _ATTEMPT.get()
    if progress is not None:
        progress.refused = not 200 <= status_code < 300


def note_trace_event(name: str, info: Any = None) -> None:
    """An httpcore ``trace`` event of the current attempt's request (see the module doc).

    A proxy's ``CONNECT`` (httpcore hands it the request's extensions, ``trace`` included) is
    not the request: it reaches the proxy only. Only a ``.started`` event names its request.
    """
    progress = _ATTEMPT.get()
    if progress is None:
        return
    progress.traced = True  # httpcore traces this request: a read timeout defers to the trace
    if name.endswith(_REQUEST_STARTED):
        request = info.get("request") if isinstance(info, dict) else None
        progress.connecting = getattr(request, "method", None) in (b"CONNECT", "CONNECT")
    elif name.endswith(_REQUEST_WRITTEN) and not progress.connecting:
        progress.request_sent = True


def note_read_timeout() -> None:
    """The current attempt ended in a read that timed out: its request had been written.

    Its answer was awaited, or was being read. Only without the trace: when httpcore traced
    the request, the trace told whether it was written.
    """
    progress = _ATTEMPT.get()
    if progress is not None and not progress.traced:
        progress.request_sent = True


def answer_lost(progress: AttemptProgress, error: BaseException) -> bool:
    """Whether an attempt that ended in ``error`` (the typed one) was sent and its answer lost.

    A cut answer always was. Once an answer began, so was any failure of the exchange itself
    (a timeout, a dropped connection, a cancel, an interrupt). Before it began: a timeout, a
    cancel or an interrupt once the request was written (the relay was working on it). A
    connection dropped before any answer is taken as not billed: a relay closing an idle
    pooled connection drops a request the same way, unread. An answer that came whole but
    wrong (a status error, an error page, a body over the caps) was not billed.

    >>> from langchain_claude_relay.errors import APIStatusError
    >>> answer_lost(AttemptProgress(request_sent=True), APITimeoutError())
    True
    >>> answer_lost(AttemptProgress(), APITimeoutError())  # it never left
    False
    >>> answer_lost(AttemptProgress(request_sent=True), KeyboardInterrupt())
    True
    >>> answer_lost(AttemptProgress(request_sent=True), APIConnectionError("reset"))
    False
    >>> answer_lost(AttemptProgress(answer_began=True), APIConnectionError("reset"))
    True
    >>> overloaded = APIStatusError("overloaded", status_code=529)
    >>> answer_lost(AttemptProgress(answer_began=True), overloaded)
    False
    """
    if isinstance(error, CutResponseError):
        return True
    if progress.refused:  # answered with an error status: its body may be lost, not billed
        return False
    interrupted = not isinstance(error, Exception)  # a cancel, Ctrl-C
    if progress.answer_began:
        return interrupted or isinstance(error, APIConnectionError)
    return progress.request_sent and (interrupted or isinstance(error, APITimeoutError))
