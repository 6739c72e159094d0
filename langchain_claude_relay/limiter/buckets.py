"""Token buckets and limit sets: the arithmetic shared by the local and the Redis limiter.

``RateLimits`` (per-minute limits) and the named ``PRESETS``; ``TokenBucket``, a continuously
refilled bucket kept as the exact replay of its bookings; ``Reservation``; and the small helpers
both limiters book with (amounts per bucket, statistics). No clock of its own: times are passed
in.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from langchain_claude_relay.errors import APITimeoutError, RequestValidationError
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "Clock",
    "Sleep",
    "AsyncSleep",
    "WINDOW_SECONDS",
    "MAX_PENDING",
    "LIMIT_NAMES",
    "STAT_NAMES",
    "RateLimits",
    "PRESETS",
    "preset_limits",
    "counted_input_tokens",
    "Reservation",
    "TokenBucket",
    "reservation_amounts",
    "settled_charge",
    "check_max_wait",
    "count_booking",
    "not_open_error",
    "wait_past_deadline_error",
]

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
"""Limits are per minute: a bucket refills its whole capacity in this many seconds."""

MAX_PENDING = 1_000
"""Bookings a bucket keeps behind its oldest open one for exact settling (see ``TokenBucket``)."""

LIMIT_NAMES = ("rpm", "itpm", "otpm")

STAT_NAMES = (
    "requests",
    "reservations",
    "waits",
    "seconds_waited",
    "oversize",
    "settled",
    "cancelled",
    "estimated_input_tokens",
    "estimated_output_tokens",
    "settled_input_tokens",
    "settled_output_tokens",
)


@dataclass(frozen=True)
class RateLimits:
    """Per-minute limits; ``None`` means that limit is not enforced.

    Attributes:
        rpm: requests per minute.
        itpm: input tokens per minute (uncached input, as the platform counts it).
        otpm: output tokens per minute.
    """

    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            valid = isinstance(value, int | float) and not isinstance(value, bool)
            if not valid or not math.isfinite(value) or value <= 0:
                unit = {"rpm": "requests", "itpm": "input tokens", "otpm": "output tokens"}[name]
                msg = (
                    f"rate limit {name} must be a positive number of {unit} per minute "
                    f"or None (not enforced), got {value!r}"
                )
                raise RequestValidationError(msg)


PRESETS: Mapping[str, RateLimits] = MappingProxyType(
    {
        # The relay article's tiers for new accounts: RPM / input TPM. It gives no output limit;
        # third-party copies of Anthropic's late-2024 table list 8K/16K/32K/80K OTPM for these
        # tiers, unconfirmed here, so OTPM is left unenforced (pass otpm=... to set it).
        "tier1": RateLimits(rpm=50, itpm=40_000),
        "tier2": RateLimits(rpm=1_000, itpm=80_000),
        "tier3": RateLimits(rpm=2_000, itpm=160_000),
        "tier4": RateLimits(rpm=4_000, itpm=400_000),
        # Anthropic's current entry tier.
        "start": RateLimits(rpm=1_000, itpm=2_000_000, otpm=400_000),
    }
)
"""Named limit sets for ``RateLimiter.preset`` and ``shared_limiter``."""


def preset_limits(name: str) -> RateLimits:
    """The limits of a preset (case, spaces, ``_`` and ``-`` ignored: ``"Tier 1"`` is ``tier1``).

    Raises:
        RequestValidationError: for an unknown preset, naming the known ones.
    """
    key = name.strip().lower().replace(" ", "").replace("_", "").replace("-", "")
    try:
        return PRESETS[key]
    except KeyError:
        msg = (
            f"unknown rate-limit preset {name!r}: use one of {sorted(PRESETS)} "
            "or pass rpm=/itpm=/otpm= yourself"
        )
        raise RequestValidationError(msg) from None


def counted_input_tokens(usage: NormalizedUsage, model: str) -> int:
    """Input tokens of one call that count toward input-tokens-per-minute.

    Plain input and cache writes always count; cache reads count only for models whose spec
    says so (``ModelSpec.reads_count_toward_itpm``, e.g. Haiku 3.5).

    Args:
        usage: the call's normalized usage.
        model: the model id as the relay spells it.

    Returns:
        The counted input tokens.
    """
    counted = usage.input_tokens + usage.cache_write_tokens
    if lookup_model(model).reads_count_toward_itpm:
        counted += usage.cache_read_tokens
    return counted


@dataclass(frozen=True)
class Reservation:
    """A booking made by ``RateLimiter.acquire``; settle or cancel it exactly once.

    Attributes:
        id: unique within its limiter.
        input_tokens: estimated counted input booked on the ITPM bucket.
        output_tokens: estimated output booked on the OTPM bucket.
        counts_request: whether one request was booked on the RPM bucket.
        admitted_at: the clock time the booking was admitted at.
        waited: seconds the caller had to wait (``admitted_at`` minus the time it asked).
    """

    id: int
    input_tokens: int
    output_tokens: int
    counts_request: bool
    admitted_at: float
    waited: float


@dataclass
class _Booking:
    """One booking on one bucket: when it was admitted, what it counts, whether it may change."""

    admitted_at: float
    amount: float
    open: bool


class TokenBucket:
    """A continuously refilled bucket, kept as the exact replay of its bookings.

    The state is ``base_level`` at ``base_at`` (every booking up to the oldest one still open,
    folded in) followed by ``pending`` (booking id -> ``_Booking``, in admission order): open
    bookings count their estimate, closed ones their real amount (``0`` once cancelled).
    ``level`` at ``at`` caches the replay (``at`` is the latest admission). Closing a booking sets
    its amount and replays the pending ones, so a settled call weighs on the bucket exactly as if
    its real usage had been booked at its admission time -- a refund never credits tokens that
    the cap has absorbed since. Not thread-safe: the limiter calls it under its lock.
    """

    __slots__ = (
        "at",
        "base_at",
        "base_level",
        "capacity",
        "folded_open",
        "level",
        "pending",
        "rate",
    )

    def __init__(self, limit: float, now: float) -> None:
        self.capacity = float(limit)
        self.rate = self.capacity / WINDOW_SECONDS
        self.base_level = self.level = self.capacity
        self.base_at = self.at = now
        self.pending: dict[int, _Booking] = {}
        self.folded_open: dict[int, float] = {}

    def _refill(self, level: float, since: float, until: float) -> float:
        if until <= since:
            return level
        return min(self.capacity, level + self.rate * (until - since))

    def level_at(self, t: float) -> float:
        """Tokens available at ``t`` (at the latest admission if ``t`` is earlier)."""
        return self._refill(self.level, self.at, t)

    def ready_at(self, amount: float, now: float) -> float:
        """Earliest time, not before ``now`` nor the latest admission, to take ``amount``.

        A request larger than the capacity needs a full bucket (it could never fit otherwise).
        """
        start = max(now, self.at)
        missing = min(amount, self.capacity) - self.level_at(start)
        return start if missing <= 0 else start + missing / self.rate

    def take(self, booking_id: int, amount: float, t: float, *, open: bool) -> None:
        """Book ``amount`` at ``t`` (not before the latest admission); may leave a debt."""
        self.level = self.level_at(t) - amount
        self.at = max(t, self.at)
        self.pending[booking_id] = _Booking(t, amount, open)
        self._fold()

    def close(self, booking_id: int, amount: float, *, drop: bool = False) -> None:
        """Fix a booking's final amount and replay the bookings after it.

        ``drop`` (a cancelled booking) takes it out of the replay altogether: a booking still
        waiting for its admission time must not hold that place in the queue once nobody
        will use it (20 cancelled waiters made the next call wait 40 s for their slots).
        Bookings admitted after it keep their times.
        """
        booking = self.pending.get(booking_id)
        if booking is not None and drop:
            del self.pending[booking_id]
        elif booking is not None:
            booking.amount, booking.open = amount, False
        elif booking_id in self.folded_open:  # folded early: correct the base directly
            estimate = self.folded_open.pop(booking_id)
            self.base_level = min(self.capacity, self.base_level + estimate - amount)
        self._fold()
        level, at = self.base_level, self.base_at
        for later in self.pending.values():
            level = self._refill(level, at, later.admitted_at) - later.amount
            at = max(at, later.admitted_at)
        self.level, self.at = level, at

    def _fold(self) -> None:
        """Fold the closed bookings at the front into the base.

        An open booking is folded too once more than ``MAX_PENDING`` wait behind it, so a
        reservation that is never settled cannot grow memory and replay time without bound;
        its later correction is then applied to the base, approximately.
        """
        pending = self.pending
        while pending:
            booking_id, first = next(iter(pending.items()))
            if first.open:
                if len(pending) <= MAX_PENDING:
                    break
                self.folded_open[booking_id] = first.amount
            refilled = self._refill(self.base_level, self.base_at, first.admitted_at)
            self.base_level = refilled - first.amount
            self.base_at = max(self.base_at, first.admitted_at)
            del pending[booking_id]


def token_count(value: object, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        msg = f"{name} must be a non-negative number of tokens, got {value!r}"
        raise RequestValidationError(msg)
    return math.ceil(value)


def reservation_amounts(
    estimated_input: object, estimated_output: object, *, count_request: bool
) -> dict[str, int]:
    """What a token reservation books on each bucket, its estimates checked.

    A request not counted still queues on the RPM bucket (amount 0): first come, first served
    across both forms.
    """
    return {
        "rpm": int(count_request),
        "itpm": token_count(estimated_input, "estimated_input_tokens"),
        "otpm": token_count(estimated_output, "estimated_output_tokens"),
    }


def settled_charge(estimate: float, real: float, capacity: float) -> float:
    """What settling charges a bucket: the real amount, at most one capacity beyond the estimate.

    A relay's usage is untrusted: one report of 10**12 tokens, charged as it came, left a
    shared bucket a trillion tokens in debt and every later call on the account waiting for
    decades. A real call rarely exceeds its estimate by that much; when one does, the bucket
    still goes into debt by up to a minute's worth.

    >>> settled_charge(1_000, 10**12, 40_000), settled_charge(1_000, 50, 40_000)
    (41000, 50)
    """
    return min(real, estimate + capacity)


def check_max_wait(max_wait: object) -> None:
    """Refuse a ``max_wait`` that is not ``None`` or a non-negative number of seconds.

    Raises:
        RequestValidationError: for anything else (``nan``, a negative number, a string).
    """
    if max_wait is None:
        return
    valid = isinstance(max_wait, int | float) and not isinstance(max_wait, bool)
    if not valid or math.isnan(max_wait) or max_wait < 0:  # type: ignore[operator,arg-type]
        msg = f"max_wait must be a non-negative number of seconds or None, got {max_wait!r}"
        raise RequestValidationError(msg)


def wait_past_deadline_error(wait: float, max_wait: float) -> APITimeoutError:
    """The error for a booking that would wait past the call's deadline (nothing is booked)."""
    return APITimeoutError(
        f"the rate limiter would hold this call {wait:.3g} s, past its deadline of "
        f"{max_wait:g} s (call_timeout): not sent (the account's buckets are busy or in debt)"
    )


def count_booking(stats: dict[str, float], requests: int, *, oversize: bool, wait: float) -> None:
    """Count one booking in a limiter's ``stats()`` counters (the caller holds its lock)."""
    stats["requests"] += requests
    stats["oversize"] += int(oversize)
    if wait > 0:
        stats["waits"] += 1
        stats["seconds_waited"] += wait


def not_open_error(reservation: Reservation) -> RequestValidationError:
    """The error for settling or cancelling a reservation that is not open on the limiter."""
    msg = (
        f"reservation {reservation.id} is not open on this limiter: it was already "
        "settled or cancelled, or another limiter made it; settle or cancel each "
        "reservation once, on the limiter that made it"
    )
    return RequestValidationError(msg)
