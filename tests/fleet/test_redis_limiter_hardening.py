"""``RedisRateLimiter`` against a real redis-server: a relay's absurd usage report and deadlines.

The same contract as ``RateLimiter`` (``tests/unit_tests/test_hardening_limiter.py``): settling
charges at most one capacity beyond the estimate, and a booking that would wait longer than
``max_wait`` is refused with ``APITimeoutError``, nothing booked.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_redis_limiter import usage

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
