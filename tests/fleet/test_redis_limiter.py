"""``RedisRateLimiter`` against a real redis-server: four processes share one set of buckets.

The multi-process tests start four worker processes that hammer one limiter with a fake workload
(book, a few milliseconds of "call", settle with the counted usage). The buckets are drained
first, so the measured rate is the steady-state one: what the fleet sends per minute must be
within 5% of the limit. Run with ``pytest -s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fleet_workers import limiter_worker, outage_worker

from langchain_claude_relay.errors import RedisStateWarning, RequestValidationError
from langchain_claude_relay.ledger.redis import RedisLedger
from langchain_claude_relay.limiter import RateLimiter, Reservation
from langchain_claude_relay.limiter.redis import (
    RedisRateLimiter,
    RedisReservation,
    clear_shared_redis_limiters,
    shared_redis_limiter,
)
from langchain_claude_relay.usage import NormalizedUsage

SPAWN = multiprocessing.get_context("spawn")
MODEL = "claude-sonnet-4-6"
WORKERS = 4


def usage(input_tokens: int, output_tokens: int = 0) -> NormalizedUsage:
    return NormalizedUsage(
        input_tokens=input_tokens,
        cache_read_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
        output_tokens=output_tokens,
    )


def no_sleep(seconds: float) -> None:
    del seconds


# -- one process ------------------------------------------------------------------------------


def test_reserve_settle_cancel_on_shared_buckets(redis_server: Any, namespace: str) -> None:
    waits: list[float] = []
    limiter = RedisRateLimiter(
        rpm=60, itpm=600, redis=redis_server.url, key="a", namespace=namespace, sleep=waits.append
    )
    twin = RedisRateLimiter(rpm=60, itpm=600, redis=redis_server.url, key="a", namespace=namespace)
    assert isinstance(limiter, RateLimiter)
    started = time.monotonic()

    def refilled(per_minute: float) -> float:
        """What the buckets refilled since the first booking (they refill on Redis's clock)."""
        return per_minute / 60.0 * (time.monotonic() - started)

    def near(value: float, expected: float, per_minute: float, tolerance: float = 1.0) -> bool:
        return expected - tolerance <= value <= expected + tolerance + refilled(per_minute)

    first = limiter.acquire(500, 100)
    assert isinstance(first, RedisReservation)
    assert first.waited == 0
    assert near(twin.available()["itpm"], 100, 600)  # the other one sees it
    second = twin.acquire(50)
    assert second.waited == 0
    limiter.settle(first, usage(50, 80), MODEL)  # 450 come back
    assert near(twin.available()["itpm"], 500, 600)
    twin.cancel(second)  # request and tokens come back
    assert near(limiter.available()["itpm"], 550, 600)
    assert near(limiter.available()["rpm"], 59, 60, tolerance=0.1)
    third = limiter.acquire(1000)  # larger than the bucket: waits until it is full
    assert 4.0 < third.waited < 5.5
    assert waits == [third.waited]
    assert limiter.stats()["oversize"] == 1
    with pytest.raises(RequestValidationError, match="not open"):
        limiter.settle(first, usage(1), MODEL)
    with pytest.raises(RequestValidationError, match="not open"):
        twin.cancel(third)
    stats = limiter.stats()
    assert (stats["settled"], stats["redis_bookings"], stats["open"]) == (1, 2, 1)


def test_langchain_form_counts_requests_only(redis_server: Any, namespace: str) -> None:
    limiter = RedisRateLimiter(rpm=2, itpm=10, redis=redis_server.url, key="h", namespace=namespace)
    limiter.acquire(10)  # itpm now empty (and the request counted)
    assert limiter.acquire(blocking=False) is True  # RPM has room: tokens are not its business
    assert limiter.acquire(blocking=False) is False  # RPM is empty: it would have to wait
    assert limiter.stats()["requests"] == 2


def test_langchain_form_without_an_rpm_limit_admits_at_once(
    redis_server: Any, namespace: str
) -> None:
    # No RPM bucket: LangChain's form books nothing on Redis (it once failed with KeyError).
    limiter = RedisRateLimiter(itpm=10, redis=redis_server.url, key="n", namespace=namespace)
    limiter.acquire(10)  # itpm now empty
    assert limiter.acquire(blocking=False) is True
    assert asyncio.run(limiter.aacquire(blocking=False)) is True
    stats = limiter.stats()
    assert (stats["requests"], stats["redis_bookings"], stats["oversize"]) == (3, 3, 0)


def test_other_keys_and_limits_do_not_share(redis_server: Any, namespace: str) -> None:
    a = RedisRateLimiter(itpm=600, redis=redis_server.url, key="a", namespace=namespace)
    b = RedisRateLimiter(itpm=600, redis=redis_server.url, key="b", namespace=namespace)
    a2 = RedisRateLimiter(itpm=700, redis=redis_server.url, key="a", namespace=namespace)
    a.acquire(600)
    assert b.available()["itpm"] == pytest.approx(600, abs=1)
    assert a2.available()["itpm"] == pytest.approx(700, abs=1)


def test_async_acquire_waits_on_asleep(redis_server: Any, namespace: str) -> None:
    slept: list[float] = []

    async def asleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RedisRateLimiter(
        rpm=60, redis=redis_server.url, key="async", namespace=namespace, asleep=asleep
    )

    async def run() -> list[Any]:
        first = await limiter.aacquire(0)
        for _ in range(59):
            assert await limiter.aacquire(blocking=True) is True
        return [first, await limiter.aacquire(0)]

    first, late = asyncio.run(run())
    assert first.waited == 0
    assert 0.9 < late.waited <= 1.01
    assert slept == [late.waited]


def test_an_absorbed_refund_is_not_given_back(redis_server: Any, namespace: str) -> None:
    limiter = RedisRateLimiter(itpm=6_000, redis=redis_server.url, key="c", namespace=namespace)
    started = time.monotonic()
    early = limiter.acquire(3_000)  # 3000 left; refills 100/s: full again in 30 s
    limiter.settle(early, usage(1_000), MODEL)  # settled while not full: 2000 come back
    refilled = 100 * (time.monotonic() - started)  # on Redis's clock, meanwhile
    assert 4_995 <= limiter.available()["itpm"] <= 5_005 + refilled
    slow = limiter.acquire(200)
    time.sleep(0.1)
    # Nothing clipped since the booking: the refund comes back in full.
    limiter.settle(slow, usage(0), MODEL)
    assert limiter.available()["itpm"] == pytest.approx(5_010, abs=15)
    small = RedisRateLimiter(itpm=60, redis=redis_server.url, key="d", namespace=namespace)
    booking = small.acquire(1)  # 59 left, refills 1/s: full again after one second
    time.sleep(1.2)
    small.acquire(30)  # the refill up to now hits the cap: 30 left
    small.settle(booking, usage(0), MODEL)  # the cap absorbed that estimate: nothing comes back
    assert small.available()["itpm"] == pytest.approx(30, abs=0.3)
    assert limiter.stats()["unsettled"] == 0


def test_shared_redis_limiter_is_one_per_account(redis_server: Any, namespace: str) -> None:
    clear_shared_redis_limiters()
    one = shared_redis_limiter("acct", "tier1", redis=redis_server.url, namespace=namespace)
    assert one is shared_redis_limiter("acct", "tier1", redis=redis_server.url, namespace=namespace)
    assert one is not shared_redis_limiter("acct", "tier2", redis=redis_server.url)
    assert one.limits.rpm == 50
    clear_shared_redis_limiters()


def test_chat_model_books_tokens_on_the_shared_buckets(redis_server: Any, namespace: str) -> None:
    pytest.importorskip("uvicorn")
    from langchain_core.messages import HumanMessage

    from langchain_claude_relay import ChatClaudeRelay
    from langchain_claude_relay.emulator import RelayEmulator
    from langchain_claude_relay.ledger import MemoryLedger
    from langchain_claude_relay.store import MemoryStore

    limiter = RedisRateLimiter(
        rpm=100, itpm=100_000, redis=redis_server.url, key="chat", namespace=namespace
    )
    with RelayEmulator() as emu:
        from langchain_claude_relay import CachePlanner

        llm = ChatClaudeRelay(
            model=MODEL,
            base_url=emu.base_url,
            api_key="test",
            cache=CachePlanner(store=MemoryStore(), clock=lambda: emu.now),
            ledger=MemoryLedger(),
            rate_limiter=limiter,
            max_tokens=64,
        )
        for i in range(3):
            llm.invoke([HumanMessage(f"Question number {i}?")])
    stats = limiter.stats()
    assert stats["reservations"] == 3
    assert stats["settled"] == 3
    assert stats["open"] == 0
    assert stats["requests"] == 3  # LangChain's acquire counted each request once
    assert 0 < stats["settled_input_tokens"] < stats["estimated_input_tokens"] + 100


# -- four processes ---------------------------------------------------------------------------


def steady_rate(
    sends: list[tuple[float, int, int]],
    started: float,
    duration: float,
    amount: Callable[[tuple[float, int, int]], int],
) -> float:
    """Per minute, between the first send after the first second and the last in the window.

    The first second is left out: the workers' queue of bookings builds up (each holds its
    estimate until it settles), which shifts the start once but not the rate.
    """
    steady = sorted(s for s in sends if started + 1.0 <= s[0] <= started + duration)
    first, last = steady[0], steady[-1]
    return sum(amount(s) for s in steady[1:]) / (last[0] - first[0]) * 60


def _drain(limiter: RedisRateLimiter, bucket: str) -> None:
    """Empty one bucket so that the measured window starts from (almost) nothing."""
    if bucket == "rpm":
        while limiter.acquire(blocking=False):
            pass
    else:
        limiter.acquire(int(limiter.available()["itpm"]), 0, count_request=False)


def _run_fleet(
    url: str,
    namespace: str,
    limits: dict[str, float],
    drain: str,
    *,
    duration: float,
    estimate: tuple[int, int],
    actual_fraction: tuple[float, float],
    tmp_path: Path,
) -> tuple[float, float, list[tuple[float, int, int]]]:
    """Start the workers, drain a bucket, say go; returns (go time, level at go, sends)."""
    outs = [tmp_path / f"lim{i}.json" for i in range(WORKERS)]
    ready, go = SPAWN.Semaphore(0), SPAWN.Event()
    procs = [
        SPAWN.Process(
            target=limiter_worker,
            args=(
                url,
                namespace,
                limits,
                duration,
                estimate,
                actual_fraction,
                i,
                ready,
                go,
                str(out),
            ),
        )
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=60), "a worker did not start"
    limiter = RedisRateLimiter(**limits, redis=url, key="fleet-test", namespace=namespace)
    _drain(limiter, drain)
    level = limiter.available()[drain]
    started = time.time()
    go.set()
    for p in procs:
        p.join(duration + 60)
        assert p.exitcode == 0
    sends = [tuple(s) for out in outs for s in json.loads(out.read_text())["sends"]]
    return started, max(0.0, level), sends  # type: ignore[return-value]


def test_four_processes_stay_within_the_rpm_limit(
    redis_server: Any, namespace: str, tmp_path: Path
) -> None:
    rpm, duration = 600, 6.0
    started, level, sends = _run_fleet(
        redis_server.url,
        namespace,
        {"rpm": rpm, "itpm": 60_000},
        "rpm",
        duration=duration,
        estimate=(20, 60),
        actual_fraction=(0.5, 1.0),
        tmp_path=tmp_path,
    )
    window = [s for s in sends if started <= s[0] <= started + duration]
    allowed = level + rpm / 60 * duration
    rate = steady_rate(sends, started, duration, lambda send: 1)
    print(
        f"\nRPM: {len(window)} calls in {duration} s from an empty bucket (allowed "
        f"{allowed:.1f}); steady rate {rate:.1f}/min (limit {rpm})"
    )
    assert len(window) <= allowed + 1  # never above the bucket's allowance
    assert abs(rate / rpm - 1) <= 0.05
    assert len({round(s[0], 6) for s in sends}) == len(sends)  # real, distinct calls


def test_four_processes_stay_within_the_input_token_limit(
    redis_server: Any, namespace: str, tmp_path: Path
) -> None:
    itpm, duration = 60_000, 6.0
    started, level, sends = _run_fleet(
        redis_server.url,
        namespace,
        {"rpm": 6_000, "itpm": itpm},
        "itpm",
        duration=duration,
        estimate=(100, 200),
        actual_fraction=(0.4, 0.9),  # the estimates are high: settle gives the rest back
        tmp_path=tmp_path,
    )
    window = [s for s in sends if started <= s[0] <= started + duration]
    counted = sum(s[1] for s in window)
    booked = sum(s[2] for s in window)
    allowed = level + itpm / 60 * duration
    rate = steady_rate(sends, started, duration, lambda send: send[1])
    print(
        f"\nITPM: {counted} counted input tokens ({len(window)} calls, {booked} estimated) in "
        f"{duration} s from an empty bucket (allowed {allowed:.0f}); steady rate {rate:.0f}/min "
        f"(limit {itpm})"
    )
    assert counted <= allowed + 200  # at most one call's worth above the allowance
    assert abs(rate / itpm - 1) <= 0.05  # refunds are used: not held to the estimates
    assert booked > 1.3 * counted


def test_killing_redis_mid_run_loses_no_call(own_redis: Any, tmp_path: Path) -> None:
    duration, retry_after = 6.0, 0.3
    outs = [tmp_path / f"out{i}.json" for i in range(WORKERS)]
    ready, go = SPAWN.Semaphore(0), SPAWN.Event()
    procs = [
        SPAWN.Process(
            target=outage_worker,
            args=(own_redis.url, "outage", i, duration, retry_after, ready, go, str(out)),
        )
        for i, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert ready.acquire(timeout=60)
    go.set()
    time.sleep(1.5)
    killed = time.time()
    own_redis.kill()
    time.sleep(1.5)
    own_redis.start()  # same port, same append-only file
    restarted = time.time()
    for p in procs:
        p.join(duration + 60)
        assert p.exitcode == 0
    results = [json.loads(out.read_text()) for out in outs]
    calls = sum(r["calls"] for r in results)
    for r in results:
        assert r["errors"] == []  # no call failed
        assert r["pending"] == 0  # every entry kept locally was replayed
        assert r["warnings"] == 1  # one warning per process
        remote = [t for t, on_redis in r["timeline"] if on_redis]
        local = [t for t, on_redis in r["timeline"] if not on_redis]
        assert local
        assert min(local) >= killed - 0.1
        assert any(t > restarted for t in remote)  # and Redis again once it was back
        assert r["stats"]["outages"] == 1
    ledger = RedisLedger(own_redis.url, namespace="outage")
    entries = ledger.entries()
    print(
        f"\noutage: {calls} calls, {sum(r['stats']['local_bookings'] for r in results)} booked "
        f"locally while Redis was down; ledger in Redis afterwards: {len(entries)} entries"
    )
    assert ledger.totals()["calls"] == calls == len(entries)
    assert len({e.call_id for e in entries}) == calls


def test_redis_down_in_process_falls_back_to_a_share(own_redis: Any) -> None:
    limiter = RedisRateLimiter(
        rpm=600, itpm=60_000, redis=own_redis.url, key="x", namespace="share", retry_after=0.2
    )
    other = RedisRateLimiter(rpm=600, itpm=60_000, redis=own_redis.url, key="x", namespace="share")
    other.acquire(10)  # two processes' worth of members (two limiters)
    on_redis = limiter.acquire(10)
    assert limiter.fleet_size == 2
    own_redis.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        local = limiter.acquire(10)
        assert type(local) is Reservation
        assert not isinstance(local, RedisReservation)
        levels = limiter.available()  # half the limits, minus this booking
        assert levels == {"rpm": pytest.approx(299, abs=0.5), "itpm": pytest.approx(29_990, abs=5)}
        limiter.settle(on_redis, usage(5), MODEL)  # Redis down: kept as booked
        limiter.settle(local, usage(5), MODEL)
    assert [w.category for w in caught] == [RedisStateWarning]
    own_redis.start()
    time.sleep(0.25)
    back = limiter.acquire(10)
    assert isinstance(back, RedisReservation)
    limiter.cancel(back)
    stats = limiter.stats()
    assert (stats["unsettled"], stats["local_bookings"], stats["open"]) == (1, 1, 0)
