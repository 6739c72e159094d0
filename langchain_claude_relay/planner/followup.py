"""How long until a prefix comes back: decayed gap histograms, per template and per tool.

Pure data and arithmetic (``history`` reads and writes the records). Where ``reuse`` keeps two
odds per prefix (back within 5 minutes, within the hour), a keep-alive decision needs the shape
of the gap beyond the TTL: after a tool call, will the follow-up come in the next 5 minutes, or
is it a 10-minute build, or is the conversation over? A ``GapHistogram`` holds decayed counts
of observed gaps in ``GAP_EDGES`` buckets (every 5 minutes past the first 5, so the chance of
a return between two keep-alives is read off exactly), up to an open bucket past the hour.

Every arrival that could be followed is a *trial* (``add_trial``); a return resolves it with its
gap (``add_return``), and one still open after an hour resolves as "past the hour, or never", so
a tool after which the conversation usually ends (a final answer) learns not to be kept warm.

**Two memories.** The counts remember about the last ten arrivals (``DECAY_GAPS``): enough for
how often a prefix comes back within 5 minutes. What happens *after* the first expiry is rarer
(a document asked about every 100 s has one gap in twenty past 5 minutes), and ten arrivals
hold almost none of it, so the shape past 5 minutes came from the prior alone: after the last
question of the day the prefix was kept warm for 40 minutes, every day, however often it had
been seen that a silence of 10 minutes meant the end. So a second memory (``tail``) holds the
arrivals that were not back within 5 minutes, by bucket, decayed only by each other: the last
ten *such* arrivals. The counts say how likely a return after 5 minutes is; the tail says when
it comes, or that it does not.

Levels, each shrunk towards the one above with the weight of ``PRIOR_WEIGHT`` observations
(as ``reuse.estimate_odds`` does): the prior (``PRIOR_GAPS``), then a template's gaps over all
tools, then the template's gaps after one tool. The tool is the one the model just called (the
response's tool calls, or the tool_use blocks in front of the follow-up's tool results), hashed
(``tool_key``): the store never holds a tool's name. With the weight of one observation for the
level above, three calls of a tool give its own gaps three quarters of the weight, so a tool
that answers in seconds and one that runs for minutes are told apart after a few calls.

Gaps run from one request's start to the next request's start (the TTL also runs from the
request's start).

**Not only for keep-alives.** A static site's histogram also says how many late returns come
for each return past the hour (``late_per_break``): the returns a 1-hour entry serves and a
5-minute one pays for (keep-alives or a rewrite each). The TTL choice counts those
(``placement.Option.priced``), with keep-alives or without, so static sites' gaps are learned
in both modes; a conversation's follow-up gaps only with keep-alives. A template pools its
prefixes (several tenants' prompts of one shape), so a prefix's own late returns and breaks
(``reuse.ReuseRecord.tail``) lift its ratio where they show more (``own_late_per_break``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GAP_EDGES",
    "WINDOW",
    "BOUNDARIES",
    "DECAY_GAPS",
    "PRIOR_WEIGHT",
    "PRIOR_GAPS",
    "PENDING_CAP",
    "TAIL_FROM",
    "STORED_VERSION",
    "GapHistogram",
    "tool_key",
    "shrink",
    "survival",
    "late_per_break",
    "own_late_per_break",
    "late_seen",
]

WINDOW = 300.0
"""A 5-minute entry's life: keep-alives fall at multiples of it."""
BOUNDARIES = 12
"""Keep-alive boundaries considered: every 5 minutes up to the hour."""
GAP_EDGES: tuple[float, ...] = (60.0, 240.0, *(WINDOW * k for k in range(1, BOUNDARIES + 1)))
"""Upper edges of the gap buckets (seconds); a last, open bucket holds gaps past the hour."""
DECAY_GAPS = 0.9
"""Weight an observation keeps when the next one arrives (about ten remembered)."""
PRIOR_WEIGHT = 1.0

PRIOR_GAPS: tuple[float, ...] = (
    0.50,  # under a minute: most follow-ups (tool loops, chat turns)
    0.17,  # 1-4 minutes
    0.04,  # 4-5 minutes
    0.04,  # 5-10 minutes
    0.025,  # 10-15
    0.015,  # 15-20
    0.01,  # 20-25
    0.01,  # 25-30
    0.008,  # 30-35
    0.008,  # 35-40
    0.008,  # 40-45
    0.005,  # 45-50
    0.005,  # 50-55
    0.005,  # 55-60
    0.151,  # past the hour, or never
)
"""Before any evidence: most prefixes worth marking come back within minutes; of those not back
after 5 minutes, about half never come (a keep-alive is a bet for the first 10-30 minutes)."""


PENDING_CAP = 16
"""Unresolved arrivals kept per histogram (the oldest resolve as "never" beyond it)."""
TAIL_FROM = GAP_EDGES.index(WINDOW) + 1
"""The first bucket of returns after the first expiry (``GapHistogram.tail`` starts there)."""
_PRIOR_LATE_PER_BREAK = sum(PRIOR_GAPS[TAIL_FROM:-1]) / PRIOR_GAPS[-1]
"""The prior's late returns per break (about 0.92)."""
_BUCKETS = len(GAP_EDGES) + 1
_NO_TAIL = (0.0,) * (_BUCKETS - TAIL_FROM)
_STORED_COUNTS = _BUCKETS + len(_NO_TAIL)
STORED_VERSION = -2.0
"""The first number of a stored histogram (counts are never negative: older forms start with
one)."""


@dataclass(frozen=True)
class GapHistogram:
    """Decayed outcomes of arrivals, by ``GAP_EDGES`` bucket, and the arrivals still open.

    An arrival (``add_trial``) stays *pending* until it comes back (``add_return``: its gap's
    bucket) or an hour has passed (then it counts in the last bucket, "past the hour, or
    never"). Only resolved arrivals are in ``counts``, so the latest arrivals, which have not
    had their chance to come back yet, do not look like arrivals that never will.

    ``tail`` counts the resolved arrivals that were not back within 5 minutes, by bucket from
    ``TAIL_FROM`` on, each decayed only when another such arrival resolves (the module's "two
    memories").

    >>> h = GapHistogram.empty().add_trial(0.0).add_return(20.0, 0.0)
    >>> h = h.add_trial(100.0).add_trial(200.0)
    >>> h = h.add_return(500.0, 100.0).add_trial(5000.0)   # 200 never came back
    >>> [round(c, 2) for c in h.counts[:4]], round(h.counts[-1], 2), h.pending
    ([0.81, 0.0, 0.0, 0.9], 1.0, (5000.0,))
    >>> round(h.tail[0], 2), h.tail[-1]          # remembered longer than ``counts`` does
    (0.9, 1.0)
    """

    counts: tuple[float, ...]
    pending: tuple[float, ...] = ()
    tail: tuple[float, ...] = _NO_TAIL

    @classmethod
    def empty(cls) -> GapHistogram:
        """No observation."""
        return cls((0.0,) * _BUCKETS)

    @classmethod
    def from_json(cls, raw: Any) -> GapHistogram | None:
        """Read a stored histogram; anything malformed reads as ``None`` (no history).

        The stored form is a list of numbers: ``STORED_VERSION``, the counts, the tail, then the
        open arrivals. A list starting with a count instead (never negative) is the form from
        before the tail existed (the counts, then the open arrivals): read with an empty tail.
        """
        numbers = _finite(raw)
        if not numbers:
            return None
        if numbers[0] == STORED_VERSION:
            counts, tail = numbers[1 : 1 + _BUCKETS], numbers[1 + _BUCKETS : 1 + _STORED_COUNTS]
            pending = numbers[1 + _STORED_COUNTS :]
        else:
            counts, tail, pending = numbers[:_BUCKETS], _NO_TAIL, numbers[_BUCKETS:]
        if len(counts) != _BUCKETS or len(tail) != len(_NO_TAIL):
            return None
        if min(counts) < 0.0 or min(tail) < 0.0:
            return None
        return cls(counts, pending[-PENDING_CAP:], tail)

    def to_json(self) -> list[float]:
        """The stored form (numbers only; see ``from_json``)."""
        return [STORED_VERSION, *self.counts, *self.tail, *self.pending]

    @property
    def total(self) -> float:
        """The decayed number of resolved arrivals."""
        return sum(self.counts)

    def add_trial(self, now: float) -> GapHistogram:
        """An arrival at ``now`` that may come back (arrivals open for an hour resolve)."""
        expired = self._expire(now)
        pending = (*expired.pending, now)
        while len(pending) > PENDING_CAP:
            expired = expired._resolved(len(GAP_EDGES), ())
            pending = pending[1:]
        return GapHistogram(expired.counts, pending, expired.tail)

    def add_return(self, gap: float, seen: float) -> GapHistogram:
        """The arrival at ``seen`` came back after ``gap`` seconds (ignored if not open)."""
        expired = self._expire(seen + gap)
        if seen not in expired.pending:
            return expired
        pending = list(expired.pending)
        pending.remove(seen)
        return expired._resolved(_bucket(gap), tuple(pending))

    def probabilities(self) -> tuple[float, ...]:
        """Per bucket, the share of resolved arrivals (all zero with none)."""
        total = self.total
        return tuple(c / total if total > 0.0 else 0.0 for c in self.counts)

    def _expire(self, now: float) -> GapHistogram:
        out = self
        for seen in self.pending:
            if now - seen > GAP_EDGES[-1]:
                out = out._resolved(len(GAP_EDGES), tuple(t for t in out.pending if t != seen))
        return out

    def _resolved(self, bucket: int, pending: tuple[float, ...]) -> GapHistogram:
        counts = [c * DECAY_GAPS for c in self.counts]
        counts[bucket] += 1.0
        tail = self.tail
        if bucket >= TAIL_FROM:
            decayed = [c * DECAY_GAPS for c in tail]
            decayed[bucket - TAIL_FROM] += 1.0
            tail = tuple(decayed)
        return GapHistogram(tuple(counts), pending, tail)


def _bucket(gap: float) -> int:
    return next((i for i, edge in enumerate(GAP_EDGES) if gap < edge), len(GAP_EDGES))


_NUMBER_TYPES = frozenset({int, float})


def _finite(raw: Any) -> tuple[float, ...] | None:
    """A stored list as finite floats; ``None`` for anything else.

    Text, nesting, booleans, NaN and lists longer than any stored form all read as ``None``.
    """
    if not isinstance(raw, (list, tuple)) or len(raw) > 1 + _STORED_COUNTS + PENDING_CAP:
        return None
    if not _NUMBER_TYPES.issuperset(map(type, raw)):  # exact types: no bool, no subclass
        return None
    try:
        numbers = tuple(map(float, raw))
    except OverflowError:  # an integer too large for a float
        return None
    return numbers if all(map(math.isfinite, numbers)) else None


def shrink(
    histogram: GapHistogram | None,
    parent: Sequence[float],
    weight: float = PRIOR_WEIGHT,
    now: float | None = None,
) -> tuple[float, ...]:
    """Bucket probabilities from ``histogram``, shrunk towards ``parent``'s.

    The parent counts as ``weight`` observations spread over its buckets. Past the first
    expiry, once ``histogram.tail`` holds anything, the shape comes from it (shrunk towards the
    parent's shape with the same weight), and only the share that gets there from the counts.

    With ``now``, the arrivals still open count too, as *censored* ones (a life table, as
    Kaplan and Meier): one open for 20 minutes has not come back within 20 minutes, whatever
    it does later. So a template whose conversations stop (their last arrivals stay open)
    learns within the hour that a return after the first expiry is unlikely, instead of
    waiting an hour for them to resolve as "never", with only the quick returns counted
    meanwhile.

    Args:
        histogram: the observations (``None``: none).
        parent: the level above's probabilities.
        weight: how many observations the parent is worth.
        now: the current time (planner clock), to count open arrivals; ``None``: resolved
            ones only.

    Returns:
        Probabilities summing to 1.

    >>> h = GapHistogram.empty()
    >>> for t in (0.0, 1000.0, 2000.0):
    ...     h = h.add_trial(t).add_return(500.0, t)
    >>> shrink(h, PRIOR_GAPS)[3] > 0.6
    True
    >>> h = GapHistogram.empty()
    >>> for t in (0.0, 100.0, 200.0):
    ...     h = h.add_trial(t).add_return(20.0, t)
    >>> h = h.add_trial(300.0).add_trial(400.0)   # two open for 20 minutes or more by 1700
    >>> def back_later(s):  # of those not back within 5 minutes, the share back within the hour
    ...     return round((s[1] - s[BOUNDARIES]) / s[1], 2)
    >>> back_later(survival(shrink(h, PRIOR_GAPS)))
    0.48
    >>> back_later(survival(shrink(h, PRIOR_GAPS, now=1700.0)))
    0.28
    """
    if histogram is None:
        return tuple(parent)
    counts = [c + weight * p for c, p in zip(histogram.counts, parent, strict=True)]
    seen_late = sum(histogram.tail)
    if seen_late > 0.0:  # when a late return comes (or that it does not): the long memory
        late = sum(counts[TAIL_FROM:])
        parent_late = sum(parent[TAIL_FROM:])
        shape = [
            c + (weight * p / parent_late if parent_late > 0.0 else 0.0)
            for c, p in zip(histogram.tail, parent[TAIL_FROM:], strict=True)
        ]
        norm = sum(shape)
        counts[TAIL_FROM:] = [late * c / norm for c in shape]
    censored = [0.0] * len(counts)
    ages = [now - seen for seen in histogram.pending] if now is not None else []
    for age in ages:
        bucket = _bucket(age)
        if bucket == len(GAP_EDGES):
            counts[-1] += 1.0  # open for more than the hour: past the hour, or never
        else:
            censored[bucket] += 1.0
    total = sum(counts)
    if total <= 0.0:
        return tuple(parent)
    if not any(censored):
        return tuple(c / total for c in counts)
    out: list[float] = []
    alive = 1.0  # the share with no return before this bucket
    at_risk = total + sum(censored)
    for resolved, lost in zip(counts[:-1], censored[:-1], strict=True):
        exposed = at_risk - lost / 2.0  # the life table's half interval for the censored
        hazard = resolved / exposed if exposed > 0.0 else 0.0
        out.append(alive * hazard)
        alive *= 1.0 - hazard
        at_risk -= resolved + lost
    out.append(alive)
    return tuple(out)


def late_per_break(histogram: GapHistogram | None, now: float) -> float | None:
    """Expected returns after the first expiry (within the hour) before one past the hour.

    What a 1-hour entry of a static prefix is worth against a 5-minute one: the 1h entry
    serves every late return until the prefix stays away for more than an hour; the 5m entry
    pays keep-alives or a rewrite on each. The odds per arrival (``reuse``) see only the next
    ~20 arrivals, a handful of minutes on a busy prefix, so a prefix asked every few seconds
    within tasks that come 10-30 minutes apart looked as if it had about one late return ahead,
    and its 5m entry was kept alive (or rewritten) after every pause of the day. The long
    memory (``tail``) knows how many late returns come for each return past the hour: that
    ratio, shrunk towards the prior's (half of the late ones never come) with the weight of one
    observation.

    Arrivals open for more than the hour are counted as such (they are); those open for less
    say nothing yet (not as censored ones here: an open arrival is not a break).

    Args:
        histogram: the template's gaps after any tool (``None``: none).
        now: the current time (planner clock).

    Returns:
        The ratio; ``None`` until a return after 5 minutes (or past the hour) has been seen:
        the prior alone would make every new prompt's first write 1h, and dense traffic,
        which has no late returns to learn from, keep paying for that.

    >>> late_per_break(None, 0.0) is None
    True
    >>> h = GapHistogram.empty()
    >>> for day in range(2):  # tasks 20 minutes apart, then nothing until the next day
    ...     for task in range(6):
    ...         t = day * 86400.0 + task * 1200.0
    ...         h = h.add_trial(t).add_return(1200.0 if task < 5 else 86400.0 - 6000.0, t)
    >>> round(late_per_break(h, 2 * 86400.0), 1)  # 5 to 1, the latest (a break) weighing most
    3.0
    """
    known = histogram._expire(now) if histogram is not None else None
    if known is None or not any(known.tail):
        return None
    p = shrink(known, PRIOR_GAPS)
    past_the_hour = p[-1]
    if past_the_hour <= 0.0:
        return math.inf
    return sum(p[TAIL_FROM:-1]) / past_the_hour


def late_seen(histogram: GapHistogram | None) -> bool:
    """Whether a prefix of this template ever came back after 5 minutes, within the hour.

    Keep-alives pay only for such returns. Until one is seen after an answer without tool
    calls, the prior alone (one arrival in seven back that way) kept every conversation's last
    turn alive, a chat's and an agent's final answer, for a follow-up that never came
    (``CachePlanner.keep_alives``). A tool call's result does come back: the prior stands there.
    Measured without the prior for static prefixes too: a document's first late return then
    found its entry expired and rewrote it for an hour, where cheap keep-alives were right.

    >>> h = GapHistogram.empty().add_trial(0.0).add_return(30.0, 0.0)
    >>> late_seen(None), late_seen(h), late_seen(h.add_trial(60.0).add_return(900.0, 60.0))
    (False, False, True)
    """
    return histogram is not None and any(histogram.tail[:-1])


def own_late_per_break(late: float, breaks: float, template: float | None) -> float | None:
    """A static prefix's late returns per break: its template's, or more if its own say so.

    A template's ratio (``late_per_break``) pools every prefix of that shape: six tenants'
    system prompts under one template, one of them back every few minutes all day and the
    others rarely, and the day break resolves all six last arrivals as breaks at once. Right
    after it the pooled ratio read 1.4 where the busy tenant's own history held a dozen late
    returns per break, so its prompt was written for 5 minutes and kept alive for an hour and
    a half. The prefix's own long memory (``reuse.ReuseRecord.tail``) says what that prefix
    does; it is shrunk, with the weight of one observation, towards the prior's ratio as a
    template's tail is, or towards the template's when that is lower (a template whose prompts
    never come back, a timestamp in them, knows more than one break of a prompt's own).

    It only ever raises the template's ratio: a prefix's few late returns and breaks are weak
    evidence against its siblings' (a prompt seen four times a day, its own ratio 1.4 on one
    break, was written for 5 minutes at its last arrival of the day where the template's 11
    had written it for an hour). The one prefix of a template gets the template's ratio.

    Args:
        late: the prefix's decayed returns after 5 minutes, within the hour.
        breaks: its decayed returns past the hour.
        template: its template's ratio (``None``: none yet).

    Returns:
        The ratio; the template's (``None`` too) before the prefix has come back after
        5 minutes or past the hour.

    >>> own_late_per_break(0.0, 0.0, 1.5), own_late_per_break(0.0, 0.0, None)
    (1.5, None)
    >>> round(own_late_per_break(6.0, 1.0, 1.4), 2)   # (6 + 0.48) / (1 + 0.52)
    4.26
    >>> own_late_per_break(0.0, 1.0, 1.4)             # never below its template's
    1.4
    """
    if late + breaks <= 0.0:
        return template
    ratio = _PRIOR_LATE_PER_BREAK if template is None else min(template, _PRIOR_LATE_PER_BREAK)
    share = PRIOR_WEIGHT / (1.0 + ratio)  # one observation: ``ratio`` late returns per break
    own = (late + share * ratio) / (breaks + share)
    return own if template is None else max(own, template)


def survival(probabilities: Sequence[float]) -> tuple[float, ...]:
    """``S[k]``: the chance that no return came within ``k`` windows, for ``k = 0..12``.

    >>> [round(s, 3) for s in survival(PRIOR_GAPS)[:3]]
    [1.0, 0.29, 0.25]
    """
    out = [1.0]
    remaining = 1.0
    for k, p in enumerate(probabilities[:-1]):
        remaining -= p
        if GAP_EDGES[k] >= WINDOW and GAP_EDGES[k] % WINDOW == 0.0:
            out.append(max(0.0, remaining))
    return tuple(out)


def tool_key(names: Iterable[str]) -> int:
    """A 48-bit hash of the tools called (sorted, distinct); 0 when there is none.

    >>> tool_key([]), tool_key(["b", "a"]) == tool_key(["a", "b", "a"])
    (0, True)
    """
    distinct = sorted({n for n in names if n})
    if not distinct:
        return 0
    return int(hashlib.sha256("\x00".join(distinct).encode()).hexdigest()[:12], 16) or 1
