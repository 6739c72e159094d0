"""``RedisRateLimiter``: one set of token buckets in Redis for every process on an account.

``RateLimiter`` (``limiter.local``) keeps its buckets in the process, so four workers on one
account each admit the account's whole limit. ``RedisRateLimiter`` keeps them in Redis: RPM,
counted input tokens per minute (uncached input, as the platform counts it: see
``limiter.buckets.counted_input_tokens``) and output tokens per minute, each a bucket that holds
at most the per-minute limit, starts full and refills continuously -- the same buckets and the same
reserve-then-settle contract as ``RateLimiter``, shared by every process that uses the same
Redis, namespace, key and limits.

**Atomic and on one clock.** A booking is one Lua script (``register_script``): it reads the
server's ``TIME``, computes the admission time (the earliest instant, not before the latest
admission -- first come, first served across the fleet -- at which every bucket holds enough),
takes the tokens at that instant and returns the wait; the caller sleeps it (the injected
``sleep`` / ``asleep``). No read-modify-write crosses the network, so concurrent processes never
race, and every process uses the server's clock. A request larger than a bucket is admitted
when the bucket is full and leaves it in debt, as locally.

**Settle and cancel.** ``settle`` replaces the estimate with the counted usage, ``cancel`` gives
the booking back (request included), each one script. A charge beyond the estimate is always
taken (the bucket may go into debt), up to one capacity beyond it (``settled_charge``: the usage
comes from the relay, and one absurd report must not stall the fleet). A refund is given unless
the bucket has been full since the booking's admission (its clip counter moved): the cap has
then absorbed the over-estimate, exactly as ``RateLimiter``'s replay would find.
(``RateLimiter`` also trims a refund when the bucket came within it of the cap without reaching
it; here that partial case refunds fully, the only place where the Redis buckets can admit more
than the local replay would -- by at most that refund, within the cap.) A booking admitted in
the future is also kept, until its admission time, in a pending set per bucket: cancelling it
(an abandoned wait, a ``call_timeout``) gives its place in the queue back, so the fleet's next
booking is not queued behind bookings nobody will use.

**Redis down.** Bookings go on at once on a local ``RateLimiter`` with this process's share of
the limits (``local_share``; by default one over the number of limiters -- one per process with
``shared_redis_limiter`` -- seen booking on the buckets in the last two minutes), with one
warning per process (``RedisStateWarning``). Redis is tried again every
``retry_after`` seconds and used again as soon as it answers. The local bucket starts full: the
fleet may burst up to one limit's worth when it fails over.
Reservations are settled where they were made; a Redis booking that cannot be settled because
Redis is down keeps its estimate (it only makes later bookings wait a little longer).

**Reservations.** ``RedisReservation`` (a ``Reservation``) carries the clip counters of its
buckets; its ``admitted_at`` is on the Redis server's clock (Unix seconds), and ``waited`` is
in seconds as usual. A reservation made while Redis was down is a plain ``Reservation`` of the
local limiter.

>>> limiter = RedisRateLimiter(rpm=600, itpm=60_000, redis="redis://127.0.0.1:6379/0",
...                            key="relay-account")                 # doctest: +SKIP
>>> booking = limiter.acquire(2_000, 500)                          # doctest: +SKIP
>>> limiter.settle(booking, usage, "claude-sonnet-4-6")            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, overload

from langchain_claude_relay._env import redis_url
from langchain_claude_relay._redis import (
    check_namespace,
    health_for,
    resolve_client,
    server_location,
)
from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.limiter.buckets import (
    STAT_NAMES,
    WINDOW_SECONDS,
    AsyncSleep,
    Clock,
    RateLimits,
    Reservation,
    Sleep,
    check_max_wait,
    count_booking,
    counted_input_tokens,
    not_open_error,
    preset_limits,
    reservation_amounts,
    settled_charge,
    wait_past_deadline_error,
)
from langchain_claude_relay.limiter.local import RateLimiter
from langchain_claude_relay.usage import NormalizedUsage

__all__ = [
    "RedisReservation",
    "RedisRateLimiter",
    "shared_redis_limiter",
    "clear_shared_redis_limiters",
]

logger = logging.getLogger("langchain_claude_relay.limiter")

_NAMES = ("rpm", "itpm", "otpm")
_WHAT = "the rate limiter"  # names this component in outage messages

# KEYS: one per bucket booked, then each one's set of pending bookings, then the fleet's member
# set. ARGV: n, the longest wait allowed (-1: any; 0: not blocking), window, member, booking id,
# then per bucket: capacity, amount.
# Returns {"0", wait} (not admitted: the wait would be longer than allowed) or
#         {"1", admitted_at, now, clips of each bucket..., active processes}.
# A booking admitted in the future is kept in each bucket's pending set (score: its admission
# time) until that time, so that cancelling it can give its place in the queue back.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local function f(x) return string.format('%.17g', x) end
local admit = now
local state = {}
for i = 1, n do
  local cap = tonumber(ARGV[4 + 2 * i])
  local amount = tonumber(ARGV[5 + 2 * i])
  local rate = cap / window
  local h = redis.call('HMGET', KEYS[i], 'level', 'at', 'clips')
  local level = tonumber(h[1]) or cap
  local at = tonumber(h[2]) or now
  local clips = tonumber(h[3]) or 0
  local start = math.max(now, at)
  local avail = level
  if start > at then avail = math.min(cap, level + rate * (start - at)) end
  local missing = math.min(amount, cap) - avail
  local ready = start
  if missing > 0 then ready = start + missing / rate end
  if ready > admit then admit = ready end
  state[i] = {cap, amount, rate, level, at, clips}
end
if max_wait >= 0 and admit - now > max_wait then return {'0', f(admit - now)} end
local out = {'1', f(admit), f(now)}
for i = 1, n do
  local cap, amount, rate, level, at, clips = unpack(state[i])
  if admit > at then
    local raw = level + rate * (admit - at)
    if raw > cap then
      if raw - cap > cap * 1e-12 then clips = clips + 1 end
      raw = cap
    end
    level = raw
    at = admit
  end
  level = level - amount
  redis.call('HSET', KEYS[i], 'level', f(level), 'at', f(at), 'clips', clips)
  local idle = (cap - level) / rate + (at - now) + window
  redis.call('PEXPIRE', KEYS[i], math.ceil(idle * 1000))
  local pending = KEYS[n + i]
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
  if admit > now then
    redis.call('ZADD', pending, f(admit), ARGV[5])
    redis.call('PEXPIRE', pending, math.ceil((admit - now + window) * 1000))
  end
  out[#out + 1] = tostring(clips)
end
local members = KEYS[2 * n + 1]
redis.call('ZADD', members, now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', members, '-inf', now - 2 * window)
redis.call('PEXPIRE', members, math.ceil(4 * window * 1000))
out[#out + 1] = tostring(redis.call('ZCARD', members))
return out
"""

# KEYS: one per bucket, then each one's set of pending bookings. ARGV: n, window, the booking id
# being cancelled ('' when settling), then per bucket: capacity, delta (booked minus real:
# > 0 refunds, < 0 charges), clips at the booking (-1: unknown, not checked). A refund is
# dropped if the bucket has been full since (its clip counter moved).
# A cancelled booking leaves the pending set. When no booking is pending after some time t
# (now at the earliest) up to the bucket's latest admission, the bucket is moved back to t
# along its refill line: the next booking is no longer queued behind abandoned ones. (If the
# refund was capped at the capacity, the level found at t is below the true one: a later
# admission, never an earlier one.)
_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local booking = ARGV[3]
local function f(x) return string.format('%.17g', x) end
local applied = 0
for i = 1, n do
  local cap = tonumber(ARGV[3 * i + 1])
  local delta = tonumber(ARGV[3 * i + 2])
  local booked = tonumber(ARGV[3 * i + 3])
  local h = redis.call('HMGET', KEYS[i], 'level', 'at', 'clips')
  if (delta ~= 0 or booking ~= '') and h[1] then
    local rate = cap / window
    local level = tonumber(h[1])
    local at = tonumber(h[2])
    local clips = tonumber(h[3]) or 0
    if now > at then
      local raw = level + rate * (now - at)
      if raw > cap then
        if raw - cap > cap * 1e-12 then clips = clips + 1 end
        raw = cap
      end
      level = raw
      at = now
    end
    if delta < 0 then
      level = level + delta
      applied = applied + 1
    elseif booked < 0 or clips == booked then
      level = math.min(cap, level + delta)
      applied = applied + 1
    end
    if booking ~= '' then
      local pending = KEYS[n + i]
      redis.call('ZREM', pending, booking)
      redis.call('ZREMRANGEBYSCORE', pending, '-inf', now)
      local back = now
      local last = redis.call('ZRANGE', pending, -1, -1, 'WITHSCORES')
      if last[2] then back = math.max(back, tonumber(last[2])) end
      if back < at then
        level = level - rate * (at - back)
        at = back
      end
    end
    redis.call('HSET', KEYS[i], 'level', f(level), 'at', f(at), 'clips', clips)
    local idle = (cap - level) / rate + math.max(0, at - now) + window
    redis.call('PEXPIRE', KEYS[i], math.ceil(idle * 1000))
  end
end
return applied
"""

# KEYS: one per bucket; ARGV: window, then capacities. Returns now and each bucket's level at
# the later of now and its latest admission.
_LEVELS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local out = {string.format('%.17g', now)}
for i = 1, #KEYS do
  local cap = tonumber(ARGV[1 + i])
  local h = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level = tonumber(h[1]) or cap
  local at = tonumber(h[2]) or now
  if now > at then level = math.min(cap, level + cap / window * (now - at)) end
  out[#out + 1] = string.format('%.17g', level)
end
return out
"""

_REDIS_STAT_NAMES = (*STAT_NAMES, "redis_bookings", "local_bookings", "unsettled")


@dataclass(frozen=True)
class RedisReservation(Reservation):
    """A booking on the Redis buckets; settle or cancel it exactly once, on its limiter.

    Attributes:
        clips: per bucket booked (``RedisRateLimiter.bucket_names`` order), the bucket's clip
            counter at the booking (a refund is dropped once it moved).
        booking: the booking's id in the buckets' pending sets (cancelling it gives its place
            in the queue back).
    """

    clips: tuple[int, ...] = ()
    booking: str = ""


@dataclass(frozen=True)
class _Booked:
    admitted_at: float
    wait: float
    clips: tuple[int, ...]
    booking: str = ""


class RedisRateLimiter(RateLimiter):
    """Token buckets for RPM, counted ITPM and OTPM in Redis, shared by a fleet of processes.

    A ``RateLimiter`` (so ``ChatClaudeRelay(rate_limiter=...)`` books tokens on it) with the same
    public methods: ``acquire``, ``aacquire``, ``settle``, ``cancel``, ``available``, ``stats``.

    Args:
        rpm: requests per minute, or ``None`` (not enforced).
        itpm: counted input tokens per minute, or ``None``.
        otpm: output tokens per minute, or ``None``.
        redis: a ``redis://`` URL, a ``redis.Redis``, or ``None`` for ``$CLAUDE_RELAY_STATE``.
        key: names the account (e.g. ``chat_models.relay_limiter_key(...)``); hashed, so it may
            hold an API key's hash. Processes share buckets when Redis, namespace, key and
            limits are the same.
        namespace: separates fleets or environments sharing one Redis.
        clock: monotonic seconds for the local fallback (Redis uses its own clock).
        sleep: blocking sleep used by ``acquire``.
        asleep: awaitable sleep used by ``aacquire``.
        retry_after: seconds between attempts to reach Redis while it is down.
        local_share: the fraction of the limits this process uses while Redis is down
            (default: one over the processes seen on the buckets, at least 1).

    Raises:
        RequestValidationError: if a limit is not a positive number or ``None``, or
            ``local_share`` is not in (0, 1].
        ValueError: for an invalid namespace or URL.
        ImportError: if the ``redis`` package is not installed.
    """

    def __init__(
        self,
        rpm: float | None = None,
        itpm: float | None = None,
        otpm: float | None = None,
        *,
        redis: Any = None,
        key: str = "default",
        namespace: str = "default",
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        asleep: AsyncSleep = asyncio.sleep,
        retry_after: float | None = None,
        local_share: float | None = None,
    ) -> None:
        super().__init__(rpm, itpm, otpm, clock=clock, sleep=sleep, asleep=asleep)
        if local_share is not None and not 0 < local_share <= 1:
            msg = f"local_share must be a fraction in (0, 1], got {local_share!r}"
            raise RequestValidationError(msg)
        self.client = resolve_client(redis)
        self.namespace = check_namespace(namespace)
        self.health = health_for(self.client, retry_after)
        self.local_share = local_share
        limits = self.limits
        self.bucket_names = tuple(n for n in _NAMES if getattr(limits, n) is not None)
        self._capacity = {n: float(getattr(limits, n)) for n in self.bucket_names}
        account = f"{key}|{limits.rpm}|{limits.itpm}|{limits.otpm}"
        digest = hashlib.sha256(account.encode()).hexdigest()[:16]
        base = f"claude-relay:{{{self.namespace}:limiter:{digest}}}"
        self._keys = {n: f"{base}:{n}" for n in self.bucket_names}
        self._pending_keys = {n: f"{base}:{n}:pending" for n in self.bucket_names}
        self._members_key = f"{base}:members"
        self._member = uuid.uuid4().hex
        self._acquire_script = self.client.register_script(_ACQUIRE)
        self._adjust_script = self.client.register_script(_ADJUST)
        self._levels_script = self.client.register_script(_LEVELS)
        self._open_remote: dict[int, RedisReservation] = {}
        self._local_owner: dict[int, tuple[Reservation, RateLimiter]] = {}
        self._local: RateLimiter | None = None
        self._local_outage = -1
        self.fleet_size = 1
        """Processes seen booking on these buckets in the last two minutes (at the last booking)."""
        self._counters: dict[str, float] = dict.fromkeys(_REDIS_STAT_NAMES, 0)

    def __repr__(self) -> str:
        limits = self.limits
        return (
            f"RedisRateLimiter(rpm={limits.rpm}, itpm={limits.itpm}, otpm={limits.otpm}, "
            f"redis={server_location(self.client)!r})"
        )

    @property
    def degraded(self) -> bool:
        """Whether Redis is down and bookings use the local fallback."""
        return not self.health.up

    # -- Redis calls --------------------------------------------------------------------------

    def _book_remote(
        self, amounts: Mapping[str, int], *, blocking: bool, max_wait: float | None = None
    ) -> _Booked | None:
        """Book on Redis; ``None`` when Redis is down (book locally). Raises nothing else.

        A booking that would wait longer than allowed (``blocking=False``: at all; else
        ``max_wait`` if given) books nothing and returns ``_Booked`` with ``admitted_at=-1``.
        """
        names = [n for n in self.bucket_names if n in amounts]
        allowed = 0.0 if not blocking else (-1.0 if max_wait is None else float(max_wait))
        booking = uuid.uuid4().hex
        args: list[Any] = [len(names), repr(allowed), WINDOW_SECONDS, self._member, booking]
        for name in names:
            args += [self._capacity[name], amounts[name]]
        keys = [self._keys[n] for n in names]
        keys += [self._pending_keys[n] for n in names]
        keys.append(self._members_key)
        done = self.health.call(lambda: self._acquire_script(keys=keys, args=args), _WHAT)
        if done is None:
            return None
        reply = done[0]
        if reply[0] == b"0":
            return _Booked(-1.0, float(reply[1]), ())
        admitted_at, now = float(reply[1]), float(reply[2])
        clips = tuple(int(c) for c in reply[3 : 3 + len(names)])
        self.fleet_size = max(1, int(reply[-1]))
        return _Booked(admitted_at, max(0.0, admitted_at - now), clips, booking)

    def _adjust_remote(
        self, deltas: Mapping[str, float], clips: Mapping[str, int], *, cancelled: str = ""
    ) -> bool:
        """Apply refunds (> 0) and charges (< 0) to the Redis buckets; ``False`` if down.

        ``cancelled`` names a booking being cancelled: it leaves the buckets' queues (every
        bucket in ``deltas`` is then adjusted, even by 0, as it was booked).
        """
        names = [n for n in self.bucket_names if n in deltas and (deltas[n] or cancelled)]
        if not names:
            return True
        args: list[Any] = [len(names), WINDOW_SECONDS, cancelled]
        for name in names:
            args += [self._capacity[name], repr(float(deltas[name])), clips.get(name, -1)]
        keys = [self._keys[n] for n in names] + [self._pending_keys[n] for n in names]
        return (
            self.health.call(lambda: self._adjust_script(keys=keys, args=args), _WHAT) is not None
        )

    def _local_limiter(self) -> RateLimiter:
        """The fallback for this outage: this process's share of the limits, in memory."""
        with self._lock:
            if self._local is None or self._local_outage != self.health.outages:
                share = self.local_share or 1.0 / max(1, self.fleet_size)
                limits = {
                    k: None if v is None else v * share for k, v in asdict(self.limits).items()
                }
                self._local = RateLimiter(
                    **limits, clock=self._clock, sleep=self._sleep, asleep=self._asleep
                )
                self._local_outage = self.health.outages
                logger.info("rate limiter: local fallback with %.3g of the limits", share)
            return self._local

    # -- booking ------------------------------------------------------------------------------

    def _amounts(
        self, estimated_input: object, estimated_output: object, *, blocking: bool, count: bool
    ) -> tuple[dict[str, int], bool]:
        """The amounts to book and whether this is LangChain's form (no estimates)."""
        if self._is_hook_form(estimated_input, estimated_output, blocking=blocking):
            return {"rpm": 1}, True
        return reservation_amounts(estimated_input, estimated_output, count_request=count), False

    def _count_booking(self, amounts: Mapping[str, int], wait: float, *, remote: bool) -> None:
        """Count one booking in ``stats()`` (the caller holds the lock)."""
        capacity = self._capacity
        oversize = any(n > capacity[name] for name, n in amounts.items() if name in capacity)
        count_booking(self._counters, amounts.get("rpm", 0), oversize=oversize, wait=wait)
        self._counters["redis_bookings" if remote else "local_bookings"] += 1

    def _count_reservation(self, reservation: Reservation, *, remote: bool) -> None:
        """Count one token reservation in ``stats()`` (the caller holds the lock)."""
        counters = self._counters
        counters["reservations"] += 1
        counters["estimated_input_tokens"] += reservation.input_tokens
        counters["estimated_output_tokens"] += reservation.output_tokens
        amounts = {
            "rpm": int(reservation.counts_request),
            "itpm": reservation.input_tokens,
            "otpm": reservation.output_tokens,
        }
        self._count_booking(amounts, reservation.waited, remote=remote)

    def _admitted(
        self,
        amounts: Mapping[str, int],
        booked: _Booked,
        *,
        hook: bool,
        blocking: bool = True,
        max_wait: float | None = None,
    ) -> Reservation | bool:
        """Record a Redis booking: its reservation, or ``True`` in LangChain's form.

        ``False`` when a non-blocking booking would have had to wait (nothing was booked).

        Raises:
            APITimeoutError: when a blocking one would have waited longer than ``max_wait``.
        """
        if booked.admitted_at < 0:
            if blocking:
                raise wait_past_deadline_error(booked.wait, float(max_wait or 0))
            return False
        if not hook:
            return self._reservation(amounts, booked)
        with self._lock:
            self._count_booking(amounts, booked.wait, remote=True)
        return True

    def _reservation(self, amounts: Mapping[str, int], booked: _Booked) -> RedisReservation:
        with self._lock:
            reservation = RedisReservation(
                id=next(self._ids),
                input_tokens=amounts["itpm"],
                output_tokens=amounts["otpm"],
                counts_request=bool(amounts["rpm"]),
                admitted_at=booked.admitted_at,
                waited=booked.wait,
                clips=booked.clips,
                booking=booked.booking,
            )
            self._open_remote[reservation.id] = reservation
            self._count_reservation(reservation, remote=True)
        return reservation

    def _abandon(self, admitted: Reservation | bool, booking: str) -> None:
        """Undo a Redis booking whose wait was interrupted (request, tokens, place)."""
        if isinstance(admitted, Reservation):
            self.cancel(admitted)
            return
        # not admitted yet: the bucket cannot have clipped
        self._adjust_remote({"rpm": 1}, {}, cancelled=booking)
        with self._lock:
            self._counters["requests"] -= 1

    def _local_fallback(self, *, hook: bool) -> RateLimiter:
        """The local limiter to book on while Redis is down (a LangChain-form booking counted)."""
        local = self._local_limiter()
        if hook:
            with self._lock:
                self._counters["local_bookings"] += 1
        return local

    def _track_local(self, reservation: Reservation, limiter: RateLimiter) -> Reservation:
        """Remember which local limiter made a reservation, and count it."""
        with self._lock:
            self._local_owner[id(reservation)] = (reservation, limiter)
            self._count_reservation(reservation, remote=False)
        return reservation

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
        """Book a request on the shared buckets, sleeping until they allow it.

        Same forms and arguments as ``RateLimiter.acquire``; falls back to a local limiter
        while Redis is down.

        Returns:
            The reservation (a ``RedisReservation`` when booked on Redis); in LangChain's form,
            whether the request was admitted.

        Raises:
            RequestValidationError: for a negative or non-numeric estimate or ``max_wait``, or
                ``blocking=False`` with estimates.
            APITimeoutError: if the buckets would make the call wait longer than ``max_wait``
                (nothing is booked).
        """
        check_max_wait(max_wait)
        amounts, hook = self._amounts(
            estimated_input_tokens, estimated_output_tokens, blocking=blocking, count=count_request
        )
        booked = self._book_remote(amounts, blocking=blocking, max_wait=max_wait)
        if booked is None:
            local = self._local_fallback(hook=hook)
            if hook:
                return local.acquire(blocking=blocking, max_wait=max_wait)
            reservation = local.acquire(
                amounts["itpm"], amounts["otpm"], count_request=count_request, max_wait=max_wait
            )
            return self._track_local(reservation, local)
        admitted = self._admitted(amounts, booked, hook=hook, blocking=blocking, max_wait=max_wait)
        if admitted is not False and booked.wait > 0:
            try:
                self._sleep(booked.wait)
            except BaseException:
                self._abandon(admitted, booked.booking)
                raise
        return admitted

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
        """Async ``acquire``: the Redis call runs in a worker thread, the wait on ``asleep``.

        A task cancelled while it waits gets its booking undone.

        Returns:
            As for ``acquire``.

        Raises:
            RequestValidationError: as for ``acquire``.
            APITimeoutError: as for ``acquire``.
        """
        check_max_wait(max_wait)
        amounts, hook = self._amounts(
            estimated_input_tokens, estimated_output_tokens, blocking=blocking, count=count_request
        )
        booked = await asyncio.to_thread(
            self._book_remote, amounts, blocking=blocking, max_wait=max_wait
        )
        if booked is None:
            local = self._local_fallback(hook=hook)
            if hook:
                return await local.aacquire(blocking=blocking, max_wait=max_wait)
            reservation = await local.aacquire(
                amounts["itpm"], amounts["otpm"], count_request=count_request, max_wait=max_wait
            )
            return self._track_local(reservation, local)
        admitted = self._admitted(amounts, booked, hook=hook, blocking=blocking, max_wait=max_wait)
        if admitted is not False and booked.wait > 0:
            try:
                await self._asleep(booked.wait)
            except BaseException:
                self._abandon(admitted, booked.booking)
                raise
        return admitted

    def _take(self, reservation: Reservation) -> RateLimiter | None:
        """Close a reservation's bookkeeping: ``None`` for a Redis one, else its local limiter.

        Raises:
            RequestValidationError: if the reservation is not open on this limiter.
        """
        with self._lock:
            if (
                isinstance(reservation, RedisReservation)
                and self._open_remote.get(reservation.id) is reservation
            ):
                del self._open_remote[reservation.id]
                return None
            owner = self._local_owner.pop(id(reservation), None)
            if owner is not None and owner[0] is reservation:
                return owner[1]
            if owner is not None:  # a different object with a recycled id: put it back
                self._local_owner[id(owner[0])] = owner
        raise not_open_error(reservation)

    def _remote_charge(self, name: str, estimate: float, real: float) -> float:
        """What settling charges shared bucket ``name`` (``settled_charge``)."""
        capacity = self._capacity.get(name)
        return real if capacity is None else settled_charge(estimate, real, capacity)

    def _clips(self, reservation: RedisReservation) -> dict[str, int]:
        # Every bucket is booked for a reservation (rpm with 0 when the request is not counted).
        return dict(zip(self.bucket_names, reservation.clips, strict=False))

    def settle(self, reservation: Reservation, usage: NormalizedUsage, model: str) -> None:
        """Replace a reservation's estimates with the call's real counted tokens.

        Args:
            reservation: what ``acquire`` returned, not yet settled or cancelled.
            usage: the call's normalized usage.
            model: the model id, which decides whether cache reads count.

        Raises:
            RequestValidationError: if the reservation is not open on this limiter.
        """
        counted_input = counted_input_tokens(usage, model)
        local = self._take(reservation)
        if local is not None:
            local.settle(reservation, usage, model)
        else:
            assert isinstance(reservation, RedisReservation)  # noqa: S101 -- _take checked
            deltas = {
                "itpm": reservation.input_tokens
                - self._remote_charge("itpm", reservation.input_tokens, counted_input),
                "otpm": reservation.output_tokens
                - self._remote_charge("otpm", reservation.output_tokens, usage.output_tokens),
            }
            if not self._adjust_remote(deltas, self._clips(reservation)):
                with self._lock:
                    self._counters["unsettled"] += 1
        with self._lock:
            self._counters["settled"] += 1
            self._counters["settled_input_tokens"] += counted_input
            self._counters["settled_output_tokens"] += usage.output_tokens

    def cancel(self, reservation: Reservation) -> None:
        """Undo a reservation whose call failed before it was billed (request and tokens).

        Args:
            reservation: what ``acquire`` returned, not yet settled or cancelled.

        Raises:
            RequestValidationError: if the reservation is not open on this limiter.
        """
        local = self._take(reservation)
        if local is not None:
            local.cancel(reservation)
        else:
            assert isinstance(reservation, RedisReservation)  # noqa: S101 -- _take checked
            deltas = {
                "rpm": int(reservation.counts_request),
                "itpm": reservation.input_tokens,
                "otpm": reservation.output_tokens,
            }
            clips = self._clips(reservation)
            if not self._adjust_remote(deltas, clips, cancelled=reservation.booking):
                with self._lock:
                    self._counters["unsettled"] += 1
        with self._lock:
            self._counters["cancelled"] += 1
            self._counters["requests"] -= int(reservation.counts_request)

    def available(self) -> dict[str, float]:
        """What each shared bucket holds now (negative while in debt); local ones while down.

        Returns:
            ``{"rpm": ..., "itpm": ..., "otpm": ...}`` for the limits that are set.
        """
        names = list(self.bucket_names)
        if not names:
            return {}
        keys = [self._keys[n] for n in names]
        args = [WINDOW_SECONDS, *(self._capacity[n] for n in names)]
        done = self.health.call(lambda: self._levels_script(keys=keys, args=args), _WHAT)
        if done is None:
            return self._local_limiter().available()
        return {n: float(v) for n, v in zip(names, done[0][1:], strict=True)}

    def stats(self) -> dict[str, float]:
        """Counters of this process since creation (JSON-able numbers).

        Returns:
            ``RateLimiter.stats()``'s counters, plus ``redis_bookings`` / ``local_bookings``
            (where bookings were made), ``unsettled`` (Redis bookings whose settle or cancel
            could not reach Redis), ``fleet_size`` and ``outages`` (Redis outages seen by
            this process).
        """
        with self._lock:
            open_count = len(self._open_remote) + len(self._local_owner)
            return {
                **self._counters,
                "open": open_count,
                "fleet_size": self.fleet_size,
                "outages": self.health.outages,
            }

    def clear(self) -> None:
        """Delete the shared buckets in Redis (tests; after the account's limits were reset)."""
        self.client.delete(*self._keys.values(), *self._pending_keys.values(), self._members_key)


_shared: dict[tuple[str, str, str], RedisRateLimiter] = {}
_shared_lock = threading.Lock()


def shared_redis_limiter(
    key: str,
    limits: RateLimits | str,
    *,
    redis: str | None = None,
    namespace: str = "default",
) -> RedisRateLimiter:
    """The process-wide ``RedisRateLimiter`` for an account key (the fleet's ``shared_limiter``).

    Args:
        key: the account key (e.g. ``chat_models.relay_limiter_key(base_url, api_key, limits)``).
        limits: a preset name (``"tier1"``...) or ``RateLimits``.
        redis: a Redis URL (default ``$CLAUDE_RELAY_STATE``).
        namespace: the key namespace.

    Returns:
        The same limiter for the same URL, namespace, key and limits.

    Raises:
        RequestValidationError: for an unknown preset or invalid limits.
        ValueError: without a URL when the environment names no Redis.
    """
    wanted = preset_limits(limits) if isinstance(limits, str) else limits
    url = redis if redis is not None else redis_url()
    if url is None:
        msg = "shared_redis_limiter needs a Redis URL: pass redis=... or set CLAUDE_RELAY_STATE"
        raise ValueError(msg)
    identity = (url, namespace, f"{key}|{wanted}")
    with _shared_lock:
        limiter = _shared.get(identity)
        if limiter is None:
            limiter = RedisRateLimiter(**asdict(wanted), redis=url, key=key, namespace=namespace)
            _shared[identity] = limiter
        return limiter


def clear_shared_redis_limiters() -> None:
    """Forget every process-wide Redis limiter (tests)."""
    with _shared_lock:
        _shared.clear()
