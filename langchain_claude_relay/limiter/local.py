"""``RateLimiter``: the account's token buckets in this process; ``shared_limiter`` per account."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import overload

from langchain_core.rate_limiters import BaseRateLimiter

from langchain_claude_relay.errors import RequestValidationError, redact
from langchain_claude_relay.limiter.buckets import (
    LIMIT_NAMES,
    STAT_NAMES,
    AsyncSleep,
    Clock,
    RateLimits,
    Reservation,
    Sleep,
    TokenBucket,
    check_max_wait,
    count_booking,
    counted_input_tokens,
    not_open_error,
    preset_limits,
    reservation_amounts,
    settled_charge,
    wait_past_deadline_error,
)
from langchain_claude_relay.usage import NormalizedUsage

__all__ = ["RateLimiter", "shared_limiter", "clear_shared_limiters"]


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
            name: TokenBucket(limit, now)
            for name, limit in asdict(self._limits).items()
            if limit is not None
        }
        self._ids = itertools.count(1)
        self._open: dict[int, Reservation] = {}
        self._stats: dict[str, float] = dict.fromkeys(STAT_NAMES, 0)

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
        unknown = sorted(set(overrides) - set(LIMIT_NAMES))
        if unknown:
            msg = f"unknown rate limit(s) {unknown}: only {list(LIMIT_NAMES)} can be overridden"
            raise RequestValidationError(msg)
        limits = {**asdict(preset_limits(name)), **overrides}
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
        self,
        amounts: Mapping[str, int],
        *,
        blocking: bool,
        hold: bool,
        max_wait: float | None = None,
    ) -> tuple[int, float, float] | float:
        """Book at the earliest allowed time: ``(booking id, admitted_at, wait)``.

        Books nothing, and returns the wait instead, when it would be longer than allowed
        (``blocking=False``: any wait; else ``max_wait`` if given). The caller holds the lock.
        ``hold`` keeps the booking open for a later ``_close`` (a booking that has to wait is
        kept open in any case, so an interrupted wait can undo it).
        """
        now = self._clock()
        drawn = [(self._buckets[name], n) for name, n in amounts.items() if name in self._buckets]
        admit_at = max([now, *(bucket.ready_at(n, now) for bucket, n in drawn)])
        wait = admit_at - now
        allowed = 0.0 if not blocking else max_wait
        if wait > 0 and allowed is not None and wait > allowed:
            return wait
        booking_id = next(self._ids)
        for bucket, n in drawn:
            bucket.take(booking_id, n, admit_at, open=hold or wait > 0)
        oversize = any(n > bucket.capacity for bucket, n in drawn)
        count_booking(self._stats, amounts.get("rpm", 0), oversize=oversize, wait=wait)
        return booking_id, admit_at, wait

    def _close(self, booking_id: int, amounts: Mapping[str, float], *, drop: bool = False) -> None:
        """Set a booking's final amounts, or ``drop`` a cancelled one (under the lock)."""
        for name, amount in amounts.items():
            if name in self._buckets:
                self._buckets[name].close(booking_id, amount, drop=drop)

    def _reserve(
        self,
        estimated_input: object,
        estimated_output: object,
        *,
        count_request: bool,
        max_wait: float | None,
    ) -> Reservation:
        amounts = reservation_amounts(
            estimated_input, estimated_output, count_request=count_request
        )
        input_tokens, output_tokens = amounts["itpm"], amounts["otpm"]
        with self._lock:
            booked = self._book(amounts, blocking=True, hold=True, max_wait=max_wait)
            if not isinstance(booked, tuple):
                raise wait_past_deadline_error(booked, float(max_wait or 0))
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
        max_wait: float | None,
    ) -> Reservation | tuple[int, float] | None:
        """Book either form: a reservation, ``(booking id, wait)`` for the hook form, or ``None``.

        ``None`` means the hook form with ``blocking=False`` would have had to wait.

        Raises:
            APITimeoutError: if the wait would be longer than ``max_wait`` (nothing booked).
        """
        check_max_wait(max_wait)
        if self._is_hook_form(estimated_input, estimated_output, blocking=blocking):
            with self._lock:
                booked = self._book({"rpm": 1}, blocking=blocking, hold=False, max_wait=max_wait)
            if isinstance(booked, tuple):
                return booked[0], booked[2]
            if blocking:
                raise wait_past_deadline_error(booked, float(max_wait or 0))
            return None
        return self._reserve(
            estimated_input, estimated_output, count_request=count_request, max_wait=max_wait
        )

    def _end(self, begun: Reservation | tuple[int, float], *, completed: bool) -> None:
        """After the wait: close a waiting hook booking, or undo a booking whose wait failed."""
        if isinstance(begun, Reservation):
            if not completed:
                self.cancel(begun)
            return
        booking_id, wait = begun
        if wait > 0:
            with self._lock:
                self._close(booking_id, {"rpm": int(completed)}, drop=not completed)
                self._stats["requests"] -= int(not completed)

    # -- public API ---------------------------------------------------------------------------

    @overload
    def acquire(self, *, blocking: bool = True, max_wait: float | None = None) -> bool: ...

    @overload
    def acquire(
        self,
        estimated_input_tokens: float,
        estimated_output_tokens: float = 0,
        *,
        count_request: bool = True,
        max_wait: float | None = None,
    ) -> Reservation: ...

    def acquire(
        self,
        estimated_input_tokens: float | None = None,
        estimated_output_tokens: float = 0,
        *,
        blocking: bool = True,
        count_request: bool = True,
        max_wait: float | None = None,
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
            max_wait: the longest wait allowed, in seconds (a call's deadline); ``None``: any.

        Returns:
            The reservation; in LangChain's form, whether the request was admitted.

        Raises:
            RequestValidationError: for a negative or non-numeric estimate or ``max_wait``, or
                ``blocking=False`` with estimates.
            APITimeoutError: if the buckets would make the call wait longer than ``max_wait``
                (nothing is booked).
        """
        begun = self._begin(
            estimated_input_tokens,
            estimated_output_tokens,
            blocking=blocking,
            count_request=count_request,
            max_wait=max_wait,
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
    async def aacquire(self, *, blocking: bool = True, max_wait: float | None = None) -> bool: ...

    @overload
    async def aacquire(
        self,
        estimated_input_tokens: float,
        estimated_output_tokens: float = 0,
        *,
        count_request: bool = True,
        max_wait: float | None = None,
    ) -> Reservation: ...

    async def aacquire(
        self,
        estimated_input_tokens: float | None = None,
        estimated_output_tokens: float = 0,
        *,
        blocking: bool = True,
        count_request: bool = True,
        max_wait: float | None = None,
    ) -> bool | Reservation:
        """Async ``acquire``: books under the lock, then awaits ``asleep`` outside it.

        A task cancelled while it waits gets its booking undone.

        Args:
            estimated_input_tokens: as for ``acquire``.
            estimated_output_tokens: as for ``acquire``.
            blocking: as for ``acquire``.
            count_request: as for ``acquire``.
            max_wait: as for ``acquire``.

        Returns:
            As for ``acquire``.

        Raises:
            RequestValidationError: as for ``acquire``.
            APITimeoutError: as for ``acquire``.
        """
        begun = self._begin(
            estimated_input_tokens,
            estimated_output_tokens,
            blocking=blocking,
            count_request=count_request,
            max_wait=max_wait,
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
        the capacity allows), an under-estimate is charged (a bucket may go into debt), at most
        one capacity beyond the estimate (``settled_charge``: the usage comes from the relay).

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
                    "itpm": self._charge("itpm", reservation.input_tokens, counted_input),
                    "otpm": self._charge("otpm", reservation.output_tokens, usage.output_tokens),
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
            self._close(reservation.id, dict.fromkeys(LIMIT_NAMES, 0), drop=True)
            self._stats["cancelled"] += 1
            self._stats["requests"] -= int(reservation.counts_request)

    def _charge(self, name: str, estimate: float, real: float) -> float:
        """What settling charges bucket ``name`` (``settled_charge``; as is if not enforced)."""
        bucket = self._buckets.get(name)
        return real if bucket is None else settled_charge(estimate, real, bucket.capacity)

    def _take_open(self, reservation: Reservation) -> None:
        if self._open.get(reservation.id) is not reservation:
            raise not_open_error(reservation)
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
    wanted = preset_limits(limits) if isinstance(limits, str) else limits
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
