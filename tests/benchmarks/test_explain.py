"""``claude-relay bench --explain``: ours against the oracle per prefix node, on quick traces."""

from __future__ import annotations

import pytest

from langchain_claude_relay.bench import run_bench
from langchain_claude_relay.bench.explain import Explanation, _range_cost, explain_nodes
from langchain_claude_relay.bench.oracle import RequestProfile, oracle_cost, profile_request
from langchain_claude_relay.bench.runner import (
    DAY,
    ReplaySession,
    RequestBill,
    StrategyRun,
    run_metrics,
)
from langchain_claude_relay.bench.strategies import STRATEGIES
from langchain_claude_relay.bench.workloads import WORKLOADS, Trace, build_workloads
from langchain_claude_relay.emulator import RelayEmulator
from langchain_claude_relay.emulator.tokens import EmulatorTokenizer
from langchain_claude_relay.models import lookup_model
from langchain_claude_relay.planner.ttl import Rates

Replayed = tuple[Trace, list[RequestProfile], StrategyRun, Explanation]


@pytest.fixture(scope="module", params=[("multi_agent", 2), ("near_minimum", 1)])
def replayed(request: pytest.FixtureRequest) -> Replayed:
    """A quick trace replayed by ours (day two on day one's store for ``multi_agent``)."""
    name, day = request.param
    (trace,) = build_workloads(0, quick=True, names=[name])
    (ours,) = [s for s in STRATEGIES if s.planned]
    with RelayEmulator() as emulator, ReplaySession(emulator, concurrent_delay=0.3) as session:
        tokenizer = EmulatorTokenizer(emulator.settings.token_costs)
        profiles = [
            profile_request(r.messages, r.tools, trace.model_of(r), r.time, tokenizer)
            for r in trace.requests
        ]
        state = session.new_state(budget_usd=1.0)
        for offset in range(day):
            run = session.replay(trace, ours, state=state, offset=offset * DAY)
    return trace, profiles, run, explain_nodes(trace, profiles, run, day=day)


def test_nodes_and_below_minimum_sum_to_the_oracle_bound(replayed: Replayed) -> None:
    trace, profiles, _, explanation = replayed
    bound = 0.0
    for model in trace.models:
        mine = [
            p for p, r in zip(profiles, trace.requests, strict=True) if trace.model_of(r) == model
        ]
        minimum = lookup_model(model).min_cache_tokens
        bound += oracle_cost(mine, Rates.for_model(model), minimum).cost_usd
    assert explanation.oracle_usd == pytest.approx(bound, rel=1e-12)
    assert sum(r.oracle_usd for r in explanation.rows) > 0
    assert explanation.prefix_charged_usd >= bound - 1e-12  # keep-alives only cost more


def test_nodes_and_below_minimum_sum_to_ours_trace_requests(replayed: Replayed) -> None:
    _, _, run, explanation = replayed
    metrics = run_metrics(run)
    trace_requests = metrics.cost_usd - metrics.keep_alive_cost_usd
    assert explanation.ours_usd == pytest.approx(trace_requests, rel=1e-12)
    assert explanation.keep_alive_requests == len(run.keep_alives)
    assert explanation.keep_alive_usd == pytest.approx(metrics.keep_alive_cost_usd)


def test_near_minimum_has_requests_below_the_minimum(replayed: Replayed) -> None:
    trace, _, _, explanation = replayed
    if trace.name == "near_minimum":  # so the identities above cover the below-minimum part
        assert explanation.ours_below_usd > 0
        assert explanation.oracle_below_usd > 0


def test_rows_are_sorted_by_excess_descending(replayed: Replayed) -> None:
    _, _, _, explanation = replayed
    excess = [r.excess_usd for r in explanation.rows]
    assert len(excess) > 1
    assert excess == sorted(excess, reverse=True)
    assert all(r.arrivals >= len(r.minutes) >= 1 for r in explanation.rows)


def test_unknown_trace_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_bench(["--explain", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--explain" in err
    assert "'nope'" in err
    assert all(name in err for name in WORKLOADS)


def test_explain_does_not_combine_with_bench_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_bench(["--explain", "short", "--json", "out.json"])
    assert exit_info.value.code == 2
    assert "--json" in capsys.readouterr().err


def test_explain_prints_a_header_and_the_top_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_bench(["--explain", "near_minimum", "--quick", "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("near_minimum day 1: oracle $")
    assert "ours' keep-alives $" in lines[0]
    assert "not a bound): $" in lines[1]
    header = next(i for i, line in enumerate(lines) if line.startswith("excess USD"))
    assert set(lines[header + 1]) <= {"-", " "}
    rows = lines[header + 2 :]
    assert len(rows) == 3
    assert all(row.split()[0].startswith(("+", "-")) for row in rows)


def test_a_bill_splits_by_position_read_then_1h_then_5m_then_plain() -> None:
    bill = RequestBill(0, 0.0, "r", 30, 100, 20, 50, 1, None, ())
    rates = Rates(input=1.0, read=0.1, write_5m=1.25, write_1h=2.0)
    assert _range_cost(bill, rates, 0, 100) == pytest.approx(10.0)  # all read
    assert _range_cost(bill, rates, 90, 160) == pytest.approx(10 * 0.1 + 50 * 2.0 + 10 * 1.25)
    assert _range_cost(bill, rates, 170, 200) == pytest.approx(30.0)  # the plain tail
    assert _range_cost(bill, rates, 0, 200) == pytest.approx(rates.cost(30, 100, 20, 50))
