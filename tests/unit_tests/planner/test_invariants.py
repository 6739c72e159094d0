"""Properties every plan must have, whatever the request and whatever the planner learned."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from planner_helpers import ESTIMATOR, MODEL, Clock, ToyClaude, prose

from langchain_claude_relay.errors import RequestValidationError
from langchain_claude_relay.planner import CachePlanner, validate_user_markers
from langchain_claude_relay.planner.rules import MAX_CACHE_MARKERS, reaches_minimum, ttl_order_valid
from langchain_claude_relay.request import (
    Block,
    CacheControl,
    ClaudeRequest,
    Message,
    Position,
    Tool,
)
from langchain_claude_relay.store import MemoryStore

SIZES = st.sampled_from([0, 3, 40, 300, 700, 1200, 2500])
MODELS = st.sampled_from([MODEL, "claude-haiku-4-5", "claude-opus-5", "claude-3-5-haiku-20241022"])


@st.composite
def tools(draw: st.DrawFn) -> tuple[Tool, ...]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        props = {
            f"p{k}": {
                "type": "string",
                "description": prose(draw(st.sampled_from([5, 60, 400])), k),
            }
            for k in range(draw(st.integers(1, 4)))
        }
        out.append(Tool(f"tool_{i}", prose(10, i), {"type": "object", "properties": props}))
    return tuple(out)


@st.composite
def block(draw: st.DrawFn, role: str, seed: int) -> Block:
    kinds = ["text", "text", "empty"]
    kinds += (
        ["thinking", "tool_use"] if role == "assistant" else ["tool_result", "document", "image"]
    )
    kind = draw(st.sampled_from(kinds))
    size = draw(SIZES)
    if kind == "empty":
        return Block("text", {"text": ""})
    if kind == "text":
        return Block("text", {"text": prose(size, seed) or "ok"})
    if kind == "thinking":
        return Block("thinking", {"thinking": prose(size, seed), "signature": "sig"})
    if kind == "tool_use":
        return Block(
            "tool_use",
            {"id": f"t{seed}", "name": "tool_0", "input": {"q": prose(size, seed), "n": [1, 2.5]}},
        )
    if kind == "tool_result":
        return Block(
            "tool_result",
            {"tool_use_id": f"t{seed}", "content": [{"type": "text", "text": prose(size, seed)}]},
        )
    if kind == "document":
        return Block(
            "document",
            {"source": {"type": "text", "media_type": "text/plain", "data": prose(size, seed)}},
        )
    return Block("image", {"source": {"type": "url", "url": f"https://example.com/{seed}.png"}})


@st.composite
def requests(draw: st.DrawFn) -> ClaudeRequest:
    system = tuple(
        Block("text", {"text": prose(draw(SIZES), 50 + i)}) for i in range(draw(st.integers(0, 2)))
    )
    messages = []
    for m in range(draw(st.integers(1, 26))):
        role = "user" if m % 2 == 0 else "assistant"
        content = tuple(draw(block(role, m * 10 + j)) for j in range(draw(st.integers(1, 3))))
        messages.append(Message(role, content))
    request = ClaudeRequest(draw(MODELS), draw(tools()), system, tuple(messages))
    return _with_user_markers(draw, request)


def _markable_positions(request: ClaudeRequest) -> list[Position]:
    out = [Position("tools", i) for i in range(len(request.tools))]
    out += [Position("system", i) for i, b in enumerate(request.system) if b.markable]
    out += [
        Position("messages", m, j)
        for m, msg in enumerate(request.messages)
        for j, b in enumerate(msg.content)
        if b.markable
    ]
    return out


def _with_user_markers(draw: st.DrawFn, request: ClaudeRequest) -> ClaudeRequest:
    positions = _markable_positions(request)
    if not positions:
        return request
    chosen = draw(
        st.lists(st.sampled_from(positions), unique=True, max_size=min(4, len(positions)))
    )
    order = {p: i for i, p in enumerate(positions)}
    chosen.sort(key=order.__getitem__)
    n_1h = draw(st.integers(0, len(chosen)))
    markers = {
        p: CacheControl("1h") if k < n_1h else CacheControl("5m", explicit_ttl=draw(st.booleans()))
        for k, p in enumerate(chosen)
    }
    return request.with_markers(markers)


def _snapshot(request: ClaudeRequest) -> Any:
    return copy.deepcopy(
        (
            [(t.name, t.description, t.parameters, t.cache_control) for t in request.tools],
            [(b.type, b.data, b.cache_control) for b in request.system],
            [[(b.type, b.data, b.cache_control) for b in m.content] for m in request.messages],
        )
    )


def _block_at(request: ClaudeRequest, position: Position) -> Block | Tool:
    if position.section == "tools":
        return request.tools[position.index]
    if position.section == "system":
        return request.system[position.index]
    return request.messages[position.index].content[position.part]


def _history(
    planner: CachePlanner, clock: Clock, request: ClaudeRequest, gaps: list[float]
) -> None:
    """Let the planner learn from earlier calls with the same request (random gaps)."""
    claude = ToyClaude()
    for i, gap in enumerate(gaps):
        plan = planner.plan(request, keep_warm=i % 2 == 1)
        usage = claude.send(plan.apply(), clock())
        tools = ["tool_0"] if i % 2 else []
        planner.observe(plan, usage, tools=tools)
        for keep in planner.keep_alives(plan, usage, tools=tools):  # advice changes nothing
            assert keep.ttl == "5m"
            assert keep.prefix_hash in {b.prefix_hash for b in plan.breakpoints}
        clock.advance(gap)


GAPS = st.lists(st.sampled_from([10.0, 200.0, 1500.0, 7200.0]), max_size=3)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request=requests(),
    gaps=GAPS,
    policy=st.sampled_from(["auto", "auto", "5m", "1h"]),
    keep_warm=st.booleans(),
)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_plan_invariants(
    request: ClaudeRequest, gaps: list[float], policy: str, keep_warm: bool
) -> None:
    store, clock = MemoryStore(), Clock()
    planner = CachePlanner(store, clock, ttl=policy, encoding=ESTIMATOR)  # type: ignore[arg-type]
    _history(planner, clock, request, gaps)
    before = _snapshot(request)
    twin_store = MemoryStore()
    twin_store._data = copy.deepcopy(store._data)

    plan = planner.plan(request, keep_warm=keep_warm)

    bps = plan.breakpoints
    event(f"planner markers: {sum(b.source == 'planner' for b in bps)}")
    event(f"user markers: {sum(b.source == 'user' for b in bps)}")
    event(f"ttls: {sorted({b.ttl for b in bps})}")
    assert len(bps) <= MAX_CACHE_MARKERS
    assert ttl_order_valid([b.ttl for b in bps])
    flat = [b.position for b in plan.blocks]
    assert [flat.index(b.position) for b in bps] == sorted(flat.index(b.position) for b in bps)
    prefix = {b.position: b.prefix_tokens for b in plan.blocks}
    for b in bps:
        target = _block_at(request, b.position)
        assert isinstance(target, Tool) or target.markable, (
            f"marker on {target.type} at {b.position}"
        )
        assert b.estimated_prefix_tokens >= prefix[b.position]
        if b.source == "planner":
            assert reaches_minimum(prefix[b.position], plan.min_cache_tokens, plan.min_margin)
    # user markers: all kept, exactly
    user = request.markers()
    assert {b.position for b in bps if b.source == "user"} == set(user)
    applied = plan.apply()
    for position, marker in user.items():
        assert applied.markers()[position] == marker
    assert set(applied.markers()) == {b.position for b in bps}
    validate_user_markers(applied)  # what is sent is valid for Claude
    # the input is untouched
    assert _snapshot(request) == before
    # same state and same input: same plan (a twin planner, and this one again)
    twin = CachePlanner(twin_store, Clock(clock.now), ttl=policy, encoding=ESTIMATOR)  # type: ignore[arg-type]
    assert twin.plan(request, keep_warm=keep_warm) == plan
    assert planner.plan(request, keep_warm=keep_warm) == plan
    assert twin.plan(request, keep_warm=keep_warm).to_dict() == plan.to_dict()


@settings(max_examples=30, deadline=None)
@given(request=requests(), extra=st.integers(1, 3))
def test_more_than_four_user_markers_are_refused(request: ClaudeRequest, extra: int) -> None:
    positions = _markable_positions(request)
    if len(positions) < MAX_CACHE_MARKERS + extra:
        return
    marked = request.with_markers(
        {p: CacheControl("5m") for p in positions[: MAX_CACHE_MARKERS + extra]}
    )
    with pytest.raises(RequestValidationError, match="at most 4"):
        CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(marked)


@settings(max_examples=30, deadline=None)
@given(request=requests())
def test_fast_prefix_hashes_match_the_request_model(request: ClaudeRequest) -> None:
    plan = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR).plan(request)
    hashes = dict(
        zip([f.position for f in request.flat_blocks()], request.prefix_hashes(), strict=True)
    )
    for b in plan.breakpoints:
        assert b.prefix_hash == hashes[b.position]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), max_markers=st.integers(0, 4), mark_tools=st.booleans())
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
def test_relay_adaptations_bound_the_plan(
    request: ClaudeRequest, max_markers: int, mark_tools: bool
) -> None:
    """A relay that injects a marker leaves fewer slots; one that drops tool markers gets none.

    The user's own markers are always kept (they may exceed the planner's budget: the user
    asked for them), and every other invariant still holds.
    """
    planner = CachePlanner(MemoryStore(), Clock(), encoding=ESTIMATOR)
    plan = planner.plan(request, max_markers=max_markers, mark_tools=mark_tools)
    planned = [b for b in plan.breakpoints if b.source == "planner"]
    user = request.markers()
    assert len(planned) <= max(0, max_markers - len(user))
    assert {b.position for b in plan.breakpoints if b.source == "user"} == set(user)
    if not mark_tools:
        assert all(b.position.section != "tools" for b in planned)
    assert ttl_order_valid([b.ttl for b in plan.breakpoints])
    unbounded = planner.plan(request)
    if max_markers == MAX_CACHE_MARKERS and mark_tools:
        assert plan == unbounded
