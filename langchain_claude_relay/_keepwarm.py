"""The keep-alive scheduler: sends what falls due, within a budget, never after close or exit.

A ``ChatClaudeRelay`` with ``keep_warm="auto"`` hands it each prefix its planner advises keeping
warm (``planner.keepalive.KeepAlive``) with the keep-alive request already rendered. The
scheduler keeps one pending keep-alive per prefix, due ``MARGIN`` seconds before the entry
expires, and at each due time asks the advice again (``KeepAlive.should_ping``: is the return
still likely enough?) before it sends.

* **Cancelled** when a request carrying the prefix is planned (``cancel``: the follow-up reads
  the entry itself, and its own response brings new advice), when the return stops being likely
  (the advice says stop), when the budget would not cover the next one, on ``close()``, at
  interpreter exit, and in a forked child (which never sends its parent's keep-alives).
* **Budget**: before each keep-alive, its worst case (every input token written at the 1-hour
  price, plus its output) must fit in what is left of ``budget_usd``; what it actually cost is
  then counted. So the spend never exceeds the budget.
* **Clock**: the planner's. With the wall clock (``background=True``) a daemon thread
  (``_plumbing.WriteBehind``, ending after ``IDLE_EXIT`` seconds with nothing pending) sends
  what falls due. With an injected clock nothing runs by itself: ``run_due(now)`` sends every
  keep-alive due at or before ``now`` (``ChatClaudeRelay.run_keep_warm``) and says how many.

The sending itself (transport, usage, ledger, cost trackers, ``planner.kept_alive``) is the
chat model's ``send`` callable; a keep-alive that fails is dropped, never retried later (it
would come too late).
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from langchain_claude_relay._plumbing import WriteBehind, on_exit_and_fork, warn_once
from langchain_claude_relay.planner.followup import WINDOW
from langchain_claude_relay.planner.keepalive import KeepAlive
from langchain_claude_relay.planner.rules import TTL_SECONDS

__all__ = [
    "MARGIN",
    "KEEP_ALIVE_TIMEOUT",
    "KEEP_ALIVE_TAIL_TOKENS",
    "IDLE_EXIT",
    "PendingKeepAlive",
    "KeepWarmScheduler",
]

logger = logging.getLogger("langchain_claude_relay.keep_warm")

MARGIN = 15.0
"""Seconds before an entry expires that its keep-alive is sent (the TTL runs from the request's
start as Claude sees it: network and queueing must fit in this margin)."""
KEEP_ALIVE_TIMEOUT = 60.0
"""Seconds a keep-alive's one attempt may take (no retries: a late one would pay a write)."""
KEEP_ALIVE_TAIL_TOKENS = 16
"""Input tokens a keep-alive is costed at beyond the prefix it reads (its short user turn and
the message framing): the bound of its worst case, and the estimate when its answer is lost."""
IDLE_EXIT = 60.0
"""Seconds the background thread waits with nothing pending before it ends (it restarts)."""


@dataclass(eq=False)
class PendingKeepAlive:
    """One prefix kept warm: its advice, its request, and how far it got.

    Attributes:
        keep: the planner's advice.
        payload: what the sender needs to send it (the chat model renders it when it goes).
        extra_cost: what the way in adds to each keep-alive beyond ``keep.ping_cost`` (its
            output tokens), in USD.
        worst_case_usd: the most one keep-alive can cost (budget check).
        context: what the sender needs (the planner, the cost trackers...), opaque here.
        pings: keep-alives sent so far.
        expires: when the entry is believed to expire (planner clock).
        sending: whether a keep-alive for it is on its way (no other thread sends it then).
        refreshed_tokens: prefix tokens a later request read itself (a shorter prefix of the
            kept one, e.g. the system prompt under another question): only the rest is lost
            on expiry now.
    """

    keep: KeepAlive
    payload: Any
    extra_cost: float
    worst_case_usd: float
    context: Any = None
    pings: int = 0
    expires: float = field(default=0.0)
    sending: bool = False
    refreshed_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.expires:
            self.expires = self.keep.expires_at()

    @property
    def due(self) -> float:
        """When the next keep-alive goes (``MARGIN`` before the entry expires)."""
        return self.expires - MARGIN

    @property
    def boundary(self) -> int:
        """Which 5-minute boundary after the entry was written the next keep-alive is at."""
        return max(1, round((self.expires - self.keep.written_at) / WINDOW))


Sender = Callable[[PendingKeepAlive, float], "float | None"]
"""Sends one keep-alive at the given time (planner clock: when it went, or when it fell due if
the clock is behind, see ``run_due``); returns what it cost (USD), or ``None`` when it failed."""


class KeepWarmScheduler:
    """Pending keep-alives of one chat model.

    Args:
        clock: the planner's clock (seconds).
        send: sends one keep-alive (see ``Sender``).
        budget_usd: the most all keep-alives may cost together.
        background: send from a daemon thread as keep-alives fall due (the wall clock);
            ``False``: only ``run_due`` sends (an injected clock).
    """

    def __init__(
        self,
        clock: Callable[[], float],
        send: Sender,
        *,
        budget_usd: float,
        background: bool,
    ) -> None:
        self._clock = clock
        self._send = send
        self.budget_usd = budget_usd
        self._lock = threading.Lock()
        self._pending: dict[str, PendingKeepAlive] = {}  # by prefix hash
        self._closed = False
        self.spent_usd = 0.0
        self.sent = 0
        self._wake_at = math.inf  # when the waiting thread wakes up next by itself
        self._worker: WriteBehind | None = None
        if background:
            self._worker = WriteBehind(
                "claude-relay-keep-warm",
                take=lambda: None,
                send=lambda _batch: self._run_in_thread(),
                retry_interval=self._seconds_to_due,
                idle_exit=IDLE_EXIT,
            )
        on_exit_and_fork(self)

    def __repr__(self) -> str:
        return (
            f"KeepWarmScheduler(pending={len(self._pending)}, sent={self.sent}, "
            f"spent_usd={self.spent_usd:.6f}, budget_usd={self.budget_usd})"
        )

    @property
    def clock(self) -> Callable[[], float]:
        """The clock keep-alives fall due on (the planner's)."""
        return self._clock

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (nothing is scheduled or sent any more)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Prefixes kept warm now."""
        with self._lock:
            return len(self._pending)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        worker = self._worker
        thread = worker._thread if worker is not None else None
        return thread is not None and thread.is_alive()

    def schedule(self, pending: PendingKeepAlive) -> bool:
        """Keep ``pending.keep``'s prefix warm (replacing what was pending for it).

        Returns:
            Whether it was scheduled (not after ``close()``, nor when its first keep-alive
            could not fit in the budget).
        """
        with self._lock:
            if self._closed:
                return False
            if self.spent_usd + pending.worst_case_usd > self.budget_usd:
                self._over_budget()
                return False
            self._pending[pending.keep.prefix_hash] = pending
        if self._worker is not None and (not self.running or pending.due < self._wake_at):
            self._worker.queued()  # else it wakes up in time by itself (no switch per call)
        return True

    def cancel(self, prefix_hashes: Iterable[str]) -> int:
        """A request carrying these prefixes was planned: it reads them itself.

        A keep-alive whose prefix it carries is dropped; one that also kept a shorter prefix of
        it alive now only weighs the rest (``PendingKeepAlive.refreshed_tokens``).

        Returns:
            How many were dropped.
        """
        carried = set(prefix_hashes)
        with self._lock:
            if not self._pending:
                return 0
            dropped = [h for h in carried if h in self._pending]
            for h in dropped:
                del self._pending[h]
            for pending in self._pending.values():
                fresh = [t for h, _ttl, t in pending.keep.refreshes if h in carried]
                pending.refreshed_tokens = max([pending.refreshed_tokens, *fresh])
            return len(dropped)

    def next_due(self) -> float | None:
        """When the next keep-alive falls due (planner clock), or ``None``."""
        return self._earliest_due(in_flight=True)

    def _earliest_due(self, *, in_flight: bool) -> float | None:
        """The earliest due time, counting the keep-alives being sent or not."""
        with self._lock:
            dues = (p.due for p in self._pending.values() if in_flight or not p.sending)
            return min(dues, default=None)

    def run_due(self, now: float | None = None) -> int:
        """Send every keep-alive due at or before ``now`` (default: the clock); how many went.

        A keep-alive sent here may fall due again before ``now`` (``now`` far ahead): it is sent
        again in the same call, in due order, as it would have been on time.
        """
        if now is None:
            now = float(self._clock())
        sent = 0
        while True:
            chosen = self._next_to_send(now)
            if chosen is None:
                return sent
            cost = self._send_one(chosen)
            if cost is not None:
                sent += 1

    def close(self, timeout: float | None = 5.0) -> None:
        """Drop every pending keep-alive and stop the thread; nothing is sent after this."""
        with self._lock:
            self._closed = True
            self._pending.clear()
        if self._worker is not None:
            self._worker.stop(timeout)

    # -- internals ------------------------------------------------------------------------

    def _next_to_send(self, now: float) -> PendingKeepAlive | None:
        """The earliest due keep-alive that should go (dropping those that should not)."""
        with self._lock:
            if self._closed:
                return None
            clock = float(self._clock())
            due = [  # at one due time, the longest prefix first: it keeps the shorter ones
                (p.due, -p.keep.tokens, id(p), p)
                for p in self._pending.values()
                if p.due <= now and not p.sending
            ]
            heapq.heapify(due)
            while due:
                *_order, pending = heapq.heappop(due)
                if pending.due > now:  # a longer one sent meanwhile pushed it back
                    continue
                if clock >= pending.expires:  # too late (a suspended process,
                    del self._pending[pending.keep.prefix_hash]  # a late run_due): it would
                    continue  # only re-buy the write the follow-up pays anyway
                boundary = pending.boundary
                if not pending.keep.should_ping(
                    boundary, pending.extra_cost, pending.refreshed_tokens
                ):
                    del self._pending[pending.keep.prefix_hash]  # no longer likely enough
                    continue
                if self.spent_usd + pending.worst_case_usd > self.budget_usd:
                    del self._pending[pending.keep.prefix_hash]
                    self._over_budget()
                    continue
                self.spent_usd += pending.worst_case_usd  # held until the real cost is known
                pending.sending = True
                return pending
            return None

    def _send_one(self, pending: PendingKeepAlive) -> float | None:
        # sent on time: ``run_due(now)`` with the clock behind ``now`` sends as it would have
        started = max(float(self._clock()), pending.due)
        try:
            cost = self._send(pending, started)
        except Exception as exc:  # a keep-alive never fails anything else
            logger.warning("a keep-alive request failed: %s", type(exc).__name__)
            cost = None
        except BaseException:  # interrupted (Ctrl-C in ``run_keep_warm``): it may have gone
            with self._lock:  # out, so its worst case stays spent; it is dropped, not stuck
                pending.sending = False
                if self._pending.get(pending.keep.prefix_hash) is pending:
                    del self._pending[pending.keep.prefix_hash]
            raise
        with self._lock:
            pending.sending = False
            self.spent_usd -= pending.worst_case_usd
            if cost is None:  # failed: dropped (a retry would come too late)
                if self._pending.get(pending.keep.prefix_hash) is pending:
                    del self._pending[pending.keep.prefix_hash]
                return None
            self.spent_usd += cost
            self.sent += 1
            pending.pings += 1
            read = {h for h, _ttl, _t in pending.keep.refreshes}
            for other in self._pending.values():  # it read their prefixes too: they wait
                if other.keep.prefix_hash in read:
                    other.expires = max(other.expires, started + TTL_SECONDS[other.keep.ttl])
            pending.expires = started + TTL_SECONDS[pending.keep.ttl]  # the read restarted it
            # a cancel or a newer advice meanwhile wins: this one is no longer in the registry
            kept = self._pending.get(pending.keep.prefix_hash) is pending
        # sent from another thread (``run_due``), the thread did not wait for this one
        # (``_seconds_to_due`` leaves out what is being sent): it learns its next due time
        wake = not self.running or pending.due < self._wake_at
        if kept and wake and self._worker is not None and not self._closed:
            self._worker.queued()
        return cost

    def _over_budget(self) -> None:
        warn_once(
            ("keep_warm_budget", id(self)),
            f"keep-alive requests stopped: their budget (keep_warm_budget_usd="
            f"{self.budget_usd:g}) would not cover the next one (${self.spent_usd:.4f} spent); "
            "raise it, or pass keep_warm='off'",
            RuntimeWarning,
        )

    def _seconds_to_due(self) -> float | None:
        # a keep-alive being sent (from another thread) is left out: its due time is past
        # until the send returns, and waiting 0 for it would spin the thread meanwhile
        due = self._earliest_due(in_flight=False)
        self._wake_at = math.inf if due is None else due
        if due is None:
            return None
        return max(0.0, due - float(self._clock()))

    def _run_in_thread(self) -> None:
        self.run_due()

    def _at_exit(self) -> None:
        self.close(timeout=1.0)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._pending = {}
        if self._worker is not None:
            self._worker.reset()
