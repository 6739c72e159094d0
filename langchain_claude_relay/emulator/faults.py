"""Service conditions over the virtual clock: seeded faults, rate limits, latency.

Everything here is pure: the time is passed in, randomness comes from a seeded generator.

* ``FaultInjector``: a scripted queue of faults for the next requests, then a seeded draw at
  ``rate``. Kinds are data (``FAULTS``).
* ``RateLimiter``: requests, input tokens and output tokens per 60-second sliding window.
  Input tokens are what the caller says counts (uncached input: plain input and cache writes,
  plus cache reads for models whose spec counts them). A request that would exceed a limit is
  refused with the seconds until it would fit.
* ``ttft_seconds``: time to first token from the uncached and cached input, calibrated to
  Anthropic's figure (100K tokens: 11.5 s uncached, 2.4 s fully cached).
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from langchain_claude_relay.limiter.buckets import PRESETS

__all__ = [
    "Fault",
    "FAULTS",
    "FAULT_KINDS",
    "parse_fault_kinds",
    "FaultInjector",
    "RateLimits",
    "TIERS",
    "RateLimited",
    "RateLimiter",
    "LATENCY",
    "ttft_seconds",
]


def _error_json(kind: str, message: str) -> str:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}})


_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_HTML_PAGE = (
    "<!DOCTYPE html><html lang='en'><head><title>Just a moment...</title></head>"
    "<body><h1>Checking your browser before accessing the API.</h1></body></html>"
)


@dataclass(frozen=True)
class Fault:
    """A fault kind.

    Attributes:
        status: the HTTP status sent (``None``: the connection is reset, nothing is sent).
        content_type: the body's content type.
        body: the body (empty for faults that depend on the request).
        before_engine: whether the fault happens before the request reaches the cache (no
            cache effect, not billed). A ``cut`` happens after: the response had begun, so its
            cache writes are committed, but no usage reaches the client and it is not billed.

    """

    status: int | None
    content_type: str = "application/json"
    body: str = ""
    before_engine: bool = True


FAULTS: dict[str, Fault] = {
    "500": Fault(500, body=_error_json("api_error", "Internal server error")),
    "502": Fault(502, "text/html", _HTML_502),
    "503": Fault(503, body=_error_json("api_error", "Service unavailable: upstream unreachable")),
    "529": Fault(529, body=_error_json("overloaded_error", "Overloaded")),
    "reset": Fault(None, body=""),
    "malformed": Fault(  # broken, not cut short (a cut answer is the "cut" fault: billed)
        200, body='{"id": "chatcmpl-emu", "object": "chat.completion", "choices": [{"index": 0,]}'
    ),
    "html": Fault(200, "text/html", _HTML_PAGE),
    "cut": Fault(200, before_engine=False),
}
FAULT_KINDS: tuple[str, ...] = tuple(FAULTS)


def parse_fault_kinds(text: str | Iterable[str]) -> tuple[str, ...]:
    """Fault kinds from ``"500,529,reset"`` (or an iterable of names).

    Raises:
        ValueError: for an unknown kind.

    """
    names = text.split(",") if isinstance(text, str) else list(text)
    kinds = tuple(n.strip() for n in names if n.strip())
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown:
        msg = f"unknown fault kind(s) {unknown}: choose from {', '.join(FAULT_KINDS)}"
        raise ValueError(msg)
    return kinds


class FaultInjector:
    """Decides, request by request, whether and how a request fails.

    Scripted faults come first, in order; then each request draws from a generator seeded with
    ``seed`` (two numbers per request, whatever the outcome, so the sequence is reproducible).

    >>> faults = FaultInjector(rate=0.5, seed=2, kinds=("529",))
    >>> faults.push("reset")
    >>> [faults.draw() for _ in range(4)]
    ['reset', None, '529', None]
    """

    def __init__(
        self, rate: float = 0.0, seed: int = 0, kinds: Iterable[str] = FAULT_KINDS
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            msg = f"fault rate {rate} is not in [0, 1]"
            raise ValueError(msg)
        self.rate = rate
        self.kinds = parse_fault_kinds(kinds) or FAULT_KINDS
        self._rng = random.Random(seed)
        self._script: deque[str] = deque()

    def push(self, kind: str, count: int = 1) -> None:
        """Make the next ``count`` requests (after those already scripted) fail with ``kind``."""
        self._script.extend(parse_fault_kinds([kind]) * count)

    def draw(self) -> str | None:
        """Draw the fault for the next request (``None``: no fault)."""
        if self._script:
            return self._script.popleft()
        if self.rate <= 0.0:
            return None
        roll, kind = self._rng.random(), self._rng.choice(self.kinds)
        return kind if roll < self.rate else None

    @property
    def scripted(self) -> int:
        """How many scripted faults are still queued."""
        return len(self._script)


@dataclass(frozen=True)
class RateLimits:
    """Per-minute limits (``None``: unlimited)."""

    rpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None


def _whole(limit: float | None) -> int | None:
    return None if limit is None else int(limit)


TIERS: dict[str, RateLimits] = {
    name: RateLimits(rpm=_whole(p.rpm), itpm=_whole(p.itpm), otpm=_whole(p.otpm))
    for name, p in PRESETS.items()
    if name.startswith("tier")
}
"""The relay article's tiers for new accounts (RPM / input TPM): the client limiter's presets of
the same names (``limiter.PRESETS``); output TPM is a setting."""


@dataclass(frozen=True)
class RateLimited:
    """A refusal: which limit, the seconds until the request would fit, a message."""

    limit: str
    retry_after: float
    message: str


_LIMIT_NAMES = {"rpm": "requests", "itpm": "input tokens", "otpm": "output tokens"}


class RateLimiter:
    """Sliding 60-second windows over the virtual clock.

    >>> limiter = RateLimiter(RateLimits(rpm=2))
    >>> [limiter.admit(t, 0, 0) is None for t in (0.0, 1.0, 2.0)]
    [True, True, False]
    >>> limiter.admit(60.5, 0, 0) is None   # the request at t=0 has left the window
    True
    """

    WINDOW = 60.0

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._events: deque[tuple[float, int, int]] = deque()

    def admit(self, now: float, input_tokens: int, output_tokens: int) -> RateLimited | None:
        """Admit and record a request, or refuse it (nothing is recorded then).

        Args:
            now: the request's time.
            input_tokens: input tokens that count toward the input limit.
            output_tokens: the request's output tokens.

        Returns:
            ``None`` if admitted, else the refusal.

        """
        while self._events and self._events[0][0] + self.WINDOW <= now:
            self._events.popleft()
        for name, column, amount in (
            ("rpm", 0, 1),
            ("itpm", 1, input_tokens),
            ("otpm", 2, output_tokens),
        ):
            limit = getattr(self.limits, name)
            if limit is not None:
                wait = self._wait(now, column, amount, limit)
                if wait is not None:
                    message = (
                        f"This request would exceed the rate limit for your organization of "
                        f"{limit:,} {_LIMIT_NAMES[name]} per minute. Please retry after "
                        f"{math.ceil(wait)} seconds."
                    )
                    return RateLimited(name, wait, message)
        self._events.append((now, input_tokens, output_tokens))
        return None

    def _wait(self, now: float, column: int, amount: int, limit: int) -> float | None:
        """Seconds until ``amount`` more fits under ``limit``, ``None`` if it fits now."""
        used = sum(1 if column == 0 else e[column] for e in self._events)
        if used + amount <= limit:
            return None
        if amount > limit:  # can never fit in one window
            return self.WINDOW
        for event in self._events:
            used -= 1 if column == 0 else event[column]
            if used + amount <= limit:
                return max(0.0, event[0] + self.WINDOW - now)
        return self.WINDOW

    def clear(self) -> None:
        """Forget the window."""
        self._events.clear()


LATENCY: dict[str, float] = {
    "base_s": 0.4,
    "uncached_s_per_token": 11.1 / 100_000,  # 0.4 + 100K * this = 11.5 s
    "cached_s_per_token": 2.0 / 100_000,  # 0.4 + 100K * this = 2.4 s
}
"""Time to first token, calibrated to Anthropic's 100K-token figures (11.5 s -> 2.4 s)."""


def ttft_seconds(uncached_tokens: int, cached_tokens: int, scale: float) -> float:
    """Time to first token, scaled (``scale=0`` turns the model off).

    >>> round(ttft_seconds(100_000, 0, 1.0), 3), round(ttft_seconds(0, 100_000, 1.0), 3)
    (11.5, 2.4)
    """
    if scale <= 0:
        return 0.0
    return scale * (
        LATENCY["base_s"]
        + uncached_tokens * LATENCY["uncached_s_per_token"]
        + cached_tokens * LATENCY["cached_s_per_token"]
    )
