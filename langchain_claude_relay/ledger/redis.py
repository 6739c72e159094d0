"""``RedisLedger``: the cost ledger on Redis, one for a whole fleet of workers.

Every worker appends to one Redis stream, so ``entries()`` and ``summary()`` see the calls of
every process, and ``totals()`` keeps exact running counts (calls, tokens by kind, cost) that
survive the stream's trimming. Select it with ``ChatClaudeRelay(ledger=RedisLedger(url))`` or
with ``CLAUDE_RELAY_STATE=redis://...`` (``ledger_from_env``).

**Stored form.** Keys share the hash tag ``claude-relay:{<namespace>:ledger}``: ``...:entries``
(a stream, one entry per call: the compact JSON of ``codec``, numbers and hashes and the model
id; prefix hashes keyed by the fleet's key, ``store.redis.FleetKey``, shared with the
fleet's ``RedisStore``), ``...:totals`` (a hash of counters) and ``...:seen:<minute>`` (sets
of per-record tokens, for exactly-once replay; they expire after ``dedupe_window``). Each
record is one Lua script: the token is added to its set, and only if it was new is the entry
appended and the counters incremented -- all atomic, so totals are exact across processes. The
stream keeps about the last ``max_entries`` entries (``XADD MAXLEN ~``) and every key expires
``retention`` seconds after the last write.

**Hot path.** ``record`` queues the entry (about a microsecond); a background thread sends the
queue in pipelined batches within ~50 ms (``background=False`` sends inside ``record``, and so
does a ``multiprocessing`` worker, which SIGTERM may end with no exit hook run).
``flush()``, ``entries()``, ``close()`` and interpreter exit send what is queued.

**Redis down.** Entries that could not be sent (and every later one) are kept in this process,
in order (``pending_local()``, at most ``max_local``), with one warning per process
(``redis_conn.RedisStateWarning``); the writer tries Redis again every ``retry_after`` seconds
and, once it answers, replays them before anything newer. A batch cut off mid-way is replayed
whole: its tokens make the entries that did land count once. So no call is lost to an outage
unless the process itself ends before Redis returns (its local entries go with it). While Redis
is down, ``entries()`` returns this process's local entries only.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from typing import Any

from langchain_claude_relay._env import redis_url
from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork, warn_once
from langchain_claude_relay._redis import check_namespace, health_for, resolve_client
from langchain_claude_relay.errors import LedgerWarning
from langchain_claude_relay.ledger.checks import check_max_entries
from langchain_claude_relay.ledger.codec import MAX_ENTRY_CHARS, decode_entry, encode_entry
from langchain_claude_relay.ledger.entry import LedgerEntry, require_entry
from langchain_claude_relay.ledger.summary import LedgerSummary, summarize
from langchain_claude_relay.ledger.workers import in_multiprocessing_worker
from langchain_claude_relay.store.redis import FleetKey

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_RETENTION",
    "DEFAULT_DEDUPE_WINDOW",
    "TOTAL_FIELDS",
    "RedisLedger",
    "ledger_from_env",
]

logger = logging.getLogger("langchain_claude_relay.ledger")

DEFAULT_MAX_ENTRIES = 1_000_000
"""Entries the stream keeps (about: Redis trims whole nodes)."""
DEFAULT_RETENTION = 90 * 86400.0
"""Seconds the ledger's keys live after the last write."""
DEFAULT_DEDUPE_WINDOW = 6 * 3600.0
"""Seconds a record's token is remembered: a replay within it is counted once."""
DEFAULT_MAX_LOCAL = 100_000
"""Entries kept locally while Redis is down (the oldest are dropped beyond it)."""

TOTAL_FIELDS = (
    "calls",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "priced_calls",
    "cost_usd",
    "uncached_cost_usd",
)
"""The counters of ``RedisLedger.totals``."""

_LINGER = 0.05
_BATCH_MAX = 512
_PAGE = 1_000
"""Rows per read: at most ``_PAGE * MAX_ENTRY_CHARS`` bytes (16 MB) come back at once."""
_FLUSH_TIMEOUT = 30.0
_EXIT_TIMEOUT = 5.0

_RECORD = """
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], 'calls', 1)
redis.call('HINCRBY', KEYS[2], 'input_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[2], 'cache_read_tokens', ARGV[7])
redis.call('HINCRBY', KEYS[2], 'cache_write_5m_tokens', ARGV[8])
redis.call('HINCRBY', KEYS[2], 'cache_write_1h_tokens', ARGV[9])
redis.call('HINCRBY', KEYS[2], 'output_tokens', ARGV[10])
if ARGV[11] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'priced_calls', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'cost_usd', ARGV[11])
end
if ARGV[12] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[2], 'uncached_cost_usd', ARGV[12])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

_READ_PAGE = """
local rows = redis.call('XREVRANGE', KEYS[1], ARGV[1], '-', 'COUNT', ARGV[2])
local max_bytes = tonumber(ARGV[3])
local out = {}
for i, row in ipairs(rows) do
  local value = ''
  local fields = row[2]
  for j = 1, #fields - 1, 2 do
    if fields[j] == 'e' then
      if string.len(fields[j + 1]) <= max_bytes then value = fields[j + 1] end
      break
    end
  end
  out[i] = {row[1], value}
end
return out
"""
"""A page of the stream, newest first, each row's entry or ``''`` when it is longer than an
entry can be (a planted row): Redis never sends it."""

_Queued = tuple[str, int, LedgerEntry]  # token, minute it was recorded in, entry


class RedisLedger:
    """A ledger in Redis shared by every process of a fleet; never raises on a Redis outage.

    Args:
        redis: a ``redis://`` URL, a ``redis.Redis``, or ``None`` for ``$CLAUDE_RELAY_STATE``.
        namespace: separates fleets or environments sharing one Redis (``a-z0-9_-``).
        max_entries: entries the stream keeps (about), and ``entries()`` returns at most.
        retention: seconds the keys live after the last write.
        dedupe_window: seconds a replayed entry is recognised as already recorded.
        background: send from a background thread (``True``) or inside ``record``.
        retry_after: seconds between attempts to reach Redis while it is down.
        max_local: entries kept locally while Redis is down.
        hash_key: the key prefix hashes are stored under (default: the fleet's, read from
            Redis on the first write and checked now and then: see ``store.redis.FleetKey``).

    Raises:
        ValueError: for an invalid namespace, URL or bound.
        ImportError: if the ``redis`` package is not installed.
    """

    def __init__(
        self,
        redis: Any = None,
        *,
        namespace: str = "default",
        max_entries: int = DEFAULT_MAX_ENTRIES,
        retention: float = DEFAULT_RETENTION,
        dedupe_window: float = DEFAULT_DEDUPE_WINDOW,
        background: bool = True,
        retry_after: float | None = None,
        max_local: int = DEFAULT_MAX_LOCAL,
        hash_key: bytes | None = None,
    ) -> None:
        check_max_entries(max_entries)
        check_max_entries(max_local)
        for name, seconds in (("retention", retention), ("dedupe_window", dedupe_window)):
            if not seconds > 0:
                msg = f"{name} must be a positive number of seconds, got {seconds!r}"
                raise ValueError(msg)
        self.client = resolve_client(redis)
        self.namespace = check_namespace(namespace)
        self.max_entries = max_entries
        self.retention = float(retention)
        self.dedupe_window = float(dedupe_window)
        self.background = background
        self.max_local = max_local
        self.health = health_for(self.client, retry_after)
        self._fleet_key = FleetKey(self.client, self.namespace, hash_key)
        base = f"claude-relay:{{{self.namespace}:ledger}}"
        self._entries_key = f"{base}:entries"
        self._totals_key = f"{base}:totals"
        self._seen_base = f"{base}:seen:"
        self._script = self.client.register_script(_RECORD)
        self._read_script = self.client.register_script(_READ_PAGE)
        self._init_state()
        on_exit_and_fork(self)

    def _init_state(self) -> None:
        self._queue_lock = threading.Lock()
        self._send_lock = threading.Lock()  # one sender at a time, in recording order
        self._queue: list[_Queued] = []
        self._local: deque[_Queued] = deque()  # not in Redis yet (an outage), oldest first
        self._dropped = 0
        self._writer = WriteBehind(
            "claude-relay-redis-ledger",
            take=self._take,
            send=self._send_batch,
            linger=_LINGER,
            full=lambda: len(self._queue) >= _BATCH_MAX,
            retry_interval=self._retry_interval,
        )

    def __repr__(self) -> str:
        return f"RedisLedger({self.health.location!r}, namespace={self.namespace!r})"

    @property
    def degraded(self) -> bool:
        """Whether entries are waiting locally for Redis to come back."""
        return bool(self._local) or not self.health.up

    # -- writing ------------------------------------------------------------------------------

    def record(self, entry: LedgerEntry) -> None:
        """Queue one entry (or send it, without ``background``); never raises on an outage.

        Args:
            entry: the entry.

        Raises:
            TypeError: if ``entry`` is not a ``LedgerEntry``.
        """
        require_entry(entry)
        item = (uuid.uuid4().hex, int(time.time() // 60), entry)
        if not self.background or in_multiprocessing_worker():  # a worker may end by SIGTERM
            with self._send_lock:
                self._send([item])
            return
        with self._queue_lock:
            self._queue.append(item)
        self._writer.queued()

    def _take(self) -> list[_Queued]:
        with self._queue_lock:
            batch, self._queue = self._queue, []
            return batch

    def _retry_interval(self) -> float | None:
        """While entries wait locally, try Redis again every ``retry_after`` seconds."""
        return max(0.05, self.health.retry_after) if self._local else None

    def _send_batch(self, batch: list[_Queued]) -> None:
        with self._send_lock:
            self._send(batch)

    def _send(self, batch: list[_Queued]) -> None:
        """Send the local backlog then ``batch`` (the caller holds ``_send_lock``)."""
        self._keep_local(batch)
        if self._local:
            self.health.call(self._send_local, "the cost ledger")

    def _send_local(self) -> None:
        """Send the local backlog in chunks, dropping each chunk once Redis has it."""
        while self._local:
            chunk = [self._local[i] for i in range(min(_BATCH_MAX, len(self._local)))]
            self._send_chunk(chunk)
            for _ in chunk:
                self._local.popleft()

    def _keep_local(self, batch: list[_Queued]) -> None:
        self._local.extend(batch)
        excess = len(self._local) - self.max_local
        if excess > 0:
            for _ in range(excess):
                self._local.popleft()
            self._dropped += excess
            logger.warning(
                "cost ledger: Redis has been down for %s entries; dropped the %d oldest kept "
                "locally (max_local=%d)",
                f"{len(self._local):,}",
                excess,
                self.max_local,
            )

    def _send_chunk(self, chunk: list[_Queued]) -> None:
        pipe = self.client.pipeline(transaction=False)
        retention_ms = math.ceil(self.retention * 1000)
        dedupe_ms = math.ceil(self.dedupe_window * 1000)
        self._fleet_key.check()
        hash_key = self._fleet_key.get()
        for token, minute, entry in chunk:
            self._script(
                keys=[self._entries_key, self._totals_key, f"{self._seen_base}{minute}"],
                args=[
                    token,
                    encode_entry(entry, hash_key),
                    self.max_entries,
                    retention_ms,
                    dedupe_ms,
                    entry.input_tokens,
                    entry.cache_read_tokens,
                    entry.cache_write_5m_tokens,
                    entry.cache_write_1h_tokens,
                    entry.output_tokens,
                    "" if entry.cost_usd is None else repr(entry.cost_usd),
                    "" if entry.uncached_cost_usd is None else repr(entry.uncached_cost_usd),
                ],
                client=pipe,
            )
        pipe.execute()

    def flush(self, timeout: float | None = _FLUSH_TIMEOUT) -> None:
        """Wait until every entry recorded so far is in Redis, or kept locally (Redis down).

        Also tries to replay the local backlog when Redis may be back. Never raises on an
        outage.

        Args:
            timeout: seconds to wait at most (``None``: no limit).
        """
        if not self._writer.flush(timeout, force=bool(self._local)):
            logger.warning("cost ledger: Redis writer did not finish within %s s", timeout)

    def close(self, timeout: float | None = _FLUSH_TIMEOUT) -> None:
        """Send what is queued and stop the writer (entries kept locally stay readable).

        Args:
            timeout: seconds to wait for the writer at most.
        """
        self.flush(timeout)
        self._writer.stop(timeout)

    def _at_exit(self) -> None:
        self.close(timeout=_EXIT_TIMEOUT)

    # -- reading ------------------------------------------------------------------------------

    def pending_local(self) -> list[LedgerEntry]:
        """Entries recorded here that are not in Redis yet (Redis was down), oldest first."""
        with self._send_lock:
            return [entry for _token, _minute, entry in self._local]

    def entries(self, since: float | None = None) -> list[LedgerEntry]:
        """Every process's entries in the order Redis received them, then this one's local ones.

        Args:
            since: only entries with ``timestamp >= since``.

        Returns:
            At most ``max_entries`` entries, the newest; only the local ones while Redis is
            down.
        """
        self.flush()
        read = self.health.call(lambda: self._read(since), "the cost ledger")
        stored = [] if read is None else read[0]
        local = [e for e in self.pending_local() if since is None or e.timestamp >= since]
        return [*stored, *local][-self.max_entries :]

    def _read(self, since: float | None) -> list[LedgerEntry]:
        """The newest ``max_entries`` entries of the stream, oldest first.

        Rows this package did not write are skipped, with one warning. What is read is
        bounded: a page holds at most ``_PAGE`` rows, a row longer than an entry can be is
        dropped by Redis before sending (``_READ_PAGE``), and at most ``2 * max_entries``
        rows are looked at (the stream keeps about ``max_entries``; more is planted).
        """
        out: list[LedgerEntry] = []
        skipped = scanned = 0
        end = "+"
        while len(out) < self.max_entries and scanned < 2 * self.max_entries:
            page = self._read_script(keys=[self._entries_key], args=[end, _PAGE, MAX_ENTRY_CHARS])
            for _row_id, value in page:
                entry = decode_entry(value) if value else None
                if entry is None:
                    skipped += 1
                elif since is None or entry.timestamp >= since:
                    out.append(entry)
            scanned += len(page)
            if len(page) < _PAGE:
                break
            last = page[-1][0]
            end = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        if skipped:
            warn_once(
                ("ledger_row", self._entries_key),
                f"the cost ledger in Redis ({self._entries_key}) holds {skipped} rows that are "
                "not entries it wrote (planted or damaged); they are skipped, never executed",
                LedgerWarning,
            )
        out.reverse()
        return out[-self.max_entries :]

    def summary(self, since: float | None = None) -> LedgerSummary:
        """Summarize the entries (see ``summarize``)."""
        return summarize(self.entries(since), since=since)

    def totals(self) -> dict[str, float]:
        """Exact running totals over every entry recorded in Redis (not trimmed away).

        Returns:
            ``TOTAL_FIELDS`` -> number (zeros for an empty ledger); this process's local
            entries are added while Redis is down.
        """
        self.flush()
        totals: dict[str, float] = dict.fromkeys(TOTAL_FIELDS, 0)
        stored = self.health.call(lambda: self.client.hgetall(self._totals_key), "the cost ledger")
        for name, value in stored[0].items() if stored is not None else ():
            key = name.decode()
            if key in totals:
                number = float(value)
                totals[key] = int(number) if number.is_integer() else number
        for entry in self.pending_local():
            _add(totals, entry)
        return totals

    def clear(self) -> None:
        """Delete this namespace's ledger in Redis (tests; starting over). Local entries too."""
        with self._send_lock:
            self._local.clear()
            keys = [self._entries_key, self._totals_key]
            keys += list(self.client.scan_iter(match=f"{self._seen_base}*", count=1000))
            self.client.delete(*keys)

    def _after_fork_in_child(self) -> None:
        """The parent's queue, backlog and writer are the parent's: start empty."""
        self._init_state()


def _add(totals: dict[str, float], entry: LedgerEntry) -> None:
    totals["calls"] += 1
    for name in TOTAL_FIELDS[1:6]:
        totals[name] += getattr(entry, name)
    if entry.cost_usd is not None:
        totals["priced_calls"] += 1
        totals["cost_usd"] += entry.cost_usd
    if entry.uncached_cost_usd is not None:
        totals["uncached_cost_usd"] += entry.uncached_cost_usd


def ledger_from_env(namespace: str = "default") -> RedisLedger | None:
    """A ``RedisLedger`` when ``$CLAUDE_RELAY_STATE`` names a Redis server, else ``None``.

    Args:
        namespace: the key namespace.

    Returns:
        The ledger (connecting on first use), or ``None``.

    Raises:
        ImportError: if the variable names Redis but the ``redis`` package is missing.
    """
    url = redis_url()
    return None if url is None else RedisLedger(url, namespace=namespace)
