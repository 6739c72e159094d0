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

Levels, each shrunk towards the one above with the weight of ``PRIOR_WEIGHT`` observations
(as ``reuse.estimate_odds`` does): the prior (``PRIOR_GAPS``), then a template's gaps over all
tools, then the template's gaps after one tool. The tool is the one the model just called (the
response's tool calls, or the tool_use blocks in front of the follow-up's tool results), hashed
(``tool_key``): the store never holds a tool's name. With the weight of one observation for the
level above, three calls of a tool give its own gaps three quarters of the weight, so a tool
that answers in seconds and one that runs for minutes are told apart after a few calls.

Gaps run from one request's start to the next request's start (the TTL also runs from the
request's start).
"""

from __future__ import annotations

import hashlib
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
    "GapHistogram",
    "tool_key",
    "shrink",
    "survival",
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


@dataclass(frozen=True)
class GapHistogram:
    """Decayed outcomes of arrivals, by ``GAP_EDGES`` bucket, and the arrivals still open.

    An arrival (``add_trial``) stays *pending* until it comes back (``add_return``: its gap's
    bucket) or an hour has passed (then it counts in the last bucket, "past the hour, or
    never"). Only resolved arrivals are in ``counts``, so the latest arrivals, which have not
    had their chance to come back yet, do not look like arrivals that never will.

    >>> h = GapHistogram.empty().add_trial(0.0).add_return(20.0, 0.0)
    >>> h = h.add_trial(100.0).add_trial(200.0)
    >>> h = h.add_return(500.0, 100.0).add_trial(5000.0)   # 200 never came back
    >>> [round(c, 2) for c in h.counts[:4]], round(h.counts[-1], 2), h.pending
    ([0.81, 0.0, 0.0, 0.9], 1.0, (5000.0,))
    """

    counts: tuple[float, ...]
    pending: tuple[float, ...] = ()

    @classmethod
    def empty(cls) -> GapHistogram:
        """No observation."""
        return cls((0.0,) * (len(GAP_EDGES) + 1))

    @classmethod
    def from_json(cls, raw: Any) -> GapHistogram | None:
        """Read a stored histogram (its counts, then its open arrivals); malformed: ``None``."""
        buckets = len(GAP_EDGES) + 1
        if not isinstance(raw, Sequence) or len(raw) < buckets:
            return None
        try:
            counts = tuple(map(float, raw[:buckets]))
            pending = tuple(map(float, raw[buckets:]))[-PENDING_CAP:]
        except (TypeError, ValueError):
            return None
        return cls(counts, pending) if min(counts) >= 0.0 else None

    def to_json(self) -> list[float]:
        """The stored form: the counts, then the open arrivals (numbers only)."""
        return [*self.counts, *self.pending]

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
        return GapHistogram(expired.counts, pending)

    def add_return(self, gap: float, seen: float) -> GapHistogram:
        """The arrival at ``seen`` came back after ``gap`` seconds (ignored if not open)."""
        expired = self._expire(seen + gap)
        if seen not in expired.pending:
            return expired
        pending = list(expired.pending)
        pending.remove(seen)
        bucket = next((i for i, edge in enumerate(GAP_EDGES) if gap < edge), len(GAP_EDGES))
        return expired._resolved(bucket, tuple(pending))

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
        return GapHistogram(tuple(counts), pending)


def shrink(
    histogram: GapHistogram | None,
    parent: Sequence[float],
    weight: float = PRIOR_WEIGHT,
    now: float | None = None,
) -> tuple[float, ...]:
    """Bucket probabilities from ``histogram``, shrunk towards ``parent``'s.

    The parent counts as ``weight`` observations spread over its buckets. With ``now``, the
    arrivals still open count too, as *censored* ones (a life table, as Kaplan and Meier):
    one open for 20 minutes has not come back within 20 minutes, whatever it does later. So
    a template whose conversations stop (their last arrivals stay open) learns within the
    hour that a return after the first expiry is unlikely, instead of waiting an hour for
    them to resolve as "never", with only the quick returns counted meanwhile.

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
    censored = [0.0] * len(counts)
    ages = [now - seen for seen in histogram.pending] if now is not None else []
    for age in ages:
        bucket = next((i for i, edge in enumerate(GAP_EDGES) if age < edge), len(GAP_EDGES))
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
