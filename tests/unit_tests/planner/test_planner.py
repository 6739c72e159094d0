"""CachePlanner end to end: plan -> a toy Claude with Claude's cache rules -> observe."""

from __future__ import annotations

import json
import random
import threading
import warnings
from dataclasses import replace

import pytest
from planner_helpers import (
    ESTIMATOR,
    MODEL,
    Clock,
    ToyClaude,
    conversation,
    prose,
    request,
    run,
    text,
    tool,
)

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner import CachePlan, CachePlanner, PrefixStabilityWarning
from langchain_claude_relay.planner.followup import GAP_EDGES, GapHistogram, tool_key
from langchain_claude_relay.planner.history import ANY_TOOL, gap_key, template_id, tool_field
from langchain_claude_relay.planner.keepalive import KeepAlive
from langchain_claude_relay.planner.plan import trace_of
from langchain_claude_relay.planner.rules import fixed_markers, validate_user_markers
from langchain_claude_relay.request import Block, CacheControl, ClaudeRequest, Message, Position
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.tokens import DECAY
from langchain_claude_relay.usage import NormalizedUsage

DOC = prose(3000, 9)


def _doc_question(i: int) -> ClaudeRequest:
    return request(system=prose(300, 1), turns=[("user", f"Q{i}: " + prose(15, i))], document=DOC)


def _gaps_run(gaps: list[float]) -> list[tuple[CachePlan, NormalizedUsage]]:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    out = []
    for i, gap in enumerate(gaps):
        plan, usage, _obs = run(planner, claude, _doc_question(i), clock)
        out.append((plan, usage))
        clock.advance(gap)
    return out


def _doc_marker(plan: CachePlan):
    return next(b for b in plan.breakpoints if b.position == Position("messages", 0, 0))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gaps_of_10_to_50_minutes_switch_to_1h(seed: int) -> None:
    rng = random.Random(seed)
    runs = _gaps_run([rng.uniform(600, 3000) for _ in range(8)])
    for plan, _usage in runs[2:]:  # after 2 observations of the pattern
        assert _doc_marker(plan).ttl == "1h"
        assert all(b.ttl == "1h" for b in plan.breakpoints)
    for _plan, usage in runs[3:]:  # and the 1h entry is read from then on
        assert usage.cache_read_tokens > 0
    assert all(b.ttl == "5m" for b in runs[0][0].breakpoints)  # a first sighting starts at 5m


@pytest.mark.parametrize("seed", [1, 2])
def test_dense_traffic_stays_5m(seed: int) -> None:
    rng = random.Random(seed)
    runs = _gaps_run([rng.uniform(5, 280) for _ in range(10)])
    for plan, _usage in runs:
        assert plan.breakpoints
        assert all(b.ttl == "5m" for b in plan.breakpoints)
    assert all(usage.cache_read_tokens > 0 for _plan, usage in runs[1:])


def test_gaps_over_an_hour_stop_marking_the_document() -> None:
    runs = _gaps_run([2 * 3600.0] * 6)
    assert not runs[-1][0].breakpoints


def test_volatile_system_prompt_warns_and_stops_being_marked() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plans = []
        for i in range(8):
            system = f"Current time: 2025-01-01T10:{i:02d}:00Z. " + prose(1500, 1)
            plan, _usage, _obs = run(
                planner, claude, request(system=system, turns=[("user", prose(20, i))]), clock
            )
            plans.append(plan)
            clock.advance(120)
    stability = [str(w.message) for w in caught if issubclass(w.category, PrefixStabilityWarning)]
    assert any(
        "system[0]" in m and "timestamp" in m and "2025-01-01T10:00:00Z" in m for m in stability
    )
    assert any("system[0] changed on each of the last" in m for m in stability)
    assert len(stability) == 2  # once each, not once per call
    assert plans[0].breakpoints
    assert plans[0].warnings
    assert all(not p.breakpoints for p in plans[4:]), [p.breakpoints for p in plans]
    assert sum(u.cache_write_tokens for u in claude.log[4:]) == 0  # no longer paying 1.25x


def test_ids_in_a_conversation_are_not_taken_for_volatile_text() -> None:
    # A ticket id in the question and tool-call ids in the history are the conversation's
    # own: its next turn carries them unchanged. The warning told users to move them "into the
    # latest user message", where the first already was.
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    turns = [
        ("user", "Summarize ticket 9f8e7d6c5b4a39281706f5e4d3c2b1a0: " + prose(900, 2)),
        ("assistant", "Looked up toolu_01A09q90qw90lq917835lq9 for it. " + prose(200, 3)),
        ("user", "And ticket 0a1b2c3d4e5f60718293a4b5c6d7e8f9? " + prose(600, 4)),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, _usage, _obs = run(planner, claude, request(system=DOC, turns=turns), clock)
    assert any(bp.position.section == "messages" for bp in plan.breakpoints)
    assert not [w for w in caught if issubclass(w.category, PrefixStabilityWarning)]
    assert not plan.warnings


def test_a_clock_reading_in_the_first_message_still_warns() -> None:
    # A stateless app that puts the time at the top of every request's only user message
    # writes its document on every call and never reads it: that one counts in the messages.
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    turns = [("user", "Current time: 2026-12-04T21:00:00Z\n\n" + DOC + "\n\nQuestion?")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(planner, claude, request(system="Be brief.", turns=turns), clock)
    stability = [str(w.message) for w in caught if issubclass(w.category, PrefixStabilityWarning)]
    assert len(stability) == 1
    assert "messages[0]" in stability[0]
    assert "timestamp" in stability[0]


def test_chat_reads_the_previous_turn() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    turns: list[tuple[str, str]] = []
    tools = (tool("search"), tool("fetch", 6))
    previous_total = 0
    for i in range(6):
        turns.append(("user", prose(30, 10 + i)))
        plan, usage, obs = run(
            planner, claude, request(system=prose(1200, 1), turns=list(turns), tools=tools), clock
        )
        tail = plan.breakpoints[-1]
        assert tail.position == Position("messages", len(turns) - 1, 0)
        if i:
            assert usage.cache_read_tokens == previous_total  # the whole previous request
            assert obs.actual_read_tokens == usage.cache_read_tokens
        previous_total = usage.total_input_tokens
        turns.append(("assistant", prose(60, 20 + i)))
        clock.advance(45)


def test_lookback_guard_keeps_the_cached_prefix_readable() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    turns = [("user", prose(40, 1))]
    _first, usage, _ = run(planner, claude, request(system=prose(1500, 2), turns=turns), clock)
    assert usage.cache_write_tokens > 0
    # an agent step adds 30 blocks (tool calls and results) after the cached tail
    turns = turns + [("assistant" if k % 2 == 0 else "user", prose(10, 100 + k)) for k in range(30)]
    clock.advance(30)
    plan, usage, obs = run(planner, claude, request(system=prose(1500, 2), turns=turns), clock)
    guard = [b for b in plan.breakpoints if b.reason.startswith("lookback guard")]
    assert guard, plan.explain()
    assert guard[0].predicted == "read"
    assert usage.cache_read_tokens >= claude.log[0].cache_write_tokens
    assert obs.predicted_read_tokens > 0


def test_user_markers_are_kept_exactly() -> None:
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    bare = CacheControl("5m", explicit_ttl=False)
    req = request(system=prose(1500, 1), turns=[("user", prose(30, 2))])
    req = req.with_markers({Position("system", 0): bare})
    plan = planner.plan(req)
    applied = plan.apply()
    assert applied.system[0].cache_control == bare
    assert applied.system[0].cache_control.to_wire() == {"type": "ephemeral"}
    user = [b for b in plan.breakpoints if b.source == "user"]
    assert [(b.position, b.reason) for b in user] == [
        (Position("system", 0), "user marker (kept as given)")
    ]


@pytest.mark.parametrize(
    "markers",
    [
        {Position("system", 0): CacheControl("5m"), Position("messages", 0, 0): CacheControl("1h")},
        {Position("tools", i): CacheControl("5m") for i in range(5)},
    ],
)
def test_invalid_user_markers_raise_before_planning(markers: dict) -> None:
    req = request(system="s", tools=tuple(tool(f"t{i}") for i in range(5)))
    req = req.with_markers(markers)
    with pytest.raises(RequestValidationError):
        CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(req)


def test_a_short_prompt_gets_no_marker() -> None:
    plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(
        request(system="Be brief.")
    )
    assert plan.breakpoints == ()
    assert plan.expected_cost_usd == pytest.approx(plan.uncached_cost_usd)


@pytest.mark.parametrize(
    ("model", "minimum"), [("claude-haiku-4-5", 4096), ("claude-opus-5", 512), (MODEL, 1024)]
)
def test_the_model_minimum_decides(model: str, minimum: int) -> None:
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    plan = planner.plan(request(system=prose(1500, 1), model=model))
    assert plan.min_cache_tokens == minimum
    assert bool(plan.breakpoints) == (minimum < 1500)


def test_min_tokens_overrides() -> None:
    planner = CachePlanner(
        MemoryStore(), Clock(), encoding=ESTIMATOR, min_tokens_overrides={"sonnet-4-6": 8000}
    )
    plan = planner.plan(request(system=prose(1500, 1)))
    assert plan.min_cache_tokens == 8000
    assert plan.breakpoints == ()


def test_unknown_model_learns_its_minimum() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude(minimum=2048)
    model = "claude-opus-9-9"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = request(system=prose(1000, 1), turns=[("user", "hi")], model=model)
        first, usage, obs = run(planner, claude, short, clock)
        assert first.min_cache_tokens == 512  # assumed low at first
        assert first.breakpoints
        assert usage.cache_write_tokens == 0
        assert obs.breakpoints[0].miss_reason in ("below minimum", "relay dropped marker?")
        for _ in range(3):  # the calibration settles; the learned minimum stays above the prompt
            clock.advance(3600)
            again, _usage, _obs = run(planner, claude, short, clock)
            assert again.min_cache_tokens > claude.total(short)
        assert planner.plan(short).breakpoints == ()
        longer = request(system=prose(2500, 1), turns=[("user", "hi")], model=model)
        plan, usage, _ = run(planner, claude, longer, clock)
        assert plan.breakpoints
        assert usage.cache_write_tokens > 0
        assert planner.plan(longer).min_cache_tokens <= usage.cache_write_tokens


def test_a_short_marker_inside_a_write_does_not_prove_the_minimum() -> None:
    # A short system prompt, then a long document: both marked, the write covers both, but only
    # the document's marker was long enough to be cached. Taking the system prompt's size as
    # proof of the minimum kept it there for good ("proof beats absence"): the short prompt
    # alone, never cached, stayed marked.
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude(minimum=2048)
    model = "claude-opus-9-9"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        system = prose(600, 1)
        document = request(system=system, turns=[("user", prose(2800, 2))], model=model)
        first, usage, _obs = run(planner, claude, document, clock)
        assert first.min_cache_tokens == 512  # assumed low at first: the system prompt is marked
        assert len(first.breakpoints) == 2
        system_tokens = claude.block_tokens(document)[0]
        assert system_tokens < 2048 < usage.cache_write_tokens
        short = request(system=system, turns=[("user", "hi")], model=model)
        for _ in range(3):  # the short prompt alone is never cached: the minimum is above it
            clock.advance(3600)
            _plan, usage, _obs = run(planner, claude, short, clock)
        assert usage.cache_read_tokens == usage.cache_write_tokens == 0
        assert planner.plan(short).min_cache_tokens > system_tokens
        assert planner.plan(short).breakpoints == ()


def test_miss_reasons() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    req = request(system=prose(1500, 1), turns=[("user", "hello")], tools=(tool("a"),))
    _plan, _usage, obs = run(planner, claude, req, clock)
    assert {b.miss_reason for b in obs.breakpoints} == {"new prefix"}
    clock.advance(30)
    _plan, _usage, obs = run(planner, claude, req, clock)
    assert all(b.hit and b.hit_predicted and b.miss_reason is None for b in obs.breakpoints)
    clock.advance(400)  # the 5m entries expired
    _plan, _usage, obs = run(planner, claude, req, clock)
    assert {b.miss_reason for b in obs.breakpoints} == {"expired"}
    # the tools change: same place, different content
    clock.advance(30)
    changed = replace(req, tools=(tool("a", n_props=7),))
    plan, _usage, obs = run(planner, claude, changed, clock)
    reasons = {str(b.position): b.miss_reason for b in obs.breakpoints}
    assert "prefix changed" in reasons.values(), reasons
    # a relay that drops markers
    plan = planner.plan(request(system=prose(1800, 5)))
    obs = planner.observe(plan, ToyClaude(drop_markers=True).send(plan.apply(), clock()))
    assert {b.miss_reason for b in obs.breakpoints} == {"relay dropped marker?"}


def test_concurrent_requests_with_a_new_prefix() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    req = request(system=prose(1500, 7), turns=[("user", "go")])
    previews = [planner.plan(req) for _ in range(3)]  # planned, not (yet) sent: no effect
    assert all(p.breakpoints == previews[0].breakpoints for p in previews)
    plans = []
    for _ in range(3):  # fanned out: each sent before any response begins
        plan = planner.plan(req)
        planner.sent(plan)
        plans.append(plan)
    usages = claude.send_batch([p.apply() for p in plans], clock())
    observations = [planner.observe(p, u) for p, u in zip(plans, usages, strict=True)]
    assert [u.cache_write_tokens > 0 for u in usages] == [True, False, False]  # one write
    reasons = [{b.miss_reason for b in o.breakpoints} for o in observations]
    assert reasons[0] == {"new prefix"}
    assert all(not p.breakpoints for p in plans[1:])  # no marker: plain input, no premium


def test_below_minimum_reason() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    claude = ToyClaude(ratio=1.0, block_overhead=0)  # the real count is lower than the prior
    for words in range(700, 1200, 25):  # find a prompt the planner marks but is too short
        req = request(system=prose(words, 3))
        plan = planner.plan(req)
        if plan.breakpoints and claude.total(req) < 1024:
            break
    else:
        pytest.fail("no prompt near the minimum")
    obs = planner.observe(plan, claude.send(plan.apply(), clock()))
    assert obs.breakpoints[-1].miss_reason == "below minimum"


def test_observe_is_thread_safe() -> None:
    store = MemoryStore()
    clock = Clock()
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    claude = ToyClaude()
    reqs = [request(system=prose(1500, 1), turns=[("user", prose(10, i))]) for i in range(24)]
    pairs = []
    for req in reqs:
        plan = planner.plan(req)
        pairs.append((plan, claude.send(plan.apply(), clock())))
    errors: list[BaseException] = []

    def work(chunk: list) -> None:
        try:
            for plan, usage in chunk:
                planner.observe(plan, usage)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pairs[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected_weight = sum(DECAY**k for k in range(len(reqs)))
    assert planner.plan(reqs[0]).calibration_observations == pytest.approx(
        expected_weight, abs=1e-3
    )


def test_plan_does_not_write_the_store() -> None:
    store = MemoryStore()
    clock = Clock()
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    run(planner, ToyClaude(), request(system=prose(1500, 1)), clock)
    before = dict(store._data)
    planner.plan(request(system=prose(1500, 1), turns=conversation(5, system="")))
    assert store._data == before


def test_ttl_policy_and_per_call_override() -> None:
    planner = CachePlanner(MemoryStore(), Clock(), ttl="1h", encoding=ESTIMATOR)
    req = request(system=prose(1500, 1), turns=[("user", "hi")])
    assert {b.ttl for b in planner.plan(req).breakpoints} == {"1h"}
    assert {b.ttl for b in planner.plan(req, ttl="5m").breakpoints} == {"5m"}
    assert planner.plan(req, ttl="5m").ttl_policy == "5m"
    with pytest.raises(ValueError, match="ttl must be one of"):
        planner.plan(req, ttl="10m")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        CachePlanner(MemoryStore(), ttl="forever")  # type: ignore[arg-type]


def test_unpriced_model_still_plans() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(
            request(system=prose(1500, 1), model="claude-fable-5-2")
        )
    assert plan.breakpoints
    assert plan.expected_cost_usd is None
    assert plan.uncached_cost_usd is None
    assert "no published prices" in plan.explain()


def test_explain_and_to_dict() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    req = request(system=prose(1500, 1), turns=[("user", "hi")], tools=(tool("a"),))
    run(planner, ToyClaude(), req, clock)
    plan = planner.plan(req)
    table = plan.explain()
    for fragment in [
        "system[0]",
        "tools[0]",
        "messages[0].content[0]",
        "5m planner",
        "uncached",
        "prefix",
    ]:
        assert fragment in table
    summary = plan.to_dict()
    json.dumps(summary)
    assert summary["breakpoints"][0].keys() >= {
        "position",
        "ttl",
        "estimated_prefix_tokens",
        "reason",
        "source",
    }
    assert summary["expected_cost_usd"] < summary["uncached_cost_usd"]
    assert summary["predicted_read_tokens"] == plan.predicted_read_tokens > 0
    assert summary["total_estimated_tokens"] == plan.total_estimated_tokens
    assert summary["warnings"] == []
    long_req = request(system=prose(1500, 1), turns=conversation(100, system="", words=5))
    long_table = planner.plan(long_req).explain()
    assert "block(s) without marker" in long_table
    assert len(long_table.splitlines()) < 40


def test_plan_accepts_langchain_messages_and_dicts() -> None:
    pytest.importorskip("langchain_claude_relay.convert")
    from langchain_core.messages import HumanMessage, SystemMessage

    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    system = prose(1500, 1)
    from_lc = planner.plan([SystemMessage(system), HumanMessage("hi")], model=MODEL)
    from_dicts = planner.plan(
        [{"role": "system", "content": system}, {"role": "user", "content": "hi"}], model=MODEL
    )
    assert from_lc.breakpoints == from_dicts.breakpoints
    assert from_lc.breakpoints
    assert from_lc.request.model == MODEL
    with pytest.raises(RequestValidationError, match="tools="):
        planner.plan(from_lc.request, tools=[])


def test_thinking_and_empty_blocks_are_skipped() -> None:
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    req = ClaudeRequest(
        MODEL,
        system=(text(prose(1500, 1)),),
        messages=(
            Message("user", (text("q"),)),
            Message(
                "assistant", (Block("thinking", {"thinking": "x" * 10, "signature": "s"}), text(""))
            ),
        ),
    )
    plan = planner.plan(req)
    assert plan.breakpoints[-1].position == Position("messages", 0, 0)
    plan.apply()  # with_markers accepts every position


def test_clock_must_be_callable() -> None:
    with pytest.raises(TypeError, match="clock must be a callable"):
        CachePlanner(MemoryStore(), 0.0)  # type: ignore[arg-type]


def test_default_planner_is_shared_and_lazy(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import langchain_claude_relay.planner.planner as module

    monkeypatch.setattr(module, "_default_planner", None)
    monkeypatch.setenv("CLAUDE_RELAY_STATE_DIR", str(tmp_path / "state"))
    first = module.default_planner()
    assert module.default_planner() is first
    assert not (tmp_path / "state").exists()  # no disk touched until the first plan
    first.plan(request(system="hello"))
    assert (tmp_path / "state").exists()
    first.close()


def test_usage_without_counts_teaches_nothing() -> None:
    clock = Clock()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    req = request(system=prose(1500, 1))
    plan = planner.plan(req)
    obs = planner.observe(plan, NormalizedUsage(0, 0, 0, 0, 0))
    assert not obs.calibration_updated
    assert {b.miss_reason for b in obs.breakpoints} == {"usage not reported"}
    assert planner.plan(req).calibration_observations == 0


def test_a_long_pause_in_dense_traffic_rewrites_at_1h_and_later_pauses_read() -> None:
    runs = _gaps_run([60.0] * 14 + [360.0, 900.0, 60.0])
    assert all(_doc_marker(plan).ttl == "5m" for plan, _usage in runs[:15])  # dense: 5m
    plan, usage = runs[15]  # after the 6-minute pause: the entry expired, rewritten at 1h
    assert _doc_marker(plan).ttl == "1h"
    assert usage.cache_write_1h_tokens > 0
    assert runs[16][1].cache_read_tokens > 3000  # the 15-minute pause still reads


@pytest.mark.parametrize(
    ("max_markers", "mark_tools", "expect_tool_marker", "expect_at_most"),
    [
        (4, True, True, 2),  # the default: 40 big tools (no system) are marked, then the message
        (4, False, False, 1),  # a relay that drops tool markers: the tools get none
        (2, True, True, 2),
        (1, True, None, 1),  # one slot left (a relay injecting markers): the best one only
        (0, True, False, 0),
    ],
)
def test_relay_adaptations(
    max_markers: int, mark_tools: bool, expect_tool_marker: bool | None, expect_at_most: int
) -> None:
    tools = tuple(tool(f"tool_{i}", n_props=6) for i in range(40))
    req = request(tools=tools, turns=[("user", prose(1500, 2))])
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    plan = planner.plan(req, max_markers=max_markers, mark_tools=mark_tools)
    sections = [b.position.section for b in plan.breakpoints]
    assert len(sections) <= expect_at_most
    if expect_tool_marker is not None:
        assert ("tools" in sections) is expect_tool_marker
    if max_markers > 0:
        assert sections, "something reaches the minimum: the plan must mark it"


# ----------------------------------------------------------- automatic caching (top-level marker)


def test_the_planner_plans_around_a_top_level_marker() -> None:
    # a 1h top-level marker on the tail: the planner's 5m markers before it would break the
    # TTL order, and its own tail marker would conflict with it
    req = replace(
        request(system=prose(1500, 1), tools=(tool("a"), tool("b"))),
        cache_control=CacheControl("1h"),
    )
    plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(req)
    sent = plan.apply()
    validate_user_markers(sent)  # Claude would accept what is sent: no TTL conflict, <= 4 slots
    assert sent.cache_control == req.cache_control  # it stays top-level
    assert fixed_markers(req).keys() <= {i for i, _ in enumerate(req.flat_blocks())}


def test_three_user_markers_and_a_top_level_one_leave_the_planner_no_slot() -> None:
    m = CacheControl("5m")
    base = request(system=prose(1500, 1), turns=[("user", prose(800, 2))], tools=(tool("a"),))
    req = replace(
        base.with_markers(
            {Position("tools", 0): m, Position("system", 0): m, Position("messages", 0, 0): m}
        ),
        messages=(
            *base.messages,
            Message("assistant", (text("ok"),)),
            Message("user", (text("q"),)),
        ),
        cache_control=m,
    )
    plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(req)
    assert all(bp.source == "user" for bp in plan.breakpoints)
    validate_user_markers(plan.apply())


def test_explain_says_what_a_first_write_costs_and_how_calibrated_it_is() -> None:
    plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(
        request(system=prose(3000, 1), turns=[("user", "Q?")])
    )
    text = plan.explain()
    assert plan.breakpoints  # a first write: it costs extra
    assert plan.predicted_read_tokens == 0
    assert "extra this call: writing the cache costs more than sending it plain" in text
    assert "$-" not in text
    assert "not yet calibrated (model-table priors)" in text
    assert "usage(s)" not in text


@pytest.mark.parametrize("turns_before", [2, 3, 5])
def test_no_keep_alive_for_a_conversation_prefix_inside_a_1h_entry(turns_before: int) -> None:
    """The follow-up reads through the conversation's 1-hour entry: the 5m one inside it can
    expire (a keep-alive of it would read ~3,000 tokens for nothing, and rewrite them once
    the believed-alive entry is in fact gone)."""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(store=MemoryStore(), clock=clock)
    doc = prose(2500, 7)
    turns = [("user", "Summarize it.")]
    for step in range(turns_before + 1):
        req = request(system=prose(200, 1), document=doc, turns=turns)
        plan = planner.plan(req, keep_warm=True, ttl="1h" if step == turns_before else None)
        usage = claude.send(plan.apply(), clock())
        planner.observe(plan, usage, tools=["run_tests"])
        keeps = planner.keep_alives(plan, usage, tools=["run_tests"])
        turns = [*turns, ("assistant", prose(40, step)), ("user", prose(300, 100 + step))]
        clock.advance(30.0)
    assert usage.cache_write_1h_tokens > 0  # the last turn wrote the conversation for an hour
    assert [k for k in keeps if k.position.section == "messages"] == []


@pytest.mark.parametrize("turns_before", [3, 5])
def test_no_keep_alive_for_a_small_5m_tail_above_the_previous_turns_1h_entry(
    turns_before: int,
) -> None:
    """The previous turn wrote the conversation for an hour, and this request reads (so
    refreshes) that entry through its new 5m tail: if the tail expires, the follow-up reads up
    to the 1-hour entry and rewrites only the new turn. Keep-alives (each reading the whole
    prefix) were priced against rewriting the whole conversation, and sent
    (``PlanTrace.held_1h``)."""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(store=MemoryStore(), clock=clock)
    turns = [("user", prose(400, 7))]
    for step in range(turns_before + 2):
        ttl = "1h" if step == turns_before else ("5m" if step > turns_before else None)
        plan = planner.plan(request(system=prose(1200, 1), turns=turns), keep_warm=True, ttl=ttl)
        usage = claude.send(plan.apply(), clock())
        planner.observe(plan, usage, tools=["run_tests"])
        keeps = planner.keep_alives(plan, usage, tools=["run_tests"])
        if step < turns_before:  # the premise: a 5m tail above 5m entries is kept alive
            assert any(k.position.section == "messages" for k in keeps)
        turns = [*turns, ("assistant", prose(300, step)), ("user", prose(30, 100 + step))]
        clock.advance(30.0)
    assert usage.cache_write_5m_tokens > 0  # the new turn's tail is 5m...
    assert usage.cache_write_1h_tokens == 0
    assert [k for k in keeps if k.position.section == "messages"] == []


@pytest.mark.parametrize(
    ("answered_late_before", "tools", "kept"),
    [
        (False, [], False),  # an answer, nothing learned: the conversation may have ended
        (False, ["run_tests"], True),  # a tool call: its result comes back (the prior says when)
        (True, [], True),  # answers of this template were followed up after 12 minutes
    ],
)
def test_an_answers_tail_is_kept_alive_once_answers_have_been_followed_up_late(
    answered_late_before: bool, tools: list[str], kept: bool
) -> None:
    """The prior alone pinged every conversation's last turn (a chat's, an agent's final
    answer) for a follow-up that never came; a tool call's result does come back."""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(store=MemoryStore(), clock=clock)
    system = prose(1200, 3)

    def turn(turns: list[tuple[str, str]], called: list[str]) -> tuple[KeepAlive, ...]:
        plan = planner.plan(request(system=system, turns=turns), keep_warm=True, ttl="5m")
        assert plan.breakpoints[-1].position.section == "messages"  # a 5m tail to keep alive
        usage = claude.send(plan.apply(), clock())
        planner.observe(plan, usage, tools=called)
        return planner.keep_alives(plan, usage, tools=called)

    if answered_late_before:  # another conversation: answers followed up soon, once after 12 min
        earlier = [("user", "Earlier: " + prose(900, 11))]
        for step, pause in enumerate([30.0, 30.0, 12 * 60.0, 30.0]):
            turn(earlier, [])
            clock.advance(pause)
            earlier = [
                *earlier,
                ("assistant", prose(60, 12 + step)),
                ("user", prose(40, 20 + step)),
            ]
    keeps = turn([("user", "Now: " + prose(900, 21))], tools)
    assert any(k.position.section == "messages" for k in keeps) is kept


@pytest.mark.parametrize("minutes", [3.0, 11.0, 25.0])
def test_a_follow_up_is_learned_when_the_last_turn_is_also_a_site_of_it(minutes: float) -> None:
    """A tool's result comes back after ``minutes``; the turn before it ended in a large block,
    which the follow-up marks again (a large-block site). The gap must still be learned under
    the tool: left out, a follow-up after a long tool went uncredited and resolved as "never"
    an hour later, so tools running 10-12 minutes learned that nothing comes back after 10."""
    clock = Clock()
    claude = ToyClaude()
    store = MemoryStore()
    planner = CachePlanner(store=store, clock=clock)
    turns = [("user", "Task: " + prose(40, 1)), ("assistant", "Running the tests.")]
    turns.append(("user", prose(1000, 2)))  # a large result: a site wherever it appears
    first = planner.plan(request(system=prose(1200, 3), turns=turns), keep_warm=True)
    planner.observe(first, claude.send(first.apply(), clock()), tools=["run_tests"])
    seen = clock()
    clock.advance(minutes * 60.0)
    turns = [*turns, ("assistant", "Done."), ("user", "Fixed?")]
    second = planner.plan(request(system=prose(1200, 3), turns=turns), keep_warm=True)
    flat = {b.position: i for i, b in enumerate(second.blocks)}
    large = flat[first.breakpoints[-1].position]
    assert large in {s.flat_index for s in trace_of(second, "test").sites}  # the premise
    planner.observe(second, claude.send(second.apply(), clock()), tools=[])

    record = store.get(gap_key(trace_of(second, "test").follow_key))
    histogram = GapHistogram.from_json(record[tool_field(tool_key(["run_tests"]))])
    assert histogram is not None
    assert seen not in histogram.pending  # resolved...
    bucket = next(i for i, edge in enumerate(GAP_EDGES) if minutes * 60.0 < edge)
    assert histogram.counts[bucket] == pytest.approx(1.0)  # ...by its gap, not as "never"


@pytest.mark.parametrize("keep_warm", [True, False])
@pytest.mark.parametrize("task_gap_minutes", [12.0, 20.0, 30.0])
def test_a_prompt_back_after_every_task_is_written_for_an_hour_on_the_next_day(
    task_gap_minutes: float, keep_warm: bool
) -> None:
    """A system prompt read every few seconds within tasks and again after each 10-30-minute
    pause between them: one 1-hour write serves the whole day, where a 5-minute entry needs
    keep-alives through every pause (or a rewrite after each). The odds per arrival see only
    the next ~20 arrivals (one task): before the late returns were counted per break
    (``late_per_break``), the replayed day wrote it for 5 minutes and kept it alive all day
    (with keep-alives) or rewrote it after a pause."""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(store=MemoryStore(), clock=clock)
    system = prose(3000, 5)

    def task(number: int) -> CachePlan:
        turns = [("user", f"Task {number}: " + prose(30, number))]
        for step in range(10):
            plan = planner.plan(request(system=system, turns=turns), keep_warm=keep_warm)
            planner.observe(plan, claude.send(plan.apply(), clock()), tools=["search"])
            if step == 0:
                first = plan
            turns = [*turns, ("assistant", prose(20, step)), ("user", prose(60, 50 + step))]
            clock.advance(10.0)
        return first

    for number in range(6):
        task(number)
        clock.advance(task_gap_minutes * 60.0)
    clock.advance(24 * 3600.0)
    first = task(100)
    system_marker = next(bp for bp in first.breakpoints if bp.position.section == "system")
    assert system_marker.ttl == "1h"


@pytest.mark.parametrize("keep_warm", [True, False])
def test_static_gaps_are_learned_in_both_modes_per_tool_only_for_keep_alives(
    keep_warm: bool,
) -> None:
    """The static site's gaps price its TTL either way (``late_per_break``); the histograms
    per tool serve only the keep-alive advice, so without keep-alives they are not kept."""
    clock = Clock()
    claude = ToyClaude()
    store = MemoryStore()
    planner = CachePlanner(store=store, clock=clock)
    system = prose(3000, 5)
    for step in range(3):
        plan = planner.plan(
            request(system=system, turns=[("user", f"Q{step}")]), keep_warm=keep_warm
        )
        planner.observe(plan, claude.send(plan.apply(), clock()), tools=["search"])
        clock.advance(600.0)
    site = next(
        s
        for s in trace_of(plan, "test").sites
        if plan.blocks[s.flat_index].position.section == "system"
    )
    record = store.get(gap_key(template_id(site.templates[-1])))
    histogram = GapHistogram.from_json(record[ANY_TOOL])
    assert histogram is not None
    assert sum(histogram.tail) > 0  # the 10-minute gaps are learned
    assert (tool_field(tool_key(["search"])) in record) is keep_warm


@pytest.mark.parametrize("keep_warm", [True, False])
def test_a_busy_tenant_among_quiet_ones_is_written_for_an_hour_on_the_next_day(
    keep_warm: bool,
) -> None:
    """Six tenants' system prompts share one template: one is back every 2 or 8 minutes for
    two hours, the other five twice a day. At the next day's start the day break resolves all
    six last arrivals as breaks at once, and the template's pooled late returns per break fall
    far below the busy tenant's own (a dozen late returns, one break): on ``mixed_tenants`` it
    was written for 5 minutes and kept alive for an hour and a half. Its own history
    (``own_late_per_break``) lifts the template's ratio for it. (Without keep-alives its odds
    alone already chose 1h here; both modes must agree.)"""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(store=MemoryStore(), clock=clock)
    tenants = [f"Tenant {n} assistant.\n\n" + prose(2500, 10 + n) for n in range(6)]

    def ask(tenant: int) -> CachePlan:
        question = [("user", prose(20, int(clock())))]
        plan = planner.plan(request(system=tenants[tenant], turns=question), keep_warm=keep_warm)
        planner.observe(plan, claude.send(plan.apply(), clock()))
        return plan

    def day() -> CachePlan:
        start = clock()
        first = ask(0)
        for step in range(1, 24):
            clock.advance(480.0 if step % 2 else 100.0)
            ask(0)
            quiet = step if step <= 5 else step - 17  # tenants 1-5, morning and afternoon
            if 1 <= quiet <= 5:  # 10 seconds after the busy one
                clock.advance(10.0)
                ask(quiet)
                clock.advance(-10.0)
        clock.advance(24 * 3600.0 - (clock() - start))
        return first

    day()
    first = day()
    marker = next(bp for bp in first.breakpoints if bp.position.section == "system")
    assert marker.ttl == "1h"


@pytest.mark.parametrize("keep_warm", [False, True])
def test_a_first_request_marks_the_end_of_its_tools_below_its_system_prompt(
    keep_warm: bool,
) -> None:
    """Workers that share tools under their own system prompts: the first one's request marks
    the end of the tools too (free: the write is billed once), so the next worker reads them."""
    tools = tuple(tool(f"tool_{i}", 12) for i in range(4))
    first = request(system=prose(900, 1), tools=tools)
    planner = CachePlanner(MemoryStore(), clock=Clock(), encoding=ESTIMATOR)
    plan = planner.plan(first, keep_warm=keep_warm)
    marked = {b.position for b in plan.breakpoints}
    assert Position("tools", len(tools) - 1) in marked
    assert Position("system", 0) in marked


def test_a_static_entry_read_through_a_deeper_one_after_it_expired_stays_expired() -> None:
    """The system prompt's 5m entry expires while the conversation's 1h entry holds the whole
    prefix: the next turn reads through the 1h entry, and Claude restarts only what it hits,
    so the system prompt's entry stays gone. Believed refreshed, it was kept alive by
    keep-alives that in fact wrote it again (a 5m write each) or predicted to be read."""
    clock = Clock()
    claude = ToyClaude()
    store = MemoryStore()
    planner = CachePlanner(store, clock, encoding=ESTIMATOR)
    system = prose(1200, 1)
    turns = [("user", prose(400, 2))]
    run(planner, claude, request(system=system, turns=turns), clock, ttl="5m")
    clock.advance(60)
    turns += [("assistant", prose(300, 3)), ("user", prose(300, 4))]
    run(planner, claude, request(system=system, turns=turns), clock, ttl="1h")
    assert claude.log[-1].cache_write_1h_tokens > 0  # the conversation, for an hour
    clock.advance(600)  # the system prompt's 5m entry is gone, the conversation's 1h one is not
    turns += [("assistant", prose(300, 5)), ("user", prose(30, 6))]
    plan = planner.plan(request(system=system, turns=turns), ttl="5m", keep_warm=True)
    usage = claude.send(plan.apply(), clock())
    planner.observe(plan, usage, tools=["run_tests"])
    assert usage.cache_read_tokens > 0  # read through the conversation's entry
    system_bp = next(bp for bp in plan.breakpoints if bp.position.section == "system")
    assert store.get(f"p:{system_bp.prefix_hash[:24]}")["cu"] <= clock()  # believed gone
    keeps = planner.keep_alives(plan, usage, tools=["run_tests"])
    assert [k for k in keeps if k.position.section == "system"] == []


def test_an_early_turns_1h_entry_read_through_later_ones_keeps_its_own_expiry() -> None:
    """A conversation's first turn is written for an hour; each later turn reads the previous
    turn's 5m entry, so Claude restarts that one and not the first turn's: the first turn's
    entry ends an hour after its last hit. It was believed restarted by every turn (so alive
    an hour after the latest), which credited a long conversation with an entry long gone."""
    clock = Clock()
    claude = ToyClaude()
    planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    system = prose(1200, 1)
    turns = [("user", prose(600, 2))]
    first, _, _ = run(planner, claude, request(system=system, turns=turns), clock, ttl="1h")
    tail = first.breakpoints[-1]
    hit_at = 0.0
    for step in range(8):
        clock.advance(240)
        hit_at = hit_at or clock()  # the first follow-up hits the first turn's entry
        turns += [("assistant", prose(40, 3 + step)), ("user", prose(40, 50 + step))]
        plan, _, _ = run(planner, claude, request(system=system, turns=turns), clock, ttl="5m")
    lineage = planner._store.get(trace_of(plan, "test").lineage_key)
    (entry,) = [e for e in lineage if e[1] == int(tail.prefix_hash[:12], 16)]
    assert entry[2] == pytest.approx(hit_at + 3600, abs=1.0)  # when Claude drops it
