"""Warm-then-fan-out scheduling (``fanout``) and call booking (``limiting``) as plain logic.

The end-to-end behaviour (writes saved, configs kept) is in tests/integration_tests/test_fanout.py
and tests/integration_tests/test_rate_limiting.py; here the schedulers run without a model.
"""

from __future__ import annotations

import doctest
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from langchain_claude_relay import _fanout as fanout
from langchain_claude_relay._convert import to_claude_request
from langchain_claude_relay.errors import APIConnectionError, RateLimitError
from langchain_claude_relay.limiter import booking as limiting

MODEL = "claude-sonnet-4-6"


def plan_writing(*hashes: str, read: str | None = None) -> Any:
    """A stand-in plan: a breakpoint predicted to write each hash (and one to read ``read``)."""
    breakpoints = [SimpleNamespace(prefix_hash=h, predicted="write") for h in hashes]
    if read is not None:
        breakpoints.append(SimpleNamespace(prefix_hash=read, predicted="read"))
    return SimpleNamespace(breakpoints=tuple(breakpoints))


class Recorder:
    """Collects launches: index -> its gate (in launch order)."""

    def __init__(self) -> None:
        self.launched: list[tuple[int, fanout.WarmupGate]] = []

    def __call__(self, index: int, gate: fanout.WarmupGate) -> None:
        self.launched.append((index, gate))

    def indices(self) -> list[int]:
        return [index for index, _gate in self.launched]

    def gate(self, index: int) -> fanout.WarmupGate:
        return next(gate for i, gate in reversed(self.launched) if i == index)


# keys: 0-2 share the first block "s" and then fork; 3 is alone; 4 could not be read.
KEYS: list[fanout.PrefixKey | None] = [
    (MODEL, ("s", "s-doc", "q0")),
    (MODEL, ("s", "s-doc", "q1")),
    (MODEL, ("s", "s-other", "q2")),
    (MODEL, ("t", "q3")),
    None,
]


def test_start_launches_one_leader_per_group_largest_first() -> None:
    launched = Recorder()
    fanout.FanOut(KEYS, launched).start()
    assert launched.indices() == [0, 3, 4]
    assert launched.gate(0).leads
    assert not launched.gate(3).leads
    assert not launched.gate(4).leads


# Released inputs form groups again by their first block past what is warm: 1 and 2 share "s",
# so when both go before "s" is warm, 1 leads and 2 waits; once it is, they share nothing more.
@pytest.mark.parametrize(
    ("writes", "launched_at_plan", "launched_at_begin"),
    [
        pytest.param(("s-doc",), [2], [1], id="the fork that shares the write waits"),
        pytest.param(("s",), [], [1, 2], id="a write on the shared block holds both"),
        pytest.param((), [1, 2], [], id="nothing written: both go at once"),
        pytest.param(("q0",), [1, 2], [], id="a write nobody shares holds nobody"),
    ],
)
def test_a_leader_holds_only_the_inputs_sharing_a_prefix_it_writes(
    writes: tuple[str, ...], launched_at_plan: list[int], launched_at_begin: list[int]
) -> None:
    launched = Recorder()
    fanout.FanOut(KEYS, launched).start()
    leader = launched.gate(0)
    leader.planned(plan_writing(*writes))
    assert launched.indices()[3:] == launched_at_plan
    leader.begun()
    later = launched.indices()[3 + len(launched_at_plan) :]
    assert later == launched_at_begin
    for index in later:
        assert launched.gate(index).warmed == frozenset(writes)


def test_inputs_released_before_the_response_begin_do_not_count_the_writes_as_warm() -> None:
    launched = Recorder()
    fanout.FanOut(KEYS, launched).start()
    leader = launched.gate(0)
    leader.planned(plan_writing("s-doc"))
    assert launched.gate(2).warmed == frozenset()
    leader.begun()
    assert launched.gate(1).warmed == frozenset({"s-doc"})


def test_a_prefix_already_warm_is_not_waited_on() -> None:
    launched = Recorder()
    gate = fanout.WarmupGate(fanout.FanOut(KEYS, launched), [1, 2], frozenset({"s-doc"}))
    gate.planned(plan_writing("s-doc"))
    # 1 reads through "s-doc" and would write only past it, so 2 (sharing "s") gains nothing
    # by waiting for it: both go at once
    assert launched.indices() == [1, 2]
    assert not gate.leads
    assert not launched.gate(1).leads


def test_inputs_sharing_only_what_the_leader_does_not_write_go_at_once() -> None:
    # a shared block past the warm prefix that no plan writes (a short system prompt, a short
    # shared turn) must not make a chain either: 19 of 20 calls led in turn
    keys: list[fanout.PrefixKey | None] = [(MODEL, ("s", "turn", f"q{i}")) for i in range(5)]
    launched = Recorder()
    fanout.FanOut(keys, launched).start()
    launched.gate(0).planned(plan_writing("q0"))
    assert launched.indices() == [0, 1, 2, 3, 4]
    assert not any(gate.leads for _i, gate in launched.launched[1:])


def test_inputs_sharing_only_what_the_leader_reads_go_at_once() -> None:
    # the batch's shared prompt is cached already: the leader's plan reads it and writes only
    # its own question, and the rest must not form a chain, each waiting for the last one's plan
    keys: list[fanout.PrefixKey | None] = [(MODEL, ("s", "doc", f"q{i}")) for i in range(5)]
    launched = Recorder()
    fanout.FanOut(keys, launched).start()
    leader = launched.gate(0)
    assert leader.leads
    leader.planned(plan_writing("q0", read="doc"))
    assert launched.indices() == [0, 1, 2, 3, 4]
    assert not any(gate.leads for _index, gate in launched.launched)
    assert all(launched.gate(i).warmed == {"doc"} for i in range(5))


def test_finish_before_planning_regroups_and_after_planning_sends_at_once() -> None:
    launched = Recorder()
    fanout.FanOut(KEYS, launched).start()
    launched.gate(0).finish()  # refused before planning
    assert launched.indices()[3:] == [1]
    assert launched.gate(1).leads  # 2 still waits on the new leader

    launched = Recorder()
    fanout.FanOut(KEYS, launched).start()
    leader = launched.gate(0)
    leader.planned(plan_writing("s"))
    leader.finish()  # the relay failed after planning
    assert launched.indices()[3:] == [1, 2]
    assert not launched.gate(1).leads
    assert not launched.gate(2).leads


def test_running_gate_sets_the_context_and_releases_on_exit() -> None:
    launched = Recorder()
    gate = fanout.WarmupGate(fanout.FanOut(KEYS, launched), [1], frozenset({"w"}))
    assert fanout.current_gate() is None
    assert fanout.warmed_prefixes() == frozenset()
    with fanout.running_gate(gate):
        assert fanout.current_gate() is gate
        assert fanout.leads_warmup()
        assert fanout.warmed_prefixes() == {"w"}
    assert fanout.current_gate() is None
    assert launched.indices() == [1]  # finish released the follower


def test_run_threaded_sends_a_group_one_after_the_other_when_nothing_begins() -> None:
    order: list[int] = []
    lock = threading.Lock()

    def call(index: int) -> int:
        with lock:
            order.append(index)
        if index == 1:
            msg = "no"
            raise ValueError(msg)
        return index * 10

    keys: list[fanout.PrefixKey | None] = [(MODEL, ("s", f"q{i}")) for i in range(3)]
    outcomes = fanout.run_threaded(keys, call, max_workers=8)
    assert order == [0, 1, 2]  # each finished leader released the rest, regrouped
    assert outcomes[0] == 0
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 20
    with pytest.raises(ValueError, match="no"):
        fanout.batch_results(outcomes, return_exceptions=False)
    assert fanout.batch_results(outcomes, return_exceptions=True) == outcomes


async def test_run_tasks_keeps_input_order_and_begun_releases_the_rest() -> None:
    order: list[int] = []

    async def call(index: int) -> int:
        order.append(index)
        gate = fanout.current_gate()
        assert gate is not None
        if index == 0:
            gate.planned(plan_writing("s-doc"))  # 2 goes now, 1 waits for the response
            gate.begun()
        return index

    outcomes = await fanout.run_tasks(KEYS[:3], call, max_concurrency=2)
    assert outcomes == [0, 1, 2]
    assert order[0] == 0
    assert sorted(order) == [0, 1, 2]


def test_warmup_helps_only_when_a_first_block_is_shared() -> None:
    assert fanout.warmup_helps(KEYS)
    assert not fanout.warmup_helps(KEYS[2:])
    assert not fanout.warmup_helps([(MODEL, ("s",)), ("other-model", ("s",))])
    assert not fanout.warmup_helps([None, None, (MODEL, ())])


# -- limiting -----------------------------------------------------------------------------------


def test_token_estimates_subtract_predicted_and_warmed_reads() -> None:
    request = to_claude_request([HumanMessage("hello")], model=MODEL)
    plan = SimpleNamespace(
        total_estimated_tokens=5_000,
        predicted_read_tokens=1_000,
        breakpoints=(SimpleNamespace(prefix_hash="p", estimated_prefix_tokens=4_000),),
    )
    assert limiting.token_estimates(MODEL, request, plan, {}) == (
        4_000,
        limiting.DEFAULT_OUTPUT_ESTIMATE,
    )
    assert limiting.token_estimates(MODEL, request, plan, {"max_tokens": 50}, frozenset({"p"})) == (
        1_000,
        50,
    )
    # haiku-3 counts reads toward ITPM: the whole input is booked
    assert limiting.token_estimates("claude-3-haiku", request, plan, {"max_tokens": True})[0] == (
        5_000
    )


def test_without_a_plan_the_input_is_estimated_roughly() -> None:
    short = to_claude_request([HumanMessage("hello")], model=MODEL)
    long = to_claude_request([HumanMessage("hello " * 500)], model=MODEL)
    counted_short, _ = limiting.token_estimates(MODEL, short, None, {})
    counted_long, _ = limiting.token_estimates(MODEL, long, None, {})
    assert 0 < counted_short < 10
    assert 500 <= counted_long < 1_000


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (RateLimitError("slow down", status_code=429), "refused"),
        (APIConnectionError("down"), "unsent"),
        (KeyboardInterrupt(), "unsent"),
    ],
)
def test_failure_outcome(exc: BaseException, outcome: str) -> None:
    assert limiting.failure_outcome(exc) == outcome


def test_release_without_a_booking_does_nothing() -> None:
    limiting.release(None, "answered", None, MODEL)


@pytest.mark.parametrize("module", [fanout, limiting], ids=["fanout", "limiting"])
def test_module_doctests(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
