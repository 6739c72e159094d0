"""The client-side rate limiter, on a virtual clock: no test waits for real."""

from __future__ import annotations

import asyncio
import doctest
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from langchain_claude_relay import limiter as limiter_module
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.limiter import (
    PRESETS,
    RateLimiter,
    RateLimits,
    Reservation,
    clear_shared_limiters,
    counted_input_tokens,
    shared_limiter,
)
from langchain_claude_relay.limiter import buckets as buckets_module
from langchain_claude_relay.usage import NormalizedUsage

SONNET = "claude-sonnet-4-6"  # cache reads do not count toward ITPM
HAIKU_35 = "claude-3-5-haiku-20241022"  # cache reads count (and the model is retired: it warns)
EPS = 1e-6


class FakeTime:
    """A virtual clock. ``sleep`` advances it (or only records, with ``advance_on_sleep=False``)."""

    def __init__(self, start: float = 0.0, *, advance_on_sleep: bool = True) -> None:
        self.now = start
        self.slept: list[float] = []
        self.advance_on_sleep = advance_on_sleep
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)  # let the other tasks run, as a real sleep would

    def limiter(
        self, rpm: float | None = None, itpm: float | None = None, otpm: float | None = None
    ):
        return RateLimiter(rpm, itpm, otpm, clock=self.clock, sleep=self.sleep, asleep=self.asleep)


def usage(input: int = 0, read: int = 0, write: int = 0, output: int = 0) -> NormalizedUsage:
    return NormalizedUsage(
        input_tokens=input,
        cache_read_tokens=read,
        cache_write_5m_tokens=write,
        cache_write_1h_tokens=0,
        output_tokens=output,
    )


@pytest.fixture(autouse=True)
def _no_shared_leftovers():
    clear_shared_limiters()
    yield
    clear_shared_limiters()


# --- scenario table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Acquire:
    """Book ``input``/``output`` (``hook``: LangChain's form, no estimates); expect ``wait``."""

    input: int = 0
    output: int = 0
    wait: float = 0.0
    repeat: int = 1
    hook: bool = False
    count_request: bool = True


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Settle:
    """Settle the reservation made by step ``index`` with this usage."""

    index: int
    usage: NormalizedUsage
    model: str = SONNET


@dataclass(frozen=True)
class Cancel:
    index: int


SCENARIOS: dict[str, tuple[RateLimits, list[Any]]] = {
    "rpm only: 60 at once, then one a second": (
        RateLimits(rpm=60),
        [Acquire(repeat=60), Acquire(wait=1.0), Acquire(wait=1.0)],
    ),
    "rpm refills continuously": (
        RateLimits(rpm=60),
        [Acquire(repeat=60), Advance(0.25), Acquire(wait=0.75)],
    ),
    "rpm: tokens are not limited without itpm/otpm": (
        RateLimits(rpm=60),
        [Acquire(10**9, 10**9, repeat=3)],
    ),
    "itpm: cache reads do not count (sonnet)": (
        RateLimits(itpm=6_000),  # 100 tokens/s
        [
            Acquire(6_000),
            Settle(0, usage(input=100, read=50_000, write=900)),  # counted 1,000: 5,000 back
            Acquire(5_000),
            Acquire(1, wait=0.01),
        ],
    ),
    "itpm: cache reads count for haiku 3.5": (
        RateLimits(itpm=60_000),  # 1,000 tokens/s
        [
            Acquire(6_000),
            Settle(0, usage(input=100, read=50_000, write=900), model=HAIKU_35),  # 51,000
            Acquire(10_000, wait=1.0),  # 9,000 left
        ],
    ),
    "settle charges at most one capacity beyond the estimate (relay usage is untrusted)": (
        RateLimits(itpm=6_000, otpm=600),
        [
            Acquire(1_000, 100),
            Settle(0, usage(input=10**12, output=10**12)),  # charged 7,000 and 700
            Acquire(1, wait=10.01),  # 1,000 in debt at 100 tokens/s, not 10**10 s
        ],
    ),
    "settle refunds an over-estimate (input and output)": (
        RateLimits(itpm=6_000, otpm=600),  # 100 and 10 tokens/s
        [
            Acquire(3_000, 600),
            Settle(0, usage(input=1_000, output=100)),
            Acquire(5_000, 500),
            Acquire(0, 1, wait=0.1),
        ],
    ),
    "settle charges an under-estimate": (
        RateLimits(itpm=6_000),
        [
            Acquire(1_000),
            Settle(0, usage(input=4_000, write=2_000)),  # 5,000 more than booked
            Acquire(100, wait=1.0),
        ],
    ),
    "settle charges output beyond the estimate": (
        RateLimits(otpm=600),
        [Acquire(0, 100), Settle(0, usage(output=700)), Acquire(0, 10, wait=11.0)],
    ),
    "a refund never credits what the cap has absorbed since": (
        RateLimits(otpm=600),  # 10 tokens/s
        [
            Acquire(0, 600),
            Advance(60),  # full again: the booked 600 are paid back by the refill
            Acquire(0, 300),
            Settle(0, usage(output=0)),  # the 600 it did not use are already back: nothing more
            Acquire(0, 301, wait=0.1),
        ],
    ),
    "a refund is capped by the room left since the reservation": (
        RateLimits(otpm=600),
        [
            Acquire(0, 600),
            Advance(30),  # 300 back
            Acquire(0, 100),  # 200 left
            Settle(0, usage(output=0)),  # as if 0 had been booked: full at 30, 500 left
            Acquire(0, 500),
            Acquire(0, 1, wait=0.1),
        ],
    ),
    "cancel refunds the tokens and the request": (
        RateLimits(rpm=1, itpm=6_000),
        [Acquire(6_000, 0), Cancel(0), Acquire(6_000, 0), Acquire(0, 0, wait=60.0)],
    ),
    "a request larger than the bucket passes when it is full": (
        RateLimits(itpm=1_000),  # 1,000/60 tokens/s
        [Acquire(5_000), Acquire(1, wait=4_001 * 0.06)],
    ),
    "a request larger than the bucket waits until it is full": (
        RateLimits(itpm=1_000),
        [Acquire(10), Acquire(5_000, wait=10 * 0.06), Acquire(1, wait=4_001 * 0.06)],
    ),
    "a full bucket admits twice the limit within one minute (the burst bound)": (
        RateLimits(itpm=600),
        [Acquire(600), Advance(59.9), Acquire(599), Acquire(1, wait=0.1)],
    ),
    "LangChain's hook form counts one request and no tokens": (
        RateLimits(rpm=60, itpm=60),
        [
            Acquire(hook=True, repeat=60),
            Acquire(60, 0, count_request=False),
            Acquire(hook=True, wait=1.0),
        ],
    ),
    "count_request=False does not count the request twice": (
        RateLimits(rpm=1),
        [Acquire(hook=True), Acquire(10, 10, count_request=False), Acquire(hook=True, wait=60.0)],
    ),
    "no limits: everything passes": (
        RateLimits(),
        [Acquire(10**9, 10**9, repeat=5), Acquire(hook=True, repeat=5)],
    ),
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Haiku 3.5 is retired
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    limits, steps = SCENARIOS[name]
    fake = FakeTime(start=1_000.0)
    limiter = fake.limiter(limits.rpm, limits.itpm, limits.otpm)
    made: dict[int, Reservation] = {}
    for index, step in enumerate(steps):
        if isinstance(step, Advance):
            fake.advance(step.seconds)
        elif isinstance(step, Settle):
            limiter.settle(made[step.index], step.usage, step.model)
        elif isinstance(step, Cancel):
            limiter.cancel(made[step.index])
        else:
            for _ in range(step.repeat):
                before = fake.clock()
                slept = len(fake.slept)
                if step.hook:
                    assert limiter.acquire(blocking=True) is True
                    waited = fake.clock() - before
                else:
                    reservation = limiter.acquire(
                        step.input, step.output, count_request=step.count_request
                    )
                    made[index] = reservation
                    waited = reservation.waited
                    assert reservation.admitted_at == pytest.approx(before + waited)
                    assert fake.clock() == pytest.approx(reservation.admitted_at)
                assert waited == pytest.approx(step.wait, abs=1e-9), f"step {index}"
                assert len(fake.slept) == slept + (step.wait > 0)


def test_tokens_are_taken_at_admission_not_at_booking() -> None:
    """A request waiting for RPM must not let the ITPM bucket refill under it."""
    fake = FakeTime(advance_on_sleep=False)
    limiter = fake.limiter(rpm=60, itpm=600)  # 1 request/s, 10 tokens/s
    for _ in range(60):
        limiter.acquire(0)
    big = limiter.acquire(600)  # waits 1 s for RPM; ITPM is full then and drained by it
    small = limiter.acquire(100)  # RPM would allow 2.0; ITPM has 0 at 1.0: +10 s
    assert (big.admitted_at, small.admitted_at) == pytest.approx((1.0, 11.0))


def test_first_come_first_served() -> None:
    """A small request queues behind an earlier big one, even if it would fit on its own."""
    fake = FakeTime(advance_on_sleep=False)
    limiter = fake.limiter(rpm=60, itpm=600)
    limiter.acquire(600)
    queued = limiter.acquire(600)
    behind = limiter.acquire(0)  # RPM has 58 left, but it comes after `queued`
    assert (queued.admitted_at, behind.admitted_at) == pytest.approx((60.0, 60.0))
    assert fake.slept == pytest.approx([60.0, 60.0])


# --- presets, validation, stats ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rpm", "itpm", "otpm"),
    [
        ("tier1", 50, 40_000, None),
        ("tier2", 1_000, 80_000, None),
        ("tier3", 2_000, 160_000, None),
        ("tier4", 4_000, 400_000, None),
        ("start", 1_000, 2_000_000, 400_000),
    ],
)
def test_preset_numbers(name: str, rpm: int, itpm: int, otpm: int | None) -> None:
    assert PRESETS[name] == RateLimits(rpm=rpm, itpm=itpm, otpm=otpm)
    fake = FakeTime()
    limiter = RateLimiter.preset(name, clock=fake.clock, sleep=fake.sleep)
    assert limiter.limits == RateLimits(rpm=rpm, itpm=itpm, otpm=otpm)
    # The numbers are in force: `rpm` requests pass at once, the next one waits 60/rpm s.
    for _ in range(rpm):
        assert limiter.acquire(0).waited == 0
    assert limiter.acquire(0).waited == pytest.approx(60 / rpm)


def test_preset_overrides_and_spelling() -> None:
    limiter = RateLimiter.preset("Tier 1", otpm=8_000)
    assert limiter.limits == RateLimits(rpm=50, itpm=40_000, otpm=8_000)
    assert RateLimiter.preset("start", otpm=None).limits.otpm is None
    assert "rpm=50" in repr(limiter)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: RateLimiter(rpm=0), "rpm must be a positive number of requests per minute"),
        (lambda: RateLimiter(itpm=-5), "itpm must be a positive number of input tokens per minute"),
        (lambda: RateLimiter(otpm=float("nan")), "otpm"),
        (lambda: RateLimiter(rpm=float("inf")), "rpm"),
        (lambda: RateLimiter(rpm=True), "rpm"),
        (lambda: RateLimiter(rpm="50"), "rpm"),  # type: ignore[arg-type]
        (lambda: RateLimiter.preset("tier9"), "unknown rate-limit preset 'tier9'"),
        (lambda: RateLimiter.preset("tier1", tpm=5), "unknown rate limit(s) ['tpm']"),
        (lambda: RateLimiter().acquire(-1), "estimated_input_tokens"),
        (lambda: RateLimiter().acquire(True), "estimated_input_tokens"),
        (lambda: RateLimiter().acquire(float("nan")), "estimated_input_tokens"),
        (lambda: RateLimiter().acquire("10"), "estimated_input_tokens"),  # type: ignore[call-overload]
        (lambda: RateLimiter().acquire(10, -1), "estimated_output_tokens"),
        (lambda: RateLimiter().acquire(None, 5), "needs estimated_input_tokens"),  # type: ignore[call-overload]
        (lambda: RateLimiter().acquire(10, blocking=False), "blocking=False"),  # type: ignore[call-overload]
        (lambda: shared_limiter(""), "non-empty string"),
        (lambda: shared_limiter("never-made"), "pass its limits"),
    ],
)
def test_invalid_input_is_refused(make: Any, fragment: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        make()
    assert fragment in str(info.value)


def test_fractional_estimates_round_up() -> None:
    reservation = RateLimiter(itpm=100).acquire(10.2, 0.5)
    assert (reservation.input_tokens, reservation.output_tokens) == (11, 1)


def test_settle_or_cancel_only_once_and_only_on_the_owner() -> None:
    limiter, other = RateLimiter(itpm=100), RateLimiter(itpm=100)
    settled, cancelled = limiter.acquire(10), limiter.acquire(10)
    limiter.settle(settled, usage(input=5), SONNET)
    limiter.cancel(cancelled)
    foreign = other.acquire(10)
    for action in (
        lambda: limiter.settle(settled, usage(input=5), SONNET),
        lambda: limiter.cancel(settled),
        lambda: limiter.settle(cancelled, usage(), SONNET),
        lambda: limiter.cancel(foreign),
    ):
        with pytest.raises(RequestValidationError, match="not open on this limiter"):
            action()
    assert limiter.stats()["open"] == 0
    assert other.stats()["open"] == 1


def test_stats_count_waits_reservations_and_tokens() -> None:
    fake = FakeTime()
    limiter = fake.limiter(rpm=2, itpm=1_000, otpm=100)
    first = limiter.acquire(800, 50)
    second = limiter.acquire(400, 50)  # ITPM: 200 missing at 1000/60 per s = 12 s
    third = limiter.acquire(3_000, 10)  # oversize: waits until ITPM is full again
    assert limiter.acquire(blocking=True)  # RPM refilled while `third` waited: no wait
    assert limiter.acquire(blocking=True)  # RPM empty: waits 30 s
    limiter.settle(first, usage(input=100, read=10_000, write=200, output=40), SONNET)
    limiter.cancel(second)
    assert second.waited == pytest.approx(12.0)
    stats = limiter.stats()
    assert stats == {
        "requests": 4,  # the cancelled one is given back
        "reservations": 3,
        "waits": 3,
        "seconds_waited": pytest.approx(sum(fake.slept)),
        "oversize": 1,
        "settled": 1,
        "cancelled": 1,
        "open": 1,
        "estimated_input_tokens": 4_200,
        "estimated_output_tokens": 110,
        "settled_input_tokens": 300,
        "settled_output_tokens": 40,
    }
    assert (third.admitted_at, third.waited) == pytest.approx((72.0, 60.0))  # ITPM full again
    assert fake.slept == pytest.approx([12.0, 60.0, 30.0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (SONNET, 100 + 200 + 300),
        ("anthropic/claude-sonnet-4.5", 600),
        (HAIKU_35, 100 + 200 + 300 + 5_000),
        ("claude-3-haiku-20240307", 5_600),
        ("claude-haiku-4-5", 600),
    ],
)
def test_counted_input_tokens(model: str, expected: int) -> None:
    counted = NormalizedUsage(
        input_tokens=100,
        cache_read_tokens=5_000,
        cache_write_5m_tokens=200,
        cache_write_1h_tokens=300,
        output_tokens=7,
    )
    assert counted_input_tokens(counted, model) == expected


# --- properties -------------------------------------------------------------------------------


def server_replay(admissions: list[tuple[float, int]], limit: float) -> list[tuple[float, int]]:
    """Replay admissions on a server's token bucket: (tokens available, tokens needed) each.

    Needed is the amount, or the whole capacity for a request larger than it.
    """
    level, last, out = float(limit), None, []
    for at, amount in admissions:
        if last is not None:
            level = min(limit, level + (at - last) * limit / 60)
        last = at
        out.append((level, min(amount, limit)))
        level -= amount
    return out


def amounts_by_bucket(
    reservations: list[Reservation], final: dict[int, dict[str, int]] | None = None
) -> dict[str, list[tuple[float, int]]]:
    """(admitted_at, amount) per bucket: the estimates, or the ``final`` amounts by id."""
    final = final or {}

    def amount(r: Reservation, name: str, estimate: int) -> int:
        return final.get(r.id, {}).get(name, estimate)

    return {
        "rpm": [(r.admitted_at, amount(r, "rpm", int(r.counts_request))) for r in reservations],
        "itpm": [(r.admitted_at, amount(r, "itpm", r.input_tokens)) for r in reservations],
        "otpm": [(r.admitted_at, amount(r, "otpm", r.output_tokens)) for r in reservations],
    }


def assert_server_accepts(
    limits: RateLimits,
    reservations: list[Reservation],
    final: dict[int, dict[str, int]] | None = None,
) -> None:
    """Every admission fits a server bucket with the same limits, in booking order."""
    times = [r.admitted_at for r in reservations]
    assert times == sorted(times), "admissions are first come, first served"
    for name, admissions in amounts_by_bucket(reservations, final).items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        for i, (available, needed) in enumerate(server_replay(admissions, limit)):
            assert available >= needed - EPS * limit, f"{name} over-admitted at #{i}"


def assert_window_bound(limit: float, admissions: list[tuple[float, int]]) -> None:
    """Tokens admitted in [t_i, t_j] <= limit * (1 + (t_j - t_i) / 60) + the last one's excess.

    In particular, any 60-second window holds at most 2 * limit plus one oversize excess.
    """
    for i in range(len(admissions)):
        total = 0
        for j in range(i, len(admissions)):
            total += admissions[j][1]
            span = admissions[j][0] - admissions[i][0]
            excess = max(0, admissions[j][1] - limit)
            bound = limit * (1 + span / 60) + excess
            assert total <= bound + EPS * limit, (i, j, total, bound)
            if span <= 60:
                assert total <= 2 * limit + excess + EPS * limit


limits_strategy = st.builds(
    RateLimits,
    rpm=st.none() | st.integers(1, 120),
    itpm=st.none() | st.integers(1, 5_000),
    otpm=st.none() | st.integers(1, 2_000),
)
requests_strategy = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.5]) | st.floats(0, 120),  # gap before the request
        st.integers(0, 10_000),  # estimated input
        st.integers(0, 4_000),  # estimated output
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(limits=limits_strategy, requests=requests_strategy)
def test_admissions_respect_the_buckets_and_never_wait_too_long(
    limits: RateLimits, requests: list[tuple[float, int, int]]
) -> None:
    fake = FakeTime(start=500.0)
    limiter = fake.limiter(limits.rpm, limits.itpm, limits.otpm)
    made: list[Reservation] = []
    for gap, est_in, est_out in requests:
        fake.advance(gap)
        asked_at = fake.clock()
        reservation = limiter.acquire(est_in, est_out)
        assert reservation.admitted_at == pytest.approx(asked_at + reservation.waited)
        made.append(reservation)

    assert_server_accepts(limits, made)
    for name, admissions in amounts_by_bucket(made).items():
        limit = getattr(limits, name)
        if limit is not None:
            assert_window_bound(limit, admissions)

    # Tightness: a request that waited past its own arrival (and the previous admission) was
    # admitted the moment some bucket had just enough -- the limiter is not over-cautious.
    replays = {
        name: server_replay(admissions, getattr(limits, name))
        for name, admissions in amounts_by_bucket(made).items()
        if getattr(limits, name) is not None
    }
    previous = -1.0
    for i, reservation in enumerate(made):
        asked_at = reservation.admitted_at - reservation.waited
        if reservation.admitted_at > max(asked_at, previous) + EPS:
            assert any(
                replay[i][0] <= replay[i][1] + EPS * getattr(limits, name)
                for name, replay in replays.items()
            ), f"request #{i} waited longer than any bucket required"
        previous = reservation.admitted_at

    stats = limiter.stats()
    assert stats["reservations"] == len(requests)
    assert stats["waits"] == sum(r.waited > 0 for r in made)
    assert stats["seconds_waited"] == pytest.approx(sum(r.waited for r in made))


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 5_000),
    estimate=st.integers(0, 10_000),
    real=st.integers(0, 10_000),
    cached=st.integers(0, 10_000),
    model=st.sampled_from([SONNET, "claude-3-haiku-20240307"]),
    probe=st.integers(0, 10_000),
)
def test_settle_leaves_the_buckets_as_if_the_real_amount_was_booked(
    capacity: int, estimate: int, real: int, cached: int, model: str, probe: int
) -> None:
    real_usage = usage(input=real, read=cached, output=real)
    counted = counted_input_tokens(real_usage, model)
    fake_a, fake_b = FakeTime(advance_on_sleep=False), FakeTime(advance_on_sleep=False)
    estimated = fake_a.limiter(itpm=capacity, otpm=capacity)
    exact = fake_b.limiter(itpm=capacity, otpm=capacity)
    estimated.settle(estimated.acquire(estimate, estimate), real_usage, model)
    charged = buckets_module.settled_charge  # at most one capacity beyond the estimate
    exact.acquire(charged(estimate, counted, capacity), charged(estimate, real, capacity))
    assert estimated.acquire(probe, probe).waited == pytest.approx(
        exact.acquire(probe, probe).waited, abs=1e-6
    )


def charged(estimate: float, real: float, limit: float | None) -> float:
    """What settling charges a bucket: at most one capacity beyond the estimate."""
    return real if limit is None else buckets_module.settled_charge(estimate, real, limit)


def oracle_level(
    limit: float, created: float, events: list[tuple[float, float]], now: float
) -> float:
    """A server bucket created full at ``created``, replayed over (time, amount) events, at now."""
    level, last = float(limit), created
    for at, amount in events:
        level = min(limit, level + (at - last) * limit / 60) - amount
        last = at
    return min(limit, level + max(0.0, now - last) * limit / 60)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 3_000), st.integers(0, 800)),
        st.tuples(
            st.just("settle"),
            st.integers(0, 50),  # which open reservation
            st.integers(0, 3_000),  # plain input
            st.integers(0, 3_000),  # cache reads
            st.integers(0, 800),  # output
            st.sampled_from([SONNET, "claude-3-haiku-20240307"]),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("advance"), st.floats(0, 90)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(limits=limits_strategy, ops=operations)
def test_buckets_equal_a_server_replay_of_the_final_amounts(
    limits: RateLimits, ops: list[tuple[Any, ...]]
) -> None:
    """Whatever the order of acquires, settles and cancels, each bucket holds exactly what a
    server bucket holds after the same requests at the same times, with the real amounts of
    the settled ones, nothing for the cancelled ones and the estimates of the open ones."""
    fake = FakeTime(start=100.0)
    limiter = fake.limiter(limits.rpm, limits.itpm, limits.otpm)
    booked: list[tuple[Reservation, dict[str, float]]] = []  # reservation, its final amounts
    open_: list[int] = []  # indexes into `booked`
    for op in ops:
        if op[0] == "acquire":
            reservation = limiter.acquire(op[1], op[2])
            booked.append((reservation, {"rpm": 1, "itpm": op[1], "otpm": op[2]}))
            open_.append(len(booked) - 1)
        elif op[0] == "advance":
            fake.advance(op[1])
        elif open_:
            index = open_.pop(op[1] % len(open_))
            reservation, amounts = booked[index]
            if op[0] == "cancel":
                limiter.cancel(reservation)
                amounts.update(rpm=0, itpm=0, otpm=0)
            else:
                real = usage(input=op[2], read=op[3], output=op[4])
                limiter.settle(reservation, real, op[5])
                amounts.update(
                    itpm=charged(
                        reservation.input_tokens, counted_input_tokens(real, op[5]), limits.itpm
                    ),
                    otpm=charged(reservation.output_tokens, op[4], limits.otpm),
                )
        available = limiter.available()
        for name in ("rpm", "itpm", "otpm"):
            limit = getattr(limits, name)
            if limit is None:
                assert name not in available
                continue
            events = [(r.admitted_at, amounts[name]) for r, amounts in booked]
            expected = oracle_level(limit, 100.0, events, fake.clock())
            assert available[name] == pytest.approx(expected, abs=1e-6 * limit), name
    assert limiter.stats()["open"] == len(open_)


def test_a_reservation_never_settled_does_not_grow_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buckets_module, "MAX_PENDING", 5)
    fake = FakeTime()
    limiter = fake.limiter(itpm=60_000)
    forgotten = limiter.acquire(1_000)
    for _ in range(20):
        limiter.settle(limiter.acquire(100), usage(input=50), SONNET)
    bucket = limiter._buckets["itpm"]
    assert len(bucket.pending) <= 6
    # Settling it late still works; its correction is then applied to the level directly.
    before = limiter.available()["itpm"]
    limiter.settle(forgotten, usage(input=400), SONNET)
    assert limiter.available()["itpm"] == pytest.approx(min(60_000, before + 600))
    assert limiter.stats()["open"] == 0


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(4))
def test_threads_do_not_over_admit(round_: int) -> None:
    limits = RateLimits(rpm=40, itpm=3_000, otpm=800)
    fake = FakeTime()
    limiter = fake.limiter(limits.rpm, limits.itpm, limits.otpm)
    made: list[Reservation] = []
    final: dict[int, dict[str, int]] = {}
    made_lock = threading.Lock()
    start = threading.Barrier(12)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(25):
            reservation = limiter.acquire(rng.randint(0, 1_500), rng.randint(0, 300))
            real = {"itpm": rng.randint(0, reservation.input_tokens), "otpm": 0}
            with made_lock:
                made.append(reservation)
                if rng.random() < 0.5:  # settle some (at or below the estimate) while others book
                    final[reservation.id] = real
            if reservation.id in final:
                limiter.settle(reservation, usage(input=real["itpm"]), SONNET)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: provoke races
    try:
        threads = [
            threading.Thread(target=worker, args=(round_ * 100 + seed,)) for seed in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)
    made.sort(key=lambda r: r.id)
    assert len({r.id for r in made}) == 300
    times = [r.admitted_at for r in made]
    assert times == sorted(times), "admissions are first come, first served"
    stats = limiter.stats()
    assert (stats["reservations"], stats["requests"]) == (300, 300)
    assert stats["open"] == 300 - stats["settled"]
    assert stats["estimated_input_tokens"] == sum(r.input_tokens for r in made)
    # Nothing was over-admitted: every booking fits a server bucket replaying the final
    # amounts (settles here only give back, so a booking made before one still fits).
    assert_server_accepts(limits, made, final)


async def test_async_gather_does_not_over_admit_or_deadlock() -> None:
    limits = RateLimits(rpm=30, itpm=2_000, otpm=500)
    fake = FakeTime()

    def no_blocking_sleep(seconds: float) -> None:
        raise AssertionError("aacquire must not call the blocking sleep")

    limiter = RateLimiter(
        limits.rpm,
        limits.itpm,
        limits.otpm,
        clock=fake.clock,
        sleep=no_blocking_sleep,
        asleep=fake.asleep,
    )
    rng = random.Random(7)
    sizes = [(rng.randint(0, 900), rng.randint(0, 200)) for _ in range(100)]
    made = await asyncio.wait_for(
        asyncio.gather(*(limiter.aacquire(i, o) for i, o in sizes)), timeout=10
    )
    assert len(made) == 100
    ordered = sorted(made, key=lambda r: r.id)
    assert_server_accepts(limits, ordered)
    # 100 requests at 30 RPM (30 at once, then one per 2 s) take at least 140 virtual seconds.
    assert ordered[-1].admitted_at >= 140 - EPS
    assert limiter.stats()["waits"] == sum(r.waited > 0 for r in made) > 0


async def test_async_waits_outside_the_lock_and_refunds_a_cancelled_wait() -> None:
    fake = FakeTime()
    release = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        fake.slept.append(seconds)
        await release.wait()

    limiter = RateLimiter(rpm=60, clock=fake.clock, sleep=fake.sleep, asleep=held_sleep)
    for _ in range(60):
        await limiter.aacquire(0)
    first = asyncio.create_task(limiter.aacquire(0))  # booked at 1.0, then waits
    await asyncio.sleep(0)
    second = asyncio.create_task(limiter.aacquire(0))  # the lock is free: it books 2.0
    await asyncio.sleep(0)
    assert fake.slept == [1.0, 2.0]
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert limiter.stats()["cancelled"] == 1
    # The refunded slot is reused: the next booking comes at 2.0, not 3.0.
    third = asyncio.create_task(limiter.aacquire(0))
    await asyncio.sleep(0)
    assert fake.slept[-1] == 2.0
    release.set()
    assert (await second).admitted_at == 2.0
    assert (await third).admitted_at == 2.0
    assert await limiter.aacquire(blocking=False) is False


def test_an_interrupted_sleep_refunds_the_booking() -> None:
    fake = FakeTime()
    interrupt = [True]

    def sleep(seconds: float) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt
        fake.sleep(seconds)

    limiter = RateLimiter(rpm=1, itpm=100, clock=fake.clock, sleep=sleep)
    limiter.acquire(100)
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire(100)  # would wait 60 s
    with pytest.raises(KeyboardInterrupt):
        limiter.acquire(blocking=True)
    stats = limiter.stats()
    assert (stats["requests"], stats["cancelled"], stats["open"]) == (1, 1, 1)
    # Nothing of the two interrupted bookings is left: the next one waits exactly 60 s.
    interrupt[0] = False
    assert limiter.acquire(100).waited == pytest.approx(60.0)
    assert limiter.available() == pytest.approx({"rpm": 0.0, "itpm": 0.0})


def test_hook_form_without_blocking() -> None:
    fake = FakeTime()
    limiter = fake.limiter(rpm=1)
    assert limiter.acquire(blocking=False) is True
    assert limiter.acquire(blocking=False) is False  # nothing booked
    assert limiter.stats()["requests"] == 1
    fake.advance(60)
    assert limiter.acquire(blocking=False) is True


# --- LangChain and sharing --------------------------------------------------------------------


async def test_fits_langchain_rate_limiter_field() -> None:
    fake = FakeTime()
    limiter = fake.limiter(rpm=1)
    model = FakeListChatModel(responses=["a", "b", "c"], rate_limiter=limiter)
    assert model.invoke("hi").content == "a"
    assert model.invoke("hi").content == "b"  # LangChain's hook waited 60 virtual seconds
    assert (await model.ainvoke("hi")).content == "c"
    assert fake.slept == pytest.approx([60.0, 60.0])
    assert limiter.stats()["requests"] == 3


def test_shared_limiter_is_one_instance_per_key() -> None:
    first = shared_limiter("https://relay.example/v1|tier1", "tier1")
    assert shared_limiter("https://relay.example/v1|tier1") is first
    assert shared_limiter("https://relay.example/v1|tier1", PRESETS["tier1"]) is first
    other = shared_limiter("https://other.example/v1|tier1", "tier1")
    assert other is not first
    custom = shared_limiter("custom", RateLimits(rpm=10, itpm=5_000))
    assert custom.limits == RateLimits(rpm=10, itpm=5_000)
    with pytest.raises(RequestValidationError, match="already has"):
        shared_limiter("https://relay.example/v1|tier1", "tier2")
    shared_limiter("https://relay.example/v1|sk-abcdef1234567890", "tier2")
    with pytest.raises(RequestValidationError) as info:
        shared_limiter("https://relay.example/v1|sk-abcdef1234567890", "tier3")
    assert "sk-abcdef1234567890" not in str(info.value)
    clear_shared_limiters()
    assert shared_limiter("https://relay.example/v1|tier1", "tier1") is not first


def test_shared_limiter_creation_is_thread_safe() -> None:
    got: list[RateLimiter] = []
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        got.append(shared_limiter("race", "tier2"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(got) == 16
    assert len({id(limiter) for limiter in got}) == 1


def test_module_doctest() -> None:
    result = doctest.testmod(limiter_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_real_clock_defaults_do_not_wait_when_allowed() -> None:
    limiter = RateLimiter(rpm=1_000, itpm=1_000_000)
    started = time.monotonic()
    for _ in range(100):
        limiter.settle(limiter.acquire(1_000, 100), usage(input=900, output=50), SONNET)
    assert time.monotonic() - started < 1.0
    assert limiter.stats()["waits"] == 0


async def test_cancelled_waiters_give_their_places_in_the_queue_back() -> None:
    # 40 abandoned waiters (asyncio.wait_for timeouts) used to hold their admission times:
    # the next call waited behind all of them (~40 s at 1 request/s)
    fake = FakeTime()
    release = asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        fake.slept.append(seconds)
        await release.wait()

    limiter = RateLimiter(rpm=60, clock=fake.clock, sleep=fake.sleep, asleep=held_sleep)
    for _ in range(60):
        await limiter.aacquire(0)
    waiters = [asyncio.create_task(limiter.aacquire(0)) for _ in range(40)]
    await asyncio.sleep(0)
    assert max(fake.slept) == pytest.approx(40.0)
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert limiter.acquire(0).waited == pytest.approx(1.0)
