"""Where markers can go, and the set of at most four that costs least.

Pure functions over plain data (block sizes, reuse odds, believed-cached positions, prices).

**Sites** (``find_sites``, ``guard_site``): the end of the tools, the end of the system prompt,
the ends of large blocks in the conversation (documents, big tool results, any block of at least
``LARGE_BLOCK_TOKENS``; the ``MAX_LARGE_BLOCKS`` largest), the end of a first user message that
carries such a block, the conversation tail (the last markable block, so that each turn reads
the previous one), and a lookback guard: when the tail sits ``LOOKBACK_BLOCKS`` or more lookback
positions after the latest prefix believed cached (``rules.lookback_positions``: a run of
``tool_use`` blocks is one position, and so is a run of ``tool_result`` blocks), a marker on that
prefix (or the first markable block after it) keeps it readable. A site qualifies only if its
calibrated prefix reaches the model's minimum (``rules.reaches_minimum``) and its block can carry
a marker.

**Choice** (``choose_markers``): every subset of the sites that fits in the free slots (4 minus
the user's markers) is priced exactly: this request's reads and writes (the read point is the
highest believed-cached prefix that some marker of the subset reaches within the lookback, so
markers interact and a segment-by-segment dynamic programme would not be exact) plus each
segment's expected future cost (``ttl.future_cost``), with TTLs cut by ``ttl.best_split``. A
segment's future counts only its tokens past ``Option.future_start`` (the end of a prefix that
another request in flight is already writing: a second write of it saves nothing later).
There are at most 8 sites, so at most 163 subsets; ties go to a marker at the end of the tools
or the system prompt (``Option.static``), then to fewer markers, then to earlier positions,
which keeps the plan deterministic. With keep-alives, a row of such markers is also priced as
one bridged segment (``_static_rows``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from langchain_claude_relay.planner.keepalive import bridge_cost
from langchain_claude_relay.planner.reuse import ReuseOdds
from langchain_claude_relay.planner.rules import (
    LOOKBACK_BLOCKS,
    lookback_positions,
    reaches_minimum,
    within_lookback,
)
from langchain_claude_relay.planner.ttl import (
    Rates,
    TTLPolicy,
    best_split,
    future_arrivals,
    future_cost,
    late_arrivals,
)
from langchain_claude_relay.request import CacheTTL

__all__ = [
    "LARGE_BLOCK_TOKENS",
    "MAX_LARGE_BLOCKS",
    "BlockInfo",
    "Site",
    "find_sites",
    "guard_site",
    "Option",
    "future_starts",
    "HELD_1H_LEFT",
    "Placement",
    "choose_markers",
]

LARGE_BLOCK_TOKENS = 1024
"""A conversation block this large (calibrated tokens) is worth its own marker candidate."""
MAX_LARGE_BLOCKS = 3
HELD_1H_LEFT = 1800.0
"""A 1-hour entry believed alive for at least this long (seconds) still holds its prefix for
the next arrival's late return: of the prior's returns after 5 minutes within the hour, 72% come
within the first half-hour (``followup.PRIOR_GAPS``)."""


class BlockInfo(NamedTuple):
    """What placement needs to know about one block in prefix order.

    Attributes:
        section: ``"tools"``, ``"system"`` or ``"messages"``.
        message: the message index (``-1`` outside messages).
        role: ``"tool"``, ``"system"``, ``"user"`` or ``"assistant"``.
        markable: whether a marker may sit on it.
        tokens: its calibrated token estimate.
        kind: ``"tool"`` or the block type; runs of ``tool_use`` or ``tool_result`` blocks
            share a lookback position (``rules.lookback_positions``).
    """

    section: str
    message: int
    role: str
    markable: bool
    tokens: float
    kind: str = "text"


@dataclass(frozen=True)
class Site:
    """A candidate marker position: flat block index and why it is a candidate."""

    index: int
    kind: str  # "tools" | "system" | "block" | "first_message" | "tail" | "guard"


def _last_markable(blocks: Sequence[BlockInfo], indices: Sequence[int]) -> int | None:
    return next((i for i in reversed(indices) if blocks[i].markable), None)


def find_sites(
    blocks: Sequence[BlockInfo],
    cumulative: Sequence[float],
    *,
    minimum: int,
    margin: float,
    taken: frozenset[int] = frozenset(),
) -> list[Site]:
    """Candidate sites other than the lookback guard, in priority order, one per index.

    Args:
        blocks: the request's blocks in prefix order.
        cumulative: calibrated prefix tokens up to and including each block.
        minimum: the model's minimum cacheable prefix.
        margin: the rounding-up margin near the minimum.
        taken: indices that already carry a user marker.

    Returns:
        Sites whose prefix reaches the minimum, deduplicated by index.
    """
    by_section: dict[str, list[int]] = {"tools": [], "system": [], "messages": []}
    for i, block in enumerate(blocks):
        by_section[block.section].append(i)
    messages = by_section["messages"]
    tail = _last_markable(blocks, range(len(blocks)))
    raw: list[tuple[int | None, str]] = [
        (_last_markable(blocks, by_section["tools"]), "tools"),
        (_last_markable(blocks, by_section["system"]), "system"),
    ]
    large = sorted(
        (i for i in messages if blocks[i].markable and blocks[i].tokens >= LARGE_BLOCK_TOKENS),
        key=lambda i: (-blocks[i].tokens, i),
    )[:MAX_LARGE_BLOCKS]
    first = [i for i in messages if blocks[i].message == 0]
    if first and blocks[first[0]].role == "user" and any(i in large for i in first):
        raw.append((_last_markable(blocks, first), "first_message"))
    raw.extend((i, "block") for i in sorted(large))
    raw.append((tail, "tail"))
    sites: list[Site] = []
    seen: set[int] = set()
    for index, kind in raw:
        if index is None or index in seen or index in taken:
            continue
        if not reaches_minimum(cumulative[index], minimum, margin):
            continue
        seen.add(index)
        sites.append(Site(index, kind))
    return sites


def guard_site(
    blocks: Sequence[BlockInfo],
    cumulative: Sequence[float],
    cached: Sequence[int],
    *,
    minimum: int,
    margin: float,
    taken: frozenset[int] = frozenset(),
) -> Site | None:
    """The lookback guard: a site that can still read the latest believed-cached prefix.

    Needed when the tail is ``LOOKBACK_BLOCKS`` or more lookback positions after that prefix
    (``rules.lookback_positions``); the site is the prefix's own block, or the first markable
    block after it within the window (the blocks less than ``LOOKBACK_BLOCKS`` positions after
    it).

    Returns:
        The guard site, or ``None`` when no guard is needed or possible.
    """
    tail = _last_markable(blocks, range(len(blocks)))
    if not cached or tail is None:
        return None
    latest = max(cached)
    positions = lookback_positions([block.kind for block in blocks])
    if tail <= latest or positions[tail] - positions[latest] < LOOKBACK_BLOCKS:
        return None
    window = [
        index
        for index in range(latest, len(blocks))
        if positions[index] - positions[latest] < LOOKBACK_BLOCKS
    ]
    if any(index in taken for index in window):
        return None  # a user marker already keeps it within reach
    for index in window:
        if blocks[index].markable and reaches_minimum(cumulative[index], minimum, margin):
            return Site(index, "guard")
    return None


@dataclass(frozen=True)
class Option:
    """A marker the search may place (or a user marker it must keep).

    Attributes:
        index: flat block index.
        future_1h: expected future cost per token with a 1h marker (``ttl.future_cost``).
        future_5m: the same with 5m.
        forced: a user marker's TTL, or ``None``.
        writes: whether the prefix reaches the minimum (a user marker below it writes nothing).
        future_start: prefix tokens below which its write has no future value: the end of the
            longest prefix below (or at) it that another request already sent is writing
            (``CachePlanner.sent``), since later requests read that one's entry anyway.
        static: the end of the tools or of the system prompt. When marking it costs nothing
            more than leaving it to a later marker (equal odds), it is marked: only an entry
            there lets *other* conversations read the shared prefix, which the odds (lifted to
            the conversation's own, ``reuse.make_monotone``) cannot show. The tie-break grows
            with the prefix the entry makes readable, so the end of the tools is marked below
            the system prompt's too (workers sharing tools under different prompts).
        late: expected arrivals after 5 minutes within the hour (``ttl.late_arrivals``):
            ``future_5m`` prices them as rewrites.
        survival: with keep-alive requests, ``S[0..12]`` of the prefix's returns
            (``followup.survival``): a 5m marker's late arrivals may then find the entry kept
            alive (``keepalive.bridge_cost``). Each keep-alive reads the *whole* prefix through
            the marker, so what it costs per token of the segment the marker decides depends on
            the marker set (the segment starts at the previous marker): ``_price`` works it out
            per set. ``None``: no keep-alives.
        held_start: prefix tokens a 1-hour entry believed alive holds below this marker
            for at least ``HELD_1H_LEFT`` (``future_starts`` over those; the read point's entry,
            if 1h, counts whatever it has left: this request refreshes it): a late
            next arrival reads them from that entry whatever this marker's TTL, so a 5m marker
            risks a rewrite only of the tokens past it.
        held_5m: ``future_5m`` for those held tokens: the next arrival's late return is a read
            (with ``next_only``, all of ``future_5m``'s late arrivals are the next one's, and
            it equals ``future_1h``).
    """

    index: int
    future_1h: float
    future_5m: float
    forced: str | None = None
    writes: bool = True
    future_start: float = 0.0
    static: bool = False
    late: float = 0.0
    survival: tuple[float, ...] | None = None
    held_start: float = 0.0
    held_5m: float = 0.0

    @classmethod
    def priced(
        cls,
        index: int,
        odds: ReuseOdds,
        rates: Rates,
        *,
        forced: str | None = None,
        writes: bool = True,
        future_start: float = 0.0,
        static: bool = False,
        survival: Sequence[float] | None = None,
        late_per_break: float | None = None,
        next_only: bool = False,
        held_start: float = 0.0,
    ) -> Option:
        """The option at ``index`` with its future costs from the prefix's reuse odds.

        ``survival``: the prefix's returns when keep-alive requests may bridge a 5m entry
        (``Option.survival``); ``None`` without them. ``late_per_break``: for a static prefix,
        its template's late returns per return past the hour (``followup.late_per_break``):
        the late arrivals counted are at least those (up to the arrivals the odds expect),
        since the odds per arrival see only the next few minutes of a busy prefix.
        ``next_only``: only the next arrival counts (``ttl.future_cost``). ``held_start``:
        ``Option.held_start``.

        >>> from langchain_claude_relay.models import lookup_model
        >>> rates = Rates.from_prices(lookup_model("claude-sonnet-4-6").prices)
        >>> option = Option.priced(3, ReuseOdds(0.0, 0.0), rates)
        >>> option.future_5m, option.future_1h  # never back: marking it saves nothing later
        (0.0, 0.0)
        """
        late = late_arrivals(odds, next_only=next_only)
        if late_per_break is not None:
            late = max(late, min(late_per_break, future_arrivals(odds, next_only=next_only)))
        future_5m = future_cost("5m", odds, rates, next_only=next_only, late=late)
        late_next = min(late, late_arrivals(odds, next_only=True))
        return cls(
            index,
            future_cost("1h", odds, rates, next_only=next_only, late=late),
            future_5m,
            forced=forced,
            writes=writes,
            future_start=future_start,
            static=static,
            late=late if survival is not None else 0.0,
            survival=tuple(survival) if survival is not None else None,
            held_start=held_start,
            held_5m=future_5m - late_next * (rates.write_5m - rates.read),
        )

    def bridged_5m(self, end: float, ahead: float, rates: Rates) -> float:
        """``future_5m`` with keep-alives bridging the late arrivals where they pay.

        Args:
            end: the prefix tokens through this marker (what each keep-alive reads).
            ahead: the tokens whose future this marker decides (its segment).
            rates: per-token prices.

        >>> from langchain_claude_relay.models import ModelPrices
        >>> from langchain_claude_relay.planner.followup import PRIOR_GAPS, survival
        >>> rates = Rates.from_prices(ModelPrices.standard(3.0, 15.0))
        >>> o = Option.priced(1, ReuseOdds(0.5, 0.9), rates, survival=survival(PRIOR_GAPS))
        >>> o.bridged_5m(1000.0, 1000.0, rates) < o.future_5m
        True
        >>> o.bridged_5m(1000.0, 1000.0, rates) < o.bridged_5m(20000.0, 1000.0, rates)
        True
        """
        if self.survival is None or self.late <= 0.0 or ahead <= 0.0:
            return self.future_5m
        bridge = bridge_cost(self.survival, rates.read, rates.write_5m, rates.read * end / ahead)
        return self.future_5m - self.late * max(0.0, rates.write_5m - bridge)


def future_starts(pending_at: Sequence[int], cumulative: Sequence[float]) -> list[float]:
    """Per block: the end of the longest of the given prefixes at or below it (0.0: none).

    Args:
        pending_at: blocks whose prefix another request in flight is writing (or, for
            ``Option.held_start``, that a long-lived 1-hour entry holds).
        cumulative: calibrated prefix tokens per block.

    Returns:
        Each block's ``Option.future_start`` (or ``held_start``).

    >>> future_starts([1], [10.0, 20.0, 30.0])
    [0.0, 20.0, 20.0]
    """
    out: list[float] = []
    pending, start = set(pending_at), 0.0
    for i, end in enumerate(cumulative):
        if i in pending:
            start = end
        out.append(start)
    return out


@dataclass(frozen=True)
class Placement:
    """The chosen markers and what they are expected to cost.

    Attributes:
        markers: ``(index, ttl)`` of every marker, the user's included, in prefix order.
        read_index: the block up to which this request is expected to read (``-1``: none).
        now_cost: this request's expected input cost (USD, or relative units if unpriced).
        objective: now_cost plus the expected future cost the search minimized.
    """

    markers: tuple[tuple[int, CacheTTL], ...]
    read_index: int
    now_cost: float
    objective: float


def _future_5m(
    option: Option,
    end: float,
    ahead: float,
    rates: Rates,
    bridged: dict[tuple[int, float], float],
) -> float:
    """``option.future_5m``, bridged by keep-alives when it has a survival (memoized)."""
    if option.survival is None:
        return option.future_5m
    key = (option.index, ahead)  # the end is the option's; what is ahead depends on the set
    memo = bridged.get(key)
    if memo is None:
        memo = bridged[key] = option.bridged_5m(end, ahead, rates)
    return memo


def _static_rows(
    markers: Sequence[Option], aheads: Sequence[float], read_index: int
) -> list[tuple[int, int]]:
    """Spans ``[i, j)`` of two or more markers that keep-alives bridge as one segment.

    Static markers in a row (the end of the tools, then of the system prompt) with the same
    survival and late arrivals, each writing an entry now and none holding tokens of a 1-hour
    entry, mark nested prefixes that come back together: one keep-alive through the deepest
    refreshes every entry of the row (it carries the markers below its target, and each finds
    its own entry), and the scheduler sends only that one (``CachePlanner.keep_alives`` keeps
    the static candidate that saves most, the deepest at equal survival). Priced one by one,
    each marker paid for keep-alives of its own, and a marker at the end of the tools (free:
    the write is the same) looked dearer than none.
    """
    rows: list[tuple[int, int]] = []
    i, count = 0, len(markers)
    while i < count:
        first = markers[i]
        j = i + 1
        if _rowable(first, aheads[i], read_index):
            while (
                j < count
                and _rowable(markers[j], aheads[j], read_index)
                and markers[j].survival == first.survival
                and markers[j].late == first.late
            ):
                j += 1
        if j - i > 1:
            rows.append((i, j))
        i = j
    return rows


def _rowable(marker: Option, ahead: float, read_index: int) -> bool:
    return (
        marker.static
        and marker.writes
        and marker.survival is not None
        and marker.late > 0.0
        and marker.index > read_index
        and marker.held_start == 0.0
        and ahead > 0.0
    )


def _read_point(
    markers: Sequence[Option], cached_desc: Sequence[int], positions: Sequence[int] | None
) -> int:
    """The highest believed-cached prefix some marker reaches within the lookback (-1: none).

    ``positions``: each block's lookback position (``rules.lookback_positions``); ``None``
    counts one position per block.
    """
    for entry in cached_desc:
        for marker in markers:
            if positions is None:
                if 0 <= marker.index - entry < LOOKBACK_BLOCKS:
                    return entry
            elif within_lookback(positions, marker.index, entry):
                return entry
    return -1


def _price(
    markers: Sequence[Option],
    cumulative: Sequence[float],
    total: float,
    cached: Mapping[int, str],
    cached_desc: Sequence[int],
    rates: Rates,
    policy: TTLPolicy,
    bridged: dict[tuple[int, float], float],
    statics: Sequence[Option] = (),
    *,
    rows: bool = False,
    positions: Sequence[int] | None = None,
) -> tuple[float, int, float, int] | None:
    """``(objective, cut, now_cost, read_index)`` of one marker set (``None``: invalid order).

    Written for speed (it runs for every subset): plain floats, no intermediate objects.
    ``bridged`` memoizes ``Option.bridged_5m`` by marker and tokens ahead across subsets.
    ``rows``: whether the options can form a keep-alive row (``_static_rows``; at least two
    static ones with keep-alives): only then is the set also priced with its rows bridged.
    ``positions``: each block's lookback position (``_read_point``).

    ``statics``: the static options (end of the tools, of the system prompt). One left unmarked
    inside a later marker's segment does not make its tokens' future as cheap as that marker's
    odds say: a later marker's entry serves the requests that continue this one, while the
    static prefix comes back with every other conversation too, which only an entry at the
    static prefix serves (and only a marker there refreshes). So those tokens are priced at the
    dearer of the two futures: leaving the static site unmarked never looks cheaper than
    marking it. (Without this, a conversation whose next turn surely comes within 5 minutes
    priced the whole prompt with its odds, and at an agent's task start a 5m tail beat a 1h
    system prompt that every later task, 5-40 minutes apart, would have read.)
    """
    read_index = _read_point(markers, cached_desc, positions)
    read_end = cumulative[read_index] if read_index >= 0 else 0.0
    entry_1h = cached.get(read_index) == "1h"
    p_in, p_read, p_5m, p_1h = rates.input, rates.read, rates.write_5m, rates.write_1h
    start = 0.0
    aheads: list[float] = []
    futures_5m: list[float] = []
    cost_1h: list[float] = []
    cost_5m: list[float] = []
    now_1h: list[float] = []
    now_5m: list[float] = []
    for marker in markers:
        end = cumulative[marker.index]
        size = end - start if end > start else 0.0
        read = read_end - start
        read = 0.0 if read < 0.0 else (size if read > size else read)
        ahead = end - (start if start > marker.future_start else marker.future_start)
        ahead = ahead if ahead > 0.0 else 0.0  # the tokens whose future this marker decides
        future_5m = _future_5m(marker, end, ahead, rates, bridged)
        aheads.append(ahead)
        futures_5m.append(future_5m)
        extra_1h = extra_5m = 0.0  # unmarked static prefixes inside the segment (``statics``)
        for inner in statics:
            inner_end = cumulative[inner.index]
            if not start < inner_end < end:
                continue
            tokens = inner_end - (start if start > marker.future_start else marker.future_start)
            if tokens <= 0.0:
                continue
            inner_5m = _future_5m(inner, inner_end, tokens, rates, bridged)
            extra_1h = max(extra_1h, tokens * (inner.future_1h - marker.future_1h))
            extra_5m = max(extra_5m, tokens * (inner_5m - future_5m))
        bias = -1e-9 * p_in * end if marker.static else 0.0  # see ``Option.static``
        if not marker.writes:  # below the minimum: no entry, the unread part is plain input
            both = read * p_read + (size - read) * p_in
            now_1h.append(both)
            now_5m.append(both)
            cost_1h.append(both)
            cost_5m.append(both)
        elif marker.index <= read_index:
            # Read in full: a hit keeps the entry's own TTL whatever this marker says, and the
            # next write (when the entry expires) gets the TTL the next plan finds best. So the
            # choice is free here (it only has to respect the order); ties go to the entry's TTL.
            n = read * p_read
            base = n + ahead * min(marker.future_1h, future_5m) + min(extra_1h, extra_5m)
            nudge = 1e-9 * p_in * size
            now_1h.append(n)
            now_5m.append(n)
            cost_1h.append(bias + (base if entry_1h else base + nudge))
            cost_5m.append(bias + (base + nudge if entry_1h else base))
        else:
            unread = size - read
            n1 = read * p_read + unread * p_1h
            n5 = read * p_read + unread * p_5m
            now_1h.append(n1)
            now_5m.append(n5)
            # Tokens a 1h entry holds below the marker (refreshed now if it is the read point)
            # are read by a late next arrival anyway: only those past it risk a rewrite.
            held = read_end if entry_1h and read_end > marker.held_start else marker.held_start
            held -= start if start > marker.future_start else marker.future_start
            held = 0.0 if held < 0.0 else (ahead if held > ahead else held)
            cost_1h.append(n1 + ahead * marker.future_1h + extra_1h + bias)
            cost_5m.append(
                n5 + (ahead - held) * future_5m + held * marker.held_5m + extra_5m + bias
            )
        if end > start:
            start = end
    plain = (total - start) * p_in if total > start else 0.0
    forced = [m.forced for m in markers]
    split = best_split(cost_1h, cost_5m, forced, policy)
    spans = _static_rows(markers, aheads, read_index) if rows and not entry_1h else []
    if spans:  # the same set with each row bridged as one segment, for cuts that keep it 5m
        rows_5m = list(cost_5m)
        for i, j in spans:
            last = markers[j - 1]
            row_ahead = sum(aheads[i:j])
            credit = last.future_5m - _future_5m(
                last, cumulative[last.index], row_ahead, rates, bridged
            )
            for k in range(i, j):  # no held tokens, no unmarked static inside a row
                rows_5m[k] += aheads[k] * (markers[k].future_5m - credit - futures_5m[k])
        whole = [s for s in range(len(markers) + 1) if not any(i < s < j for i, j in spans)]
        bridged_split = best_split(cost_1h, rows_5m, forced, policy, cuts=whole)
        if bridged_split is not None and (split is None or bridged_split[1] < split[1]):
            split = bridged_split
    if split is None:
        return None
    cut, cost = split
    now = sum(now_1h[:cut]) + sum(now_5m[cut:]) + plain
    return cost + plain, cut, now, read_index


def choose_markers(
    options: Sequence[Option],
    fixed: Sequence[Option],
    cumulative: Sequence[float],
    cached: Mapping[int, str],
    rates: Rates,
    policy: TTLPolicy,
    slots: int,
    *,
    blocks: Sequence[BlockInfo] | None = None,
) -> Placement:
    """The cheapest set of planner markers (at most ``slots``) alongside the user's.

    Args:
        options: candidate planner markers (distinct indices).
        fixed: the user's markers (kept whatever they cost).
        cumulative: calibrated prefix tokens per block (the last is the request total).
        cached: prefixes believed cached now: block index -> the entry's TTL.
        rates: per-token prices.
        policy: the TTL policy.
        slots: free marker slots.
        blocks: the request's blocks, whose kinds give the lookback positions a read reaches
            across (``rules.lookback_positions``); ``None``: one position per block.

    Returns:
        The best placement (with no planner markers if none pays).

    Raises:
        ValueError: if the user's markers alone violate the TTL order (validate them first).
    """
    total = cumulative[-1] if cumulative else 0.0
    ordered = sorted(options, key=lambda o: o.index)
    cached_desc = sorted(cached, reverse=True)
    positions = lookback_positions([b.kind for b in blocks]) if blocks is not None else None
    statics = [o for o in ordered if o.static]
    rows = sum(o.survival is not None for o in statics) >= 2
    bridged: dict[tuple[int, float], float] = {}
    best: tuple[float, int, float, int] | None = None
    best_markers: list[Option] = []
    for size in range(0, min(slots, len(ordered)) + 1):
        for subset in itertools.combinations(ordered, size):
            markers = sorted((*fixed, *subset), key=lambda o: o.index) if fixed else subset
            unmarked = (
                [o for o in statics if all(m.index != o.index for m in markers)]
                if statics
                else statics
            )
            priced = _price(
                markers,
                cumulative,
                total,
                cached,
                cached_desc,
                rates,
                policy,
                bridged,
                unmarked,
                rows=rows,
                positions=positions,
            )
            if priced is None:
                continue
            if best is None or priced[0] < best[0] - 1e-12 * (1 + abs(best[0])):
                best, best_markers = priced, list(markers)
    if best is None:
        msg = "the user's cache markers put a 1h marker after a 5m one; validate them first"
        raise ValueError(msg)
    objective, cut, now, read_index = best
    return Placement(
        markers=tuple((m.index, "1h" if k < cut else "5m") for k, m in enumerate(best_markers)),
        read_index=read_index,
        now_cost=now,
        objective=objective,
    )
