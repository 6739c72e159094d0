"""A conversation turn's return is credited once, to the template its arrival was counted under.

When a turn adds 20 or more lookback positions, the previous tail is a site of the next request
again: the lookback guard. Its return (the next turn read it) belongs to the tail's template,
which counted its arrival; skipped because its prefix was a site, the tail's template saw an
arrival every turn and never a return, its odds fell and the planner stopped marking the tail
every few turns (then sent the new turn as plain input, and wrote it again a turn later).
Counted on the guard's templates instead, the guard's fine template got two returns per arrival.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import pytest
from planner_helpers import MODEL, Clock, ToyClaude, prose, run, text

from langchain_claude_relay.cost import call_cost_usd
from langchain_claude_relay.planner import CachePlan, CachePlanner
from langchain_claude_relay.planner.plan import SiteTrace, trace_of
from langchain_claude_relay.planner.reuse import DECAY_PREFIX, DECAY_TEMPLATE, ReuseRecord
from langchain_claude_relay.request import ClaudeRequest, Message
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.usage import NormalizedUsage

PARTS = 21  # text parts per user turn: with the assistant's answer, 22 lookback positions
GAP = 20.0  # seconds between turns: every tail is read well within 5 minutes

_P5M = re.compile(r"P\(back within 5m\)=([0-9.]+)")


def _turns(
    planner: CachePlanner, claude: ToyClaude, clock: Clock, n: int, *, parts: int = PARTS
) -> list[tuple[ClaudeRequest, CachePlan, NormalizedUsage]]:
    """A chat under a large system prompt whose user turns carry ``parts`` text parts each."""
    system = (text(prose(3000, 1)),)
    messages = [Message("user", (text("Start the task."),))]
    out = []
    for turn in range(n):
        req = ClaudeRequest(model=MODEL, system=system, messages=tuple(messages))
        plan, usage, _ = run(planner, claude, req, clock)
        out.append((req, plan, usage))
        messages.append(Message("assistant", (text("ok"),)))
        parts_ = tuple(text(f"page {turn}-{i}: " + prose(30, 100 * turn + i)) for i in range(parts))
        messages.append(Message("user", parts_))
        clock.advance(GAP)
    return out


def _site(plan: CachePlan, kind: str) -> SiteTrace:
    (site,) = [s for s in trace_of(plan, "test").sites if s.kind == kind]
    return site


def _record(store: MemoryStore, key: str) -> ReuseRecord:
    record = ReuseRecord.from_json(store.get(key))
    assert record is not None, key
    return record


def _tail_odds(plan: CachePlan) -> float:
    """The 5-minute odds the tail's marker was placed with (asserts there is one)."""
    last = plan.blocks[-1].position
    tails = [b for b in plan.breakpoints if b.position == last]
    assert tails, f"the tail is not marked:\n{plan.explain()}"
    tail = tails[0]
    assert tail.reason.startswith("conversation tail"), plan.explain()
    found = _P5M.search(tail.reason)
    assert found, tail.reason
    return float(found.group(1))


def test_a_tail_that_becomes_the_lookback_guard_keeps_its_odds_and_its_marker(
    planner: CachePlanner, clock: Clock
) -> None:
    """The reviewer's case in small: every turn outruns the lookback, every tail read 20 s later.

    Before the fix the tail's odds fell (0.70, 0.70, then unmarked twice, 0.35, 0.51, 0.40, ...
    0.22, unmarked twice): those turns went as plain input and were written a turn later
    (input cost 0.0920 USD over 12 turns here, 0.0827 with every tail marked).
    """
    claude = ToyClaude()
    turns = _turns(planner, claude, clock, 12)
    odds = [_tail_odds(plan) for _, plan, _ in turns]  # every turn marks its tail
    assert all(p >= 0.65 for p in odds), odds
    assert odds[2:] == sorted(odds[2:]), odds  # each return only raises them
    for (before, _, _), (_, plan, usage) in itertools.pairwise(turns):
        assert plan.breakpoints[-2].reason.startswith("lookback guard"), plan.explain()
        assert usage.cache_read_tokens == claude.total(before)  # the whole last turn read
        assert usage.input_tokens == 0  # and nothing sent uncached
    total = sum(call_cost_usd(replace(u, output_tokens=0), MODEL) or 0.0 for _, _, u in turns)
    writes = claude.total(turns[-1][0])  # each token written once, at 5m
    reads = sum(u.cache_read_tokens for _, _, u in turns)
    assert writes == sum(u.cache_write_5m_tokens for _, _, u in turns)
    assert total == pytest.approx(3.0 * (1.25 * writes + 0.1 * reads) / 1e6, rel=1e-6)
    assert total < 0.085  # input cost: 0.0920 USD before the fix, 0.0827 after


def test_a_return_is_counted_once_when_the_old_tail_is_the_guard(
    planner: CachePlanner, store: MemoryStore, clock: Clock
) -> None:
    """The tail's template gets its return, the guard's templates do not get it as well."""
    turns = _turns(planner, ToyClaude(), clock, 3)
    first_tail = _site(turns[0][1], "tail")
    guard = _site(turns[1][1], "guard")
    assert guard.prefix_hash == first_tail.prefix_hash  # the premise: the old tail guards
    tail_fine, guard_fine = first_tail.templates[-1], guard.templates[-1]
    assert tail_fine != guard_fine
    assert _site(turns[2][1], "tail").templates == first_tail.templates

    # Three tails arrived (weights 0.81, 0.9, 1), the first two came back once each.
    tail = _record(store, tail_fine)
    assert tail.arrivals == pytest.approx(1 + DECAY_TEMPLATE + DECAY_TEMPLATE**2)
    assert tail.back_5m == pytest.approx(1 + DECAY_TEMPLATE)  # 0.0 before the fix
    # Two guards arrived, the first came back once (the third request read it); the tails'
    # returns are not the guard's: it never counted those arrivals.
    guard_record = _record(store, guard_fine)
    assert guard_record.arrivals == pytest.approx(1 + DECAY_TEMPLATE)  # 2.9 before the fix
    assert guard_record.back_5m == pytest.approx(1.0)  # 2.9 before: three returns for one
    assert _record(store, guard.templates[0]).back_5m == 0.0  # the coarse one: none of its own
    # The prefix's own record: two arrivals (a tail, then a guard), each back once; the first
    # resolved by the guard's arrival (at its weight, decayed), the second by the third turn.
    own = _record(store, f"p:{first_tail.prefix_hash[:24]}")
    assert own.arrivals == pytest.approx(1 + DECAY_PREFIX)
    assert own.back_5m == pytest.approx(DECAY_PREFIX + 1)
    assert own.resolved


def test_a_long_run_never_counts_more_returns_than_arrivals(
    planner: CachePlanner, store: MemoryStore, clock: Clock
) -> None:
    """Over many turns each template's arrivals are its sites' arrivals, no more: a return
    counted twice would push them up (``record_return`` keeps returns <= arrivals)."""
    turns = _turns(planner, ToyClaude(), clock, 10)
    for kind, first in (("guard", 1), ("tail", 0)):
        coarse, fine = _site(turns[first][1], kind).templates
        n = len(turns) - first  # sites of this kind: each but the newest came back, once
        for key in (coarse, fine):
            record = _record(store, key)
            arrived = sum(DECAY_TEMPLATE**i for i in range(n))
            assert record.arrivals == pytest.approx(arrived), (kind, key)  # the guard's fine
            # template: 10.70 before the fix for 6.13 arrivals (returns counted twice raised it)
            assert record.back_1h == 0.0
        # (a conversation's returns reach its fine template only: the lineage keeps that one)
        assert _record(store, coarse).back_5m == 0.0
        back = _record(store, fine).back_5m
        assert back == pytest.approx(sum(DECAY_TEMPLATE**i for i in range(n - 1))), kind


def test_a_retried_request_counts_its_tails_return_once(
    planner: CachePlanner, store: MemoryStore, clock: Clock
) -> None:
    """The protection the skip gave: the same tail arriving again as a tail (a retry) is counted
    by the site's own templates; the conversation must not count it a second time."""
    claude = ToyClaude()
    system = (text(prose(3000, 1)),)
    req = ClaudeRequest(
        model=MODEL,
        system=system,
        messages=(Message("user", (text("Start the task."),)),),
    )
    first, _, _ = run(planner, claude, req, clock)
    clock.advance(GAP)
    second, _, _ = run(planner, claude, req, clock)
    tail = _site(first, "tail")
    assert _site(second, "tail").templates == tail.templates
    for key in tail.templates:  # coarse and fine: one arrival back, once
        record = _record(store, key)
        assert record.back_5m == pytest.approx(1.0), key
        assert record.arrivals == pytest.approx(1 + DECAY_TEMPLATE), key
    own = _record(store, f"p:{tail.prefix_hash[:24]}")
    assert own.back_5m == pytest.approx(DECAY_PREFIX)  # resolved by its own arrival, once
    assert own.arrivals == pytest.approx(1 + DECAY_PREFIX)
    lineage = store.get(trace_of(second, "test").lineage_key)
    assert [e[5] for e in lineage] == [0]  # the new arrival's entry, still open


def test_a_short_turn_still_credits_the_tail_through_the_conversation(
    planner: CachePlanner, store: MemoryStore, clock: Clock
) -> None:
    """Turns within the lookback (no guard): unchanged, the tail's return counted once."""
    turns = _turns(planner, ToyClaude(), clock, 4, parts=2)
    assert all(s.kind != "guard" for _, p, _ in turns for s in trace_of(p, "test").sites)
    tail = _record(store, _site(turns[0][1], "tail").templates[-1])
    assert tail.arrivals == pytest.approx(sum(DECAY_TEMPLATE**i for i in range(4)))
    assert tail.back_5m == pytest.approx(1 + DECAY_TEMPLATE + DECAY_TEMPLATE**2)
