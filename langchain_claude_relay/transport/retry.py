"""Retries: which errors to retry, how long to wait, and the loop, over named constants.

The shape follows anthropic-sdk-python's ``_base_client.py``: a should-retry rule, a parser for
``retry-after-ms`` / ``retry-after``, and capped exponential backoff with jitter. Sleep, the
random source and the clock are injected, so tests never wait.

What is retried (``should_retry``):

* ``APIStatusError`` whose status is in ``RETRYABLE_STATUS`` (408, 409, 429, 500, 502, 503, 504,
  529) **or any other 5xx**;
* ``APIConnectionError`` and its ``APITimeoutError``;
* ``APIResponseError``: a relay that answers 200 with an HTML page, an empty or cut body or
  garbage usage is usually flaky rather than wrong, and a second try usually succeeds (the price
  is one more call if the first one was in fact billed);
* never ``RequestValidationError`` (our own check of the user's input: retrying cannot fix it),
  other 4xx, or any exception outside the package's tree.

How long to wait (``RetryPolicy.delay_for``): the error's ``retry_after`` (parsed from the
response headers by ``parse_retry_after``) when it is in ``(0, MAX_RETRY_AFTER]``; otherwise
``min(initial_delay * 2**attempt, max_delay)`` shrunk by up to 25% of jitter.

>>> backoff_delay(0, rand=lambda: 0.0), backoff_delay(3, rand=lambda: 1.0)
(0.5, 3.0)
>>> backoff_delay(5, retry_after=2.5)
2.5
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from langchain_claude_relay.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    RequestValidationError,
)

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUS",
    "should_retry",
    "parse_retry_after",
    "backoff_delay",
    "RetryPolicy",
    "retry_call",
    "aretry_call",
]

T = TypeVar("T")

DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt (so at most 3 calls)."""
INITIAL_RETRY_DELAY = 0.5
"""Seconds before the first retry, before jitter."""
MAX_RETRY_DELAY = 8.0
"""Cap on the backoff delay, seconds."""
MAX_RETRY_AFTER = 60.0
"""Longest ``retry-after`` honoured, seconds; longer (or absurd) values fall back to backoff."""
RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
"""Statuses retried; any other 5xx is retried too (see ``should_retry``)."""

_JITTER = 0.25  # a delay is shrunk by up to this fraction
_MAX_EXPONENT = 1000  # 2.0**1000 is finite; beyond it pow() overflows


def should_retry(error: BaseException) -> bool:
    """Say whether an error is worth another attempt (rules in the module docstring).

    Args:
        error: the exception the attempt raised.

    Returns:
        ``True`` for retryable statuses and any 5xx, connection errors, timeouts and malformed
        responses; ``False`` otherwise.

    """
    if isinstance(error, RequestValidationError):
        return False
    if isinstance(error, APIStatusError):
        return error.status_code in RETRYABLE_STATUS or 500 <= error.status_code <= 599
    return isinstance(error, (APIConnectionError, APIResponseError))


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Read how long the relay asked us to wait, in seconds.

    ``retry-after-ms`` (milliseconds, a non-standard header Anthropic sends) is tried first, then
    ``retry-after`` as seconds, then ``retry-after`` as an HTTP date (``now`` gives the current
    Unix time; a date in the past means 0). Header names are matched case-insensitively. A value
    that is not a finite non-negative number (garbage, negative, NaN, infinity, an overflowing
    ``1e400``) is ignored and the next form is tried; a usable value above ``MAX_RETRY_AFTER``
    returns ``None``, so the caller falls back to its own backoff.

    Args:
        headers: the response headers (any mapping; ``None`` when there were none).
        now: the clock for HTTP dates, Unix seconds.

    Returns:
        Seconds in ``[0, MAX_RETRY_AFTER]``, or ``None`` when the headers say nothing usable.

    """
    if not headers:
        return None
    seconds = _non_negative_float(_header(headers, "retry-after-ms"))
    if seconds is not None:
        seconds /= 1000.0
    else:
        raw = _header(headers, "retry-after")
        seconds = _non_negative_float(raw)
        if seconds is None:
            seconds = _seconds_until_http_date(raw, now)
    if seconds is None or seconds > MAX_RETRY_AFTER:
        return None
    return seconds


def backoff_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
    initial_delay: float = INITIAL_RETRY_DELAY,
    max_delay: float = MAX_RETRY_DELAY,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    The relay's ``retry_after`` wins when it is in ``(0, MAX_RETRY_AFTER]``. Otherwise the delay
    is ``min(initial_delay * 2**attempt, max_delay) * (1 - 0.25 * rand())``: capped exponential
    backoff, shrunk by up to 25% of jitter so that parallel workers spread out.

    Args:
        attempt: retries already made (0 before the first retry).
        retry_after: seconds the relay asked for, if any.
        rand: a source of floats in ``[0, 1]`` (clamped to it).
        initial_delay: delay before the first retry, before jitter.
        max_delay: cap on the delay, before jitter.

    Returns:
        A delay in seconds, never negative and never above ``max(max_delay, MAX_RETRY_AFTER)``.

    Raises:
        ValueError: if ``attempt`` is negative.

    """
    if attempt < 0:
        msg = f"attempt must be >= 0 (retries already made), got {attempt}"
        raise ValueError(msg)
    if retry_after is not None and 0 < retry_after <= MAX_RETRY_AFTER:
        return retry_after
    base = min(initial_delay * math.pow(2.0, min(attempt, _MAX_EXPONENT)), max_delay)
    jitter = 1.0 - _JITTER * min(max(rand(), 0.0), 1.0)
    return max(base * jitter, 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        initial_delay: seconds before the first retry, before jitter.
        max_delay: cap on the backoff delay, seconds.

    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = INITIAL_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or self.max_retries < 0:
            msg = f"max_retries must be an int >= 0, got {self.max_retries!r}"
            raise ValueError(msg)
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                msg = f"{name} must be a finite number of seconds >= 0, got {value!r}"
                raise ValueError(msg)

    def allows_retry(self, attempt: int, error: BaseException) -> bool:
        """Say whether to retry after ``attempt`` retries already made, given the error.

        Args:
            attempt: retries already made.
            error: the exception the last attempt raised.

        Returns:
            ``True`` if retries remain and ``should_retry(error)``.

        """
        return attempt < self.max_retries and should_retry(error)

    def delay_for(
        self, attempt: int, error: BaseException, *, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds to wait before the next attempt, honouring the error's ``retry_after``.

        Args:
            attempt: retries already made (0 before the first retry).
            error: the exception the last attempt raised.
            rand: a source of floats in ``[0, 1]`` for the jitter.

        Returns:
            A delay in seconds.

        """
        retry_after = error.retry_after if isinstance(error, APIStatusError) else None
        return backoff_delay(
            attempt,
            retry_after=retry_after,
            rand=rand,
            initial_delay=self.initial_delay,
            max_delay=self.max_delay,
        )


def retry_call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    rand: Callable[[], float] = random.random,
    remaining: Callable[[], float] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying retryable errors as ``policy`` says.

    Args:
        fn: the attempt (no arguments).
        policy: retries and delays.
        sleep: waits the given seconds (inject a recorder in tests).
        on_retry: called before each wait with the retry number (1-based), the error and the
            delay, e.g. to log.
        rand: jitter source.
        remaining: seconds left before the call's deadline; no retry starts if its wait would
            reach it (the last error is raised instead).

    Returns:
        What ``fn`` returned.

    Raises:
        Exception: the last error, unchanged, once it is not retryable or retries run out.

    """
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not policy.allows_retry(attempt, exc):
                raise
            delay = policy.delay_for(attempt, exc, rand=rand)
            if remaining is not None and delay >= remaining():
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)


async def aretry_call(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    rand: Callable[[], float] = random.random,
    remaining: Callable[[], float] | None = None,
) -> T:
    """Async ``retry_call``: await ``fn()`` until it succeeds, retrying as ``policy`` says.

    Args:
        fn: returns a fresh awaitable for each attempt.
        policy: retries and delays.
        sleep: async wait (inject a recorder in tests).
        on_retry: called before each wait with the retry number (1-based), error and delay.
        rand: jitter source.
        remaining: seconds left before the call's deadline (see ``retry_call``).

    Returns:
        What the awaited ``fn()`` returned.

    Raises:
        Exception: the last error, unchanged, once it is not retryable or retries run out.

    """
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not policy.allows_retry(attempt, exc):
                raise
            delay = policy.delay_for(attempt, exc, rand=rand)
            if remaining is not None and delay >= remaining():
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


def _header(headers: Mapping[str, str], name: str) -> object:
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return candidate
    return None


def _non_negative_float(raw: object) -> float | None:
    if not isinstance(raw, (str, bytes, int, float)) or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _seconds_until_http_date(raw: object, now: Callable[[], float]) -> float | None:
    if not isinstance(raw, str):
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no stated zone
        when = when.replace(tzinfo=_dt.timezone.utc)
    try:
        seconds = when.timestamp() - now()
    except (OverflowError, ValueError, OSError):
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None
