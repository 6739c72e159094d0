"""Requests in flight: ``sent`` / ``began`` / ``abandoned`` and what later plans make of them.

Claude makes an entry readable only once the first response that wrote it has begun, so a second
request sent meanwhile on the same new prefix cannot read it: writing it again costs the write
premium for nothing. The toy Claude's ``send_batch`` applies that rule.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, request, text, tool

from langchain_claude_relay.planner import CachePlan, CachePlanner, inflight
from langchain_claude_relay.planner.inflight import PENDING_SECONDS
from langchain_claude_relay.request import CacheControl, ClaudeRequest
from langchain_claude_relay.store import MemoryStore

SYSTEM = prose(8000, 3)  # ~9,800 tokens: a new prefix well above the minimum


def _items(n: int, system: str = SYSTEM) -> list[ClaudeRequest]:
    return [request(system=system, turns=[("user", "Item: " + prose(150, i))]) for i in range(n)]


def _new_planner(clock: Clock) -> CachePlanner:
    return CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)


def _predicted(plan: CachePlan) -> dict[str, str]:
    return {str(bp.position): bp.predicted for bp in plan.breakpoints}


def test_concurrent_requests_on_a_new_prefix_write_it_once() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _new_planner(clock)
    plans = []
    for req in _items(10):  # each one sent before any response begins
        plan = planner.plan(req)
        planner.sent(plan)
        plans.append(plan)
    usages = claude.send_batch([p.apply() for p in plans], clock())
    for plan in plans:
        planner.began(plan)
    for plan, usage in zip(plans, usages, strict=True):
        planner.observe(plan, usage)
    assert _predicted(plans[0])["system[0]"] == "write"
    assert all("system[0]" not in _predicted(p) for p in plans[1:])
    assert [u.cache_write_tokens > 0 for u in usages] == [True] + [False] * 9
    system_hash = plans[0].breakpoints[0].prefix_hash
    assert all(system_hash in p.trace.concurrent for p in plans[1:] if p.trace)
    # followers paid plain input, nothing more: cheaper than ten writes by the write premium
    written_once = sum(u.cache_write_tokens + u.input_tokens for u in usages)
    assert written_once == sum(claude.total(r) for r in _items(10))
    # the entry the first one wrote is read by the next request
    clock.advance(120)
    reduce = planner.plan(request(system=SYSTEM, turns=[("user", prose(1500, 99))]))
    assert _predicted(reduce)["system[0]"] == "read"
    assert claude.send(reduce.apply(), clock()).cache_read_tokens > 0


def test_without_sent_every_concurrent_request_writes() -> None:
    """Plans only previewed (never reported as sent) hold nothing back: today's behaviour."""
    clock = Clock()
    planner = _new_planner(clock)
    plans = [planner.plan(req) for req in _items(4)]
    assert all(_predicted(p)["system[0]"] == "write" for p in plans)
    assert all(not p.trace.concurrent for p in plans if p.trace)


def test_a_preview_changes_nothing() -> None:
    clock = Clock()
    planner = _new_planner(clock)
    req = _items(1)[0]
    preview = planner.plan(req)
    assert planner.plan(req) == preview
    other = planner.plan(_items(2)[1])
    assert _predicted(other)["system[0]"] == "write"


def test_abandoned_request_stops_holding_back() -> None:
    clock = Clock()
    planner = _new_planner(clock)
    first, second = _items(2)
    plan = planner.plan(first)
    planner.sent(plan)
    assert "system[0]" not in _predicted(planner.plan(second))
    planner.abandoned(plan)
    assert _predicted(planner.plan(second))["system[0]"] == "write"


@pytest.mark.parametrize(
    ("wait", "held_back"), [(PENDING_SECONDS - 1, True), (PENDING_SECONDS + 1, False)]
)
def test_pending_ages_out(wait: float, held_back: bool) -> None:
    clock = Clock()
    planner = _new_planner(clock)
    first, second = _items(2)
    planner.sent(planner.plan(first))
    clock.advance(wait)
    assert ("system[0]" not in _predicted(planner.plan(second))) is held_back


def test_pending_registry_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflight, "PENDING_CAP", 2)
    clock = Clock()
    planner = _new_planner(clock)
    systems = [prose(2000, 10 + k) for k in range(3)]
    for system in systems:  # three different new prefixes, none begins
        planner.sent(planner.plan(request(system=system, turns=[("user", "a")])))
    held = [
        "system[0]" not in _predicted(planner.plan(request(system=s, turns=[("user", "b")])))
        for s in systems
    ]
    assert held == [False, True, True]  # the oldest was dropped


def test_began_makes_the_next_plan_predict_a_read() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _new_planner(clock)
    first, second = _items(2)
    plan = planner.plan(first)
    planner.sent(plan)
    usage = claude.send(plan.apply(), clock())
    clock.advance(2)
    planner.began(plan)  # observe() has not run yet (the response is still streaming)
    follower = planner.plan(second)
    assert _predicted(follower)["system[0]"] == "read"
    assert follower.predicted_read_tokens > 0
    assert claude.send(follower.apply(), clock()).cache_read_tokens > 0
    planner.observe(plan, usage)
    assert _predicted(planner.plan(second))["system[0]"] == "read"


def test_observe_replaces_the_belief_of_began() -> None:
    """The response began but wrote nothing (a relay dropping markers): no read predicted."""
    clock = Clock()
    planner = _new_planner(clock)
    first, second = _items(2)
    plan = planner.plan(first)
    planner.sent(plan)
    planner.began(plan)
    assert _predicted(planner.plan(second))["system[0]"] == "read"
    planner.observe(plan, ToyClaude(drop_markers=True).send(plan.apply(), clock()))
    assert _predicted(planner.plan(second)).get("system[0]") != "read"


def test_belief_expires_with_the_marker_ttl() -> None:
    clock = Clock()
    planner = _new_planner(clock)
    first, second = _items(2)
    plan = planner.plan(first)
    assert plan.breakpoints[0].ttl == "5m"
    planner.sent(plan)
    planner.began(plan)
    clock.advance(301)
    assert _predicted(planner.plan(second)).get("system[0]") != "read"


def test_reads_below_a_pending_prefix_are_kept() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _new_planner(clock)
    tools = tuple(tool(f"tool_{i}", n_props=12) for i in range(8))
    for seed in (1, 2):  # two system prompts after the same tools: the tools get cached
        warm = request(system=prose(2000, seed), turns=[("user", "a")], tools=tools)
        for _ in range(2):
            plan = planner.plan(warm)
            planner.observe(plan, claude.send(plan.apply(), clock()))
            clock.advance(20)
    same = request(system=SYSTEM, turns=[("user", "go")], tools=tools)  # new after the tools
    plans = []
    for _ in range(3):
        plan = planner.plan(same)
        planner.sent(plan)
        plans.append(plan)
    last_tool = f"tools[{len(tools) - 1}]"
    first = _predicted(plans[0])
    assert first[last_tool] == "read"
    assert "write" in first.values()
    pending = {bp.prefix_hash for bp in plans[0].breakpoints if bp.predicted == "write"}
    for plan in plans[1:]:
        assert _predicted(plan)[last_tool] == "read"
        assert plan.predicted_read_tokens == plans[0].predicted_read_tokens
        assert not pending & {bp.prefix_hash for bp in plan.breakpoints}
    usages = claude.send_batch([p.apply() for p in plans], clock())
    assert all(u.cache_read_tokens == usages[0].cache_read_tokens > 0 for u in usages)


def test_user_marker_on_a_pending_prefix_is_kept_and_explained() -> None:
    clock, claude = Clock(), ToyClaude()
    planner = _new_planner(clock)
    reqs = [replace(r, system=(text(SYSTEM, cache_control=CacheControl("5m")),)) for r in _items(3)]
    plans = []
    for req in reqs:
        plan = planner.plan(req)
        planner.sent(plan)
        plans.append(plan)
    usages = claude.send_batch([p.apply() for p in plans], clock())
    reasons = [
        {b.miss_reason for b in planner.observe(p, u).breakpoints if str(b.position) == "system[0]"}
        for p, u in zip(plans, usages, strict=True)
    ]
    assert reasons == [{"new prefix"}] + [{"not yet written (concurrent)"}] * 2


def test_sequential_use_is_unchanged() -> None:
    """plan -> sent -> began -> observe plans exactly what plan -> observe plans."""
    clock_a, clock_b = Clock(), Clock()
    store_a, store_b = MemoryStore(), MemoryStore()
    plain = CachePlanner(store_a, clock_a, encoding=ESTIMATOR)
    reported = CachePlanner(store_b, clock_b, encoding=ESTIMATOR)
    claude_a, claude_b = ToyClaude(), ToyClaude()
    turns: list[tuple[str, str]] = []
    gaps = [5, 40, 400, 30, 3000, 10, 70, 20]
    for step, gap in enumerate(gaps):
        turns.append(("user" if step % 2 == 0 else "assistant", prose(300, step)))
        req = request(
            system=prose(1500, 8), turns=[*turns, ("user", "next")] if step % 2 else turns
        )
        plan_a = plain.plan(req)
        usage_a = claude_a.send(plan_a.apply(), clock_a())
        obs_a = plain.observe(plan_a, usage_a)
        plan_b = reported.plan(req)
        reported.sent(plan_b)
        usage_b = claude_b.send(plan_b.apply(), clock_b())
        reported.began(plan_b)
        obs_b = reported.observe(plan_b, usage_b)
        assert plan_a == plan_b
        assert usage_a == usage_b
        assert obs_a == obs_b
        clock_a.advance(gap)
        clock_b.advance(gap)
    keys = set(store_a._data)  # what the planner learned: the same records
    assert keys == set(store_b._data)
    assert all(store_a.get(k) == store_b.get(k) for k in keys)


def test_threads_holding_send_lock_write_once() -> None:
    clock = Clock()
    planner = _new_planner(clock)
    reqs = _items(8)
    barrier = threading.Barrier(len(reqs))
    plans: list[CachePlan | None] = [None] * len(reqs)

    def task(k: int) -> None:
        barrier.wait(timeout=30)
        with planner.send_lock:
            plan = planner.plan(reqs[k])
            planner.sent(plan)
        plans[k] = plan

    threads = [threading.Thread(target=task, args=(k,)) for k in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writes = [p is not None and _predicted(p).get("system[0]") == "write" for p in plans]
    assert sum(writes) == 1


def test_methods_need_a_planner_plan() -> None:
    planner = _new_planner(Clock())
    plan = planner.plan(_items(1)[0])
    bare = replace(plan, trace=None)
    for method in (planner.sent, planner.began, planner.abandoned):
        with pytest.raises(ValueError, match=r"CachePlanner\.plan"):
            method(bare)


def _writing_plan() -> CachePlan:
    plan = _new_planner(Clock()).plan(_items(1)[0])
    assert any(bp.predicted == "write" for bp in plan.breakpoints)
    return plan


def test_registry_runs_on_the_times_it_is_given() -> None:
    plan = _writing_plan()
    assert plan.trace is not None
    written = {bp.prefix_hash for bp in plan.breakpoints if bp.predicted == "write"}
    registry = inflight.InFlight()
    registry.sent(plan, now=100.0)
    assert registry.snapshot(100.0 + PENDING_SECONDS).pending == written
    assert registry.snapshot(100.0 + PENDING_SECONDS + 1).pending == frozenset()
    registry.began(plan, now=101.0)
    expires = plan.trace.planned_at + 300.0  # the plan's 5m markers, from when it was made
    assert registry.snapshot(expires - 1).believed == dict.fromkeys(written, "5m")
    assert registry.snapshot(expires).believed == {}
    assert registry.snapshot(101.0).pending == frozenset()  # began ends the wait
    registry.observed(plan.trace)
    assert registry.snapshot(expires - 1) == inflight.InFlightState(frozenset(), {})


def test_the_latest_belief_about_a_prefix_wins_until_observed() -> None:
    short = _writing_plan()
    assert short.trace is not None
    long = replace(
        short,
        breakpoints=tuple(replace(bp, ttl="1h") for bp in short.breakpoints),
        trace=replace(short.trace),  # another request (flights are keyed by their trace)
    )
    assert long.trace is not None
    registry = inflight.InFlight()
    now = short.trace.planned_at
    registry.began(short, now)
    registry.began(long, now)
    assert set(registry.snapshot(now + 1).believed.values()) == {"1h"}
    registry.observed(long.trace)
    assert set(registry.snapshot(now + 1).believed.values()) == {"5m"}
