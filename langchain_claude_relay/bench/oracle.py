"""The oracle: an offline lower bound on what any caching strategy can pay for a trace.

It knows every future arrival and ignores the 4-marker limit and the 20-block lookback, so it is
the limit the strategies are measured against. The strategies it bounds send each request when
it arrives (the runner sends an instant's requests together) and may add keep-alives of what
they have seen: a strategy that holds concurrent requests back until one has begun (a batch's
warm-up) buys reads for latency and is outside it, and so is warming a prefix before its first
request (no strategy sees it coming). Costs are input-side (plain input, cache
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
some 1h / 5m entry at ``v`` is alive (and, below, per child). At each instant the requests through
``v`` may: read ``v`` (if covered for it before the instant; what it could hit restarts),
write ``v`` with 5m or 1h (if the request has a markable block at or after ``v``: coverage of that
kind until ``t + TTL``), or pay plain input. Three refinements keep the bound tight:

* *Minimum.* Entries exist only at prefixes reaching the minimum, so a node before the request's
  *anchor* (the first block whose prefix reaches it) is read exactly when the anchor is, written
  exactly when it is, and plain otherwise: its tokens are billed with the anchor, whose weight is
  the whole prefix up to it. A request below the minimum pays plain input.
* *Upgrade.* A request that reads ``v`` and writes a 1h entry deeper on its path covers ``v``
  for an hour for the requests that pass through that deeper entry, and for no other. The
  relaxation grants it *along* the next block after ``v`` on the request's path (its child):
  only later requests going on along that child find ``v`` covered by it, and only if the
  request has a markable block after ``v`` and some later request goes on along that child.
  So a node's coverage is kept in two parts: its own entries (``e1``, ``e5``), which serve
  every request through it, and, per child, 1h coverage along it. (Granting it to every
  request through ``v`` let one conversation's 1h tail cover the shared system prompt for a
  new conversation, which cannot read it.)
* *Concurrency.* Reads at an instant see only coverage from earlier instants; of several
  concurrent requests at most one needs to write (a second write buys nothing).

**Keep-alive requests.** A strategy may also send requests the trace does not have: a
keep-alive re-sends a prefix it sent before (``max_tokens`` 0 or 1) to restart its entries'
TTL. Per node, the relaxation adds, in each gap between two instants of the node:

* a *keep-alive read*, at any moment the node is covered: per token ``read``. It is granted
  generously: it restarts *every* coverage of the node alive at that moment (its own entries
  and along every child), and extends the coverage to an hour along every child seen before
  the gap and again after it (``ping_upgrades``: a keep-alive along that child could write a
  1h entry below the node that a later request passes through). A real one goes along one
  path and restarts only what it hits;
* a *keep-alive write* just before an instant, if the node was seen before: per token
  ``write_5m`` or ``write_1h``, after which every request of the instant reads (even
  concurrent ones, which cannot read each other's writes).

Moving a keep-alive read later, up to the moment the next coverage it restarts would expire,
keeps everything it restarts alive longer for the same price, and after one every coverage it
restarted expires together (the 1h ones an hour later, the 5m one 5 minutes later). So the
programme keeps, for each state, "no keep-alive" and the chains that start just before one
coverage expires (or just before the instant) and go on 5 minutes or an hour apart. A
keep-alive write at another moment is never cheaper than one just before the instant that
reads it (moving it later keeps the coverage it buys and drops the reads that kept it alive);
one whose coverage no later request reads is dropped. ``keep_alives=False`` leaves all of this
out: the bound for strategies that send only the trace's requests.

**Why it is a lower bound.** Take any strategy and its real bills, keep-alives included. Map
each request's billing of each node to the relaxed action of the same kind (read / write 1h /
write 5m / plain), and each keep-alive's billing of a node of the trace to a relaxed keep-alive
read or write (its plain input is dropped; nodes only keep-alives pass through are not in the
trie and cost the strategy something, the relaxation nothing). By induction over time, every
entry that some later request reads to cover ``v`` is matched by relaxed coverage of ``v`` that
is at least as long-lived: a block written in the request that created the entry is billed 1h if
the entry is 1h (1h writers come first) and at least 5m otherwise; a block read in that request
gets the upgrade along its child exactly when the entry is deeper and is read later, and the
requests that read it go on along that child (a keep-alive re-sends a prefix seen before, so a
deeper entry it writes is along a child seen before it, and one a later request reads through is
seen after it); a hit restarts its entry's TTL, and the relaxed read by a request going on along
a child restarts the node's own entries and the coverage along that child, every entry it could
hit; a keep-alive's read of a covered node is a relaxed keep-alive read (which restarts and
upgrades at least as much), and a keep-alive's write of ``v`` is a relaxed keep-alive write of
``v``, moved to just before the instant that next reads it (or dropped). So every real action
maps to a feasible relaxed one of no greater cost, and the real cost is at least a feasible
relaxed cost. Nodes are independent in the relaxation (each state only depends on its own
actions), so the relaxed optimum is the sum over nodes of a dynamic programme over that node's
arrival instants. The programme is exact: with ``read <= input <= write_5m <= write_1h``
(checked), at an instant the covered requests read (one may write 1h instead, or, when all are
covered only along their children, write the node's own 5m entry, which then serves every child)
and of the uncovered ones at most one writes and the others pay plain (or a keep-alive wrote
just before and all read); states that cover every child at least as long at lower cost
dominate; and in the gaps the keep-alive chains above are the undominated ones. (Checked against
exhaustive searches of the relaxation, on nodes whose requests all go on along one child and on
random nodes with several children and short gaps, at several prices.) Dropping the 4-marker
limit, the lookback window and the TTL order only enlarges the feasible set, so the result stays
a bound. (Keep-alives' output tokens, one each on relays, are not input: the bench adds them to
the strategy's cost, never to the bound.)

**Where it is loose.** Solving the nodes apart lets a deep node be kept alive at the price of
its own tokens, while a real keep-alive reads its whole prefix: on ``slow_agent`` the bound
keeps a 1,158-token tail under a 12,138-token prefix alive across a slow tool call for 1/11 of
what a real keep-alive costs. ``prefix_charged_cost`` charges each keep-alive its prefix too
(an estimate, not a bound: see there); ``claude-relay bench --explain`` prints it. Removing
this slack needs the nodes' programmes coupled along each path.

Identity of blocks is the emulator's hash of each block as rendered without markers. The
canonical rendering gives a block the same bytes whatever its markers; a renderer that did
change a block's bytes when marking it could only split identities the oracle merges, never
merge distinct contents, so real reads would remain a subset.
Token counts come from the emulator's own tokenizer (``emulator/tokens.py``) on the same
rendered payload, and the runner checks that every bill's total equals the profile's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
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
    "prefix_charged_cost",
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

    Children are numbered per node (``PrefixNodes.instants``): what matters is which requests
    go on along the same child, not which child that is.

    Attributes:
        time: the instant.
        paths: per request through the node then, the child it goes on to (``None``: the
            request ends at the node).
        writable: whether one of them can write an entry covering the node.
        upgrades: the children along which one of them can extend the node's coverage to 1h
            while reading it (it has a markable block after the node, and a later request
            passes through that child).
        ping_upgrades: the children along which a keep-alive in the gap before this instant can
            extend the node's coverage to 1h while reading it (the child was seen before the
            gap and is seen again after it).
    """

    time: float
    paths: tuple[int | None, ...]
    writable: bool
    upgrades: frozenset[int] = frozenset()
    ping_upgrades: frozenset[int] = frozenset()

    @property
    def count(self) -> int:
        """How many requests pass through the node then."""
        return len(self.paths)


@dataclass(frozen=True)
class _Coverage:
    """Until when the node is covered.

    ``e1`` and ``e5``: entries at the node itself, for every request through it; ``along``:
    per child, 1h entries deeper on that child's path, which only the requests going on along
    it reach.
    """

    e1: float = _NEVER
    e5: float = _NEVER
    along: tuple[tuple[int, float], ...] = ()

    def normalized(self, now: float, live: Set[int]) -> _Coverage:
        """Without what can serve no request.

        That is the expired, what a 1h entry at the node outlives, and the children no later
        request goes on along (not in ``live``).
        """
        e1 = self.e1 if self.e1 > now else _NEVER
        e5 = self.e5 if self.e5 > now and self.e5 > e1 else _NEVER
        along = tuple((c, x) for c, x in self.along if x > now and x > e1 and c in live)
        return _Coverage(e1, e5, along)

    def dominates(self, other: _Coverage) -> bool:
        """Whether this covers every request at least as long as ``other`` does."""
        mine = dict(self.along)
        return (
            self.e1 >= other.e1
            and self.e5 >= other.e5
            and all(max(mine.get(c, _NEVER), self.e1) >= x for c, x in other.along)
        )


def _with_along(along: Mapping[int, float]) -> tuple[tuple[int, float], ...]:
    return tuple(sorted(along.items()))


def _child_order(child: int | None) -> int:
    return -1 if child is None else child


def _pareto(states: Mapping[_Coverage, float]) -> dict[_Coverage, float]:
    kept: dict[_Coverage, float] = {}
    for state, cost in sorted(states.items(), key=lambda kv: (kv[1], -kv[0].e1, -kv[0].e5)):
        if not any(k.dominates(state) for k in kept):
            kept[state] = cost
    return kept


def _push(states: dict[_Coverage, float], state: _Coverage, cost: float) -> None:
    states[state] = min(cost, states.get(state, math.inf))


def _ping_chain(
    state: _Coverage, first: float, until: float, five: bool, upgrades: frozenset[int]
) -> tuple[_Coverage, int]:
    """Keep-alives from ``first`` on until the node is covered at ``until``.

    Each is sent just before what it keeps alive expires: 5 minutes apart (``five``: keeping
    the 5m entry alive) or an hour apart. Each restarts every coverage alive when it is sent
    (1h for 1h entries, 5m for 5m ones) and extends it to an hour along every child in
    ``upgrades`` it is alive for: a keep-alive goes along one child, so granting all of them
    is generous, never short.
    """
    e1, e5, along = state.e1, state.e5, dict(state.along)
    sent, at = 0, first
    while True:
        at_node = e1 >= at or e5 >= at
        for child in upgrades:
            if at_node or along.get(child, _NEVER) >= at:
                along[child] = at + _ONE_HOUR
        along = {c: (at + _ONE_HOUR if x >= at else x) for c, x in along.items()}
        e1 = at + _ONE_HOUR if e1 >= at else e1
        e5 = at + _FIVE_MINUTES if e5 >= at else e5
        sent += 1
        at = at + _FIVE_MINUTES if five and e5 > at else at + _ONE_HOUR
        if at > until:
            return _Coverage(e1, e5, _with_along(along)), sent


def _kept_alive(
    states: Mapping[_Coverage, float],
    since: float,
    t: float,
    ping: float,
    upgrades: frozenset[int],
) -> dict[_Coverage, float]:
    """The states reachable at ``t`` with keep-alives sent in the gap after ``since``.

    Moving a keep-alive later, up to the moment the next coverage it restarts would expire,
    keeps everything it restarts alive longer for the same price; after one, every coverage
    it restarted expires together (1h ones an hour later, the 5m one 5 minutes later). So a
    sequence of keep-alives is dominated by a chain that starts just before one coverage
    expires (or just before ``t``) and goes on 5 minutes or an hour apart. Each costs ``ping``.
    """
    out = dict(states)
    for state, cost in states.items():
        expiries = {state.e1, state.e5, *(x for _, x in state.along)}
        firsts = sorted({x for x in expiries if since < x <= t} | {t})
        for first in firsts:
            if max(expiries) < first:
                continue  # nothing left to keep alive
            for five in (False, True):
                if five and state.e5 < first:
                    continue
                kept, sent = _ping_chain(state, first, t, five, upgrades)
                _push(out, kept, cost + sent * ping)
    return out


def _moves(
    state: _Coverage,
    cost: float,
    instant: Instant,
    rates: Rates,
    keep_alive_write: bool,
) -> Iterable[tuple[_Coverage, float]]:
    """What the requests of one instant can do from one state (see the module docstring)."""
    t, g = instant.time, instant.count
    along = dict(state.along)
    direct = state.e1 > t or state.e5 > t
    covered = [direct or (c is not None and along.get(c, _NEVER) > t) for c in instant.paths]
    k = sum(covered)
    m = g - k
    e1 = t + _ONE_HOUR if state.e1 > t else state.e1
    e5 = t + _FIVE_MINUTES if state.e5 > t else state.e5

    def refreshed(readers: Iterable[int | None]) -> tuple[tuple[int, float], ...]:
        out = dict(along)
        for c in readers:
            if c is not None and (along.get(c, _NEVER) > t or c in instant.upgrades):
                out[c] = t + _ONE_HOUR
        return _with_along(out)

    read_along = refreshed(c for c, cov in zip(instant.paths, covered, strict=True) if cov)
    if k:
        yield _Coverage(e1, e5, read_along), cost + k * rates.read + m * rates.input
    else:
        yield state, cost + g * rates.input
    if instant.writable:
        reads = k * rates.read
        if m:  # one uncovered request writes the node; the others pay plain
            others = reads + (m - 1) * rates.input
            yield _Coverage(t + _ONE_HOUR, e5, read_along), cost + rates.write_1h + others
            yield _Coverage(e1, t + _FIVE_MINUTES, read_along), cost + rates.write_5m + others
        if k:  # one covered request writes it for an hour instead of reading
            others = (k - 1) * rates.read + m * rates.input
            yield _Coverage(t + _ONE_HOUR, e5, read_along), cost + rates.write_1h + others
        if k and not m and not direct:
            # Covered only along their children, one of them writes the node's own 5m entry
            # (its markers stop short of the deeper entry), which serves every child.
            for writer in sorted(set(instant.paths), key=_child_order):
                readers = list(instant.paths)
                readers.remove(writer)
                yield (
                    _Coverage(e1, t + _FIVE_MINUTES, refreshed(readers)),
                    cost + rates.write_5m + (k - 1) * rates.read,
                )
    if keep_alive_write and not direct:  # a keep-alive writes it just before: all read
        all_along = refreshed(instant.paths)
        reads = g * rates.read
        yield _Coverage(t + _ONE_HOUR, e5, all_along), cost + rates.write_1h + reads
        yield _Coverage(e1, t + _FIVE_MINUTES, all_along), cost + rates.write_5m + reads


def node_cost_per_token(
    instants: Sequence[Instant],
    rates: Rates,
    *,
    keep_alives: bool = True,
    ping: float | None = None,
) -> float:
    """The cheapest USD per token of one node over its arrival instants (see the docstring).

    Args:
        instants: the node's arrivals, in time order.
        rates: the prices.
        keep_alives: whether keep-alive requests (reads between arrivals, and a write just
            before an arrival) are allowed.
        ping: what a keep-alive read costs per token of the node (default ``rates.read``, the
            bound; more only for ``prefix_charged_cost``, which is not one).

    Returns:
        The minimum total, per token of the node.

    >>> r = Rates(1.0, 0.1, 1.25, 2.0)
    >>> arrivals = [Instant(0, (None,), True), Instant(100, (None,), True),
    ...             Instant(1000, (None,), True)]
    >>> node_cost_per_token(arrivals, r, keep_alives=False)   # 1h write, two reads
    2.2
    >>> round(node_cost_per_token(arrivals, r), 6)   # 5m write, read, 3 keep-alives, read
    1.75
    """
    live_from: list[set[int]] = [set() for _ in instants]  # children at this instant or later
    seen: set[int] = set()
    for index in range(len(instants) - 1, -1, -1):
        instant = instants[index]
        seen |= {c for c in (*instant.paths, *instant.ping_upgrades) if c is not None}
        live_from[index] = set(seen)
    states: dict[_Coverage, float] = {_Coverage(): 0.0}
    previous: float | None = None
    for index, instant in enumerate(instants):
        t = instant.time
        if keep_alives and previous is not None:
            per_ping = rates.read if ping is None else ping
            states = _kept_alive(states, previous, t, per_ping, instant.ping_upgrades)
        current: dict[_Coverage, float] = {}
        for state, cost in states.items():
            _push(current, state.normalized(t, live_from[index]), cost)
        successors: dict[_Coverage, float] = {}
        keep_alive_write = keep_alives and previous is not None
        for state, cost in _pareto(current).items():
            for moved, moved_cost in _moves(state, cost, instant, rates, keep_alive_write):
                _push(successors, moved, moved_cost)
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
    arrivals: Iterable[tuple[float, bool, str | None, bool]],
    spans: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[Instant, ...]:
    """A node's instants, merged per time, its children numbered in order of first arrival.

    ``spans`` holds each child's first and last arrival: a keep-alive in a gap may upgrade the
    node along a child seen before the gap and seen again after it (``None``: no keep-alives).
    """
    numbers: dict[str, int] = {}
    merged: dict[float, list[tuple[bool, str | None, bool]]] = {}
    for time, writable, child, upgrade in sorted(arrivals, key=lambda a: a[0]):
        merged.setdefault(time, []).append((writable, child, upgrade))
        if child is not None:
            numbers.setdefault(child, len(numbers))
    out: list[Instant] = []
    since: float | None = None
    for time, requests in merged.items():
        across: frozenset[int] = frozenset()
        if spans is not None and since is not None:
            across = frozenset(
                n for c, n in numbers.items() if spans[c][0] <= since and time <= spans[c][1]
            )
        paths = tuple(
            sorted(
                (numbers[c] if c is not None else None for _, c, _ in requests), key=_child_order
            )
        )
        out.append(
            Instant(
                time,
                paths,
                any(w for w, _, _ in requests),
                frozenset(numbers[c] for _, c, u in requests if u and c is not None),
                across,
            )
        )
        since = time
    return tuple(out)


@dataclass
class PrefixNode:
    """A node of the relaxation: a prefix at or after some request's anchor.

    Attributes:
        weight: its tokens (at a request's anchor: the whole prefix up to it).
        request: the position (in the profiles) of the first request through it.
        block: its block index in that request.
        anchor: whether that block is the request's anchor.
        arrivals: per request through it, ``(time, writable, child, upgrade)``: the key of
            the block after it in that request (``None``: the request ends at it), and whether
            the request can extend its coverage to 1h along that child (see ``Instant``).
    """

    weight: int
    request: int
    block: int
    anchor: bool
    arrivals: list[tuple[float, bool, str | None, bool]] = field(default_factory=list)


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
        if not keep_alives:
            return _instants(node.arrivals)
        children = {c for _, _, c, _ in node.arrivals if c is not None}
        return _instants(
            node.arrivals, {c: (self.first_seen[c], self.last_seen[c]) for c in children}
        )


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
            child = profile.keys[i + 1] if i + 1 < n else None
            upgrade = last_markable > i and child is not None and last_seen[child] > profile.time
            node.arrivals.append((profile.time, last_markable >= i, child, upgrade))
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


def prefix_charged_cost(profiles: Sequence[RequestProfile], rates: Rates, minimum: int) -> float:
    """The relaxation with each keep-alive of a node also paying for the prefix above it.

    **Not a bound**: an estimate of how loose the bound is where keep-alives are concerned.
    A real keep-alive reads the whole prefix up to the entry it keeps alive. The relaxation
    splits that read over the nodes and solves each node alone, so a node deep in a
    conversation can be kept alive across a long tool call at the price of its own tokens
    while the nodes above it, covered by other means (an hour's entry deeper on the path),
    pay nothing at that moment. Here each keep-alive of a node is also charged the prefix
    above it. That errs both ways, so the figure is neither a lower bound nor a cost some
    strategy reaches: a prefix that keeps itself alive at the same moment is paid twice, and
    what the read refreshes above the node is not credited.

    Args:
        profiles: the requests of one model (any order; equal times are concurrent).
        rates: its prices.
        minimum: its minimum cacheable prefix.

    Returns:
        USD, input side, keep-alives allowed.
    """
    built = build_nodes(profiles, minimum)
    memo: dict[tuple[tuple[Instant, ...], float], float] = {}
    total = built.plain_tokens * rates.input
    for node in built.nodes.values():
        above = 0 if node.anchor else sum(profiles[node.request].tokens[: node.block])
        ping = rates.read * (node.weight + above) / node.weight if node.weight else rates.read
        key = (built.instants(node), ping)
        if key not in memo:
            memo[key] = node_cost_per_token(key[0], rates, ping=ping)
        total += node.weight * memo[key]
    return total


def _running(values: Iterable[int]) -> Iterable[int]:
    total = 0
    for value in values:
        total += value
        yield total
