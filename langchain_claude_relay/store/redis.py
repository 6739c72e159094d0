"""The planner's state store on Redis, shared by a fleet of workers (and the warm marks it reads).

``RedisStore`` implements ``store.StateStore`` on one Redis server, so every worker's planner
learns from every worker's calls: token calibration (``k:``), learned minimums (``m:``), reuse
records per prefix and template (``p:``, ``t:``), conversation lineages (``c:``) and the
stability history (``s:``). Select it with ``CachePlanner(store=RedisStore("redis://..."))`` or
with ``CLAUDE_RELAY_STATE=redis://...`` (``store_from_env``).

**What Redis holds.** Keys are namespaced, ``claude-relay:<namespace>:<kind>:<keyed hash>``,
and every key expires (``expire`` seconds, or ``default_expire`` when the caller gives none).
The last part is a keyed hash of the store key (``_plumbing.keyed_hash``), so that a prefix hash
in Redis cannot be matched against a guessed prompt without the fleet's key: every worker reads
that key from ``claude-relay:<namespace>:hash-key`` (the first worker creates it with ``SET
NX``; a worker puts it back if it disappears: ``FleetKey``), unless ``hash_key=`` or
``$CLAUDE_RELAY_HASH_KEY`` gives one. Values are
numbers and hashes only: a number is a Redis string holding it (so ``incr`` is one atomic
``INCRBYFLOAT``); a dict is a Redis hash of its fields; a list is a Redis hash of its items under
``"0"``, ``"1"``... A field ``"#"`` tells them apart (``-1``: a dict; ``n``: a list of ``n``).
A field holding a list of numbers stores it as a JSON array of numbers. ``store.check_value``
refuses text, so no prompt text reaches Redis.

**What is read back.** Nothing stored is trusted: a value over ``MAX_VALUE_FIELDS`` fields or
``MAX_VALUE_BYTES`` bytes is not even sent by Redis (the read script checks first), a list's
length is the number of item fields present (never the ``#`` field's number), and a value that
is not numbers as this store writes them (text, a broken JSON array, stray fields) is a store
failure for that key: one ``StateStoreWarning``, and the key reads as missing until rewritten.

**Atomicity.** ``get``, ``set``, ``delete`` and ``incr`` are each one atomic Redis call.
``transact()`` holds this store's lock (other threads of the process wait, as with the other
stores) and buffers the writes made inside it; they are sent in one ``MULTI``/``EXEC``, so other
processes see all of them or none (reads inside see the buffered writes). Across processes
``set`` is last-writer-wins per key, as with ``DiskStore``; ``incr`` deltas all count.

**Writes.** ``set``, ``delete`` and the writes of a ``transact()`` block change this process's
view at once and are sent by a background thread (write-behind, as ``DiskStore`` commits): the
writes queued while one ``MULTI``/``EXEC`` is in flight go together in the next, so
``CachePlanner.observe`` never waits for Redis. Other workers see them within a round trip or
two; ``flush()``, ``close()`` and interpreter exit send what is queued (``background=False``
sends inside the call). ``incr`` outside a transaction is sent at once: it returns the total
of every process's increments.

**Reads.** A key this store has just read or written is served from memory for ``refresh``
seconds (one second by default, as ``DiskStore``), misses included: ``plan()`` then costs what
it costs on the in-memory store, and another worker's write shows within ``refresh`` seconds.

**Redis down.** Every operation falls back to a local ``MemoryStore`` that mirrors the values
this process last read or wrote (so planning goes on with what it knew), with one warning per
process (``RedisStateWarning``); Redis is tried again every ``retry_after`` seconds
and used again as soon as it answers. The writes Redis missed meanwhile (statistics learned
during the outage: sets, deletes, increments) are kept, merged per key, and sent before the
next writes once Redis answers again, so the fleet's counts include them (an increment adds its
delta to what other workers added meanwhile; a set is the newest value, as always). The writer
thread tries Redis again every ``retry_after`` seconds while any wait. At most ``_MIRROR_KEYS``
keys are kept: beyond, the oldest are dropped (logged). A process that exits while Redis is
still down loses them. An increment whose call timed out is not kept (Redis may run it after
all); a batch whose reply was lost to a failure after Redis applied it is sent again, so its
increments would count twice (the planner itself only sets and deletes: ``incr`` serves other
users of the ``StateStore`` protocol). A write Redis refuses inside a
batch is logged; the rest of the batch has landed and is not sent again.

**Warm marks.** ``store.warm.WarmPrefixRegistry.mark`` records, the moment a response that
writes a prefix begins, that the prefix is cached until a given time. ``RedisStore.get`` of the
prefix's planner record (``p:<hash>``) overlays that mark on the record's ``cu`` / ``ct``
fields (cached until, its TTL), which is exactly what ``CachePlanner.plan`` reads to predict a
read: worker B's plan predicts reading what worker A has just written, before A's ``observe``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from langchain_claude_relay._env import hash_key as hash_key_from_env
from langchain_claude_relay._env import redis_url
from langchain_claude_relay._plumbing import (
    HASH_KEY_BYTES,
    WriteBehind,
    keyed_hash,
    new_hash_key,
    on_exit_and_fork,
    warn_once,
)
from langchain_claude_relay._redis import check_namespace, health_for, resolve_client
from langchain_claude_relay.errors import StateStoreWarning
from langchain_claude_relay.store.base import check_key, check_value
from langchain_claude_relay.store.memory import MemoryStore

__all__ = [
    "KEY_PREFIX",
    "DEFAULT_EXPIRE",
    "MAX_VALUE_FIELDS",
    "MAX_VALUE_BYTES",
    "RedisStore",
    "KEY_CHECK_SECONDS",
    "FleetKey",
    "FleetKeyError",
    "fleet_hash_key",
    "store_from_env",
]

KEY_PREFIX = "claude-relay"
"""First part of every Redis key this package writes."""

DEFAULT_EXPIRE = 30 * 86400.0
"""Seconds a key lives when the caller gives no expiry (the planner gives one for every key)."""

DEFAULT_REFRESH = 1.0
"""Seconds a ``RedisStore`` serves a key it has just read or written from memory."""

KEY_CHECK_SECONDS = 60.0
"""How often a worker checks that the fleet's hash key is still in Redis (``FleetKey``)."""

logger = logging.getLogger("langchain_claude_relay.store")

_EXIT_TIMEOUT = 5.0  # at interpreter exit, never wait longer than this

_MIRROR_KEYS = 20_000  # values kept locally for an outage (the mirror restarts beyond it)
_TYPE_FIELD = "#"
_DICT = -1
_PREFIX_RECORD = re.compile(r"p:([0-9a-f]{1,64})")

MAX_VALUE_FIELDS = 10_000
"""A stored hash with more fields than this is not read (the planner writes far fewer)."""

MAX_VALUE_BYTES = 1 << 20
"""A stored value longer than this many bytes in all is not read."""

_MAX_NUMBER_BYTES = 64  # a warm mark's field longer than this is not a number

# One round trip for a read: the value whatever its type (unless it is too large to be one of
# ours: then only the kind 'oversized'), and for a prefix record the warm mark.
_GET = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local value = ''
local max_bytes = tonumber(ARGV[2])
if kind == 'string' then
  if redis.call('STRLEN', KEYS[1]) > max_bytes then
    kind = 'oversized'
  else
    value = redis.call('GET', KEYS[1])
  end
elseif kind == 'hash' then
  if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[1]) then
    kind = 'oversized'
  else
    value = redis.call('HGETALL', KEYS[1])
    local total = 0
    for _, item in ipairs(value) do total = total + #item end
    if total > max_bytes then
      kind = 'oversized'
      value = ''
    end
  end
end
local warm = {}
if #KEYS > 1 then
  warm = redis.call('HMGET', KEYS[2], 'cu', 'ct')
  for i = 1, 2 do
    if warm[i] and #warm[i] > tonumber(ARGV[3]) then warm[i] = false end
  end
end
return {kind, value, warm}
"""

# INCRBYFLOAT, replacing a value that is not a number, keeping (or giving) an expiry.
_INCR = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'string' then
  if tonumber(redis.call('GET', KEYS[1])) == nil then redis.call('DEL', KEYS[1]) end
elseif kind ~= 'none' then
  redis.call('DEL', KEYS[1])
end
local value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return value
"""

# A warm mark only moves forward: the later expiry wins.
_MARK = """
local current = tonumber(redis.call('HGET', KEYS[1], 'cu'))
if current ~= nil and current >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'cu', ARGV[1], 'ct', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_SET, _DELETE, _INCR_OP = range(3)


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class FleetKeyError(RuntimeError):
    """The fleet's hash key in Redis is damaged (a store failure, not a bad argument).

    Not a ``ValueError``: ``ResilientStore`` re-raises those as the caller's bugs, while a
    damaged key read back from Redis must degrade planning to memory with one warning.
    """


class _Malformed(ValueError):
    """A stored value that is not one this store writes (planted or damaged)."""


def _parse_number(raw: bytes | str) -> float | int:
    """A stored number.

    Raises:
        _Malformed: if it is not one.
    """
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        if len(text) > _MAX_NUMBER_BYTES:
            raise ValueError(text[:8])
        try:
            return int(text)
        except ValueError:
            value = float(text)
    except ValueError as exc:
        msg = "not a number"
        raise _Malformed(msg) from exc
    return value if math.isfinite(value) else 0.0


def _field_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return _number_text(value)


def _parse_field(raw: bytes) -> Any:
    """A stored field: a number, or a JSON array of numbers.

    Raises:
        _Malformed: for anything else.
    """
    if raw[:1] == b"[":
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            msg = "not a JSON array"
            raise _Malformed(msg) from exc
    return _parse_number(raw)


def _hash_of(value: Any) -> dict[str, str]:
    """The Redis hash of a dict or list value (checked before)."""
    if isinstance(value, dict):
        fields = {name: _field_text(item) for name, item in value.items()}
        fields[_TYPE_FIELD] = str(_DICT)
        return fields
    fields = {str(i): _field_text(item) for i, item in enumerate(value)}
    fields[_TYPE_FIELD] = str(len(value))
    return fields


def _value_of_hash(pairs: list[bytes]) -> Any:
    """A dict or list from ``HGETALL``'s flat reply (fields without ``#`` read as a dict).

    The ``#`` field tells a dict (``-1``) from a list (its count): a list is the item fields
    present, which must be ``"0"`` to ``"n-1"`` and as many as the count says; its length is
    never taken from the stored count (``HSET k '#' 1000000000000`` is one field, refused, not
    a trillion to look for).

    Raises:
        _Malformed: if the fields are not a value this store writes.
    """
    if len(pairs) > 2 * MAX_VALUE_FIELDS + 2:
        msg = "too many fields"
        raise _Malformed(msg)
    try:
        fields = {pairs[i].decode("ascii"): pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}
    except UnicodeDecodeError as exc:
        msg = "a field name that is not ASCII"
        raise _Malformed(msg) from exc
    kind = fields.pop(_TYPE_FIELD, None)
    length = _DICT if kind is None else _parse_number(kind)
    value: Any
    if length == _DICT:
        value = {name: _parse_field(raw) for name, raw in fields.items()}
    else:
        names = {str(i) for i in range(len(fields))}  # the fields present, never the count
        if length != len(fields) or fields.keys() != names:
            msg = f"a list of {len(fields)} items whose count field says {length!r}"
            raise _Malformed(msg)
        value = [_parse_field(fields[str(i)]) for i in range(len(fields))]
    try:
        check_value(value)
    except ValueError as exc:
        msg = "a value the store does not hold"
        raise _Malformed(msg) from exc
    return value


def _decode_reply(reply: list[Any]) -> Any:
    """The value of a read's reply (``None``: no key).

    Raises:
        _Malformed: for a value this store did not write (too large, text, stray fields).
    """
    kind = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    if kind == "string":
        return _parse_number(reply[1])
    if kind == "hash":
        return _value_of_hash(list(reply[1]))
    if kind == "none":
        return None
    msg = f"a Redis {kind} value"
    raise _Malformed(msg)


def _overlay_warm(value: Any, warm: list[Any]) -> Any:
    """A prefix record with a later warm mark applied to its ``cu``/``ct`` fields."""
    if not warm or not warm[0]:
        return value
    try:
        until, ttl = float(_parse_number(warm[0])), float(_parse_number(warm[1] or b"0"))
    except _Malformed:  # a damaged mark is no mark
        return value
    record = dict(value) if isinstance(value, dict) else {}
    known = record.get("cu")
    if not isinstance(known, (int, float)) or until > known:
        record["cu"], record["ct"] = until, ttl
    return record


class RedisStore:
    """The planner's ``StateStore`` on Redis: namespaced, expiring keys of numbers and hashes.

    Args:
        redis: a ``redis://`` URL, a ``redis.Redis`` client, or ``None`` for
            ``$CLAUDE_RELAY_STATE``. A URL gets short timeouts (``redis_conn.redis_client``);
            a client of your own should have them too, or an outage waits out its retries.
        namespace: separates fleets or environments sharing one Redis (``a-z0-9_-``).
        default_expire: seconds a key lives when ``set`` gets no ``expire`` (and for ``incr``
            keys).
        retry_after: seconds between attempts to reach Redis while it is down (shared with
            the other Redis backends of this server in the process).
        refresh: seconds a key this store has just read or written is served from memory
            before Redis is asked again (misses and warm marks included), as ``DiskStore``
            does; ``0`` reads Redis every time. Other workers' writes show within this long.
        background: send writes from a background thread (``True``) or inside each call.
        hash_key: the key that keys the stored key names (default: ``fleet_hash_key``, shared
            by every worker on this Redis and namespace).

    Raises:
        ValueError: for an invalid namespace or URL, or ``None`` without the environment.
        ImportError: if the ``redis`` package is not installed.
    """

    def __init__(
        self,
        redis: Any = None,
        *,
        namespace: str = "default",
        default_expire: float = DEFAULT_EXPIRE,
        retry_after: float | None = None,
        refresh: float = DEFAULT_REFRESH,
        background: bool = True,
        hash_key: bytes | None = None,
    ) -> None:
        if not refresh >= 0:
            msg = f"refresh must be seconds >= 0 (0: always read Redis), got {refresh!r}"
            raise ValueError(msg)
        if not default_expire > 0:
            msg = f"default_expire must be a positive number of seconds, got {default_expire!r}"
            raise ValueError(msg)
        self.client = resolve_client(redis)
        self.namespace = check_namespace(namespace)
        self.default_expire = float(default_expire)
        self.health = health_for(self.client, retry_after)
        self._prefix = f"{KEY_PREFIX}:{self.namespace}:"
        self._fleet_key = FleetKey(self.client, self.namespace, hash_key)
        self._get_script = self.client.register_script(_GET)
        self._incr_script = self.client.register_script(_INCR)
        self._mark_script = self.client.register_script(_MARK)
        self.refresh = float(refresh)
        self._mirror = MemoryStore(clock=time.time)  # what this process last read or wrote
        self._fresh: dict[str, float] = {}  # key -> when the mirror last agreed with Redis
        # Local writes per key since the mirror was last reset (and how many resets): a read
        # in flight while this process writes the key must not put the older value back.
        self._written: dict[str, int] = {}
        self._resets = 0
        self._mirror_lock = threading.Lock()
        self._marks: dict[str, list[Any]] = {}  # prefix record key -> its last warm mark
        self._lock = threading.RLock()
        self._tx: dict[str, tuple[int, Any]] | None = None
        self.background = background
        self._init_writer()
        on_exit_and_fork(self)

    def _init_writer(self) -> None:
        """The write-behind queue and its thread (again in a forked child: empty)."""
        self._queue_lock = threading.Lock()
        self._queue: dict[str, tuple[int, Any]] = {}  # merged writes not yet taken
        self._sending: dict[str, tuple[int, Any]] = {}  # the batch in flight
        # Writes Redis missed (it was down), merged per key, sent first once it answers (a
        # forked child starts without them: its parent sends them).
        self._backlog: dict[str, tuple[int, Any]] = {}
        self._backlog_overflowed = False  # warned that the backlog dropped writes (this outage)
        self._writer = WriteBehind(
            "claude-relay-redis-store",
            take=self._take,
            send=self._send,
            retry_interval=self._retry_interval,
        )

    def _retry_interval(self) -> float | None:
        """While writes wait for Redis, try it every ``retry_after`` s, without a new write."""
        return max(0.05, self.health.retry_after) if self._backlog else None

    def __repr__(self) -> str:
        return f"RedisStore({self.health.location!r}, namespace={self.namespace!r})"

    @property
    def degraded(self) -> bool:
        """Whether Redis is down and the store runs on local state."""
        return not self.health.up

    def redis_key(self, key: str) -> str:
        """The Redis key of a store key: ``claude-relay:<namespace>:<kind>:<keyed hash>``.

        Raises:
            redis.RedisError: if the fleet's hash key has not been read yet and Redis is down
                (call it inside ``call``).
        """
        kind = key.partition(":")[0]
        return f"{self._prefix}{kind}:{keyed_hash(self._fleet_key.get(), key)}"

    def _malformed(self, key: str, exc: _Malformed) -> None:
        warn_once(
            ("redis_value", self.health.location, self.namespace),
            f"langchain-claude-relay's state in Redis ({self.health.location}, namespace "
            f"{self.namespace!r}) holds a value it did not write under {key!r} ({exc}); the key "
            "is ignored until it is written again. Another program may be writing into the "
            "namespace.",
            StateStoreWarning,
        )

    def _ms(self, expire: float | None) -> int:
        seconds = self.default_expire if expire is None else expire
        return max(1, math.ceil(seconds * 1000))

    # -- falling back ---------------------------------------------------------------------------

    def call(self, action: Callable[[], Any]) -> tuple[Any] | None:
        """Run a Redis action: ``(result,)``, or ``None`` when Redis is (or just went) down."""
        return self.health.call(action, "the planner's state store")

    def _read_token(self, key: str) -> tuple[int, int]:
        """What a read starting now must find unchanged to be remembered (``_remember``)."""
        with self._mirror_lock:
            return self._resets, self._written.get(key, 0)

    def _count_local_write(self, key: str) -> tuple[int, int]:
        """Count a local write of ``key`` (a read in flight must not undo it); its token.

        The caller holds ``_mirror_lock``.
        """
        self._written[key] = self._written.get(key, 0) + 1
        return self._resets, self._written[key]

    def _remember(
        self,
        key: str,
        value: Any,
        expire: float | None = None,
        *,
        read: tuple[int, int] | None = None,
    ) -> bool:
        """Put a value in the mirror: a local write (``read=None``), or what Redis answered.

        Returns:
            Whether it was kept: a value read from Redis is not when this process wrote the key
            after the read began (the mirror then holds the newer value, still to be sent).
        """
        with self._mirror_lock:
            if read is not None and read != (self._resets, self._written.get(key, 0)):
                return False
            if len(self._mirror) > _MIRROR_KEYS or len(self._fresh) > _MIRROR_KEYS:
                self._mirror = MemoryStore(clock=time.time)
                self._fresh, self._marks, self._written = {}, {}, {}
                self._resets += 1
            if read is None:
                self._count_local_write(key)
            if value is None:
                self._mirror.delete(key)
            else:
                self._mirror.set(key, value, expire=expire)
            self._fresh[key] = time.monotonic()
            return True

    def _local(self, key: str, prefix: bool) -> Any:
        value = self._mirror.get(key)
        return _overlay_warm(value, self._marks.get(key, [])) if prefix else value

    # -- the protocol ---------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """See ``StateStore.get`` (a prefix record includes a newer warm mark)."""
        check_key(key)
        with self._lock:
            if self._tx is not None and key in self._tx:
                return self._pending_value(key)
        prefix = _PREFIX_RECORD.fullmatch(key)
        seen = self._fresh.get(key)
        if (seen is not None and time.monotonic() - seen < self.refresh) or self._unsent(key):
            return self._local(key, prefix is not None)
        names = [key] if prefix is None else [key, f"w:{prefix.group(1)}"]
        limits = [MAX_VALUE_FIELDS, MAX_VALUE_BYTES, _MAX_NUMBER_BYTES]
        token = self._read_token(key)
        done = self.call(
            lambda: self._get_script(keys=[self.redis_key(n) for n in names], args=limits)
        )
        if done is None:
            return self._local(key, prefix is not None)
        reply = done[0]
        try:
            value = _decode_reply(reply)
        except _Malformed as exc:
            self._malformed(key, exc)
            value = None
        if not self._remember(key, value, read=token):  # written meanwhile: that is newer
            return self._local(key, prefix is not None)
        if prefix is None:
            return value
        self._marks[key] = list(reply[2])
        return _overlay_warm(value, self._marks[key])

    def _pending_value(self, key: str) -> Any:
        assert self._tx is not None  # noqa: S101 -- callers check
        operation, payload = self._tx[key]
        if operation == _DELETE:
            return None
        return payload[1] if operation == _INCR_OP else payload[0]

    def set(self, key: str, value: Any, *, expire: float | None = None) -> None:
        """See ``StateStore.set`` (``expire=None``: ``default_expire``)."""
        check_key(key)
        check_value(value)
        if isinstance(value, tuple):
            value = list(value)
        with self._lock:
            if self._tx is not None:
                self._tx[key] = (_SET, (value, expire))
                self._remember(key, value, expire)
                return
        self._remember(key, value, expire)
        self._submit({key: (_SET, (value, expire))})

    def delete(self, key: str) -> None:
        """See ``StateStore.delete``."""
        check_key(key)
        with self._lock:
            self._remember(key, None)
            if self._tx is not None:
                self._tx[key] = (_DELETE, None)
                return
        self._submit({key: (_DELETE, None)})

    def incr(self, key: str, delta: float = 1.0) -> float:
        """See ``StateStore.incr`` (one atomic ``INCRBYFLOAT``; deltas of all processes count)."""
        check_key(key)
        check_value(delta)
        with self._lock:
            if self._tx is not None:
                return self._incr_in_transaction(key, float(delta))
        if self._unsent(key):  # a queued write to this key must land first
            self.flush()
        with self._mirror_lock:
            token = self._count_local_write(key)
        in_doubt = False

        def action() -> Any:
            nonlocal in_doubt
            try:
                return self._incr_script(
                    keys=[self.redis_key(key)], args=[repr(float(delta)), self._ms(None)]
                )
            except Exception as exc:  # a timeout: it was sent, and Redis may run it after all
                in_doubt = type(exc).__name__ == "TimeoutError"  # redis.exceptions.TimeoutError
                raise

        done = self.call(action)
        if done is None:
            with self._mirror_lock:
                value = self._mirror.incr(key, delta)
            if not in_doubt:  # one that timed out may have landed: replayed, it would count twice
                self._keep_for_later({key: (_INCR_OP, (float(delta), value))}, newest=True)
            return value
        value = float(_parse_number(done[0]))
        self._remember(key, value, read=token)  # unless a newer local write came meanwhile
        return value

    def _incr_in_transaction(self, key: str, delta: float) -> float:
        assert self._tx is not None  # noqa: S101 -- the caller holds the lock inside transact()
        pending = self._tx.get(key)
        if pending is None:
            current = self.get(key)
            base = float(current) if isinstance(current, (int, float)) else 0.0
            self._tx[key] = (_INCR_OP, (delta, base + delta))
            value = base + delta
        elif pending[0] == _INCR_OP:
            total, seen = pending[1]
            value = seen + delta
            self._tx[key] = (_INCR_OP, (total + delta, value))
        else:
            current = self._pending_value(key)
            base = float(current) if isinstance(current, (int, float)) else 0.0
            value = base + delta
            self._tx[key] = (_SET, (value, None))
        self._remember(key, value)
        return value

    @contextlib.contextmanager
    def transact(self) -> Iterator[None]:
        """See ``StateStore.transact``: the writes inside reach Redis in one ``MULTI``/``EXEC``.

        Reads inside see the buffered writes. The writes are sent when the outermost block
        ends, also when it ends with an exception (as the other stores keep writes made
        before one).
        """
        with self._lock:
            if self._tx is not None:  # nested: part of the outer transaction
                yield
                return
            self._tx = {}
            try:
                yield
            finally:
                writes, self._tx = self._tx, None
                if writes:
                    self._submit(writes)

    # -- write-behind -----------------------------------------------------------------------------

    def _unsent(self, key: str) -> bool:
        return key in self._queue or key in self._sending or key in self._backlog

    def _submit(self, writes: Mapping[str, tuple[int, Any]]) -> None:
        """Queue writes for the background thread (or send them now without ``background``)."""
        if not self.background:
            self._send_now(writes)
            return
        with self._queue_lock:
            for key, write in writes.items():
                self._queue[key] = _merge(self._queue.get(key), write)
        self._writer.queued()

    def _take(self) -> dict[str, tuple[int, Any]]:
        with self._queue_lock:
            batch, self._queue = self._queue, {}
            self._sending = batch
            return batch

    def _send(self, batch: dict[str, tuple[int, Any]]) -> None:
        try:
            self._send_now(batch)
        except Exception as exc:  # a bug, not an outage: keep the writer alive
            logger.warning("state store: a Redis write failed: %s", type(exc).__name__)
        finally:
            with self._queue_lock:
                self._sending = {}

    def _send_now(self, writes: Mapping[str, tuple[int, Any]]) -> None:
        """Send the writes Redis missed, then ``writes``; keep them all if it is still down."""
        with self._queue_lock:
            backlog, self._backlog = self._backlog, {}
            if backlog:  # in flight: reads see the local values
                writes = self._sending = _merged(backlog, writes)
        try:
            if writes and self.call(functools.partial(self._apply, writes)) is None:
                self._keep_for_later(writes, newest=False)
            elif writes:
                self._backlog_overflowed = False
        finally:
            if backlog and not self.background:  # ``_send`` clears it on the writer's path
                with self._queue_lock:
                    if self._sending is writes:
                        self._sending = {}

    def _keep_for_later(self, writes: Mapping[str, tuple[int, Any]], *, newest: bool) -> None:
        """Add writes Redis missed to the backlog: after what it holds (``newest``) or before."""
        with self._queue_lock:
            older, newer = (self._backlog, writes) if newest else (writes, self._backlog)
            backlog = _merged(older, newer)
            excess = len(backlog) - _MIRROR_KEYS
            if excess > 0:  # bounded: the oldest go (statistics Redis's copy relearns)
                for key in list(backlog)[:excess]:
                    del backlog[key]
                level = logging.DEBUG if self._backlog_overflowed else logging.WARNING
                self._backlog_overflowed = True  # once per outage
                logger.log(
                    level,
                    "state store: writes Redis missed over %d keys: oldest dropped",
                    _MIRROR_KEYS,
                )
            self._backlog = backlog

    def _apply(self, writes: Mapping[str, tuple[int, Any]]) -> None:
        """Send writes in one ``MULTI``/``EXEC`` (raises for the exchange; a refusal is logged).

        Now and then it first checks the fleet's hash key (``FleetKey.check``); when the key
        has changed, what was read under the old one is read again.
        """
        if self._fleet_key.check():
            self._fresh, self._marks = {}, {}
        pipe = self.client.pipeline(transaction=True)
        for key, (operation, payload) in writes.items():
            name = self.redis_key(key)
            if operation == _DELETE:
                pipe.delete(name)
            elif operation == _INCR_OP:
                self._incr_script(keys=[name], args=[repr(payload[0]), self._ms(None)], client=pipe)
            else:
                value, expire = payload
                if expire is not None and expire <= 0:
                    pipe.delete(name)
                elif isinstance(value, (int, float)):
                    pipe.set(name, _number_text(value), px=self._ms(expire))
                else:
                    pipe.delete(name)
                    pipe.hset(name, mapping=_hash_of(value))
                    pipe.pexpire(name, self._ms(expire))
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, Exception):  # Redis answered: the rest landed, do not replay
                logger.warning("state store: Redis refused a write: %s", result)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until the queued writes are sent (or kept for later: Redis is down).

        The writes Redis missed during an outage are sent too, if it answers now.

        Args:
            timeout: seconds to wait at most (``None``: no limit).
        """
        if not self._writer.flush(timeout, force=bool(self._backlog)):
            logger.warning("state store: Redis writes still queued after %s s", timeout)

    def close(self) -> None:
        """Send what is queued and release the Redis connections (it reconnects if used)."""
        self.flush(_EXIT_TIMEOUT)
        with contextlib.suppress(Exception):
            self.client.connection_pool.disconnect()

    def _at_exit(self) -> None:
        self.flush(_EXIT_TIMEOUT)

    def _after_fork_in_child(self) -> None:
        self._init_writer()

    # -- the warm-prefix registry's writes ------------------------------------------------------

    def mark_warm(self, prefix_hex: str, until: float, ttl: float, remaining: float) -> bool:
        """Record that a prefix is cached until ``until`` (see ``store.warm``).

        Returns:
            Whether Redis took the mark (an equal or later one wins).
        """
        args = [repr(float(until)), repr(float(ttl)), max(1, math.ceil(remaining * 1000))]
        known = _overlay_warm({}, self._marks.get(f"p:{prefix_hex}", [])).get("cu")
        if known is None or until > known:
            self._marks[f"p:{prefix_hex}"] = [args[0], args[1]]  # this process sees it at once
        done = self.call(
            lambda: self._mark_script(keys=[self.redis_key(f"w:{prefix_hex}")], args=args)
        )
        return False if done is None else bool(done[0])


def _merge(older: tuple[int, Any] | None, newer: tuple[int, Any]) -> tuple[int, Any]:
    """One queued write doing what ``older`` then ``newer`` do."""
    if older is None or newer[0] != _INCR_OP:
        return newer
    delta, seen = newer[1]
    if older[0] == _INCR_OP:
        return (_INCR_OP, (older[1][0] + delta, seen))
    if older[0] == _DELETE:
        return (_SET, (delta, None))
    value, expire = older[1]
    base = value if isinstance(value, (int, float)) else 0.0
    return (_SET, (float(base) + delta, expire))


def _merged(
    older: Mapping[str, tuple[int, Any]], newer: Mapping[str, tuple[int, Any]]
) -> dict[str, tuple[int, Any]]:
    """Writes doing what ``older`` then ``newer`` do, merged per key (``_merge``)."""
    merged = dict(older)
    for key, write in newer.items():
        merged[key] = _merge(merged.get(key), write)
    return merged


def fleet_hash_key(client: Any, namespace: str) -> bytes:
    """The key that keys a fleet's stored hashes, the same for every worker on one namespace.

    ``$CLAUDE_RELAY_HASH_KEY`` when set; else the random key in
    ``claude-relay:<namespace>:hash-key``, created by the first worker with ``SET NX`` (so
    workers starting together agree) and never expiring.

    Args:
        client: the Redis client.
        namespace: the fleet's namespace.

    Returns:
        The key.

    Raises:
        redis.RedisError: if Redis cannot be reached.
        FleetKeyError: if the stored key is damaged (delete it to make a new one).
    """
    from_env = hash_key_from_env()
    if from_env is not None:
        return from_env
    name = f"{KEY_PREFIX}:{namespace}:hash-key"
    if client.set(name, new_hash_key(), nx=True) and _older_state(client, namespace, name):
        logger.warning(
            "langchain-claude-relay: fleet state in Redis namespace %r is now stored under a new "
            "hash key (%s); state stored without one (by earlier versions) or under a key that "
            "was deleted, flushed or evicted is no longer read and expires by itself (running "
            "workers adopt the new key within a minute)",
            namespace,
            name,
        )
    key = client.get(name)
    if not isinstance(key, bytes) or len(key) < HASH_KEY_BYTES // 2:
        msg = f"the fleet's hash key in Redis ({name}) is damaged: delete it to make a new one"
        raise FleetKeyError(msg)
    return key


class FleetKey:
    """The fleet's hash key as one worker holds it, checked against Redis now and then.

    The key lives in Redis without an expiry, but ``FLUSHDB``, a ``DEL`` or a ``maxmemory``
    policy that evicts any key (``allkeys-lru``) can still remove it. Running workers would
    keep the old key and a worker started after would make a new one: the fleet split in two
    halves that never read each other's state. So at most every ``check_every`` seconds, on
    the way to a write, ``check`` puts the worker's key back if Redis has lost it (``SET NX``:
    the running fleet keeps its state and new workers read that key), or adopts the key found
    there if another worker made a new one first (what was stored under the old key is no
    longer read: decayed statistics that the planner relearns within a few calls). Each event
    is logged as a warning. A key given by the caller or by ``$CLAUDE_RELAY_HASH_KEY`` is
    never checked.

    Args:
        client: the Redis client.
        namespace: the fleet's namespace.
        given: a key of the caller's (``None``: the fleet's, ``fleet_hash_key``).
        check_every: seconds between two checks.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        given: bytes | None = None,
        *,
        check_every: float = KEY_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self._key = given
        self._fixed = given is not None
        self._check_every = check_every
        self._clock = clock
        self._checked = clock()

    @property
    def name(self) -> str:
        """The Redis key that holds it."""
        return f"{KEY_PREFIX}:{self.namespace}:hash-key"

    def get(self) -> bytes:
        """The key, read from Redis (or made there) on first use.

        Raises:
            redis.RedisError: if Redis cannot be reached.
            FleetKeyError: if the stored key is damaged.
        """
        key = self._key
        if key is None:
            self._fixed = hash_key_from_env() is not None
            key = self._key = fleet_hash_key(self.client, self.namespace)
            self._checked = self._clock()
        return key

    def check(self) -> bool:
        """Put the key back if Redis lost it, or adopt the one another worker made since.

        Returns:
            Whether the key changed (names made with the old one are stale). ``False`` also
            when the last check is less than ``check_every`` seconds old.

        Raises:
            redis.RedisError: if Redis cannot be reached.
        """
        key = self._key
        if self._fixed or key is None or self._clock() - self._checked < self._check_every:
            return False
        self._checked = self._clock()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.name, key, nx=True)
        pipe.get(self.name)
        restored, stored = pipe.execute()
        if restored:
            logger.warning(
                "langchain-claude-relay: the fleet's hash key was gone from Redis (%s: deleted, "
                "flushed or evicted); this worker put its own back, so the fleet keeps its state. "
                "Give Redis a maxmemory policy that spares keys without an expiry, or set "
                "$CLAUDE_RELAY_HASH_KEY",
                self.name,
            )
            return False
        if stored == key or not isinstance(stored, bytes) or len(stored) < HASH_KEY_BYTES // 2:
            return False  # unchanged, or damaged: the next worker to start says so
        self._key = stored
        logger.warning(
            "langchain-claude-relay: the fleet's hash key in Redis (%s) was replaced, after it "
            "was deleted, flushed or evicted; this worker now uses the new one, and the state "
            "stored under the old key is no longer read",
            self.name,
        )
        return True


def _older_state(client: Any, namespace: str, key_name: str) -> bool:
    """Whether the namespace held state before its hash key was made (one ``SCAN`` step)."""
    _cursor, found = client.scan(0, match=f"{KEY_PREFIX}:{namespace}:*", count=1000)
    return any(name != key_name.encode() for name in found)


def store_from_env(namespace: str = "default") -> RedisStore | None:
    """A ``RedisStore`` when ``$CLAUDE_RELAY_STATE`` names a Redis server, else ``None``.

    Args:
        namespace: the key namespace.

    Returns:
        The store (connecting on first use), or ``None``.

    Raises:
        ImportError: if the variable names Redis but the ``redis`` package is missing.
    """
    url = redis_url()
    return None if url is None else RedisStore(url, namespace=namespace)
