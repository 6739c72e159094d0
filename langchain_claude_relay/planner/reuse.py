"""Reuse statistics: how likely a prefix is to come back within 5 minutes and within 1 hour.

Pure math over plain data (the planner loads and stores the records).

Each *arrival* of a prefix is eventually resolved by the next arrival of the same prefix: back
within 5 minutes, back within the hour, or not (later, or never). A ``ReuseRecord`` keeps decayed
counts of arrivals and of the first two outcomes, so ``P(back within 5 min) = back_5m /
arrivals``. Records exist at three levels, each estimate shrunk towards the level above with the
weight of ``PRIOR_WEIGHT`` arrivals:

1. a prior (``PRIOR_ODDS``: most prefixes worth marking come back soon),
2. templates: the same place in the same kind of request, whatever its content (two of them, a
   coarse and a fine one; see ``history``), which give a brand-new prefix its odds and
   learn that, say, a system prompt with a timestamp never comes back,
3. the prefix itself (by hash). The current request is an arrival too: the gap since the
   prefix's last arrival resolves that arrival before the odds are computed, so one 20-minute
   gap is already evidence for the 1-hour TTL.

Per-prefix counts decay fast (``DECAY_PREFIX``) so a change of pattern shows within 2-3 calls;
template counts decay slowly.

**Weights.** An outcome is known one arrival after the arrival it resolves, and it is stored
with that arrival's weight (decayed once more), so ``back_5m + back_1h <= arrivals - 1``: the
outcomes never outweigh the arrivals they resolve. (Counting each outcome at full weight when it
becomes known made the resolved arrivals weigh ``1 / DECAY_PREFIX`` times their arrivals: after a
run of quick returns the 5-minute count equalled the arrival count, and one gap of more than
5 minutes left ``P(back within 5m)`` near 0.99, so a prefix with Poisson arrivals every
~100 s was rewritten at 5m after every such gap. With consistent weights that gap brings the
estimate to ~0.77, and the expected cost switches the rewrite to 1h.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from langchain_claude_relay.planner.followup import DECAY_GAPS
from langchain_claude_relay.planner.rules import TTL_SECONDS

__all__ = [
    "PRIOR_ODDS",
    "STATIC_PRIOR_ODDS",
    "PRIOR_WEIGHT",
    "DECAY_PREFIX",
    "DECAY_TEMPLATE",
    "MAX_FUTURE_ARRIVALS",
    "MAX_COUNT",
    "ID_LIMIT",
    "INDEX_LIMIT",
    "ReuseOdds",
    "ReuseRecord",
    "record_arrival",
    "record_return",
    "record_follow_up",
    "estimate_odds",
    "make_monotone",
    "LineageEntry",
    "merge_lineage",
]

PRIOR_WEIGHT = 1.0
DECAY_PREFIX = 0.7
DECAY_TEMPLATE = 0.9
MAX_FUTURE_ARRIVALS = 20.0
MAX_COUNT = 1e6
"""A stored count above this is damage (decayed counts stay below ``1 / (1 - decay)``)."""
ID_LIMIT = 1 << 48
"""Prefix hashes, template ids and tool ids are 48-bit numbers (``history.int48``)."""
INDEX_LIMIT = 1 << 32
"""A stored block index at or above this is damage (no request holds that many blocks)."""


@dataclass(frozen=True)
class ReuseOdds:
    """Probabilities that the next arrival of a prefix comes within 5 minutes / within 1 hour."""

    within_5m: float
    within_1h: float

    def within(self, ttl: str) -> float:
        """The probability for a TTL (``"5m"`` or ``"1h"``)."""
        return self.within_5m if ttl == "5m" else self.within_1h

    def future_arrivals(self) -> float:
        """Expected further arrivals before a gap longer than an hour (capped).

        Each arrival is followed by another within the hour with probability ``within_1h``, so
        the chain has ``q / (1 - q)`` more arrivals on average.
        """
        q = min(max(self.within_1h, 0.0), 1.0)
        if q >= 1.0:
            return MAX_FUTURE_ARRIVALS
        return min(MAX_FUTURE_ARRIVALS, q / (1.0 - q))


PRIOR_ODDS = ReuseOdds(within_5m=0.7, within_1h=0.75)
"""Before any evidence: a prefix worth marking usually comes back within minutes (chat turns,
agent steps, a shared system prompt). With these odds a fresh prefix gets a 5m marker."""
STATIC_PRIOR_ODDS = ReuseOdds(within_5m=0.75, within_1h=0.8)
"""The prior for static parts (tools, system prompt, documents): a little likelier to come back
than a conversation tail, so a first call also marks them (an extra marker before another one
costs nothing now: the write is billed once, up to the last marker)."""


class ReuseRecord(NamedTuple):
    """Decayed counts for one prefix or template (a named tuple: read and built on every call).

    Attributes:
        arrivals: arrivals counted (decayed).
        back_5m: arrivals followed by another within 5 minutes.
        back_1h: arrivals followed by another after 5 minutes but within the hour.
        last_seen: time of the last arrival (clock seconds), or ``None``.
        cached_until: when the entry for this prefix is believed to expire (0: not cached).
        cached_ttl: the TTL (seconds) of that entry.
        last_hash: the last prefix hash (48-bit int) seen at a template, or 0.
        resolved: whether the last arrival's outcome is already counted (a follow-up request
            read the prefix: ``record_follow_up``), so the next arrival must not count it again.
        last_tool: the tools the response to the last arrival called (``followup.tool_key``;
            its return's gap is learned under them).
        late: the prefix's returns after 5 minutes but within the hour, in a long memory:
            decayed (``followup.DECAY_GAPS``) only when another return after 5 minutes
            resolves, so it remembers the last ten of them, not the last three arrivals.
        breaks: the same for returns past the hour (or a day later): with ``late``, the
            prefix's own late returns per break (``followup.own_late_per_break``).
    """

    arrivals: float = 0.0
    back_5m: float = 0.0
    back_1h: float = 0.0
    last_seen: float | None = None
    cached_until: float = 0.0
    cached_ttl: float = 0.0
    last_hash: int = 0
    resolved: bool = False
    last_tool: int = 0
    late: float = 0.0
    breaks: float = 0.0

    @classmethod
    def from_json(cls, raw: Any) -> ReuseRecord | None:
        """Read a stored record; anything malformed reads as ``None`` (no history).

        Counts below 0 (or NaN) read as 0 and a negative last arrival as none. Malformed: a
        count above ``MAX_COUNT``, a time that is not finite, a TTL outside ``[0, 1 hour]``, a
        hash or tool id outside 48 bits (``ID_LIMIT``), anything that is not a number.

        >>> ReuseRecord.from_json({"n": 1.0, "b5": -2.0}).back_5m
        0.0
        >>> ReuseRecord.from_json({"n": 1.0, "lt": -5}) is None
        True
        """
        if type(raw) is not dict and not isinstance(raw, Mapping):  # dict first: fast
            return None
        get = raw.get  # read ~12 times per plan and observe: kept lean (positional, in order)
        try:
            arrivals = float(get("n", 0.0))
            back_5m = float(get("b5", 0.0))
            back_1h = float(get("b60", 0.0))
            last = get("last")
            late, breaks = float(get("tl", 0.0)), float(get("tb", 0.0))
            record = cls(  # counts below 0 (or NaN) read as 0, as max(0.0, count) gives
                arrivals if arrivals > 0.0 else 0.0,
                back_5m if back_5m > 0.0 else 0.0,
                back_1h if back_1h > 0.0 else 0.0,
                float(last) if last is not None and last >= 0 else None,
                float(get("cu", 0.0)),
                float(get("ct", 0.0)),
                int(get("h", 0)),
                bool(get("r", 0)),
                int(get("lt", 0)),
                late if late > 0.0 else 0.0,
                breaks if breaks > 0.0 else 0.0,
            )
        except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinity
            return None
        return record if record._in_range() else None

    def _in_range(self) -> bool:
        """Whether the numbers are ones this module writes (see ``from_json``)."""
        return (
            max(self.arrivals, self.back_5m, self.back_1h, self.late, self.breaks) <= MAX_COUNT
            and (self.last_seen is None or math.isfinite(self.last_seen))
            and math.isfinite(self.cached_until)
            and 0.0 <= self.cached_ttl <= TTL_SECONDS["1h"]
            and 0 <= self.last_hash < ID_LIMIT
            and 0 <= self.last_tool < ID_LIMIT
        )

    def to_json(self) -> dict[str, float]:
        """The stored form (numbers only; the long memory only once it holds anything)."""
        stored = {
            "n": self.arrivals,
            "b5": self.back_5m,
            "b60": self.back_1h,
            "last": -1.0 if self.last_seen is None else self.last_seen,
            "cu": self.cached_until,
            "ct": self.cached_ttl,
            "h": self.last_hash,
            "r": int(self.resolved),
            "lt": self.last_tool,
        }
        if self.late or self.breaks:
            stored["tl"], stored["tb"] = self.late, self.breaks
        return stored

    def tail(self, arriving_at: float | None = None) -> tuple[float, float]:
        """``(late, breaks)``, with the last arrival resolved by one ``arriving_at`` (if any).

        >>> r = record_arrival(record_arrival(None, 0.0, 0.7), 600.0, 0.7)  # back after 10 min
        >>> r.tail(), r.tail(arriving_at=86400.0)                           # then a day later
        ((1.0, 0.0), (0.9, 1.0))
        """
        if arriving_at is None or self.last_seen is None or self.resolved:
            return self.late, self.breaks
        return _tail(self.late, self.breaks, arriving_at - self.last_seen)


def _outcome(gap: float) -> tuple[float, float]:
    if gap <= TTL_SECONDS["5m"]:
        return 1.0, 0.0
    if gap <= TTL_SECONDS["1h"]:
        return 0.0, 1.0
    return 0.0, 0.0


def _tail(late: float, breaks: float, gap: float) -> tuple[float, float]:
    """The long memory after a return ``gap`` seconds later (unchanged within 5 minutes)."""
    if gap <= TTL_SECONDS["5m"]:
        return late, breaks
    late, breaks = late * DECAY_GAPS, breaks * DECAY_GAPS
    return (late + 1.0, breaks) if gap <= TTL_SECONDS["1h"] else (late, breaks + 1.0)


def record_arrival(
    record: ReuseRecord | None,
    now: float,
    decay: float,
    *,
    resolve: bool = True,
    tool: int | None = None,
) -> ReuseRecord:
    """One more arrival at ``now``; for a prefix, the gap since its last arrival resolves that one.

    Args:
        record: the counts so far.
        now: the arrival time.
        decay: weight kept by the past counts.
        resolve: ``True`` for a prefix record; ``False`` for a template, whose arrivals are
            different prefixes (their returns come through ``record_return``).
        tool: the tools the response to this arrival called (``ReuseRecord.last_tool``;
            ``None`` keeps the record's).

    Returns:
        The updated record.

    >>> r = record_arrival(None, 0.0, 0.7)
    >>> r = record_arrival(r, 120.0, 0.7)
    >>> (round(r.arrivals, 2), r.back_5m, r.last_seen)
    (1.7, 0.7, 120.0)
    """
    base = record or ReuseRecord()
    b5, b60 = base.back_5m, base.back_1h
    late, breaks = base.late, base.breaks
    if resolve and base.last_seen is not None and not base.resolved:
        add5, add60 = _outcome(now - base.last_seen)
        b5, b60 = b5 + add5, b60 + add60
        late, breaks = _tail(late, breaks, now - base.last_seen)
    b5, b60 = b5 * decay, b60 * decay  # an outcome weighs what its arrival weighs
    return ReuseRecord(
        arrivals=base.arrivals * decay + 1.0,
        back_5m=b5,
        back_1h=b60,
        last_seen=now if base.last_seen is None else max(now, base.last_seen),
        cached_until=base.cached_until,
        cached_ttl=base.cached_ttl,
        last_hash=base.last_hash,
        last_tool=base.last_tool if tool is None else tool,
        late=late,
        breaks=breaks,
    )


def record_follow_up(record: ReuseRecord, gap: float) -> ReuseRecord:
    """Resolve a prefix's last arrival now: a later, longer request read it ``gap`` s after.

    A conversation's tail is rarely sent again as it is: its *return* is the next turn, which
    extends it (and reads it). Counting that return on the prefix's own record (not only on its
    template) keeps the record true when the same conversation is replayed: without it, the
    only outcome the record ever saw was "not back within the hour" (the replay, a day later),
    and a replayed agent stopped marking its tails. The arrival keeps its weight (1, not yet
    decayed); ``resolved`` stops the next arrival (or ``estimate_odds``) from counting it twice.

    >>> r = record_follow_up(record_arrival(None, 0.0, 0.7), 12.0)
    >>> r = record_arrival(r, 86400.0, 0.7)    # the same prefix, a day later
    >>> (round(r.arrivals, 2), round(r.back_5m, 2), r.resolved)
    (1.7, 0.7, False)
    """
    if record.resolved or record.last_seen is None:
        return record
    add5, add60 = _outcome(gap)
    late, breaks = _tail(record.late, record.breaks, gap)
    return record._replace(
        back_5m=record.back_5m + add5,
        back_1h=record.back_1h + add60,
        resolved=True,
        late=late,
        breaks=breaks,
    )


def record_return(record: ReuseRecord | None, gap: float) -> ReuseRecord:
    """Resolve one earlier arrival counted at a template: it came back after ``gap`` seconds."""
    base = record or ReuseRecord()
    add5, add60 = _outcome(gap)
    return ReuseRecord(
        arrivals=max(base.arrivals, base.back_5m + base.back_1h + add5 + add60),
        back_5m=base.back_5m + add5,
        back_1h=base.back_1h + add60,
        last_seen=base.last_seen,
        cached_until=base.cached_until,
        cached_ttl=base.cached_ttl,
        last_hash=base.last_hash,
    )


def estimate_odds(
    record: ReuseRecord | None,
    parent: ReuseOdds,
    *,
    arriving_at: float | None = None,
    weight: float = PRIOR_WEIGHT,
    open_arrivals: float = 0.0,
) -> ReuseOdds:
    """Odds from a record, shrunk towards ``parent``.

    Args:
        record: the counts (``None``: no history, the parent's odds).
        parent: the odds of the level above.
        arriving_at: the current time when this very prefix is arriving now (its last arrival
            is then resolved by the gap); ``None`` for templates.
        weight: how many arrivals the parent is worth.
        open_arrivals: arrivals of the record that may still come back (set aside: counted,
            they would look like arrivals that did not).

    Returns:
        The odds, with ``within_5m <= within_1h``.

    >>> back = ReuseRecord(arrivals=1.0, last_seen=0.0)
    >>> estimate_odds(back, PRIOR_ODDS, arriving_at=1200.0)   # one 20-minute gap
    ReuseOdds(within_5m=0.35, within_1h=0.875)
    """
    if record is None or record.arrivals <= 0:
        return parent
    n, b5, b60 = record.arrivals, record.back_5m, record.back_1h
    if arriving_at is not None and record.last_seen is not None and not record.resolved:
        add5, add60 = _outcome(arriving_at - record.last_seen)
        b5, b60 = b5 + add5, b60 + add60
    if open_arrivals:
        n = max(b5 + b60, n - open_arrivals)
        if n <= 0:
            return parent
    total = n + weight
    p5 = min(1.0, (b5 + weight * parent.within_5m) / total)
    p1h = min(1.0, (b5 + b60 + weight * parent.within_1h) / total)
    return ReuseOdds(round(p5, 6), round(max(p5, p1h), 6))


def make_monotone(
    odds: Mapping[int, ReuseOdds], pending: frozenset[int] = frozenset()
) -> dict[int, ReuseOdds]:
    """Odds by block index, lifted so a prefix comes back at least as often as a longer one.

    Except past a pending one (``CachePlanner.sent``): when that prefix comes back it reads the
    entry being written for it, so its returns give the shorter prefixes no reason to be written.

    Args:
        odds: each candidate prefix's own odds, by block index.
        pending: block indices whose prefix another request in flight is writing.

    Returns:
        The lifted odds, by block index (same keys, same order).

    >>> low, high = ReuseOdds(0.1, 0.2), ReuseOdds(0.5, 0.6)
    >>> make_monotone({1: low, 4: high})[1]
    ReuseOdds(within_5m=0.5, within_1h=0.6)
    >>> make_monotone({1: low, 4: high}, pending=frozenset({4}))[1]
    ReuseOdds(within_5m=0.1, within_1h=0.2)
    """
    lifted: dict[int, ReuseOdds] = {}
    best = ReuseOdds(0.0, 0.0)
    for index in sorted(odds, reverse=True):
        mine = odds[index]
        lifted[index] = ReuseOdds(
            max(best.within_5m, mine.within_5m), max(best.within_1h, mine.within_1h)
        )
        if index not in pending:
            best = lifted[index]
    return {index: lifted[index] for index in odds}


@dataclass(frozen=True)
class LineageEntry:
    """A recent candidate prefix of one conversation (requests sharing their first message).

    Attributes:
        index: flat block index of the prefix's last block.
        prefix: the prefix hash as a 48-bit int.
        expires: when its cache entry is believed to expire (0: not cached).
        template: the template id (48-bit int) its return is credited to.
        seen: when it arrived.
        resolved: whether its return was already credited.
        ttl: the TTL of its marker in seconds (0: not marked).
        tool: the tools the response to its request called (``followup.tool_key``; 0: none or
            not known), which its return's gap is learned under.
    """

    index: int
    prefix: int
    expires: float
    template: int
    seen: float
    resolved: bool = False
    ttl: float = 0.0
    tool: int = 0

    @classmethod
    def from_json(cls, raw: Any) -> LineageEntry | None:
        """Read a stored entry (a list of seven or eight numbers); malformed reads as ``None``.

        Malformed: anything but numbers, a block index outside ``[0, INDEX_LIMIT)``, a hash,
        template or tool id outside 48 bits (``ID_LIMIT``), a time that is not finite, a TTL
        outside ``[0, 1 hour]``.

        >>> LineageEntry.from_json([3, 255, 0.0, 7, 100.0, 0, 300.0]).template
        7
        >>> LineageEntry.from_json([-50, 255, 0.0, 7, 100.0, 0, 300.0]) is None
        True
        """
        if not isinstance(raw, Sequence) or len(raw) not in (7, 8):
            return None
        try:
            index, prefix, expires, template, seen, resolved, ttl = raw[:7]
            entry = cls(
                int(index),
                int(prefix),
                float(expires),
                int(template),
                float(seen),
                bool(resolved),
                float(ttl),
                int(raw[7]) if len(raw) == 8 else 0,
            )
        except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinity
            return None
        return entry if entry._in_range() else None

    def _in_range(self) -> bool:
        """Whether the numbers are ones ``history`` writes (see ``from_json``)."""
        return (
            0 <= self.index < INDEX_LIMIT
            and 0 <= self.prefix < ID_LIMIT
            and 0 <= self.template < ID_LIMIT
            and 0 <= self.tool < ID_LIMIT
            and math.isfinite(self.expires)
            and math.isfinite(self.seen)
            and 0.0 <= self.ttl <= TTL_SECONDS["1h"]
        )

    def to_json(self) -> list[float]:
        """The stored form."""
        return [
            self.index,
            self.prefix,
            self.expires,
            self.template,
            self.seen,
            int(self.resolved),
            self.ttl,
            self.tool,
        ]


def merge_lineage(
    old: Sequence[LineageEntry], new: Sequence[LineageEntry], cap: int
) -> list[LineageEntry]:
    """Replace entries with the same ``(index, prefix)`` and keep the ``cap`` most recent."""
    keyed = {(e.index, e.prefix): e for e in old}
    for entry in new:
        keyed.pop((entry.index, entry.prefix), None)
        keyed[(entry.index, entry.prefix)] = entry
    return list(keyed.values())[-cap:]
