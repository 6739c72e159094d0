"""``RedisRateLimiter`` against a real redis-server: a relay's absurd usage report and deadlines.

The same contract as ``RateLimiter`` (``tests/unit_tests/test_hardening_limiter.py``): settling
charges at most one capacity beyond the estimate, and a booking that would wait longer than
``max_wait`` is refused with ``APITimeoutError``, nothing booked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_redis_limiter import no_sleep, usage

from langchain_claude_relay.errors import APITimeoutError
from langchain_claude_relay.limiter.redis import RedisRateLimiter

MODEL = "claude-sonnet-4-6"
ABSURD = 10**12


def test_an_absurd_usage_report_leaves_the_fleet_at_most_a_minute_of_debt(
    redis_server: Any, namespace: str
) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(
        itpm=6_000,
        otpm=600,
        redis=redis_server.url,
        key="d",
        namespace=namespace,
        sleep=waits.append,
    )
    limiter.settle(limiter.acquire(1_000, 100), usage(ABSURD, ABSURD), MODEL)
    available = limiter.available()
    assert available["itpm"] == pytest.approx(-1_000, abs=5)  # charged 7,000, not 10**12
    assert available["otpm"] == pytest.approx(-100, abs=1)
    assert limiter.acquire(100).waited <= 12  # 1,100 missing at 100 tokens/s


def test_a_shared_booking_that_would_wait_past_max_wait_is_refused(
    redis_server: Any, namespace: str
) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(
        rpm=60,
        itpm=6_000,
        redis=redis_server.url,
        key="w",
        namespace=namespace,
        sleep=waits.append,
    )
    limiter.acquire(6_000)
    before = limiter.available()["itpm"]
    with pytest.raises(APITimeoutError, match="deadline of 5 s"):
        limiter.acquire(1_000, max_wait=5)
    with pytest.raises(APITimeoutError, match="deadline"):
        asyncio.run(limiter.aacquire(1_000, max_wait=5))
    assert waits == []
    assert limiter.available()["itpm"] == pytest.approx(before, abs=5)  # nothing was booked
    assert limiter.stats()["reservations"] == 1
    fits = limiter.acquire(400, max_wait=5)
    assert 0 < fits.waited <= 5
    assert waits == [fits.waited]


# -- cancelled bookings give their places in the queue back ------------------------------------


async def test_cancelled_waiters_give_their_places_in_the_queue_back(
    redis_server: Any, namespace: str
) -> None:
    # 40 abandoned waiters (asyncio.wait_for timeouts, a call_timeout) used to keep their
    # admission times in Redis: the fleet's next call waited behind all of them (~40 s here).
    release = asyncio.Event()
    slept: list[float] = []

    async def held_sleep(seconds: float) -> None:
        slept.append(seconds)
        await release.wait()

    limiter = RedisRateLimiter(
        rpm=60, redis=redis_server.url, key="queue", namespace=namespace, asleep=held_sleep
    )
    twin = RedisRateLimiter(rpm=60, redis=redis_server.url, key="queue", namespace=namespace)
    for _ in range(60):
        await limiter.aacquire(0)
    waiters = [asyncio.create_task(limiter.aacquire(0)) for _ in range(40)]
    while len(slept) < 40:
        await asyncio.sleep(0.01)
    assert max(slept) == pytest.approx(40.0, abs=0.5)
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    # another process of the fleet: one request's refill, not forty
    assert twin.acquire(0, max_wait=5).waited == pytest.approx(1.0, abs=0.3)
    assert limiter.stats()["cancelled"] == 40


def test_a_cancelled_booking_in_the_middle_keeps_the_queue_first_come_first_served(
    redis_server: Any, namespace: str
) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(
        rpm=60, redis=redis_server.url, key="mid", namespace=namespace, sleep=waits.append
    )
    for _ in range(60):
        limiter.acquire(0)
    first, second, third = (limiter.acquire(0) for _ in range(3))  # admitted at ~1, 2 and 3 s
    assert [round(w) for w in waits] == [1, 2, 3]
    limiter.cancel(second)  # the third stays queued at ~3 s: the next one takes the freed
    fourth = limiter.acquire(0)  # request there, never before the third
    assert fourth.waited == pytest.approx(3.0, abs=0.3)
    for booking in (first, third, fourth):
        limiter.cancel(booking)
    # Nothing queued any more: another process waits one request's refill, not behind them.
    twin = RedisRateLimiter(rpm=60, redis=redis_server.url, key="mid", namespace=namespace)
    assert twin.acquire(0, max_wait=10).waited == pytest.approx(1.0, abs=0.3)


def test_pending_bookings_leave_redis_once_admitted(redis_server: Any, namespace: str) -> None:
    limiter = RedisRateLimiter(
        rpm=60, redis=redis_server.url, key="pend", namespace=namespace, sleep=no_sleep
    )
    for _ in range(60):
        limiter.acquire(0)
    limiter.acquire(0)  # admitted in ~1 s: pending until then
    pending = limiter._pending_keys["rpm"]
    assert limiter.client.zcard(pending) == 1
    time.sleep(1.2)
    limiter.acquire(0)  # the next booking forgets admissions in the past
    assert limiter.client.zcard(pending) == 1  # only its own (admitted ~0.8 s from now)
    assert 0 < limiter.client.pttl(pending) <= 62_000  # and the set expires by itself
    limiter.clear()
    assert limiter.client.exists(pending) == 0
