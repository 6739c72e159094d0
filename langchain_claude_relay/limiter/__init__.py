"""Client-side rate limiter: token buckets for RPM, uncached ITPM and OTPM, reserve then settle.

Claude's limits are token buckets (Anthropic's docs: capacity "continuously replenished up to your
maximum limit"), so the limiter keeps one bucket per limit that is set:

* ``rpm``  -- requests per minute: each request costs 1;
* ``itpm`` -- input tokens per minute, counting only what the platform counts: plain input and
  cache writes; cache reads only for models whose ``ModelSpec.reads_count_toward_itpm`` is true
  (Haiku 3.5 and Haiku 3). See ``counted_input_tokens``;
* ``otpm`` -- output tokens per minute.

A bucket holds at most the per-minute limit (``capacity = limit``), starts full and refills
continuously at ``limit / 60`` per second. Time comes from an injected ``clock`` and waits go
through an injected ``sleep`` / ``asleep``, so tests never wait.

**Reserve, then settle.** Before a call, ``acquire(estimated_input_tokens,
estimated_output_tokens)`` books the estimate and returns a ``Reservation`` once every bucket
allows it (sleeping if needed). After the call, ``settle(reservation, usage, model)`` replaces the
estimate with the real counted tokens: the buckets then stand exactly as if the real amounts had
been booked at the admission time (an over-estimate comes back, except what the capacity cap has
absorbed since; an under-estimate is charged and may leave a bucket in debt, by at most one
capacity beyond the estimate: the usage comes from the relay, and one absurd report must not
stall every model on the account). If the call failed before it was billed,
``cancel(reservation)`` undoes the booking, request included. Settle or
cancel each reservation exactly once. Pass the *counted* input estimate (plain input + expected
cache writes, + reads for models that count them); when unsure, the whole prompt estimate: the
surplus comes back at settle. For ``max_tokens``-sized output estimates the same holds.

**Scheduling.** A booking is computed under a lock: its admission time is the earliest instant,
not before any earlier booking (first come, first served), at which every bucket holds enough
tokens; the tokens are taken at that instant, then the caller sleeps until it outside the lock
(``await asleep(...)`` in ``aacquire``, so the event loop is never blocked; a wait that is
interrupted or cancelled undoes its booking). ``acquire(..., max_wait=...)`` refuses, with
``APITimeoutError`` and nothing booked, a booking that would wait longer (a call's deadline). A
server enforcing the same buckets would accept every booking at its admission time;
``available()`` shows what each bucket holds.

**Requests larger than a bucket.** A request whose estimate exceeds a bucket's capacity could
never fit; rather than deadlock, it is admitted as soon as that bucket is *full*, and the bucket
goes into debt by the excess (later requests wait until it is paid back). The server may still
refuse such a request; ``stats()["oversize"]`` counts them.

**Burst bound.** A full bucket admits up to ``limit`` at once and refills ``limit`` over the next
minute, so the tokens admitted in any interval of ``W`` seconds are at most
``limit * (1 + W / 60)`` plus the excess of one oversize request -- in a 60-second window, up to
``2 * limit``. This is the token-bucket contract; a server that counts a *sliding 60-second
window* (some relays, this package's emulator) is stricter and may refuse a burst that follows a
full minute's worth of traffic. (Only the estimates are bounded: settle can charge more.)

**LangChain.** ``RateLimiter`` is a ``langchain_core`` ``BaseRateLimiter``, so it fits any chat
model's ``rate_limiter`` field. LangChain calls ``acquire(blocking=True)`` (no estimates) before
every model call: that form counts one request toward RPM only, since LangChain does not know the
tokens. A chat model that does (``ChatClaudeRelay``) then books the tokens itself with
``acquire(est_in, est_out, count_request=False)``: the request is not counted twice, and the
booking still queues behind earlier ones.

**One limiter per account.** Limits belong to the account behind a relay key, not to one model
object: ``shared_limiter(key, limits)`` returns the same instance for the same key in a process
(use e.g. ``f"{base_url}|{preset}"``), so every ``ChatClaudeRelay`` on that relay shares it.

>>> now = [0.0]
>>> limiter = RateLimiter(rpm=60, itpm=600, clock=lambda: now[0], sleep=lambda s: None)
>>> first = limiter.acquire(500, 100)
>>> second = limiter.acquire(500, 100)   # 400 missing at 10 tokens/s: booked 40 s later
>>> round(second.admitted_at, 3), round(second.waited, 3)
(40.0, 40.0)
>>> from langchain_claude_relay.usage import NormalizedUsage
>>> usage = NormalizedUsage(input_tokens=50, cache_read_tokens=4000, cache_write_5m_tokens=0,
...                         cache_write_1h_tokens=0, output_tokens=80)
>>> counted_input_tokens(usage, "claude-sonnet-4-6")   # cache reads do not count
50
>>> limiter.settle(first, usage, "claude-sonnet-4-6")  # 450 of the 500 booked come back
>>> limiter.available()["itpm"]   # at 40 s (the latest booking): full again, minus 500
100.0
>>> limiter.stats()["settled_input_tokens"], limiter.stats()["open"]
(50, 1)

Modules: ``buckets`` (``RateLimits``, ``PRESETS``, the bucket arithmetic), ``local``
(``RateLimiter``, ``shared_limiter``), ``redis`` (``RedisRateLimiter`` for a fleet), ``booking``
(what one chat call books and how it settles). ``limiter_for`` chooses between the local and the
Redis limiter for a relay account.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from langchain_claude_relay._env import redis_url
from langchain_claude_relay.limiter.booking import relay_limiter_key, resolve_limits
from langchain_claude_relay.limiter.buckets import (
    MAX_PENDING,
    PRESETS,
    WINDOW_SECONDS,
    RateLimits,
    Reservation,
    counted_input_tokens,
)
from langchain_claude_relay.limiter.local import RateLimiter, clear_shared_limiters, shared_limiter
from langchain_claude_relay.limiter.redis import (
    RedisRateLimiter,
    RedisReservation,
    clear_shared_redis_limiters,
    shared_redis_limiter,
)

__all__ = [
    "WINDOW_SECONDS",
    "MAX_PENDING",
    "RateLimits",
    "PRESETS",
    "Reservation",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisReservation",
    "counted_input_tokens",
    "shared_limiter",
    "shared_redis_limiter",
    "clear_shared_limiters",
    "clear_shared_redis_limiters",
    "limiter_for",
]


def limiter_for(
    base_url: str | None,
    api_key: SecretStr | None,
    limits: str | RateLimits | Mapping[str, Any],
) -> RateLimiter:
    """The limiter every model on one relay account shares.

    A fleet (``$CLAUDE_RELAY_STATE`` names a Redis) shares the account's limits through Redis
    (``shared_redis_limiter``); a single process through ``shared_limiter``. The account is
    named by ``relay_limiter_key`` (the URL, a hash of the key, the limits), never by the key.

    Args:
        base_url: the relay's base URL.
        api_key: the relay key (only its hash is used).
        limits: a preset name, a ``RateLimits`` or a dict of ``rpm``/``itpm``/``otpm``.

    Returns:
        The shared limiter.

    Raises:
        RequestValidationError: for an unknown preset or invalid limits.
    """
    resolved = resolve_limits(limits)
    key = relay_limiter_key(base_url, api_key, resolved)
    if redis_url() is not None:
        return shared_redis_limiter(key, resolved)
    return shared_limiter(key, resolved)
