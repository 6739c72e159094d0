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
absorbed since; an under-estimate is charged and may leave a bucket in debt). If the call failed
before it was billed, ``cancel(reservation)`` undoes the booking, request included. Settle or
cancel each reservation exactly once. Pass the *counted* input estimate (plain input + expected
cache writes, + reads for models that count them); when unsure, the whole prompt estimate: the
surplus comes back at settle. For ``max_tokens``-sized output estimates the same holds.

**Scheduling.** A booking is computed under a lock: its admission time is the earliest instant,
not before any earlier booking (first come, first served), at which every bucket holds enough
tokens; the tokens are taken at that instant, then the caller sleeps until it outside the lock
(``await asleep(...)`` in ``aacquire``, so the event loop is never blocked; a wait that is
interrupted or cancelled undoes its booking). A server enforcing the same buckets would accept
every booking at its admission time; ``available()`` shows what each bucket holds.

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
>>> usage = NormalizedUsage(input_tokens=50, cache_read_tokens=4000, cache_write_5m_tokens=0,
...                         cache_write_1h_tokens=0, output_tokens=80)
>>> counted_input_tokens(usage, "claude-sonnet-4-6")   # cache reads do not count
50
>>> limiter.settle(first, usage, "claude-sonnet-4-6")  # 450 of the 500 booked come back
>>> limiter.available()["itpm"]   # at 40 s (the latest booking): full again, minus 500
100.0
>>> limiter.stats()["settled_input_tokens"], limiter.stats()["open"]
(50, 1)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import overload

from langchain_core.rate_limiters import BaseRateLimiter

from langchain_claude_relay.errors import RequestValidationError, redact
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "WINDOW_SECONDS",
    "MAX_PENDING",
    "RateLimits",
    "PRESETS",
    "Reservation",
    "RateLimiter",
    "counted_input_tokens",
    "shared_limiter",
    "clear_shared_limiters",
]

Clock = Callable[[], float]
Sleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]

WINDOW_SECONDS = 60.0
"""Limits are per minute: a bucket refills its whole capacity in this many seconds."""

MAX_PENDING = 1_000
"""Bookings a bucket keeps behind its oldest open one for exact settling (see ``_TokenBucket``)."""

_LIMIT_NAMES = ("rpm", "itpm", "otpm")

_STAT_NAMES = (
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
        for name in _LIMIT_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            valid = isinstance(value, int | float) and not isinstance(value, bool)
            if not valid or not math.isfinite(value) or value <= 0:
                msg = (
                    f"rate limit {name} must be a positive number of {name[:-1]} per minute "
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


def _preset_limits(name: str) -> RateLimits:
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


class _TokenBucket:
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

    def close(self, booking_id: int, amount: float) -> None:
        """Fix a booking's final amount and replay the bookings after it."""
        booking = self.pending.get(booking_id)
        if booking is not None:
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


def _token_count(value: object, name: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        msg = f"{name} must be a non-negative number of tokens, got {value!r}"
        raise RequestValidationError(msg)
    return math.ceil(value)


def _reservation_amounts(
    estimated_input: object, estimated_output: object, *, count_request: bool
) -> dict[str, int]:
    """What a token reservation books on each bucket, its estimates checked.

    A request not counted still queues on the RPM bucket (amount 0): first come, first served
    across both forms.
    """
    return {
        "rpm": int(count_request),
        "itpm": _token_count(estimated_input, "estimated_input_tokens"),
        "otpm": _token_count(estimated_output, "estimated_output_tokens"),
    }


def _count_booking(stats: dict[str, float], requests: int, *, oversize: bool, wait: float) -> None:
    """Count one booking in a limiter's ``stats()`` counters (the caller holds its lock)."""
    stats["requests"] += requests
    stats["oversize"] += int(oversize)
    if wait > 0:
        stats["waits"] += 1
        stats["seconds_waited"] += wait


def _not_open(reservation: Reservation) -> RequestValidationError:
    """The error for settling or cancelling a reservation that is not open on the limiter."""
    msg = (
        f"reservation {reservation.id} is not open on this limiter: it was already "
        "settled or cancelled, or another limiter made it; settle or cancel each "
        "reservation once, on the limiter that made it"
    )
    return RequestValidationError(msg)


class RateLimiter(BaseRateLimiter):
    """Token buckets for RPM, counted ITPM and OTPM, shared by threads and asyncio tasks.

    Args:
        rpm: requests per minute, or ``None`` (not enforced).
        itpm: counted input tokens per minute, or ``None``.
        otpm: output tokens per minute, or ``None``.
        clock: seconds, monotonic (default ``time.monotonic``).
        sleep: blocking sleep used by ``acquire`` (default ``time.sleep``).
        asleep: awaitable sleep used by ``aacquire`` (default ``asyncio.sleep``).

    Raises:
        RequestValidationError: if a limit is not a positive number or ``None``.
    """

    def __init__(
        self,
        rpm: float | None = None,
        itpm: float | None = None,
        otpm: float | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        asleep: AsyncSleep = asyncio.sleep,
    ) -> None:
        self._limits = RateLimits(rpm=rpm, itpm=itpm, otpm=otpm)
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        now = clock()
        self._buckets = {
            name: _TokenBucket(limit, now)
            for name, limit in asdict(self._limits).items()
            if limit is not None
        }
        self._ids = itertools.count(1)
        self._open: dict[int, Reservation] = {}
        self._stats: dict[str, float] = dict.fromkeys(_STAT_NAMES, 0)

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        asleep: AsyncSleep = asyncio.sleep,
        **overrides: float | None,
    ) -> RateLimiter:
        """A limiter with a named preset's limits (``PRESETS``), optionally overriding some.

        Args:
            name: ``"tier1"`` ... ``"tier4"`` (the relay article's tiers) or ``"start"``.
            clock: as for the constructor.
            sleep: as for the constructor.
            asleep: as for the constructor.
            **overrides: ``rpm``, ``itpm`` or ``otpm`` to replace (``None`` removes a limit).

        Returns:
            A new limiter.

        Raises:
            RequestValidationError: for an unknown preset, override name or invalid value.
        """
        unknown = sorted(set(overrides) - set(_LIMIT_NAMES))
        if unknown:
            msg = f"unknown rate limit(s) {unknown}: only {list(_LIMIT_NAMES)} can be overridden"
            raise RequestValidationError(msg)
        limits = {**asdict(_preset_limits(name)), **overrides}
        return cls(**limits, clock=clock, sleep=sleep, asleep=asleep)

    @property
    def limits(self) -> RateLimits:
        """The limits in force."""
        return self._limits

    def __repr__(self) -> str:
        limits = self._limits
        return f"RateLimiter(rpm={limits.rpm}, itpm={limits.itpm}, otpm={limits.otpm})"

    # -- booking -----------------------------------------------------------------------------

    def _book(
        self, amounts: Mapping[str, int], *, blocking: bool, hold: bool
    ) -> tuple[int, float, float] | None:
        """Book at the earliest allowed time: ``(booking id, admitted_at, wait)`` or ``None``.

        The caller holds the lock. ``hold`` keeps the booking open for a later ``_close`` (a
        booking that has to wait is kept open in any case, so an interrupted wait can undo it).
        """
        now = self._clock()
        drawn = [(self._buckets[name], n) for name, n in amounts.items() if name in self._buckets]
        admit_at = max([now, *(bucket.ready_at(n, now) for bucket, n in drawn)])
        wait = admit_at - now
        if wait > 0 and not blocking:
            return None
        booking_id = next(self._ids)
        for bucket, n in drawn:
            bucket.take(booking_id, n, admit_at, open=hold or wait > 0)
        oversize = any(n > bucket.capacity for bucket, n in drawn)
        _count_booking(self._stats, amounts.get("rpm", 0), oversize=oversize, wait=wait)
        return booking_id, admit_at, wait

    def _close(self, booking_id: int, amounts: Mapping[str, float]) -> None:
        """Set a booking's final amounts (the caller holds the lock)."""
        for name, amount in amounts.items():
            if name in self._buckets:
                self._buckets[name].close(booking_id, amount)

    def _reserve(
        self, estimated_input: object, estimated_output: object, *, count_request: bool
    ) -> Reservation:
        amounts = _reservation_amounts(
            estimated_input, estimated_output, count_request=count_request
        )
        input_tokens, output_tokens = amounts["itpm"], amounts["otpm"]
        with self._lock:
            booked = self._book(amounts, blocking=True, hold=True)
            assert booked is not None  # noqa: S101 -- a blocking booking always succeeds
            booking_id, admitted_at, wait = booked
            reservation = Reservation(
                id=booking_id,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                counts_request=count_request,
                admitted_at=admitted_at,
                waited=wait,
            )
            self._open[booking_id] = reservation
            self._stats["reservations"] += 1
            self._stats["estimated_input_tokens"] += input_tokens
            self._stats["estimated_output_tokens"] += output_tokens
        return reservation

    @staticmethod
    def _is_hook_form(estimated_input: object, estimated_output: object, *, blocking: bool) -> bool:
        """Whether a call is LangChain's form (no estimates); reject mixed forms."""
        if estimated_input is None:
            if estimated_output not in (None, 0):
                msg = "estimated_output_tokens needs estimated_input_tokens too (pass 0 if none)"
                raise RequestValidationError(msg)
            return True
        if not blocking:
            msg = (
                "blocking=False is only for LangChain's form acquire(blocking=False), without "
                "token estimates; a token reservation always waits its turn"
            )
            raise RequestValidationError(msg)
        return False

    def _begin(
        self,
        estimated_input: object,
        estimated_output: object,
        *,
        blocking: bool,
        count_request: bool,
    ) -> Reservation | tuple[int, float] | None:
        """Book either form: a reservation, ``(booking id, wait)`` for the hook form, or ``None``.

        ``None`` means the hook form with ``blocking=False`` would have had to wait.
        """
        if self._is_hook_form(estimated_input, estimated_output, blocking=blocking):
            with self._lock:
                booked = self._book({"rpm": 1}, blocking=blocking, hold=False)
            return None if booked is None else (booked[0], booked[2])
        return self._reserve(estimated_input, estimated_output, count_request=count_request)

    def _end(self, begun: Reservation | tuple[int, float], *, completed: bool) -> None:
        """After the wait: close a waiting hook booking, or undo a booking whose wait failed."""
        if isinstance(begun, Reservation):
            if not completed:
                self.cancel(begun)
            return
        booking_id, wait = begun
        if wait > 0:
            with self._lock:
                self._close(booking_id, {"rpm": int(completed)})
                self._stats["requests"] -= int(not completed)

    # -- public API ---------------------------------------------------------------------------

    @overload
    def acquire(self, *, blocking: bool = True) -> bool: ...

    @overload
    def acquire(
        self,
        estimated_input_tokens: float,
        estimated_output_tokens: float = 0,
        *,
        count_request: bool = True,
    ) -> Reservation: ...

    def acquire(
        self,
        estimated_input_tokens: float | None = None,
        estimated_output_tokens: float = 0,
        *,
        blocking: bool = True,
        count_request: bool = True,
    ) -> bool | Reservation:
        """Book a request, sleeping (injected ``sleep``) until the buckets allow it.

        With token estimates: books them (and one request unless ``count_request=False``) and
        returns the ``Reservation`` to settle or cancel. Without: LangChain's
        ``BaseRateLimiter`` form, which books one request toward RPM only. If the sleep is
        interrupted (``KeyboardInterrupt``...), the booking is undone before the error goes on.

        Args:
            estimated_input_tokens: counted input expected (plain + cache writes, + cache reads
                for models that count them); ``None`` for LangChain's form.
            estimated_output_tokens: output tokens expected (e.g. ``max_tokens`` or less).
            blocking: LangChain's form only: ``False`` returns ``False`` at once (booking
                nothing) instead of waiting.
            count_request: ``False`` when LangChain's form has already counted this request
                (a chat model that LangChain has just called ``acquire(blocking=True)`` for).

        Returns:
            The reservation; in LangChain's form, whether the request was admitted.

        Raises:
            RequestValidationError: for a negative or non-numeric estimate, or
                ``blocking=False`` with estimates.
        """
        begun = self._begin(
            estimated_input_tokens,
            estimated_output_tokens,
            blocking=blocking,
            count_request=count_request,
        )
        if begun is None:
            return False
        wait = begun.waited if isinstance(begun, Reservation) else begun[1]
        if wait > 0:
            try:
                self._sleep(wait)
            except BaseException:
                self._end(begun, completed=False)
                raise
        self._end(begun, completed=True)
        return begun if isinstance(begun, Reservation) else True

    @overload
    async def aacquire(self, *, blocking: bool = True) -> bool: ...

    @overload
    async def aacquire(
        self,
        estimated_input_tokens: float,
        estimated_output_tokens: float = 0,
        *,
        count_request: bool = True,
    ) -> Reservation: ...

    async def aacquire(
        self,
        estimated_input_tokens: float | None = None,
        estimated_output_tokens: float = 0,
        *,
        blocking: bool = True,
        count_request: bool = True,
    ) -> bool | Reservation:
        """Async ``acquire``: books under the lock, then awaits ``asleep`` outside it.

        A task cancelled while it waits gets its booking undone.

        Args:
            estimated_input_tokens: as for ``acquire``.
            estimated_output_tokens: as for ``acquire``.
            blocking: as for ``acquire``.
            count_request: as for ``acquire``.

        Returns:
            As for ``acquire``.

        Raises:
            RequestValidationError: as for ``acquire``.
        """
        begun = self._begin(
            estimated_input_tokens,
            estimated_output_tokens,
            blocking=blocking,
            count_request=count_request,
        )
        if begun is None:
            return False
        wait = begun.waited if isinstance(begun, Reservation) else begun[1]
        if wait > 0:
            try:
                await self._asleep(wait)
            except BaseException:
                self._end(begun, completed=False)
                raise
        self._end(begun, completed=True)
        return begun if isinstance(begun, Reservation) else True

    def settle(self, reservation: Reservation, usage: NormalizedUsage, model: str) -> None:
        """Replace a reservation's estimates with the call's real counted tokens.

        The buckets then stand exactly as if the real amounts (ITPM:
        ``counted_input_tokens(usage, model)``, OTPM: ``usage.output_tokens``) had been booked
        at the reservation's admission time: an over-estimate is given back (never beyond what
        the capacity allows), an under-estimate is charged (a bucket may go into debt).

        Args:
            reservation: what ``acquire`` returned, not yet settled or cancelled.
            usage: the call's normalized usage.
            model: the model id, which decides whether cache reads count.

        Raises:
            RequestValidationError: if the reservation is not open on this limiter.
        """
        counted_input = counted_input_tokens(usage, model)
        with self._lock:
            self._take_open(reservation)
            self._close(
                reservation.id,
                {
                    "rpm": int(reservation.counts_request),
                    "itpm": counted_input,
                    "otpm": usage.output_tokens,
                },
            )
            self._stats["settled"] += 1
            self._stats["settled_input_tokens"] += counted_input
            self._stats["settled_output_tokens"] += usage.output_tokens

    def cancel(self, reservation: Reservation) -> None:
        """Undo a reservation whose call failed before it was billed (request and tokens).

        Args:
            reservation: what ``acquire`` returned, not yet settled or cancelled.

        Raises:
            RequestValidationError: if the reservation is not open on this limiter.
        """
        with self._lock:
            self._take_open(reservation)
            self._close(reservation.id, dict.fromkeys(_LIMIT_NAMES, 0))
            self._stats["cancelled"] += 1
            self._stats["requests"] -= int(reservation.counts_request)

    def _take_open(self, reservation: Reservation) -> None:
        if self._open.get(reservation.id) is not reservation:
            raise _not_open(reservation)
        del self._open[reservation.id]

    def available(self) -> dict[str, float]:
        """What each enforced bucket holds for the next booking (negative while in debt).

        Returns:
            ``{"rpm": ..., "itpm": ..., "otpm": ...}`` for the limits that are set, at the
            later of now and the latest admission (bookings may be scheduled ahead).
        """
        with self._lock:
            now = self._clock()
            return {name: bucket.level_at(now) for name, bucket in self._buckets.items()}

    def stats(self) -> dict[str, float]:
        """Counters since creation (JSON-able numbers).

        Returns:
            ``requests`` (counted toward RPM), ``reservations`` (token bookings), ``waits``
            (bookings that had to wait), ``seconds_waited``, ``oversize`` (bookings larger than
            a bucket), ``settled``, ``cancelled``, ``open`` (neither yet),
            ``estimated_input_tokens`` / ``estimated_output_tokens`` (booked estimates) and
            ``settled_input_tokens`` / ``settled_output_tokens`` (real counted tokens).
        """
        with self._lock:
            return {**self._stats, "open": len(self._open)}


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(
    key: str,
    limits: RateLimits | str | None = None,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    asleep: AsyncSleep = asyncio.sleep,
) -> RateLimiter:
    """The process-wide limiter for ``key``, created on first use.

    Rate limits belong to the account behind a relay key, so every model instance that talks
    to the same relay account should share one limiter: pick a key that names it, e.g.
    ``f"{base_url}|tier1"`` (to tell accounts apart on one relay, add a hash of the API key,
    never the key itself). The same key always returns the same instance (thread-safe).

    Args:
        key: the sharing key.
        limits: a preset name (``"tier1"``...) or ``RateLimits``; required on first use,
            optional afterwards (if given then, it must match).
        clock: used only when the limiter is created.
        sleep: used only when the limiter is created.
        asleep: used only when the limiter is created.

    Returns:
        The shared limiter.

    Raises:
        RequestValidationError: for an empty key, a first use without limits, or limits that
            differ from those the key's limiter was created with.
    """
    if not isinstance(key, str) or not key:
        msg = f"shared_limiter key must be a non-empty string, got {key!r}"
        raise RequestValidationError(msg)
    wanted = _preset_limits(limits) if isinstance(limits, str) else limits
    shown = redact(repr(key))  # a key may embed a credential: never echo one in an error
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None:
            if wanted is None:
                msg = (
                    f"no shared limiter {shown} yet: pass its limits (a preset name such as "
                    "'tier1' or a RateLimits) on first use"
                )
                raise RequestValidationError(msg)
            limiter = RateLimiter(**asdict(wanted), clock=clock, sleep=sleep, asleep=asleep)
            _shared[key] = limiter
        elif wanted is not None and wanted != limiter.limits:
            msg = (
                f"shared limiter {shown} already has {limiter.limits}, not {wanted}: use another "
                "key for other limits"
            )
            raise RequestValidationError(msg)
        return limiter


def clear_shared_limiters() -> None:
    """Forget every shared limiter (tests; or after an account's limits changed)."""
    with _shared_lock:
        _shared.clear()
