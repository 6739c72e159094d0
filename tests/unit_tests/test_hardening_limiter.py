"""A relay's usage cannot stall the shared rate limiter, and no booking waits past a deadline.

A relay reported ``prompt_tokens = completion_tokens = 10**12`` once (within what
``normalize_usage`` accepts): settling it left the account's ITPM bucket a trillion tokens in
debt, and the next call on every model sharing the limiter would have slept 48 years.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hostile_relay import HostileRelay
from test_limiter import usage

from langchain_claude_relay import CachePlanner, ChatClaudeRelay
from langchain_claude_relay.errors import APITimeoutError, RequestValidationError
from langchain_claude_relay.limiter import RateLimiter, booking, clear_shared_limiters
from langchain_claude_relay.store import MemoryStore

MODEL = "claude-sonnet-4-6"
ABSURD = 10**12


class Clock:
    """A virtual clock; ``sleep`` records and advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def limiter(self, **limits: float) -> RateLimiter:
        return RateLimiter(**limits, clock=self, sleep=self.sleep, asleep=self.asleep)


@pytest.fixture(autouse=True)
def _no_shared_leftovers() -> Iterator[None]:
    clear_shared_limiters()
    yield
    clear_shared_limiters()


def test_an_absurd_usage_report_leaves_at_most_a_minute_of_debt() -> None:
    clock = Clock()
    limiter = clock.limiter(itpm=40_000, otpm=8_000)
    limiter.settle(limiter.acquire(1_000, 100), usage(input=ABSURD, output=ABSURD), MODEL)
    available = limiter.available()
    assert available["itpm"] >= -40_000
    assert available["otpm"] >= -8_000
    assert limiter.acquire(1_000, 100).waited <= 2 * 60  # not decades
    assert limiter.stats()["settled_input_tokens"] == ABSURD  # what the relay said, counted


def test_a_chat_model_sharing_the_limiter_is_not_stalled_by_an_absurd_report() -> None:
    with HostileRelay() as hostile:
        llm = ChatClaudeRelay(
            base_url=hostile.url("absurd-usage"),
            api_key="sk-limiter-test-key-0123456789",
            model=MODEL,
            cache="off",
            ledger=False,
            max_retries=0,
            rate_limits="tier1",
        )
        limiter = llm.rate_limiter
        assert isinstance(limiter, RateLimiter)
        waits: list[float] = []
        limiter._sleep = waits.append  # record instead of sleeping
        assert llm.invoke("hi").usage_metadata["input_tokens"] == ABSURD
        llm.invoke("hi")
    assert max(waits, default=0.0) <= 2 * 60


def test_a_booking_that_would_wait_past_max_wait_is_refused_and_books_nothing() -> None:
    clock = Clock()
    limiter = clock.limiter(rpm=60, itpm=6_000)  # 100 tokens/s
    limiter.acquire(6_000)
    before = limiter.available()
    with pytest.raises(APITimeoutError, match="deadline of 5 s"):
        limiter.acquire(1_000, max_wait=5)
    with pytest.raises(APITimeoutError, match="deadline"):
        asyncio.run(limiter.aacquire(1_000, max_wait=5))
    assert clock.slept == []
    assert limiter.available() == before  # nothing was booked
    assert limiter.stats()["reservations"] == 1
    fits = limiter.acquire(500, max_wait=5)  # 5 s at 100 tokens/s: within the bound
    assert fits.waited == pytest.approx(5.0)
    assert clock.slept == [fits.waited]


def test_langchains_form_honours_max_wait_too() -> None:
    clock = Clock()
    limiter = clock.limiter(rpm=1)
    assert limiter.acquire(max_wait=0) is True
    with pytest.raises(APITimeoutError):
        limiter.acquire(max_wait=10)
    assert limiter.acquire(blocking=False) is False
    assert limiter.stats()["requests"] == 1


@pytest.mark.parametrize("bad", [-1, math.nan, "5", True])
def test_max_wait_must_be_a_number_of_seconds(bad: Any) -> None:
    with pytest.raises(RequestValidationError, match="max_wait"):
        RateLimiter(itpm=100).acquire(1, max_wait=bad)


def test_a_call_booking_is_bounded_by_its_deadline() -> None:
    clock = Clock()
    limiter = clock.limiter(itpm=6_000)
    limiter.settle(limiter.acquire(1_000), usage(ABSURD), MODEL)  # charged 7,000: 1,000 in debt
    with pytest.raises(APITimeoutError):
        booking.reserve(limiter, (100, 0), max_wait=5)
    with pytest.raises(APITimeoutError):
        asyncio.run(booking.areserve(limiter, (100, 0), max_wait=5))
    assert clock.slept == []
    done = booking.reserve(limiter, (100, 0))  # no deadline given: waits as long as it takes
    assert done.reservation.waited == pytest.approx(11.0)  # 1,100 missing at 100 tokens/s


@pytest.mark.parametrize("way", ["sync", "async"])
def test_a_chat_call_waits_for_the_limiter_no_longer_than_its_deadline(way: str) -> None:
    clock = Clock()
    limiter = clock.limiter(itpm=6_000)
    limiter.settle(limiter.acquire(1_000), usage(ABSURD), MODEL)  # 11 s to wait for room
    planner = CachePlanner(MemoryStore(), clock=clock)
    llm = ChatClaudeRelay(
        base_url="https://relay.example.com/v1",
        api_key="sk-limiter-test-key-0123456789",
        model=MODEL,
        cache=planner,
        ledger=False,
        rate_limiter=limiter,
        call_timeout=5,
    )
    messages = [("system", "The handbook. " * 2_000), ("human", "hi")]
    call = (
        (lambda: llm.invoke(messages))
        if way == "sync"
        else (lambda: asyncio.run(llm.ainvoke(messages)))
    )
    with pytest.raises(APITimeoutError):
        call()
    assert clock.slept == []  # refused at once: nothing was sent either
    assert planner._in_flight.snapshot(clock()).pending == frozenset()  # nor believed written


@pytest.mark.timeout(60)
@pytest.mark.parametrize("way", ["invoke", "ainvoke", "stream"])
def test_call_timeout_bounds_the_limiter_wait_and_the_relay_together(way: str) -> None:
    # The limiter waits ~1.5 s for room, then the relay hangs. The call used to get a whole
    # new deadline once booked: 1.5 s + 3 s. call_timeout is the whole call's time.
    with HostileRelay() as hostile:
        limiter = RateLimiter(itpm=6_000)  # 100 tokens/s, on the real clock
        limiter.acquire(6_000)
        llm = ChatClaudeRelay(
            base_url=hostile.url("stall"),
            api_key="sk-limiter-test-key-0123456789",
            model=MODEL,
            cache="off",
            ledger=False,
            max_retries=0,
            rate_limiter=limiter,
            timeout=30,
            call_timeout=3,
        )
        calls = {
            "invoke": lambda: llm.invoke("hi " * 100),
            "ainvoke": lambda: asyncio.run(llm.ainvoke("hi " * 100)),
            "stream": lambda: list(llm.stream("hi " * 100)),
        }
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="deadline"):
            calls[way]()
        elapsed = time.monotonic() - started
    waited = limiter.stats()["seconds_waited"]
    assert waited >= 0.5  # the limiter did make the call wait
    assert elapsed < 3 + 0.8  # and the wait came off the call's 3 s
