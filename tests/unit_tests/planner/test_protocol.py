"""``Planner`` and ``as_planner``: a user's planner gets the protocol's missing parts, once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from planner_helpers import ESTIMATOR, Clock, ToyClaude, prose, request

from langchain_claude_relay.planner import (
    CachePlan,
    CachePlanner,
    Observation,
    Planner,
    as_planner,
)
from langchain_claude_relay.request import ClaudeRequest
from langchain_claude_relay.store import MemoryStore
from langchain_claude_relay.usage import NormalizedUsage

USAGE = NormalizedUsage(100, 0, 0, 0, 10)


class OnlyPlan:
    """The smallest planner: a ``plan`` that knows nothing of ``max_markers``/``mark_tools``."""

    def __init__(self) -> None:
        self.calls: list[tuple[ClaudeRequest, dict[str, Any]]] = []

    def plan(self, request: ClaudeRequest, *, ttl: str | None = None) -> str:
        self.calls.append((request, {"ttl": ttl}))
        return f"plan-{len(self.calls)}"


class PlanAndObserve:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.observed: list[tuple[Any, Any]] = []

    def plan(self, request: ClaudeRequest, **options: Any) -> tuple[ClaudeRequest, dict]:
        return request, options

    def observe(self, plan: Any, usage: Any) -> Any:
        self.observed.append((plan, usage))
        return self.result


class Summary:
    def to_dict(self) -> dict[str, Any]:
        return {"ok": True}


def test_a_planner_with_only_plan_gets_the_rest() -> None:
    user = OnlyPlan()
    planner = as_planner(user)
    req = request(system="hello")
    with planner.send_lock:  # a usable lock of the adapter's own
        plan = planner.plan(req, ttl="5m")
        planner.sent(plan)
    assert plan == "plan-1"
    assert user.calls == [(req, {"ttl": "5m"})]  # no max_markers / mark_tools at their defaults
    for event in (planner.began, planner.abandoned):
        event(plan)
    assert planner.observe(plan, USAGE) is None
    assert planner.calibrates is False
    assert planner.calibrate(req, 1000) is False
    assert planner.clock is time.time
    assert planner.send_lock is not as_planner(OnlyPlan()).send_lock
    assert as_planner(planner) is planner  # adapting twice changes nothing


def test_options_reach_the_user_plan_only_when_set() -> None:
    user = PlanAndObserve(None)
    planner = as_planner(user)
    req = request(system="hello")
    assert planner.plan(req) == (req, {})
    assert planner.plan(req, ttl="1h", max_markers=2, mark_tools=False) == (
        req,
        {"ttl": "1h", "max_markers": 2, "mark_tools": False},
    )


def test_a_planner_with_plan_and_observe_reports_its_observation() -> None:
    summary = Summary()
    user = PlanAndObserve(summary)
    planner = as_planner(user)
    plan: Any = planner.plan(request(system="hello"))
    assert planner.observe(plan, USAGE) is summary
    assert user.observed == [(plan, USAGE)]
    user.result = {"not": "an observation"}  # nothing to put in response metadata
    assert planner.observe(plan, USAGE) is None
    assert len(user.observed) == 2


def test_members_the_user_planner_has_are_forwarded() -> None:
    events: list[tuple[str, Any]] = []
    lock = threading.Lock()

    class Full(OnlyPlan):
        send_lock = lock

        def clock(self) -> float:
            return 42.0

        def sent(self, plan: Any) -> None:
            events.append(("sent", plan))

        def began(self, plan: Any) -> None:
            events.append(("began", plan))

        def abandoned(self, plan: Any) -> None:
            events.append(("abandoned", plan))

        def calibrate(self, req: ClaudeRequest, total: int) -> None:
            events.append(("calibrate", total))

    planner = as_planner(Full())
    assert planner.clock() == 42.0
    assert planner.send_lock is lock
    assert planner.calibrates is True
    for event in (planner.sent, planner.began, planner.abandoned):
        event("p")
    assert planner.calibrate(request(system="x"), 7) is False  # its None means "not used"
    assert events == [("sent", "p"), ("began", "p"), ("abandoned", "p"), ("calibrate", 7)]


def test_what_a_planner_has_is_decided_when_it_is_wrapped() -> None:
    user = OnlyPlan()
    planner = as_planner(user)
    seen: list[Any] = []
    user.sent = seen.append  # added later: not looked for
    planner.sent("p")
    assert seen == []


def test_a_cache_planner_passes_through_and_drives_the_whole_sequence() -> None:
    clock, claude = Clock(), ToyClaude()
    cache_planner = CachePlanner(MemoryStore(), clock, encoding=ESTIMATOR)
    planner: Planner = as_planner(cache_planner)
    assert planner is cache_planner
    assert planner.clock is clock
    assert planner.calibrates is True
    req = request(system=prose(1500, 1))
    with planner.send_lock:
        plan = planner.plan(req, ttl="auto", max_markers=3, mark_tools=False)
        planner.sent(plan)
    assert isinstance(plan, CachePlan)
    planner.began(plan)
    observation = planner.observe(plan, claude.send(plan.apply(), clock()))
    assert isinstance(observation, Observation)
    assert observation.to_dict()["breakpoints"]


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (object(), "missing: plan"),
        ("auto", "missing: plan"),
        (type("Plan", (), {"plan": 3})(), "missing: plan"),
        (type("BadObserve", (OnlyPlan,), {"observe": "yes"})(), "has observe"),
        (type("BadClock", (OnlyPlan,), {"clock": 0.0})(), "has clock"),
        (type("BadLock", (OnlyPlan,), {"send_lock": object()})(), "has send_lock"),
    ],
    ids=["object", "string", "plan_not_callable", "observe", "clock", "send_lock"],
)
def test_a_non_planner_is_refused_naming_what_is_missing(given: object, missing: str) -> None:
    with pytest.raises(TypeError, match=missing):
        as_planner(given)
