"""How long until a prefix comes back: decayed gap histograms, per template and per tool.

Pure data and arithmetic (``history`` reads and writes the records). Where ``reuse`` keeps two
odds per prefix (back within 5 minutes, within the hour), a keep-alive decision needs the shape
of the gap beyond the TTL: after a tool call, will the follow-up come in the next 5 minutes, or
is it a 10-minute build, or is the conversation over? A ``GapHistogram`` holds decayed counts
of observed gaps in ``GAP_EDGES`` buckets (every 5 minutes past the first 5, so the chance of
a return between two keep-alives is read off exactly), up to an open bucket past the hour.

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
    0.20,  # 1-4 minutes
    0.05,  # 4-5 minutes
    0.05,  # 5-10 minutes
    0.03,  # 10-15
    0.02,  # 15-20
    0.015,  # 20-25
    0.015,  # 25-30
    0.01,  # 30-35
    0.01,  # 35-40
    0.01,  # 40-45
    0.005,  # 45-50
    0.005,  # 50-55
    0.005,  # 55-60
    0.075,  # past the hour, or never
)
"""Before any evidence: most prefixes worth marking come back within minutes, a quarter later."""


@dataclass(frozen=True)
class GapHistogram:
    """Decayed counts of observed gaps, one per ``GAP_EDGES`` bucket plus the open last one.

    >>> h = GapHistogram.empty().add(20.0).add(500.0)
    >>> [round(c, 2) for c in h.counts[:5]], round(h.total, 2)
    ([0.9, 0.0, 0.0, 1.0, 0.0], 1.9)
    """

    counts: tuple[float, ...]

    @classmethod
    def empty(cls) -> GapHistogram:
        """No observation."""
        return cls((0.0,) * (len(GAP_EDGES) + 1))

    @classmethod
    def from_json(cls, raw: Any) -> GapHistogram | None:
        """Read a stored histogram (a list of numbers); anything malformed reads as ``None``."""
        if not isinstance(raw, Sequence) or len(raw) != len(GAP_EDGES) + 1:
            return None
        try:
            counts = tuple(max(0.0, float(c)) for c in raw)
        except (TypeError, ValueError):
            return None
        return cls(counts)

    def to_json(self) -> list[float]:
        """The stored form (numbers only)."""
        return [round(c, 6) for c in self.counts]

    @property
    def total(self) -> float:
        """The decayed number of observations."""
        return sum(self.counts)

    def add(self, gap: float, decay: float = DECAY_GAPS) -> GapHistogram:
        """One more observed gap (seconds); earlier ones keep ``decay`` of their weight."""
        bucket = next((i for i, edge in enumerate(GAP_EDGES) if gap < edge), len(GAP_EDGES))
        counts = [c * decay for c in self.counts]
        counts[bucket] += 1.0
        return GapHistogram(tuple(counts))


def shrink(
    histogram: GapHistogram | None, parent: Sequence[float], weight: float = PRIOR_WEIGHT
) -> tuple[float, ...]:
    """Bucket probabilities from ``histogram``, shrunk towards ``parent``'s.

    Args:
        histogram: the observations (``None``: none).
        parent: the level above's probabilities.
        weight: how many observations the parent is worth.

    Returns:
        Probabilities summing to 1.

    >>> shrink(GapHistogram.empty().add(500.0).add(500.0).add(500.0), PRIOR_GAPS)[3] > 0.6
    True
    """
    if histogram is None or histogram.total <= 0.0:
        return tuple(parent)
    total = histogram.total + weight
    return tuple((c + weight * p) / total for c, p in zip(histogram.counts, parent, strict=True))


def survival(probabilities: Sequence[float]) -> tuple[float, ...]:
    """``S[k]``: the chance that no return came within ``k`` windows, for ``k = 0..12``.

    >>> [round(s, 3) for s in survival(PRIOR_GAPS)[:3]]
    [1.0, 0.25, 0.2]
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
