"""Tests for langchain_claude_relay.retry: header parsing, backoff, the retry loops."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from langchain_claude_relay.errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ClaudeRelayError,
    RateLimitError,
    RequestValidationError,
    make_status_error,
)
from langchain_claude_relay.transport.retry import (
    DEFAULT_MAX_RETRIES,
    INITIAL_RETRY_DELAY,
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    RETRYABLE_STATUS,
    RetryPolicy,
    aretry_call,
    backoff_delay,
    parse_retry_after,
    retry_call,
    should_retry,
)

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()


def test_constants_match_the_sdk() -> None:
    assert (DEFAULT_MAX_RETRIES, INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_AFTER) == (
        2,
        0.5,
        8.0,
        60.0,
    )
    assert frozenset({408, 409, 429, 500, 502, 503, 504, 529}) == RETRYABLE_STATUS


# --- parse_retry_after -------------------------------------------------------------------------

HEADER_CASES: list[tuple[str, Any, float | None]] = [
    ("none", None, None),
    ("empty_mapping", {}, None),
    ("unrelated", {"content-type": "application/json"}, None),
    ("seconds", {"retry-after": "5"}, 5.0),
    ("fractional_seconds", {"retry-after": "1.5"}, 1.5),
    ("zero", {"retry-after": "0"}, 0.0),
    ("at_the_cap", {"retry-after": "60"}, 60.0),
    ("over_the_cap", {"retry-after": "61"}, None),
    ("padded", {"retry-after": " 7 "}, 7.0),
    ("capitalised_name", {"Retry-After": "5"}, 5.0),
    ("int_value", {"retry-after": 5}, 5.0),
    ("garbage", {"retry-after": "abc"}, None),
    ("negative", {"retry-after": "-1"}, None),
    ("nan", {"retry-after": "nan"}, None),
    ("inf", {"retry-after": "inf"}, None),
    ("overflow", {"retry-after": "1e400"}, None),
    ("empty_string", {"retry-after": ""}, None),
    ("huge_int", {"retry-after": "99999999999999999999999"}, None),
    ("giant_digit_string", {"retry-after": "9" * 400}, None),
    ("list_value", {"retry-after": ["5"]}, None),
    ("null_value", {"retry-after": None}, None),
    ("ms", {"retry-after-ms": "1500"}, 1.5),
    ("ms_takes_precedence", {"retry-after-ms": "1500", "retry-after": "10"}, 1.5),
    ("ms_capitalised", {"Retry-After-Ms": "250", "retry-after": "10"}, 0.25),
    ("ms_garbage_falls_back", {"retry-after-ms": "abc", "retry-after": "10"}, 10.0),
    ("ms_negative_falls_back", {"retry-after-ms": "-5", "retry-after": "3"}, 3.0),
    ("ms_nan_falls_back", {"retry-after-ms": "nan", "retry-after": "3"}, 3.0),
    ("ms_overflow_falls_back", {"retry-after-ms": "1e400", "retry-after": "3"}, 3.0),
    ("ms_absurd_is_none", {"retry-after-ms": "120000", "retry-after": "3"}, None),
    ("ms_at_cap", {"retry-after-ms": "60000"}, 60.0),
    ("date_future", {"retry-after": "Wed, 01 Jan 2025 00:00:30 GMT"}, 30.0),
    ("date_future_minus_zero_zone", {"retry-after": "Wed, 01 Jan 2025 00:00:45 -0000"}, 45.0),
    ("date_other_zone", {"retry-after": "Wed, 01 Jan 2025 01:00:20 +0100"}, 20.0),
    ("date_past", {"retry-after": "Tue, 31 Dec 2024 23:59:00 GMT"}, 0.0),
    ("date_far_future", {"retry-after": "Wed, 01 Jan 2025 01:00:00 GMT"}, None),
    ("date_garbage", {"retry-after": "Mon, 99 Foo 2025 99:99:99 GMT"}, None),
    ("date_year_overflow", {"retry-after": "Fri, 31 Dec 99999 23:59:59 GMT"}, None),
]


@pytest.mark.parametrize(
    ("headers", "expected"), [pytest.param(*c[1:], id=c[0]) for c in HEADER_CASES]
)
def test_parse_retry_after(headers: Any, expected: float | None) -> None:
    result = parse_retry_after(headers, now=lambda: NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


@given(
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "Retry-After", "x"]),
        st.text(max_size=40) | st.integers() | st.floats() | st.none(),
        max_size=3,
    )
)
def test_parse_retry_after_never_raises_and_stays_in_range(headers: dict[str, Any]) -> None:
    result = parse_retry_after(headers, now=lambda: NOW)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER


# --- backoff_delay -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "no_jitter", "full_jitter"),
    [
        (0, 0.5, 0.375),
        (1, 1.0, 0.75),
        (2, 2.0, 1.5),
        (3, 4.0, 3.0),
        (4, 8.0, 6.0),
        (5, 8.0, 6.0),  # capped
        (10_000, 8.0, 6.0),  # no overflow
    ],
)
def test_backoff_bounds_with_injected_rand(
    attempt: int, no_jitter: float, full_jitter: float
) -> None:
    assert backoff_delay(attempt, rand=lambda: 0.0) == pytest.approx(no_jitter)
    assert backoff_delay(attempt, rand=lambda: 1.0) == pytest.approx(full_jitter)


@pytest.mark.parametrize(("rand_value", "expected"), [(-3.0, 2.0), (7.0, 1.5), (0.5, 1.75)])
def test_backoff_clamps_rand(rand_value: float, expected: float) -> None:
    assert backoff_delay(2, rand=lambda: rand_value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (2.5, 2.5),
        (60.0, 60.0),
        (0.0, 1.0),  # "now": use the backoff
        (61.0, 1.0),  # absurd: use the backoff
        (-1.0, 1.0),
        (math.nan, 1.0),
        (math.inf, 1.0),
        (None, 1.0),
    ],
)
def test_backoff_honours_a_sane_retry_after(retry_after: float | None, expected: float) -> None:
    assert backoff_delay(1, retry_after=retry_after, rand=lambda: 0.0) == pytest.approx(expected)


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1)


@given(attempt=st.integers(min_value=0, max_value=10**6), r=st.floats(min_value=0, max_value=1))
def test_backoff_is_capped_exponential_with_bounded_jitter(attempt: int, r: float) -> None:
    delay = backoff_delay(attempt, rand=lambda: r)
    base = min(INITIAL_RETRY_DELAY * 2.0 ** min(attempt, 100), MAX_RETRY_DELAY)
    assert 0.75 * base - 1e-12 <= delay <= base + 1e-12
    assert delay <= MAX_RETRY_DELAY


# --- should_retry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, True),
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (501, True),  # any 5xx
        (502, True),
        (503, True),
        (504, True),
        (520, True),  # any 5xx (Cloudflare in front of a relay)
        (529, True),
        (599, True),
        (418, False),
    ],
)
def test_should_retry_by_status(status: int, expected: bool) -> None:
    assert should_retry(make_status_error(status, "body")) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (APIConnectionError(), True),
        (APITimeoutError(), True),
        (APIResponseError("the relay sent HTML", status_code=200), True),
        (RequestValidationError("5 cache markers"), False),
        (ClaudeRelayError("other"), False),
        (ValueError("not ours"), False),
        (RuntimeError("not ours"), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_should_retry_by_error_type(error: BaseException, expected: bool) -> None:
    assert should_retry(error) is expected


# --- RetryPolicy -------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.initial_delay, policy.max_delay) == (2, 0.5, 8.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"initial_delay": -0.1},
        {"max_delay": math.nan},
        {"max_delay": math.inf},
    ],
)
def test_policy_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)


def test_policy_delay_uses_the_errors_retry_after() -> None:
    policy = RetryPolicy()
    limited = make_status_error(429, "slow down", retry_after=3.0)
    assert policy.delay_for(0, limited, rand=lambda: 0.0) == 3.0
    absurd = make_status_error(429, "slow down", retry_after=3600.0)
    assert policy.delay_for(0, absurd, rand=lambda: 0.0) == 0.5
    assert policy.delay_for(2, APITimeoutError(), rand=lambda: 0.0) == 2.0


def test_policy_custom_delays() -> None:
    policy = RetryPolicy(max_retries=5, initial_delay=1.0, max_delay=3.0)
    delays = [policy.delay_for(a, APIConnectionError(), rand=lambda: 0.0) for a in range(5)]
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


# --- retry_call / aretry_call ------------------------------------------------------------------


class Flaky:
    """Raises the given errors in turn, then returns ``"ok"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self) -> str:
        return self()


def test_retry_call_succeeds_after_failures_and_records_delays() -> None:
    first, second = make_status_error(503, "busy"), APITimeoutError()
    fn = Flaky(first, second)
    slept: list[float] = []
    seen: list[tuple[int, BaseException, float]] = []
    result = retry_call(
        fn,
        RetryPolicy(),
        sleep=slept.append,
        on_retry=lambda n, e, d: seen.append((n, e, d)),
        rand=lambda: 0.0,
    )
    assert result == "ok"
    assert fn.calls == 3
    assert slept == [0.5, 1.0]
    assert seen == [(1, first, 0.5), (2, second, 1.0)]


def test_retry_call_gives_up_and_reraises_the_last_error() -> None:
    errors = [make_status_error(529, "overloaded") for _ in range(5)]
    fn = Flaky(*errors)
    slept: list[float] = []
    with pytest.raises(APIStatusError) as info:
        retry_call(fn, RetryPolicy(max_retries=2), sleep=slept.append, rand=lambda: 1.0)
    assert info.value is errors[2]  # the LAST attempt's error, unchanged
    assert fn.calls == 3
    assert slept == [0.375, 0.75]


def test_retry_call_does_not_retry_a_400() -> None:
    bad = make_status_error(400, "more than 4 blocks with cache_control")
    fn = Flaky(bad)
    slept: list[float] = []
    with pytest.raises(APIStatusError) as info:
        retry_call(fn, RetryPolicy(), sleep=slept.append)
    assert info.value is bad
    assert fn.calls == 1
    assert slept == []


def test_retry_call_does_not_retry_foreign_errors() -> None:
    fn = Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        retry_call(fn, RetryPolicy(), sleep=lambda _: None)
    assert fn.calls == 1


def test_retry_call_with_zero_retries_calls_once() -> None:
    fn = Flaky(APIConnectionError())
    with pytest.raises(APIConnectionError):
        retry_call(fn, RetryPolicy(max_retries=0), sleep=lambda _: None)
    assert fn.calls == 1


def test_retry_call_honours_retry_after_from_the_error() -> None:
    limited = RateLimitError("slow down", status_code=429, retry_after=3.0)
    fn = Flaky(limited)
    slept: list[float] = []
    assert retry_call(fn, RetryPolicy(), sleep=slept.append, rand=lambda: 0.0) == "ok"
    assert slept == [3.0]


async def test_aretry_call_succeeds_after_failures() -> None:
    fn = Flaky(APIResponseError("empty body", status_code=200), make_status_error(502, "gw"))
    slept: list[float] = []
    seen: list[int] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    result = await aretry_call(
        fn.acall,
        RetryPolicy(),
        sleep=sleep,
        on_retry=lambda n, _e, _d: seen.append(n),
        rand=lambda: 0.0,
    )
    assert result == "ok"
    assert slept == [0.5, 1.0]
    assert seen == [1, 2]


async def test_aretry_call_gives_up_and_does_not_retry_a_400() -> None:
    errors = [APIConnectionError() for _ in range(4)]
    fn = Flaky(*errors)
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    with pytest.raises(APIConnectionError) as info:
        await aretry_call(fn.acall, RetryPolicy(max_retries=3), sleep=sleep, rand=lambda: 0.0)
    assert info.value is errors[3]
    assert slept == [0.5, 1.0, 2.0]

    bad = Flaky(make_status_error(400, "bad"))
    with pytest.raises(APIStatusError):
        await aretry_call(bad.acall, RetryPolicy(), sleep=sleep)
    assert bad.calls == 1
    assert len(slept) == 3
