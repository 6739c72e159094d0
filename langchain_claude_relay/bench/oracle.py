"""The oracle: an offline lower bound on what any caching strategy can pay for a trace.

It knows every future arrival and ignores the 4-marker limit and the 20-block lookback, so it is
the physical limit the strategies are measured against. Costs are input-side (plain input, cache
reads, 5m and 1h writes); output tokens do not depend on caching.

**The emulator's rules** (``emulator/engine.py``): a request is a path of blocks in prefix order;
the cache key of block ``i`` chains the hashes of blocks ``0..i``, so requests sharing a key share
the whole prefix up to it. The keys of all requests form a trie; call its nodes *nodes*. A request
reads up to its highest hit ``h`` (an entry alive at its start, ``now < expires_at``), then pays 1h
writes up to its last 1h writer ``a``, 5m writes up to its last writer ``b``, and plain input for
the rest; a writer is a marker after ``h`` whose prefix reaches the model's minimum. Its writes
create entries at its writer nodes; its hits restart their entries' own TTL. Entries become
readable when the response begins: requests at the same virtual instant cannot read each other's
writes (the runner sends them concurrently).

**The relaxation.** Each token of each request is billed at one of four rates; split the cost by
node. For node ``v`` (with ``w(v)`` tokens), track a *coverage* state ``(e1, e5)``: until when
some 1h / 5m entry at a node at or below ``v`` is alive. At each instant the requests through
``v`` may: read ``v`` (if covered before the instant; the coverage of every alive kind restarts),
write ``v`` with 5m or 1h (if the request has a markable block at or after ``v``: coverage of that
kind until ``t + TTL``), or pay plain input. Three refinements keep the bound tight:

* *Minimum.* Entries exist only at prefixes reaching the minimum, so a node before the request's
  *anchor* (the first block whose prefix reaches it) is read exactly when the anchor is, written
  exactly when it is, and plain otherwise: its tokens are billed with the anchor, whose weight is
  the whole prefix up to it. A request below the minimum pays plain input.
* *Upgrade.* A request that reads ``v`` and writes a 1h entry deeper on its path covers ``v``
  for an hour for the requests that pass through that deeper entry. The relaxation grants a read
  1h coverage only if the request has a markable block after ``v`` and some later request passes
  through the next block after ``v`` on its path (otherwise no one could use that entry).
* *Concurrency.* Reads at an instant see only coverage from earlier instants; of several
  concurrent requests at most one needs to write (a second write buys nothing).

**Keep-alive requests.** A strategy may also send requests the trace does not have: a
keep-alive re-sends a prefix it sent before (``max_tokens`` 0 or 1) to restart its entries'
TTL. Per node, the relaxation adds, in each gap between two instants of the node:

* a *keep-alive read*, at any moment the node is covered: per token ``read``, restarting every
  alive kind of coverage (for an hour when ``ping_upgrade`` holds: a child of the node was seen
  before the gap and is seen after it, so a keep-alive along that child could write a 1h entry
  below the node that a later request passes through);
* a *keep-alive write* just before an instant, if the node was seen before: per token
  ``write_5m`` or ``write_1h``, after which every request of the instant reads (even
  concurrent ones, which cannot read each other's writes).

Within a gap only the last moment matters: a keep-alive sent earlier buys less time for the
same price. So the programme keeps, for each state, "no keep-alive", a chain keeping the 1h
coverage alive (``floor((t - e1) / 1h) + 1`` reads to be alive at ``t``), a chain keeping the
5m coverage alive (the same with 5 minutes), and, with ``ping_upgrade``, one read that upgrades
to 1h followed by 1h ones. Mixed chains are dominated (a read restarts every alive kind). A
keep-alive write at another moment is never cheaper than one just before the instant that
reads it (moving it later keeps the coverage it buys and drops the reads that kept it alive);
one whose coverage no later request reads is dropped. ``keep_alives=False`` leaves all of this
out: the bound for strategies that send only the trace's requests.

**Why it is a lower bound.** Take any strategy and its real bills, keep-alives included. Map
each request's billing of each node to the relaxed action of the same kind (read / write 1h /
write 5m / plain), and each keep-alive's billing of a node of the trace to a relaxed keep-alive
read or write (its plain input is dropped; nodes only keep-alives pass through are not in the
trie and cost the strategy something, the relaxation nothing). By induction over time, every
entry that some later request reads to cover ``v`` is matched by relaxed coverage of ``v``
that is at least as long-lived: a block written in the request that created the entry is
billed 1h if the entry is 1h (1h writers come first) and at least 5m otherwise; a block read
in that request gets the upgrade exactly when the entry is deeper and is read later (a
keep-alive re-sends a prefix seen before, so a deeper entry it writes is at a child seen before
it, and one a later request reads through is seen after it); a hit restarts its entry's TTL
and the relaxed read restarts every alive kind; a keep-alive's read of a covered node is a
relaxed keep-alive read, and a keep-alive's write of ``v`` is a relaxed keep-alive write of
``v``, moved to just before the instant that next reads it (or dropped). So every real action
maps to a feasible relaxed one of no greater cost, and the real cost is at least a feasible
relaxed cost. Nodes are independent in the relaxation (each state only depends on its own
actions), so the relaxed optimum is the sum over nodes of a dynamic programme over that node's
arrival instants. The programme is exact: with ``read <= input <= write_5m <= write_1h``
(checked), at a covered instant all requests read and at most one writes 1h; at an uncovered
one, at most one writes and the others pay plain (or a keep-alive wrote just before and all
read); states with later expiries and lower cost dominate; and in the gaps the keep-alive
chains above are the undominated ones. Dropping the 4-marker limit, the lookback window and the
TTL order only enlarges the feasible set, so the result stays a bound. (Keep-alives' output
tokens, one each on relays, are not input: the bench adds them to the strategy's cost, never
to the bound.)

Identity of blocks is the emulator's hash of each block as rendered without markers. The
canonical rendering gives a block the same bytes whatever its markers; a renderer that did
change a block's bytes when marking it could only split identities the oracle merges, never
merge distinct contents, so real reads would remain a subset.
Token counts come from the emulator's own tokenizer (``emulator/tokens.py``) on the same
rendered payload, and the runner checks that every bill's total equals the profile's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.emulator.engine import TTL_SECONDS, BlockCounter, parse_openai
from langchain_claude_relay.planner.ttl import Rates
from langchain_claude_relay.wire.openai_chat import render_chat_payload

__all__ = [
    "Rates",
    "RequestProfile",
    "Instant",
    "OracleResult",
    "profile_payload",
    "profile_request",
    "node_cost_per_token",
    "oracle_cost",
    "PrefixNode",
    "PrefixNodes",
    "anchor_index",
    "build_nodes",
]

_NEVER = -math.inf
_ONE_HOUR = TTL_SECONDS["1h"]
_FIVE_MINUTES = TTL_SECONDS["5m"]
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})


@dataclass(frozen=True)
class RequestProfile:
    """A request as the cache sees it: its blocks' keys, emulator token counts, markability.

    Attributes:
        time: the virtual start time.
        keys: per block, the chained prefix key (equal keys: equal prefixes).
        tokens: per block, the emulator's token count.
        markable: per block, whether Claude accepts a marker on it.
    """

    time: float
    keys: tuple[str, ...]
    tokens: tuple[int, ...]
    markable: tuple[bool, ...]

    @property
    def total(self) -> int:
        """All input tokens of the request."""
        return sum(self.tokens)


def profile_payload(
    payload: Mapping[str, Any], time: float, counter: BlockCounter
) -> RequestProfile:
    """Profile an OpenAI chat payload exactly as the emulator parses and counts it.

    Args:
        payload: the request body (markers, if any, do not change the profile except where they
            change a block's bytes).
        time: the request's virtual time.
        counter: the emulator's tokenizer (an ``EmulatorTokenizer`` with its settings).

    Returns:
        The profile.
    """
    prefix = parse_openai(payload)
    return RequestProfile(
        time,
        prefix.prefix_keys,
        tuple(counter.count_block(b.hash, b.kind, b.text) for b in prefix.blocks),
        tuple(
            b.kind not in _UNMARKABLE and not (b.kind == "text" and not b.text)
            for b in prefix.blocks
        ),
    )


def profile_request(
    messages: Sequence[Any],
    tools: Sequence[Any],
    model: str,
    time: float,
    counter: BlockCounter,
) -> RequestProfile:
    """Profile LangChain input rendered the way every strategy sends it (canonical, unmarked)."""
    request = to_claude_request(list(messages), model=model, tools=list(tools) or None)
    return profile_payload(render_chat_payload(request, canonical=True), time, counter)


@dataclass(frozen=True)
class Instant:
    """A node's arrivals at one virtual instant.

    Attributes:
        time: the instant.
        count: how many requests pass through the node then.
        writable: whether one of them can write an entry covering the node.
        upgrade: whether one of them can extend the node's coverage to 1h while reading it.
        ping_upgrade: whether a keep-alive in the gap before this instant can extend the node's
            coverage to 1h while reading it (a child of the node was seen before the gap and is
            seen again after it).
    """

    time: float
    count: int
    writable: bool
    upgrade: bool
    ping_upgrade: bool = False


State = tuple[float, float]


def _normalized(state: State, now: float) -> State:
    e1, e5 = state
    e1 = e1 if e1 > now else _NEVER
    e5 = e5 if e5 > now and e5 > e1 else _NEVER
    return e1, e5


def _pareto(states: Mapping[State, float]) -> dict[State, float]:
    kept: dict[State, float] = {}
    for state, cost in sorted(states.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1])):
        if not any(k[0] >= state[0] and k[1] >= state[1] for k in kept):
            kept[state] = cost
    return kept


def _push(states: dict[State, float], state: State, cost: float) -> None:
    states[state] = min(cost, states.get(state, math.inf))


def _pings(expires: float, until: float, ttl: float) -> int:
    """Keep-alives that keep an entry expiring at ``expires`` alive at ``until``.

    Each goes just before the entry expires; alive means ``now < expires_at``.
    """
    return math.floor((until - expires) / ttl) + 1


def _kept_alive(
    states: Mapping[State, float], since: float, t: float, rates: Rates, upgrade: bool
) -> dict[State, float]:
    """The states reachable at ``t`` with keep-alives sent in the gap after ``since``.

    Each keep-alive is a read of the node sent just before its coverage expires, which
    restarts the alive coverage (with ``upgrade``, for an hour): the latest moment is always
    best, since an earlier one buys less time for the same price.
    """
    out = dict(states)
    for (e1, e5), cost in states.items():
        if since < e1 <= t:  # keep the 1h coverage alive
            k = _pings(e1, t, _ONE_HOUR)
            _push(out, (e1 + k * _ONE_HOUR, _NEVER), cost + k * rates.read)
        if since < e5 <= t:  # keep the 5m coverage alive
            k = _pings(e5, t, _FIVE_MINUTES)
            _push(out, (_NEVER, e5 + k * _FIVE_MINUTES), cost + k * rates.read)
        covered = max(e1, e5)
        if upgrade and since < covered <= t:  # one keep-alive writing 1h deeper, then 1h ones
            k = 1 + (_pings(covered + _ONE_HOUR, t, _ONE_HOUR) if covered + _ONE_HOUR <= t else 0)
            _push(out, (covered + k * _ONE_HOUR, _NEVER), cost + k * rates.read)
    return out


def node_cost_per_token(
    instants: Sequence[Instant], rates: Rates, *, keep_alives: bool = True
) -> float:
    """The cheapest USD per token of one node over its arrival instants (see the docstring).

    Args:
        instants: the node's arrivals, in time order.
        rates: the prices.
        keep_alives: whether keep-alive requests (reads between arrivals, and a write just
            before an arrival) are allowed.

    Returns:
        The minimum total, per token of the node.

    >>> r = Rates(1.0, 0.1, 1.25, 2.0)
    >>> arrivals = [Instant(0, 1, True, False), Instant(100, 1, True, False),
    ...             Instant(1000, 1, True, False)]
    >>> node_cost_per_token(arrivals, r, keep_alives=False)   # 1h write, two reads
    2.2
    >>> round(node_cost_per_token(arrivals, r), 6)   # 5m write, read, 3 keep-alives, read
    1.75
    """
    states: dict[State, float] = {(_NEVER, _NEVER): 0.0}
    previous: float | None = None
    for instant in instants:
        t, g = instant.time, instant.count
        if keep_alives and previous is not None:
            states = _kept_alive(states, previous, t, rates, instant.ping_upgrade)
        current: dict[State, float] = {}
        for state, cost in states.items():
            key = _normalized(state, t)
            current[key] = min(cost, current.get(key, math.inf))
        successors: dict[State, float] = {}
        for (e1, e5), cost in _pareto(current).items():
            alive_1h, alive_5m = e1 > t, e5 > t
            if alive_1h or alive_5m:
                refreshed_5m = t + _FIVE_MINUTES if alive_5m else e5
                full_1h = alive_1h or instant.upgrade
                _push(
                    successors,
                    (t + _ONE_HOUR if full_1h else e1, refreshed_5m),
                    cost + g * rates.read,
                )
                if instant.writable and not full_1h:
                    others_5m = refreshed_5m if g > 1 else e5
                    _push(
                        successors,
                        (t + _ONE_HOUR, others_5m),
                        cost + rates.write_1h + (g - 1) * rates.read,
                    )
            else:
                _push(successors, (e1, e5), cost + g * rates.input)
                if instant.writable:
                    _push(
                        successors,
                        (t + _ONE_HOUR, e5),
                        cost + rates.write_1h + (g - 1) * rates.input,
                    )
                    _push(
                        successors,
                        (e1, t + _FIVE_MINUTES),
                        cost + rates.write_5m + (g - 1) * rates.input,
                    )
                if keep_alives and previous is not None:
                    # a keep-alive writes the node just before the instant; all of them read
                    after_1h = t + _ONE_HOUR if instant.upgrade else e1
                    _push(successors, (t + _ONE_HOUR, e5), cost + rates.write_1h + g * rates.read)
                    _push(
                        successors,
                        (after_1h, t + _FIVE_MINUTES),
                        cost + rates.write_5m + g * rates.read,
                    )
        states = successors
        previous = t
    return min(states.values())


@dataclass(frozen=True)
class OracleResult:
    """The bound for one trace.

    Attributes:
        cost_usd: the lower bound (input side).
        uncached_usd: the same requests with no caching at all.
        nodes: distinct prefix nodes at or after an anchor.
        below_minimum: requests whose whole prompt is below the minimum (always plain).
    """

    cost_usd: float
    uncached_usd: float
    nodes: int
    below_minimum: int


def _instants(
    arrivals: Iterable[tuple[float, bool, bool]],
    children: Sequence[tuple[float, float]] = (),
) -> tuple[Instant, ...]:
    """A node's instants, merged per time.

    ``children`` holds each child's first and last arrival: a keep-alive may upgrade the node
    across a gap when a child was seen before the gap and is seen after it.
    """
    out: list[Instant] = []
    for time, writable, upgrade in sorted(arrivals, key=lambda a: a[0]):
        if out and out[-1].time == time:
            last = out[-1]
            out[-1] = replace(
                last,
                count=last.count + 1,
                writable=last.writable or writable,
                upgrade=last.upgrade or upgrade,
            )
        else:
            since = out[-1].time if out else None
            across = since is not None and any(a <= since and time <= b for a, b in children)
            out.append(Instant(time, 1, writable, upgrade, across))
    return tuple(out)


@dataclass
class PrefixNode:
    """A node of the relaxation: a prefix at or after some request's anchor.

    Attributes:
        weight: its tokens (at a request's anchor: the whole prefix up to it).
        request: the position (in the profiles) of the first request through it.
        block: its block index in that request.
        anchor: whether that block is the request's anchor.
        arrivals: per request through it, ``(time, writable, upgrade)``.
        children: the keys of the blocks that follow it in some request.
    """

    weight: int
    request: int
    block: int
    anchor: bool
    arrivals: list[tuple[float, bool, bool]] = field(default_factory=list)
    children: set[str] = field(default_factory=set)


@dataclass
class PrefixNodes:
    """The relaxation's nodes for one model's requests (``build_nodes``).

    Attributes:
        nodes: per prefix key, its node.
        first_seen: per prefix key, the first time a request passes through it.
        last_seen: per prefix key, the last time a request passes through it.
        plain_tokens: the tokens of the requests below the minimum (always plain).
        below: how many requests are below the minimum.
    """

    nodes: dict[str, PrefixNode]
    first_seen: dict[str, float]
    last_seen: dict[str, float]
    plain_tokens: int
    below: int

    def instants(self, node: PrefixNode, *, keep_alives: bool = True) -> tuple[Instant, ...]:
        """The node's instants (with its children's spans when keep-alives are allowed)."""
        children = (
            [(self.first_seen[c], self.last_seen[c]) for c in node.children] if keep_alives else []
        )
        return _instants(node.arrivals, children)


def anchor_index(profile: RequestProfile, minimum: int) -> int | None:
    """The first block whose prefix reaches ``minimum`` tokens (``None``: the whole is below)."""
    return next((i for i, c in enumerate(_running(profile.tokens)) if c >= minimum), None)


def build_nodes(profiles: Sequence[RequestProfile], minimum: int) -> PrefixNodes:
    """The relaxation's nodes of one model's requests (see the module docstring).

    Raises:
        ValueError: if two requests disagree on a node's size.
    """
    last_seen: dict[str, float] = {}
    first_seen: dict[str, float] = {}
    for profile in profiles:
        for key in profile.keys:
            last_seen[key] = max(profile.time, last_seen.get(key, _NEVER))
            first_seen[key] = min(profile.time, first_seen.get(key, math.inf))
    nodes: dict[str, PrefixNode] = {}
    plain_tokens = below = 0
    for position, profile in enumerate(profiles):
        anchor = anchor_index(profile, minimum)
        if anchor is None:
            plain_tokens += profile.total
            below += 1
            continue
        cumulative = list(_running(profile.tokens))
        last_markable = max((i for i, m in enumerate(profile.markable) if m), default=-1)
        n = len(profile.keys)
        for i in range(anchor, n):
            weight = cumulative[anchor] if i == anchor else profile.tokens[i]
            node = nodes.setdefault(profile.keys[i], PrefixNode(weight, position, i, i == anchor))
            if node.weight != weight:
                msg = (
                    f"node {profile.keys[i]} has {node.weight} tokens in one request and "
                    f"{weight} in another: the profiles are not from one tokenizer"
                )
                raise ValueError(msg)
            upgrade = (
                last_markable > i and i + 1 < n and last_seen[profile.keys[i + 1]] > profile.time
            )
            node.arrivals.append((profile.time, last_markable >= i, upgrade))
            if i + 1 < n:
                node.children.add(profile.keys[i + 1])
    return PrefixNodes(nodes, first_seen, last_seen, plain_tokens, below)


def oracle_cost(
    profiles: Sequence[RequestProfile],
    rates: Rates,
    minimum: int,
    *,
    keep_alives: bool = True,
) -> OracleResult:
    """The lower bound on the input cost of a trace under the emulator's billing.

    Args:
        profiles: every request of the trace (any order; equal times are concurrent).
        rates: the model's prices per token.
        minimum: the minimum cacheable prefix in tokens.
        keep_alives: whether strategies may send keep-alive requests (``False``: the bound for
            strategies that send only the trace's requests, which is higher).

    Returns:
        The bound and the uncached cost.

    Raises:
        ValueError: if the prices are not ordered ``read <= input <= write_5m <= write_1h`` (the
            bound's exactness argument needs it), or two requests disagree on a node's size.
    """
    if not rates.read <= rates.input <= rates.write_5m <= rates.write_1h:
        msg = f"prices {rates} are not ordered read <= input <= write_5m <= write_1h"
        raise ValueError(msg)
    built = build_nodes(profiles, minimum)
    memo: dict[tuple[Instant, ...], float] = {}
    total = built.plain_tokens * rates.input
    for node in built.nodes.values():
        instants = built.instants(node, keep_alives=keep_alives)
        if instants not in memo:
            memo[instants] = node_cost_per_token(instants, rates, keep_alives=keep_alives)
        total += node.weight * memo[instants]
    uncached = sum(p.total for p in profiles) * rates.input
    return OracleResult(total, uncached, len(built.nodes), built.below)


def _running(values: Iterable[int]) -> Iterable[int]:
    total = 0
    for value in values:
        total += value
        yield total
